//! The collector on a shared host, attacked and faulted through the real CLI: links and FIFOs
//! planted where it writes and reads, a hostile producer on its socket, hostile recordings, a
//! full filesystem, hostile paths for `env`, and `umask 000`. Each test fails, never skips,
//! when it cannot set up its attack (CI runs as root: mounting a tmpfs must work).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use integration_tests::*;
use serde_json::Value;

fn leak_app() -> DotnetApp {
    dotnet_app("LeakApp", Build::FrameworkDependent)
}

/// What the LeakApp `exit-code` scenario prints and returns without leakscope.
const WORKER_STDOUT: &str = "ready\ndone 20000\n";
const WORKER_EXIT: i32 = 3;

/// `leakscope run --no-native --out OUT -- LeakApp exit-code`, from OUT's parent directory
/// (where a fallback output directory lands).
fn run_worker(out: &Path) -> Output {
    let app = leak_app();
    let mut c = Command::new(cli_path());
    c.args(["run", "--no-native", "--interval", "500ms", "--out"]).arg(out).arg("--");
    c.arg(&app.program).args(&app.leading_args).arg("exit-code");
    c.current_dir(out.parent().unwrap());
    run_with_timeout(c, Duration::from_secs(120))
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0, "mkfifo {}", p.display());
}

/// A file whose content and modification time must survive the test.
struct Victim {
    path: PathBuf,
    mtime: i64,
}

impl Victim {
    fn new(path: PathBuf) -> Victim {
        std::fs::write(&path, b"precious\n").unwrap();
        let mtime = std::fs::metadata(&path).unwrap().mtime_nsec();
        Victim { path, mtime }
    }

    fn assert_untouched(&self) {
        assert_eq!(std::fs::read(&self.path).unwrap(), b"precious\n", "{} was written", self.path.display());
        assert_eq!(
            std::fs::metadata(&self.path).unwrap().mtime_nsec(),
            self.mtime,
            "{} was touched",
            self.path.display()
        );
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    n.sort();
    n
}

/// `--out` as a link to a victim file, a link to a victim directory, a FIFO; and an existing
/// output directory whose files are links to a victim or FIFOs. Each time the worker runs as
/// it would without leakscope, nothing is written through a link, nothing blocks, and the
/// collector says why it did not write where it was asked.
#[test]
fn links_and_fifos_at_out_are_refused_and_the_worker_is_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let victim = Victim::new(t.path().join("victim"));
    let victim_dir = t.path().join("victim-dir");
    std::fs::create_dir(&victim_dir).unwrap();

    let link_to_file = t.path().join("link-to-file");
    std::os::unix::fs::symlink(&victim.path, &link_to_file).unwrap();
    let link_to_dir = t.path().join("link-to-dir");
    std::os::unix::fs::symlink(&victim_dir, &link_to_dir).unwrap();
    let fifo = t.path().join("fifo");
    mkfifo(&fifo);

    for (out, kind) in [(&link_to_file, "symbolic link"), (&link_to_dir, "symbolic link"), (&fifo, "FIFO")] {
        let started = Instant::now();
        let o = run_worker(out);
        let stderr = stderr_of(&o);
        assert_eq!(o.status.code(), Some(WORKER_EXIT), "{stderr}");
        assert_eq!(stdout_of(&o), WORKER_STDOUT, "the worker's output changed");
        assert!(started.elapsed() < Duration::from_secs(100));
        assert!(
            stderr.contains(&format!("not writing to --out {}", out.display())) && stderr.contains(kind),
            "{stderr}"
        );
        // The reports went to a fresh directory instead, which it names.
        let fallback = stderr
            .lines()
            .find_map(|l| l.rsplit("; writing to ").next().and_then(|r| r.strip_suffix(" instead")))
            .unwrap_or_else(|| panic!("no fallback directory named:\n{stderr}"));
        assert!(Path::new(fallback).starts_with(t.path()), "{stderr}");
        assert!(Path::new(fallback).join("report.json").is_file(), "{stderr}");
        std::fs::remove_dir_all(fallback).unwrap();
    }
    victim.assert_untouched();
    assert!(names_in(&victim_dir).is_empty(), "something was written into the linked directory");

    // An existing output directory with links and FIFOs planted in it.
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let planted = [
        ("recording.ndjson", "FIFO"),
        ("session.json", "FIFO"),
        ("report.json", "symbolic link"),
        ("report.txt", "symbolic link"),
        ("agent.log", "symbolic link"),
    ];
    for (name, kind) in planted {
        if kind == "FIFO" {
            mkfifo(&out.join(name));
        } else {
            std::os::unix::fs::symlink(&victim.path, out.join(name)).unwrap();
        }
    }
    let o = run_worker(&out);
    let stderr = stderr_of(&o);
    assert_eq!(o.status.code(), Some(WORKER_EXIT), "{stderr}");
    assert_eq!(stdout_of(&o), WORKER_STDOUT);
    for (name, kind) in planted {
        let path = out.join(name).display().to_string();
        assert!(stderr.lines().any(|l| l.contains(&path) && l.contains(kind)), "no word on {path} ({kind}):\n{stderr}");
        let meta = std::fs::symlink_metadata(out.join(name)).unwrap();
        assert!(!meta.is_file(), "{name} was replaced");
    }
    // The summary was still printed, and the agent did connect: it was a real run.
    assert!(stderr.contains("leakscope: run session"), "{stderr}");
    assert!(!stderr.contains("no agent connected"), "{stderr}");
    victim.assert_untouched();
}

/// A 6 s soak (`--allow-short`: the gate would refuse it) of a leaking worker, into `out`.
fn short_leaking_soak(out: &Path) -> Output {
    let app = leak_app();
    let mut c = Command::new(cli_path());
    c.args(["soak", "--no-native", "--duration", "6s", "--gc-every", "1s", "--allow-short"]).args([
        "--interval",
        "500ms",
        "--out",
    ]);
    c.arg(out).arg("--").arg(&app.program).args(&app.leading_args).args(["strings", "30"]);
    run_with_timeout(c, Duration::from_secs(120))
}

/// `soak --out` into a directory whose soak-only reports are planted links: refused, named,
/// and the exit code is still the verdict's.
#[test]
fn soak_never_writes_its_reports_through_planted_links() {
    let t = tempfile::tempdir().unwrap();
    let victim = Victim::new(t.path().join("victim"));
    let out = t.path().join("soak");
    std::fs::create_dir(&out).unwrap();
    for name in ["junit.xml", "report.html"] {
        std::os::unix::fs::symlink(&victim.path, out.join(name)).unwrap();
    }
    let o = short_leaking_soak(&out);
    let stderr = stderr_of(&o);
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(o.status.code(), report["soak"]["exit_code"].as_i64().map(|c| c as i32), "{stderr}");
    for name in ["junit.xml", "report.html"] {
        let path = out.join(name).display().to_string();
        assert!(stderr.lines().any(|l| l.contains(&path) && l.contains("symbolic link")), "{stderr}");
    }
    victim.assert_untouched();
}

/// Runs a command to its end (killing it past `timeout`) and returns its output and peak
/// resident set in bytes, from the kernel's accounting of that very process (wait4). It is an
/// upper bound: a child starts as a copy of this test process, whose resident set counts too.
fn run_measured(mut command: Command, timeout: Duration) -> (Output, u64) {
    command.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
    let mut child = command.spawn().expect("spawn");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let (status, maxrss) = wait_measured(child, timeout);
    (Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }, maxrss)
}

/// Reaps `child` with wait4 (so its rusage comes back); kills it past `timeout`.
fn wait_measured(child: std::process::Child, timeout: Duration) -> (std::process::ExitStatus, u64) {
    let pid = child.id();
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data filled in by wait4.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waiting for our own child; pointers to live locals.
        let rc = unsafe { libc::wait4(pid as i32, &mut status, libc::WNOHANG, &mut usage) };
        if rc == pid as i32 {
            return (std::process::ExitStatus::from_raw(status), usage.ru_maxrss as u64 * 1024);
        }
        assert!(rc == 0, "wait4: {}", std::io::Error::last_os_error());
        if Instant::now() >= deadline {
            // SAFETY: killing our own child, not yet reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("pid {pid} did not finish within {timeout:?} (hang?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything a terminal could act on: C0 controls but newline, DEL, C1 controls (UTF-8).
fn control_bytes(text: &[u8]) -> Vec<String> {
    let s = String::from_utf8_lossy(text);
    let mut found: Vec<String> =
        s.chars().filter(|&c| c != '\n' && c.is_control()).map(|c| format!("U+{:04X}", c as u32)).collect();
    found.dedup();
    found
}

/// Producer text carrying an OSC title change, a screen clear, a colour, a C1 CSI, a
/// carriage return with a forged line, BEL and DCS.
const HOSTILE: &str = "\u{1b}]0;PWNED\u{7}\u{1b}[2J\u{1b}[38;5;199mRED\u{9b}31m\r\nFINDINGS: none\u{1b}P";

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The attack: 10^5 self-declared pids with escape sequences everywhere, a 1 GB line, and
/// (when `flood`) a gigabyte of distinct stacks for one pid and thousands of site series.
fn attack(socket: &Path, flood: bool) {
    let esc = json_str(HOSTILE);
    let many_pids = {
        let socket = socket.to_path_buf();
        let esc = esc.clone();
        std::thread::spawn(move || {
            let mut c = std::io::BufWriter::new(UnixStream::connect(&socket).unwrap());
            for pid in 1..=100_000u32 {
                let _ = writeln!(
                    c,
                    r#"{{"v":1,"type":"hello","source":"agent","pid":{pid},"cmdline":{esc},"start_unix_ms":1}}"#
                );
                let _ = writeln!(
                    c,
                    r#"{{"v":1,"type":"stack","source":"agent","pid":{pid},"id":1,"frames":[{esc},"App.Main"],"lines":[{esc},null]}}"#
                );
                let _ = writeln!(
                    c,
                    r#"{{"v":1,"type":"status","source":"agent","pid":{pid},"level":"warn","message":{esc}}}"#
                );
                for t in [1000, 2000] {
                    let _ = writeln!(
                        c,
                        r#"{{"v":1,"type":"summary","source":"agent","pid":{pid},"t_ms":{t},"rss":1000000,"sites":[{{"type_name":{esc},"site":{esc},"location":{esc},"stack":1,"samples":3,"objects":10,"bytes":{}}}]}}"#,
                        t * 1000
                    );
                }
            }
        })
    };
    let long_line = {
        let socket = socket.to_path_buf();
        std::thread::spawn(move || {
            let mut c = UnixStream::connect(&socket).unwrap();
            let chunk = vec![b'a'; 1 << 20];
            let _ = c.write_all(br#"{"v":1,"type":"status","source":"agent","pid":7,"message":""#);
            for _ in 0..1024 {
                if c.write_all(&chunk).is_err() {
                    return;
                }
            }
            let _ = c.write_all(b"\"}\n");
        })
    };
    let mut floods = Vec::new();
    if flood {
        // One pid, ~1 GB of distinct stacks: 3.5 MB lines of 4000-character frames.
        let socket_s = socket.to_path_buf();
        floods.push(std::thread::spawn(move || {
            let mut c = UnixStream::connect(&socket_s).unwrap();
            let frame = json_str(&"F".repeat(4000));
            let frames = vec![frame.as_str(); 870].join(",");
            for id in 0..300u32 {
                let line = format!(
                    r#"{{"v":1,"type":"stack","source":"agent","pid":1,"id":{},"frames":[{frames}]}}"#,
                    1000 + id
                );
                if c.write_all(line.as_bytes()).and_then(|_| c.write_all(b"\n")).is_err() {
                    return;
                }
            }
        }));
        // The kept pids fill their series: 4000 distinct sites each.
        let socket_s = socket.to_path_buf();
        floods.push(std::thread::spawn(move || {
            let mut c = std::io::BufWriter::new(UnixStream::connect(&socket_s).unwrap());
            for pid in 1..=64u32 {
                for round in 0..4u32 {
                    let sites: Vec<String> = (0..1000)
                        .map(|i| format!(r#"{{"type_name":"T{round}.{i}","site":"S{pid}.{i}","stack":1,"samples":1,"objects":1,"bytes":100}}"#))
                        .collect();
                    let _ = writeln!(
                        c,
                        r#"{{"v":1,"type":"summary","source":"agent","pid":{pid},"t_ms":{},"sites":[{}]}}"#,
                        3000 + round,
                        sites.join(",")
                    );
                }
            }
        }));
    }
    many_pids.join().unwrap();
    long_line.join().unwrap();
    for f in floods {
        f.join().unwrap();
    }
}

/// Waits for a file to appear with content.
fn wait_for_file(p: &Path, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        match std::fs::read_to_string(p) {
            Ok(s) if !s.is_empty() => return s,
            _ => {}
        }
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Peak resident set the collector may reach under the attack: the 256 MiB store budget, 64
/// MiB of lines in flight, a few unfinished lines, one line being parsed, and its own code.
const MAX_COLLECTOR_RSS: u64 = 640 << 20;

fn assert_clean_outputs(out: &Path, stderr: &[u8]) {
    let found = control_bytes(stderr);
    assert!(found.is_empty(), "control characters reached the terminal: {found:?}");
    let text = std::fs::read(out.join("report.txt")).unwrap();
    let found = control_bytes(&text);
    assert!(found.is_empty(), "control characters in report.txt: {found:?}");
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains(r"\x1b]0;PWNED\x07"), "the hostile names are shown, escaped");
    assert!(!text.contains("\nFINDINGS: none"), "a producer forged a line of the report");
    let json = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(!json.contains(r"\u001b") && !json.contains(r"\u009b"), "report.json carries raw escapes");
}

/// A hostile producer on `run`'s own socket: the collector stays bounded, its output clean,
/// the worker's exit code passes through, and the report says what the bounds dropped.
#[test]
fn a_hostile_producer_on_runs_socket_leaves_the_collector_bounded_and_the_terminal_clean() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let sock_file = t.path().join("socket-path");
    let done = t.path().join("done");
    let script = format!(
        "printf '%s' \"$LEAKSCOPE_SOCKET\" > {}; while [ ! -e {} ]; do sleep 0.1; done; exit 7",
        sock_file.display(),
        done.display()
    );
    let mut c = Command::new(cli_path());
    c.args(["run", "--no-native", "--plain", "--out"]).arg(&out).args(["--", "sh", "-c", &script]);
    c.env("NO_COLOR", "1");
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null()).spawn().unwrap();
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let socket = PathBuf::from(wait_for_file(&sock_file, Duration::from_secs(30)));

    let started = Instant::now();
    attack(&socket, true);
    eprintln!("attack sent in {:.1}s", started.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(&done, b"").unwrap();
    let (status, maxrss) = wait_measured(child, Duration::from_secs(300));
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    eprintln!("collector peak RSS: {:.0} MiB", maxrss as f64 / (1 << 20) as f64);

    assert_eq!(status.code(), Some(7), "{}", String::from_utf8_lossy(&stderr));
    assert!(stdout.is_empty(), "the worker printed nothing");
    assert!(maxrss < MAX_COLLECTOR_RSS, "collector peak RSS {} MiB", maxrss >> 20);
    assert_clean_outputs(&out, &stderr);
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["processes"].as_array().unwrap().len(), 128, "producers are capped at 128");
    let messages = report["messages"].to_string();
    assert!(messages.contains("at most 128 producers"), "{messages}");
    assert!(messages.contains("memory budget"), "{messages}");
    assert!(report["input"]["oversize"].as_u64().unwrap() >= 1, "the 1 GB line was discarded");
}

/// The same against `listen`'s socket (without the floods): bounded and clean.
#[test]
fn a_hostile_producer_on_listens_socket_leaves_the_collector_bounded_and_the_terminal_clean() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let socket = t.path().join("l.sock");
    let mut c = Command::new(cli_path());
    c.args(["listen", "--plain", "--socket"]).arg(&socket).arg("--out").arg(&out);
    c.env("NO_COLOR", "1");
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null()).spawn().unwrap();
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "listen never bound {}", socket.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    attack(&socket, false);
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: interrupting our own child, as Ctrl-C would.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let (status, maxrss) = wait_measured(child, Duration::from_secs(120));
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    eprintln!("collector peak RSS: {:.0} MiB", maxrss as f64 / (1 << 20) as f64);
    assert_eq!(status.code(), Some(0), "{}", String::from_utf8_lossy(&stderr));
    assert!(control_bytes(&stdout).is_empty());
    assert!(maxrss < MAX_COLLECTOR_RSS, "collector peak RSS {} MiB", maxrss >> 20);
    assert_clean_outputs(&out, &stderr);
}

/// Makes a sparse file: a `len`-byte line of NUL bytes (no newline), then `tail`.
fn sparse_file(path: &Path, len: u64, tail: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
    use std::io::Seek;
    f.seek(std::io::SeekFrom::Start(len)).unwrap();
    f.write_all(tail).unwrap();
}

fn census_lines(pid: u32) -> String {
    let mut s = String::new();
    for (gc, t, n) in [(5, 1000, 10), (9, 60000, 5000)] {
        s.push_str(&format!(
            r#"{{"v":1,"type":"census","source":"agent","pid":{pid},"t_ms":{t},"unix_ms":{},"gc":{gc},"objects":{n},"bytes":{},"types":[{{"type_name":"App.Session","count":{n},"bytes":{}}}]}}"#,
            1_700_000_000_000u64 + t,
            n * 100,
            n * 100
        ));
        s.push('\n');
    }
    s
}

/// A recording with a 1 GB line (and one with nothing but a 1 GB line, no newline) given to
/// `report`, `tail` and `diff`: read line by line in bounded memory, with a clear message.
#[test]
fn a_hostile_recording_with_a_1gb_line_is_read_in_bounded_memory_with_a_message() {
    let t = tempfile::tempdir().unwrap();
    let with_data = t.path().join("big.ndjson");
    sparse_file(&with_data, 1 << 30, format!("\n{}", census_lines(42)).as_bytes());
    let only_line = t.path().join("line.ndjson");
    sparse_file(&only_line, 1 << 30, b"");
    // Memory for reading: a few MiB of line buffer (8 MB measured with /usr/bin/time), nothing
    // like the 1 GB file; the bound leaves room for this test process's share (see run_measured).
    const MAX_READER_RSS: u64 = 200 << 20;

    for args in [
        vec!["report".to_string(), with_data.display().to_string()],
        vec!["tail".to_string(), with_data.display().to_string()],
        vec!["report".to_string(), only_line.display().to_string()],
        vec!["tail".to_string(), only_line.display().to_string()],
    ] {
        let mut c = Command::new(cli_path());
        c.args(&args);
        let (o, maxrss) = run_measured(c, Duration::from_secs(120));
        let stderr = stderr_of(&o);
        eprintln!("{args:?}: peak RSS at most {} MiB", maxrss >> 20);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(maxrss < MAX_READER_RSS, "{args:?}: peak RSS {} MiB", maxrss >> 20);
        assert!(stderr.contains("line(s) longer than 4 MiB discarded"), "{args:?}: {stderr}");
        if args[1].ends_with("line.ndjson") {
            assert!(stderr.contains("holds no leakscope records"), "{args:?}: {stderr}");
        }
    }
    let mut c = Command::new(cli_path());
    c.args(["diff", "--json"]).arg(&with_data);
    let (o, maxrss) = run_measured(c, Duration::from_secs(120));
    eprintln!("diff: peak RSS at most {} MiB", maxrss >> 20);
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert!(maxrss < MAX_READER_RSS, "diff: peak RSS {} MiB", maxrss >> 20);
    let diff: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(diff["types"][0]["type_name"], "App.Session");
    let mut c = Command::new(cli_path());
    c.arg("diff").arg(&only_line);
    let (o, _) = run_measured(c, Duration::from_secs(120));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr_of(&o).contains("longer than 4 MiB were discarded"), "{}", stderr_of(&o));
}

/// `tail`, `report` and `diff` given a FIFO (directly, or as a directory's recording): a clear
/// refusal at once, never a wait for a writer that does not come.
#[test]
fn reading_a_fifo_is_refused_at_once_not_waited_on() {
    let t = tempfile::tempdir().unwrap();
    let fifo = t.path().join("fifo.ndjson");
    mkfifo(&fifo);
    let dir = t.path().join("run");
    std::fs::create_dir(&dir).unwrap();
    mkfifo(&dir.join("recording.ndjson"));
    let fifo_s = fifo.display().to_string();
    let dir_s = dir.display().to_string();
    for args in [
        vec!["tail", &fifo_s],
        vec!["report", &fifo_s],
        vec!["report", &dir_s],
        vec!["diff", &fifo_s, &fifo_s],
        vec!["diff", &dir_s],
    ] {
        let mut c = Command::new(cli_path());
        c.args(&args);
        let started = Instant::now();
        let o = run_with_timeout(c, Duration::from_secs(20));
        let stderr = stderr_of(&o);
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?} took {:?}", started.elapsed());
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr.contains("a FIFO, not a regular file"), "{args:?}: {stderr}");
    }
    // Following one waits for a regular file (as for a missing one), says why, and stops on
    // Ctrl-C.
    let mut c = Command::new(cli_path());
    c.args(["tail", "--follow", "--plain"]).arg(&fifo);
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null()).spawn().unwrap();
    let stderr = drain(child.stderr.take().unwrap());
    let _stdout = drain(child.stdout.take().unwrap());
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: interrupting our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = wait_with_deadline(&mut child, Duration::from_secs(10)).expect("tail --follow hung");
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("a FIFO"), "{stderr}");
}

/// A small tmpfs, mounted for the test (CI runs as root: a refusal fails the test).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "leakscope-full"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            o.status.success(),
            "mounting a tmpfs failed (this test needs root, as in CI): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Tmpfs { dir: dir.to_path_buf() }
    }

    /// Fills it, then frees `leave` bytes.
    fn fill(&self, leave: u64) {
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![1u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(leave)).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Nothing half-written: no temporary files, and every leakscope file that exists is whole.
fn assert_no_partial_files(out: &Path) {
    for name in names_in(out) {
        assert!(!name.ends_with(".tmp") && !name.starts_with('.'), "a temporary file was left: {name}");
        let path = out.join(&name);
        let data = std::fs::read(&path).unwrap();
        match name.as_str() {
            "recording.ndjson" => {
                assert!(data.is_empty() || data.ends_with(b"\n"), "the recording ends mid-line");
                for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    serde_json::from_slice::<Value>(line)
                        .unwrap_or_else(|e| panic!("a cut line in the recording: {e}"));
                }
            }
            n if n.ends_with(".json") => {
                serde_json::from_slice::<Value>(&data).unwrap_or_else(|e| panic!("{name} is partial: {e}"));
            }
            _ => {}
        }
    }
}

/// `run`, `soak` and `report` on a full filesystem: the summary is printed, the exit code is
/// the worker's (the verdict's), each file that could not be written is named, and nothing is
/// left half-written.
#[test]
fn a_full_disk_keeps_the_summary_and_the_exit_code_and_leaves_no_partial_file() {
    let t = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&t.path().join("mnt"), "1m");

    // run: a little room, so the recording starts and then hits the wall (a worker that
    // reports for a few seconds, through a shell that exits 3).
    fs.fill(16 << 10);
    let out = fs.dir.join("run");
    let app = leak_app();
    let mut c = Command::new(cli_path());
    c.args(["run", "--no-native", "--interval", "500ms", "--out"]).arg(&out);
    c.args(["--", "sh", "-c", "\"$0\" \"$@\"; exit 3"])
        .arg(&app.program)
        .args(&app.leading_args)
        .args(["strings", "4"]);
    let o = run_with_timeout(c, Duration::from_secs(120));
    let stderr = stderr_of(&o);
    assert_eq!(o.status.code(), Some(WORKER_EXIT), "{stderr}");
    assert!(stdout_of(&o).starts_with("ready\n") && stdout_of(&o).contains("done "), "{}", stdout_of(&o));
    assert!(stderr.contains("leakscope: run session") && stderr.contains("target exit code 3"), "{stderr}");
    assert!(stderr.contains(&format!("could not write {}", out.join("report.json").display())), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(stderr.contains("recording to"), "the recording's stop is said: {stderr}");
    assert_no_partial_files(&out);

    // soak: the exit code is the verdict's, as its summary states it.
    let out = fs.dir.join("soak");
    let o = short_leaking_soak(&out);
    let stderr = stderr_of(&o);
    let stated = stderr
        .lines()
        .filter(|l| l.contains("(exit "))
        .find_map(|l| l.strip_prefix("leakscope soak: ").and_then(|r| r.rsplit("(exit ").next()?.strip_suffix(')')))
        .unwrap_or_else(|| panic!("no soak summary:\n{stderr}"));
    assert_eq!(o.status.code().map(|c| c.to_string()).as_deref(), Some(stated), "{stderr}");
    assert!(stderr.contains(&format!("could not write {}", out.join("report.html").display())), "{stderr}");
    assert_no_partial_files(&out);

    // report: a recorded run copied in, then the disk filled; re-rendering keeps the old
    // reports whole, prints the new one, and says what it could not write.
    let rec = t.path().join("recorded");
    let o = run_worker(&rec);
    assert_eq!(o.status.code(), Some(WORKER_EXIT));
    let copy = fs.dir.join("copy");
    std::fs::remove_file(fs.dir.join("filler")).unwrap();
    std::fs::create_dir(&copy).unwrap();
    for name in ["recording.ndjson", "session.json", "report.json", "report.txt"] {
        std::fs::copy(rec.join(name), copy.join(name)).unwrap();
    }
    let old_json = std::fs::read(copy.join("report.json")).unwrap();
    fs.fill(0);
    let mut c = Command::new(cli_path());
    c.arg("report").arg(&copy);
    let o = run_with_timeout(c, Duration::from_secs(60));
    let stderr = stderr_of(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stdout_of(&o).contains("leakscope report"), "the report is printed: {}", stdout_of(&o));
    assert!(stderr.contains(&format!("could not write {}", copy.join("report.json").display())), "{stderr}");
    assert_eq!(std::fs::read(copy.join("report.json")).unwrap(), old_json, "the old report was damaged");
    assert_no_partial_files(&copy);
}

/// `env` for paths full of shell syntax: evaluated by `sh` (and bash), every variable comes
/// back byte for byte, nothing in them runs, and a worker started with them is profiled.
#[test]
fn env_output_for_hostile_paths_evaluates_to_exactly_the_intended_values() {
    let t = tempfile::tempdir().unwrap();
    let pwned = t.path().join("pwned");
    // Spaces, quotes, $, backticks, newlines, %, backslashes; no space or colon for the shim,
    // which LD_PRELOAD could not hold.
    let agent_dir = t.path().join(format!("a dir/it's \"q\" $(touch {p}) `touch {p}` %h\nnext\\", p = pwned.display()));
    let shim_dir = t.path().join("s'\"$(id)`id`\n$HOME%h\\");
    for d in [&agent_dir, &shim_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    let agent = agent_dir.join("libleakscope_agent.so");
    let shim = shim_dir.join("libleakscope_shim.so");
    std::fs::copy(agent_path(), &agent).unwrap();
    std::fs::copy(shim_path(), &shim).unwrap();
    let output = agent_dir.join("out put.ndjson");

    let o = Command::new(cli_path())
        .arg("env")
        .arg("--agent")
        .arg(&agent)
        .arg("--shim")
        .arg(&shim)
        .arg("--output")
        .arg(&output)
        .arg("--interval")
        .arg("500ms")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let env_file = t.path().join("env.sh");
    std::fs::write(&env_file, &o.stdout).unwrap();

    for shell in ["sh", "bash"] {
        let script = format!(
            "eval \"$(cat '{}')\"; printf '%s\\0' \"$CORECLR_PROFILER_PATH\" \"$LEAKSCOPE_OUTPUT\" \"$LD_PRELOAD\" \"$CORECLR_PROFILER\"",
            env_file.display()
        );
        let got = Command::new(shell).arg("-c").arg(&script).env("LD_PRELOAD", "/usr/lib/before.so").output().unwrap();
        assert!(got.status.success(), "{shell}: {}", stderr_of(&got));
        let values: Vec<&[u8]> = got.stdout.split(|&b| b == 0).collect();
        assert_eq!(values[0], agent.as_os_str().as_encoded_bytes(), "{shell}");
        assert_eq!(values[1], output.as_os_str().as_encoded_bytes(), "{shell}");
        assert_eq!(values[2], format!("{}:/usr/lib/before.so", shim.display()).as_bytes(), "{shell}");
        assert_eq!(values[3], AGENT_CLSID.as_bytes(), "{shell}");
    }
    assert!(!pwned.exists(), "a command hidden in a path ran");

    // A real worker started with those variables is profiled: the agent writes to the hostile path.
    let app = leak_app();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("eval \"$(cat '{}')\"; exec \"$0\" \"$@\"", env_file.display()))
        .arg(&app.program)
        .args(&app.leading_args)
        .arg("exit-code");
    without_profiler_env(&mut cmd);
    let o = run_with_timeout(cmd, Duration::from_secs(120));
    assert_eq!(o.status.code(), Some(WORKER_EXIT), "{}", stderr_of(&o));
    assert_eq!(stdout_of(&o), WORKER_STDOUT);
    let records = read_records_lenient(&output);
    assert!(!of_type(&records, "hello").is_empty(), "the agent wrote to {}", output.display());

    // A shim path LD_PRELOAD cannot hold is refused with the reason, not printed broken.
    let spaced = t.path().join("with space");
    std::fs::create_dir(&spaced).unwrap();
    std::fs::copy(shim_path(), spaced.join("libleakscope_shim.so")).unwrap();
    let o =
        Command::new(cli_path()).arg("env").arg("--shim").arg(spaced.join("libleakscope_shim.so")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr_of(&o).contains("LD_PRELOAD cannot hold"), "{}", stderr_of(&o));
}

/// Walks `dir`: every directory 0700 and every file 0600.
fn assert_owner_only(dir: &Path) {
    let mode = std::fs::symlink_metadata(dir).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700, "{} is {mode:o}", dir.display());
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = e.metadata().unwrap();
        if meta.is_dir() {
            assert_owner_only(&e.path());
        } else {
            let mode = meta.permissions().mode() & 0o7777;
            assert_eq!(mode, 0o600, "{} is {mode:o}", e.path().display());
        }
    }
}

/// Under `umask 000`, everything the collector creates under `--out` (and its parents, and a
/// snapshot) is owner-only.
#[test]
fn under_umask_000_everything_the_collector_creates_is_owner_only() {
    let t = tempfile::tempdir().unwrap();
    let app = leak_app();
    let run = |args: &str| {
        let script = format!("umask 000; exec {} {args}", cli_path().display());
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        run_with_timeout(c, Duration::from_secs(120))
    };
    let worker = format!("{} {} exit-code", app.program.display(), app.leading_args.join(" "));
    let base = t.path().display();

    let o = run(&format!("run --no-native --out {base}/a/b/run -- {worker}"));
    assert_eq!(o.status.code(), Some(WORKER_EXIT), "{}", stderr_of(&o));
    assert_owner_only(&t.path().join("a"));

    let o = run(&format!("soak --no-native --duration 3s --gc-every 1s --allow-short --out {base}/soak -- {worker}"));
    assert!(o.status.code().is_some(), "{}", stderr_of(&o));
    assert!(t.path().join("soak/junit.xml").is_file());
    assert_owner_only(&t.path().join("soak"));

    let o = run(&format!("listen --plain --duration 1s --socket {base}/l.sock --out {base}/listen"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert_owner_only(&t.path().join("listen"));

    let o = run(&format!("report {base}/a/b/run --out {base}/c/report"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert_owner_only(&t.path().join("c"));

    let o = run(&format!("tail {base}/a/b/run/recording.ndjson --out {base}/tail"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert_owner_only(&t.path().join("tail"));

    // A snapshot may hold string values: 0600 in a 0700 directory it made.
    let heap = dotnet_app("HeapApp", Build::FrameworkDependent);
    let mut c = heap.command();
    c.args(["hold", "60", "10"]);
    without_profiler_env(&mut c);
    let mut worker = Running::start(c);
    worker.wait_for_line("ready", Duration::from_secs(60));
    let o = run(&format!("snapshot {} --sample 1s -o {base}/snap/dir/s.ndjson", worker.pid()));
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert_owner_only(&t.path().join("snap"));
}

/// The live view on a real terminal (a pseudo-terminal here) while a producer sends escape
/// sequences in every name and message: they are drawn escaped, never sent to the terminal.
#[test]
fn the_live_view_draws_hostile_names_escaped() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let t = tempfile::tempdir().unwrap();
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize { ws_row: 60, ws_col: 220, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty fills in two new descriptors; the other pointers may be null.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned here.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };

    let sock_file = t.path().join("socket-path");
    let done = t.path().join("done");
    let script = format!(
        "echo worker-says-hi; printf '%s' \"$LEAKSCOPE_SOCKET\" > {}; while [ ! -e {} ]; do sleep 0.1; done; exit 7",
        sock_file.display(),
        done.display()
    );
    let out = t.path().join("out");
    let mut c = Command::new(cli_path());
    c.args(["run", "--no-native", "--interval", "500ms", "--out"]).arg(&out);
    c.args(["--", "sh", "-c", &script]).env("TERM", "xterm-256color").env_remove("NO_COLOR");
    c.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    let child = c.spawn().unwrap();
    let screen = drain(std::fs::File::from(master));
    drop(c);

    let socket = PathBuf::from(wait_for_file(&sock_file, Duration::from_secs(30)));
    let esc = json_str(HOSTILE);
    let mut conn = UnixStream::connect(&socket).unwrap();
    let mut lines = String::new();
    for pid in [101u32, 102] {
        lines.push_str(&format!(r#"{{"v":1,"type":"hello","source":"agent","pid":{pid},"cmdline":{esc}}}"#));
        lines.push('\n');
        lines.push_str(&format!(
            r#"{{"v":1,"type":"status","source":"agent","pid":{pid},"level":"warn","message":{esc}}}"#
        ));
        lines.push('\n');
        for t in 1..=6u64 {
            lines.push_str(&format!(
                r#"{{"v":1,"type":"summary","source":"agent","pid":{pid},"t_ms":{},"rss":1000000,"sites":[{{"type_name":{esc},"site":{esc},"location":{esc},"samples":3,"objects":10,"bytes":{}}}]}}"#,
                t * 1000,
                t * 1_000_000
            ));
            lines.push('\n');
        }
    }
    conn.write_all(lines.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(&done, b"").unwrap();
    let (status, _) = wait_measured(child, Duration::from_secs(60));
    let screen = screen.join().unwrap();
    let text = String::from_utf8_lossy(&screen);
    assert_eq!(status.code(), Some(7), "{text}");
    assert!(text.contains(r"\x1b]0;PWNED\x07"), "the hostile names are drawn, escaped:\n{text}");
    for raw in ["\u{1b}]", "\u{1b}[38;5;199m", "\u{9b}", "\u{1b}P", "\u{7}", "\nFINDINGS: none"] {
        assert!(!text.contains(raw), "{raw:?} reached the terminal");
    }
    // With the view on, the worker's output went to its log in the output directory (0600).
    assert_eq!(std::fs::read_to_string(out.join("stdout.log")).unwrap(), "worker-says-hi\n");
    assert_owner_only(&out);
}
