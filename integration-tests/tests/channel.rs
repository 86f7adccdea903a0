//! The channel between a worker and its collector, attacked: a second local user squats the
//! default socket (or its directory), serves a socket a worker is pointed at, or connects to a
//! collector; a collector asks for secrets or floods the worker with commands that pause it.
//! Everything runs for real: the real CLI, the real agent and shim in a real `dotnet`, and a real
//! second user (`squatter` run with `setpriv`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use integration_tests::*;
use serde_json::Value;

const SQUATTER: &str = env!("CARGO_BIN_EXE_squatter");

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// The CLI as it runs for a user without `XDG_RUNTIME_DIR` (sudo, cron, CI, `docker exec`), with
/// `tmp` as its temporary directory.
fn leakscope_in(tmp: &Path, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(cli_path());
    c.args(args).env("TMPDIR", tmp).env_remove("XDG_RUNTIME_DIR");
    run_with_timeout(c, Duration::from_secs(60))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).mode() & 0o7777
}

fn wait_for_path(path: &Path, timeout: Duration) {
    let until = Instant::now() + timeout;
    while !path.exists() {
        assert!(Instant::now() < until, "{} did not appear within {timeout:?}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A second user's `mkdir`/`ln -s` planted in the shared temporary directory, and refused by
/// `env` and `listen` with a message that says what is wrong; a directory leakscope makes itself
/// is 0700, and the other user cannot put a socket in it.
#[test]
fn a_planted_or_open_socket_directory_is_refused_with_a_clear_message() {
    let other = other_user();
    let tmp = shared_tmp();
    let dir = tmp.path().join(format!("leakscope-{}", euid()));
    let shown = dir.display().to_string();
    let out_dir = tmp.path().join("out");

    // 1. The other user's own directory, open to everyone.
    other.run("mkdir", &["-m", "0777", &shown]);
    assert_eq!(std::fs::metadata(&dir).unwrap().uid(), other.uid);
    for args in
        [vec!["env", "--no-native"], vec!["listen", "--plain", "--duration", "2s", "--out", out_dir.to_str().unwrap()]]
    {
        let out = leakscope_in(tmp.path(), &args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} accepted a directory of uid {}: {err}", other.uid);
        assert!(err.contains(&shown) && err.contains(&format!("belongs to uid {}", other.uid)), "{args:?}: {err}");
        assert!(err.contains("another user may have put it there"), "{args:?}: {err}");
        assert!(!dir.join("leakscope.sock").exists(), "{args:?} bound a socket in the other user's directory");
        assert!(out.stdout.is_empty(), "{args:?} printed variables anyway: {}", text(&out.stdout));
    }
    std::fs::remove_dir(&dir).unwrap();

    // 2. A symlink to a directory of the other user.
    let lair = tmp.path().join("lair");
    other.run("mkdir", &["-m", "0777", lair.to_str().unwrap()]);
    other.run("ln", &["-s", lair.to_str().unwrap(), &shown]);
    let out = leakscope_in(tmp.path(), &["env", "--no-native"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("symbolic link"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_dir(&lair).unwrap().count(), 0, "something was created through the symlink");
    std::fs::remove_file(&dir).unwrap();

    // 3. This user's, but open to others.
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = leakscope_in(tmp.path(), &["env", "--no-native"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("mode is 0755, not 0700"), "{}", text(&out.stderr));
    std::fs::remove_dir(&dir).unwrap();

    // 4. Absent: `env` claims it (0700 under umask 000 too), and the other user cannot bind there.
    let mut c = Command::new("sh");
    c.args(["-c", "umask 000; exec \"$0\" env --no-native"]).arg(cli_path());
    c.env("TMPDIR", tmp.path()).env_remove("XDG_RUNTIME_DIR");
    let out = run_with_timeout(c, Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    assert!(meta.is_dir() && meta.uid() == euid(), "{meta:?}");
    assert_eq!(mode(&dir), 0o700);
    let socket = dir.join("leakscope.sock");
    assert!(
        text(&out.stdout).contains(&format!("export LEAKSCOPE_SOCKET={}\n", socket.display())),
        "{}",
        text(&out.stdout)
    );
    let mut c = other.command(SQUATTER);
    c.args(["bind", socket.to_str().unwrap()]);
    let out = run_with_timeout(c, Duration::from_secs(30));
    assert!(!out.status.success(), "the other user could bind in the private directory: {}", text(&out.stdout));
    assert!(text(&out.stdout).contains("Permission denied"), "{}", text(&out.stdout));
}

/// The reproduced attack: another user serves the socket a worker is pointed at (with `leakscope
/// env`'s variables) and asks for its secrets. The worker's agent and shim connect, see who is
/// listening, and send nothing at all — no `hello`, no data — saying so once in their log.
#[test]
fn a_worker_never_talks_to_a_socket_served_by_another_user() {
    let other = other_user();
    let tmp = shared_tmp();
    let lair = tmp.path().join("lair");
    other.run("mkdir", &["-m", "0777", lair.to_str().unwrap()]);
    let socket = lair.join("leakscope.sock");
    let squat_log = lair.join("squat.log");
    let mut squatter = other
        .command(SQUATTER)
        .args(["listen", socket.to_str().unwrap(), squat_log.to_str().unwrap()])
        .args([r#"{"cmd":"peek","types":["System.String"],"count":10,"strings":true}"#, r#"{"cmd":"census"}"#])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_path(&socket, Duration::from_secs(10));

    // The worker, started with exactly what `leakscope env --socket` prints.
    let app = dotnet_app("LeakApp", Build::FrameworkDependent);
    let log = tmp.path().join("worker.log");
    let mut c = Command::new("sh");
    c.args([
        "-c",
        "eval \"$(\"$0\" env --interval 1s --socket \"$1\")\" && export LEAKSCOPE_LOG=\"$2\" && shift 2 && exec \"$@\"",
    ]);
    c.arg(cli_path()).arg(&socket).arg(&log).arg(&app.program).args(&app.leading_args).args(["strings", "8"]);
    without_profiler_env(&mut c).env("TMPDIR", tmp.path());
    let out = run_with_timeout(c, Duration::from_secs(120));
    let _ = squatter.kill();
    let _ = squatter.wait();

    assert!(out.status.success(), "the worker failed: {}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("ready\n") && text(&out.stdout).contains("done "), "{}", text(&out.stdout));
    assert!(!text(&out.stderr).contains("leakscope"), "leakscope printed into the worker: {}", text(&out.stderr));
    let connects = std::fs::read_to_string(&squat_log).unwrap().lines().filter(|l| *l == "connect").count();
    assert!(
        connects >= 2,
        "the agent and shim never even tried the socket ({connects} connections): the test proves nothing"
    );
    let received = std::fs::read(lair.join("squat.log.bytes")).unwrap();
    assert!(received.is_empty(), "the other user received {} bytes: {}", received.len(), text(&received));
    let worker_log = std::fs::read_to_string(&log).unwrap();
    let agent_refusals = worker_log.matches(&format!("refusing it: it is served by uid {}", other.uid)).count();
    let shim_refusals = worker_log
        .matches(&format!("refusing LEAKSCOPE_SOCKET={}: it is served by uid {}", socket.display(), other.uid))
        .count();
    assert_eq!((agent_refusals, shim_refusals), (1, 1), "each refusal should be logged exactly once:\n{worker_log}");
}

/// A careless `chmod 666` on a collector's socket lets another user connect: the collector still
/// turns them away (by their uid, from the kernel) and says so; nothing they send is recorded.
#[test]
fn the_collector_turns_away_producers_of_another_user() {
    let other = other_user();
    let tmp = shared_tmp();
    let socket = tmp.path().join("collector.sock");
    let out_dir = tmp.path().join("out");
    let mut listen = Command::new(cli_path())
        .args([
            "listen",
            "--plain",
            "--duration",
            "6s",
            "--socket",
            socket.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = drain(listen.stderr.take().unwrap());
    wait_for_path(&socket, Duration::from_secs(10));
    assert_eq!(mode(&socket), 0o600, "the collector's socket is open to others");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let hello = r#"{"v":1,"type":"hello","source":"agent","pid":424242,"version":"0.1.0","cmdline":"intruder","start_unix_ms":1,"interval_ms":1000}"#;
    let mut c = other.command(SQUATTER);
    c.args(["connect", socket.to_str().unwrap(), hello]);
    let out = run_with_timeout(c, Duration::from_secs(30));
    assert!(text(&out.stdout).starts_with("connected"), "the intruder could not even connect: {}", text(&out.stdout));
    let status = wait_with_deadline(&mut listen, Duration::from_secs(30)).expect("listen ended");
    assert!(status.success(), "{}", text(&stderr.join().unwrap()));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap()).unwrap();
    let messages = report["messages"].to_string();
    assert!(messages.contains(&format!("refused a producer connection from uid {}", other.uid)), "{messages}");
    assert_eq!(report["processes"].as_array().map(Vec::len), Some(0), "{}", report["processes"]);
    let recording = std::fs::read_to_string(out_dir.join("recording.ndjson")).unwrap();
    assert!(!recording.contains("intruder"), "the intruder's lines were recorded: {recording}");
}

/// `umask 000` changes nothing: socket directories are 0700 and sockets 0600 for `listen`
/// (both default places) and `run`.
#[test]
fn sockets_are_0600_and_their_directories_0700_under_umask_000() {
    let tmp = shared_tmp();
    let xdg = tempfile::tempdir().unwrap();
    for (label, runtime_dir, dir) in [
        ("TMPDIR", None, tmp.path().join(format!("leakscope-{}", euid()))),
        ("XDG_RUNTIME_DIR", Some(xdg.path()), xdg.path().join("leakscope")),
    ] {
        let out_dir = tmp.path().join(format!("out-{label}"));
        let mut c = Command::new("sh");
        c.args(["-c", "umask 000; exec \"$0\" listen --plain --duration 4s --out \"$1\""])
            .arg(cli_path())
            .arg(&out_dir);
        c.env("TMPDIR", tmp.path()).env_remove("XDG_RUNTIME_DIR");
        if let Some(d) = runtime_dir {
            c.env("XDG_RUNTIME_DIR", d);
        }
        let mut listen = c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let socket = dir.join("leakscope.sock");
        wait_for_path(&socket, Duration::from_secs(10));
        assert_eq!((mode(&dir), mode(&socket)), (0o700, 0o600), "{label}: directory and socket modes");
        assert!(wait_with_deadline(&mut listen, Duration::from_secs(30)).expect("listen ended").success());
    }

    // `run`: the target reports the modes of the socket it was given and of its directory.
    let mut c = Command::new("sh");
    c.args(["-c", "umask 000; exec \"$0\" run --plain --no-native --out \"$1\" -- sh -c 'stat -c %a \"$(dirname \"$LEAKSCOPE_SOCKET\")\" \"$LEAKSCOPE_SOCKET\"'"]);
    c.arg(cli_path()).arg(tmp.path().join("out-run"));
    let out = run_with_timeout(c, Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "700\n600\n", "run's socket directory and socket");
}

/// The test's own collector: accepts one producer on `socket`, hands its records over, and
/// writes commands to it.
struct TestCollector {
    records: Receiver<Value>,
    seen: Vec<Value>,
    writer: UnixStream,
}

impl TestCollector {
    fn accept(listener: &UnixListener) -> TestCollector {
        listener.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(60);
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => panic!("no producer connected within a minute: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        let writer = stream.try_clone().unwrap();
        let (tx, records) = channel();
        std::thread::spawn(move || {
            let lines = BufReader::new(stream).lines().map_while(Result::ok);
            for record in lines.filter_map(|l| serde_json::from_str::<Value>(&l).ok()) {
                if tx.send(record).is_err() {
                    return;
                }
            }
        });
        TestCollector { records, seen: Vec::new(), writer }
    }

    fn send(&mut self, line: &str) {
        self.writer.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// Waits for a record of `kind`; returns it.
    fn wait_for(&mut self, kind: &str, timeout: Duration) -> Value {
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let record =
                self.records.recv_timeout(left).unwrap_or_else(|_| panic!("no {kind} record within {timeout:?}"));
            self.seen.push(record.clone());
            if record["type"] == kind {
                return record;
            }
        }
    }

    /// Everything received until `window` has passed.
    fn collect_for(&mut self, window: Duration) {
        let until = Instant::now() + window;
        while let Ok(record) = self.records.recv_timeout(until.saturating_duration_since(Instant::now())) {
            self.seen.push(record);
        }
    }
}

/// HeapApp with the agent loaded at startup, reporting to a socket of the test's.
fn heap_worker_reporting_to(socket: &Path, extra_env: &[(&str, &str)], mode: &str) -> Running {
    let mut c = dotnet_app("HeapApp", Build::FrameworkDependent).command();
    c.args([mode, "120", "10"]);
    let log = socket.with_extension("log");
    for (k, v) in agent_env(Path::new(""), &log, "1s") {
        if k != "LEAKSCOPE_OUTPUT" {
            c.env(k, v);
        }
    }
    c.env_remove("LEAKSCOPE_OUTPUT").env("LEAKSCOPE_SOCKET", socket);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    Running::start(c)
}

fn field(sample: &Value, name: &str) -> Value {
    sample["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no {name}: {sample:#}"))["value"]
        .clone()
}

/// String contents leave the worker only with its owner's say-so, whatever a collector asks:
/// not by default, yes with `LEAKSCOPE_PEEK_STRINGS=1`, and not even for the owner's own
/// `snapshot --peek-strings` when the worker's environment says `LEAKSCOPE_PEEK_STRINGS=0`.
#[test]
fn string_contents_leave_the_worker_only_with_its_owners_permission() {
    let dir = tempfile::tempdir().unwrap();
    let peek = r#"{"cmd":"peek","types":["HeapApp.SessionState"],"count":3,"strings":true}"#;
    for (allowed, extra) in [(false, &[][..]), (true, &[("LEAKSCOPE_PEEK_STRINGS", "1")][..])] {
        let socket = dir.path().join(format!("peek-{allowed}.sock"));
        let listener = UnixListener::bind(&socket).unwrap();
        let mut worker = heap_worker_reporting_to(&socket, extra, "grow");
        let mut collector = TestCollector::accept(&listener);
        worker.wait_for_line("ready", Duration::from_secs(60));
        collector.send(peek);
        let record = collector.wait_for("peek", Duration::from_secs(60));
        let samples = record["types"][0]["samples"].as_array().unwrap_or_else(|| panic!("{record:#}")).clone();
        assert_eq!(samples.len(), 3, "{record:#}");
        let everything = collector.seen.iter().map(Value::to_string).collect::<String>();
        if allowed {
            assert_eq!(record["strings"], true, "{record:#}");
            assert!(samples.iter().all(|s| field(s, "User") == "anonymous"), "{record:#}");
        } else {
            assert_eq!(record["strings"], false, "{record:#}");
            assert!(
                record["strings_withheld"].as_str().unwrap_or("").contains("LEAKSCOPE_PEEK_STRINGS=1"),
                "{record:#}"
            );
            assert!(samples.iter().all(|s| field(s, "User") == "<string, 9 chars>"), "{record:#}");
            assert!(!everything.contains("anonymous"), "a string's contents left the worker without permission");
        }
    }

    // The owner's own snapshot, refused by the worker's environment, explains why.
    let mut c = dotnet_app("HeapApp", Build::FrameworkDependent).command();
    c.args(["grow", "120", "10"]).env("LEAKSCOPE_PEEK_STRINGS", "0");
    without_profiler_env(&mut c);
    let mut worker = Running::start(c);
    worker.wait_for_line("ready", Duration::from_secs(60));
    let file = dir.path().join("snap.ndjson");
    let pid = worker.pid().to_string();
    let args = [
        "snapshot",
        &pid,
        "--sample",
        "0s",
        "--json",
        "-o",
        file.to_str().unwrap(),
        "--peek",
        "HeapApp.SessionState",
        "--peek-strings",
    ];
    let mut c = Command::new(cli_path());
    c.args(args);
    let out = run_with_timeout(c, Duration::from_secs(180));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let snap: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snap["peek"]["strings"], false, "{:#}", snap["peek"]);
    let everything = format!("{}{}{}", text(&out.stdout), text(&out.stderr), std::fs::read_to_string(&file).unwrap());
    assert!(!everything.contains("anonymous"), "string contents left a worker whose environment forbids them");
    let err = text(&out.stderr);
    assert!(err.contains("withheld") && err.contains("LEAKSCOPE_PEEK_STRINGS=0"), "no explanation: {err}");
}

/// A collector (of the worker's own user, or one that got in) flooding the worker with census,
/// retention and peek requests: they run one at a time, at least a second apart; one waits its
/// turn, the rest are refused with a status saying when to retry; no refused request costs the
/// worker a GC.
#[test]
fn a_flood_of_pausing_commands_is_spaced_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("flood.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let mut worker = heap_worker_reporting_to(&socket, &[], "hold");
    let mut collector = TestCollector::accept(&listener);
    // The heap built (and the app's own GC.Collect done) before counting induced GCs: the first
    // summary made a whole interval after "ready" (earlier ones may still be queued here).
    worker.wait_for_line("ready", Duration::from_secs(60));
    let ready_unix_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let before = loop {
        let summary = collector.wait_for("summary", Duration::from_secs(60));
        if summary["unix_ms"].as_u64().unwrap() > ready_unix_ms + 1500 {
            break summary;
        }
    };
    let commands = [
        r#"{"cmd":"census"}"#,
        r#"{"cmd":"retention","types":["HeapApp.Customer"]}"#,
        r#"{"cmd":"peek","types":["HeapApp.Customer"],"count":1}"#,
    ];
    let flood = Duration::from_secs(8);
    let mut writer = collector.writer.try_clone().unwrap();
    writer.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let sender = std::thread::spawn(move || {
        let until = Instant::now() + flood;
        let mut sent = 0u32;
        while Instant::now() < until {
            for _ in 0..10 {
                let _ = writer.write_all(format!("{}\n", commands[sent as usize % 3]).as_bytes());
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        sent
    });
    collector.collect_for(flood + Duration::from_secs(3));
    let sent = sender.join().unwrap();
    // Whatever is still waiting its turn, then the summaries after it.
    collector.collect_for(Duration::from_secs(3));

    let answers: Vec<&Value> = collector
        .seen
        .iter()
        .filter(|r| ["census", "retention", "peek"].contains(&r["type"].as_str().unwrap_or("")))
        .collect();
    let refusals: Vec<&Value> =
        collector.seen.iter().filter(|r| r["type"] == "status" && r["refused"].is_string()).collect();
    let window_s = flood.as_secs() + 6;
    assert!(answers.len() >= 3, "the worker answered {} of {sent} requests", answers.len());
    assert!(answers.len() as u64 <= window_s + 1, "{} pausing requests ran within {window_s} s", answers.len());
    let mut times: Vec<u64> = answers.iter().map(|a| a["t_ms"].as_u64().unwrap()).collect();
    times.sort_unstable();
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= 990, "two pausing requests ran {} ms apart: {times:?}", pair[1] - pair[0]);
    }
    assert!(!refusals.is_empty(), "{sent} requests and no refusal");
    assert!(refusals.len() as u64 <= window_s + 1, "{} refusal statuses: they should be rate-limited", refusals.len());
    for r in &refusals {
        assert!(r["retry_after_ms"].as_u64().is_some_and(|ms| ms >= 1000), "{r}");
        assert!(r["message"].as_str().unwrap().contains("refused a"), "{r}");
    }
    assert!(
        refusals.iter().any(|r| r["message"].as_str().unwrap().contains("more refused since the last notice")),
        "{refusals:?}"
    );
    // Only the requests that ran cost the worker a (blocking, induced) GC.
    let after = collector.seen.iter().rev().find(|r| r["type"] == "summary").unwrap();
    let induced = after["gc"]["induced"].as_u64().unwrap() - before["gc"]["induced"].as_u64().unwrap();
    assert!(induced <= answers.len() as u64, "{induced} induced GCs for {} answered requests", answers.len());
    eprintln!(
        "flood: {sent} requests in {flood:?}: {} answered (at least {} ms apart), {} refusal statuses, {induced} induced GCs",
        answers.len(),
        times.windows(2).map(|p| p[1] - p[0]).min().unwrap_or(0),
        refusals.len()
    );
}

fn place_dirs(tmp: &Path, pid: u32) -> Vec<PathBuf> {
    std::fs::read_dir(tmp)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("leakscope-attach-{pid}-")))
                .collect()
        })
        .unwrap_or_default()
}

/// `snapshot` interrupted (Ctrl-C during its census wait; SIGTERM while sampling) detaches the
/// agent before it exits; a new snapshot works right after.
#[test]
fn an_interrupted_snapshot_detaches_the_agent() {
    let mut c = dotnet_app("HeapApp", Build::FrameworkDependent).command();
    // About 2 M objects at 2 µs each: the census takes seconds, so the interrupt lands during
    // it on any machine (without the delay an idle machine counts this heap before the signal).
    c.args(["hold", "180", "40"]).env("LEAKSCOPE_TEST_WALK_DELAY_US", "2");
    without_profiler_env(&mut c);
    let mut worker = Running::start(c);
    worker.wait_for_line("ready", Duration::from_secs(120));
    let pid = worker.pid();
    let dir = tempfile::tempdir().unwrap();
    for (signal, sample, phase) in
        [(libc::SIGINT, "0s", "counting the heap"), (libc::SIGTERM, "60s", "sampling allocations")]
    {
        let mut snapshot = Command::new(cli_path())
            .args([
                "snapshot",
                &pid.to_string(),
                "--sample",
                sample,
                "-o",
                dir.path().join("s.ndjson").to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(snapshot.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(phase) {
                break;
            }
        }
        assert!(seen.contains(phase), "never reached {phase:?}: {seen}");
        assert!(agent_thread_running(pid), "the agent is not running during the snapshot");
        // SAFETY: kill(2) with the pid of our own child and a signal number.
        unsafe { libc::kill(snapshot.id() as i32, signal) };
        let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
        let status = wait_with_deadline(&mut snapshot, Duration::from_secs(60)).expect("the snapshot ended");
        let err = rest.join().unwrap();
        assert_eq!(status.code(), Some(128 + signal), "{phase}: {err}");
        assert!(err.contains("interrupted") && err.contains("detached; the process keeps running"), "{phase}: {err}");
        // The agent thread ends right after its `bye`.
        wait_for_agent_state(pid, "idle", Duration::from_secs(20));
        assert!(!agent_thread_running(pid), "{phase}: the agent is still running after the snapshot ended");
    }
    let mut c = Command::new(cli_path());
    c.args(["snapshot", &pid.to_string(), "--sample", "0s", "-o", dir.path().join("after.ndjson").to_str().unwrap()]);
    let out = run_with_timeout(c, Duration::from_secs(180));
    assert!(out.status.success(), "a snapshot after the interrupted ones: {}", text(&out.stderr));
    assert!(worker.child.try_wait().unwrap().is_none(), "the worker stopped");
}

/// `attach` killed outright cannot detach: `ps` calls its agent orphaned, the agent detaches
/// itself after `--orphan-timeout`, and a new attach works (and clears what the dead one left).
/// The session's directory and socket are owner-only even under `umask 000`.
#[test]
fn a_killed_attach_leaves_an_orphan_that_detaches_itself() {
    let dir = tempfile::tempdir().unwrap();
    let private_tmp = dir.path().join("worker-tmp");
    std::fs::create_dir_all(&private_tmp).unwrap();
    let mut c = dotnet_app("LeakApp", Build::FrameworkDependent).command();
    c.args(["strings", "150"]).env("TMPDIR", &private_tmp);
    without_profiler_env(&mut c);
    let mut worker = Running::start(c);
    worker.wait_for_line("ready", Duration::from_secs(60));
    let pid = worker.pid();

    let mut c = Command::new("sh");
    c.args(["-c", "umask 000; exec \"$0\" attach \"$1\" --plain --interval 1s --orphan-timeout 10s --out \"$2\""]);
    c.arg(cli_path()).arg(pid.to_string()).arg(dir.path().join("first"));
    let mut attach = c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for_agent_state(pid, "attached", Duration::from_secs(60));
    let place = dir.path().join("worker-tmp").join(format!("leakscope-attach-{pid}-{}", attach.id()));
    assert_eq!(
        (mode(&place), mode(&place.join("agent.sock"))),
        (0o700, 0o600),
        "the attach session's directory and socket"
    );

    attach.kill().unwrap(); // SIGKILL: no chance to detach
    attach.wait().unwrap();
    let killed = Instant::now();
    wait_for_agent_state(pid, "orphaned", Duration::from_secs(6));
    let out = {
        let mut c = Command::new(cli_path());
        c.args(["attach", &pid.to_string(), "--plain", "--duration", "2s"]);
        run_with_timeout(c, Duration::from_secs(60))
    };
    assert_eq!(out.status.code(), Some(2), "attached over an orphan: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("orphaned"), "{}", text(&out.stderr));

    wait_for_agent_state(pid, "idle", Duration::from_secs(45));
    let took = killed.elapsed();
    assert!(took >= Duration::from_secs(9), "the agent detached after {took:?}, before its 10 s orphan timeout");
    assert!(!agent_thread_running(pid));

    let mut c = Command::new(cli_path());
    c.args(["attach", &pid.to_string(), "--plain", "--interval", "1s", "--duration", "4s", "--out"])
        .arg(dir.path().join("second"));
    let out = run_with_timeout(c, Duration::from_secs(90));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("detached; the process keeps running"), "{}", text(&out.stderr));
    assert!(!place.exists(), "the dead session's directory was left behind");
    assert!(place_dirs(&private_tmp, pid).is_empty(), "{:?}", place_dirs(&private_tmp, pid));
    assert!(worker.child.try_wait().unwrap().is_none(), "the worker stopped");
}

/// A worker in a chroot (a container's root inside the host's filesystem) whose TMPDIR tries to
/// lead out of it: `/../../..`, or a symlink to an absolute path that also exists on the host.
/// As root, `attach` finds and uses the container's directories and writes nothing outside the
/// container's root.
#[test]
fn attach_as_root_never_writes_outside_a_containers_root() {
    assert!(is_root(), "this test builds a chroot and a private mount namespace: run it as root (CI does)");
    let app = dotnet_app("LeakApp", Build::FrameworkDependent);
    let host = tempfile::tempdir().unwrap();
    let root = host.path().join("x/y/root");
    for d in ["proc", "dev", "usr", "etc", "tmp", "var/tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for l in ["bin", "lib", "lib64", "sbin"] {
        std::os::unix::fs::symlink(format!("usr/{l}"), root.join(l)).unwrap();
    }
    let app_dir = Path::new(&app.leading_args[0]).parent().unwrap().to_path_buf();
    std::fs::create_dir_all(root.join(app_dir.strip_prefix("/").unwrap())).unwrap();
    // The escape the symlink would offer: /var/tmp exists on the host too.
    std::os::unix::fs::symlink("/var/tmp", root.join("tmp/link")).unwrap();
    for (round, tmpdir) in ["/../../..", "/tmp/link"].into_iter().enumerate() {
        let script = format!(
            "set -e; R={root}; for d in usr etc dev; do mount --rbind /$d $R/$d; done; mount -t proc proc $R/proc; \
             mount -t tmpfs leakscope-test $R/var/tmp; mount --bind {app_dir} $R{app_dir}; \
             exec chroot $R env TMPDIR='{tmpdir}' DOTNET_CLI_TELEMETRY_OPTOUT=1 {program} {dll} strings 60",
            root = root.display(),
            app_dir = app_dir.display(),
            program = app.program.display(),
            dll = app.leading_args[0],
        );
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "--", "sh", "-c", &script]);
        without_profiler_env(&mut c);
        let mut worker = Running::start(c);
        worker.wait_for_line("ready", Duration::from_secs(90));
        let pid = worker.pid();
        let mut attach = Command::new(cli_path())
            .args(["attach", &pid.to_string(), "--plain", "--interval", "1s", "--duration", "8s", "--out"])
            .arg(host.path().join(format!("out{round}")))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = drain(attach.stderr.take().unwrap());
        // Positive evidence: the session's directory appears in the container's own directory
        // (the tmpfs at its /var/tmp is visible only through its root).
        let inside = if round == 0 { root.clone() } else { PathBuf::from(format!("/proc/{pid}/root/var/tmp")) };
        let until = Instant::now() + Duration::from_secs(60);
        while place_dirs(&inside, pid).is_empty() && Instant::now() < until && attach.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let made_inside = !place_dirs(&inside, pid).is_empty();
        let status = wait_with_deadline(&mut attach, Duration::from_secs(120)).expect("attach ended");
        let out = std::process::Output { status, stdout: Vec::new(), stderr: stderr.join().unwrap() };
        let escaped: Vec<PathBuf> = [host.path().to_path_buf(), PathBuf::from("/var/tmp"), PathBuf::from("/")]
            .iter()
            .flat_map(|d| place_dirs(d, pid))
            .collect();
        for p in &escaped {
            let _ = std::fs::remove_dir_all(p);
        }
        assert!(escaped.is_empty(), "TMPDIR={tmpdir}: attach wrote outside the container's root: {escaped:?}");
        assert_eq!(out.status.code(), Some(0), "TMPDIR={tmpdir}: {}", text(&out.stderr));
        assert!(made_inside, "TMPDIR={tmpdir}: the session's directory never appeared in {}", inside.display());
        let err = text(&out.stderr);
        let socket_dir = if round == 0 {
            format!("/proc/{pid}/root/dotnet-diagnostic-")
        } else {
            format!("/proc/{pid}/root/tmp/link/dotnet-diagnostic-")
        };
        assert!(err.contains(&format!("attached to pid {pid} ({socket_dir}")), "TMPDIR={tmpdir}: {err}");
        assert!(err.contains("detached; the process keeps running"), "TMPDIR={tmpdir}: {err}");
        let report: Value = serde_json::from_str(
            &std::fs::read_to_string(host.path().join(format!("out{round}/report.json"))).unwrap(),
        )
        .unwrap();
        assert!(
            report["processes"][0]["agent"]["reports"].as_u64().unwrap_or(0) >= 2,
            "TMPDIR={tmpdir}: the agent did not report: {}",
            report["processes"]
        );
        drop(worker);
    }
}
