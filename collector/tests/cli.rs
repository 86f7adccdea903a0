//! Runs the real `leakscope` binary against hand-written NDJSON (tests/fixtures, built from
//! docs/PROTOCOL.md) and against a fake producer: this test binary re-invoked with
//! LEAKSCOPE_TEST_FAKE_PRODUCER=1, which sends the fixture over $LEAKSCOPE_SOCKET like an agent.
//! Tests with the real agent and shim live in integration-tests/.

use serde_json::Value;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const LEAKSCOPE: &str = env!("CARGO_BIN_EXE_leakscope");

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/leak_and_churn.ndjson")
}

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("leakscope-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    /// A stand-in agent library: `run` only needs the file to exist when the target is not .NET.
    fn dummy_agent(&self) -> PathBuf {
        let p = self.0.join("libleakscope_agent.so");
        std::fs::write(&p, b"").unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn leakscope(args: &[&str]) -> Command {
    let mut c = Command::new(LEAKSCOPE);
    c.args(args).env_remove("LEAKSCOPE_AGENT").env_remove("LEAKSCOPE_SHIM").env("NO_COLOR", "1");
    c
}

#[must_use]
struct Ran(Output);

impl Ran {
    fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    fn expect_code(self, code: i32) -> Ran {
        assert_eq!(self.code(), code, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout(), self.stderr());
        self
    }
}

fn run(mut cmd: impl std::borrow::BorrowMut<Command>) -> Ran {
    Ran(cmd.borrow_mut().stdin(Stdio::null()).output().expect("cannot run leakscope"))
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// Checks the verdicts the fixture was built to produce.
fn assert_fixture_verdicts(report: &Value) {
    assert_eq!(report["schema"], "leakscope.report/1");
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{findings:#?}");
    let managed = findings.iter().find(|f| f["kind"] == "managed").unwrap();
    assert_eq!(managed["type_name"], "System.String");
    assert_eq!(managed["site"], "Demo.OrderAudit.Record");
    let rate = managed["bytes_per_min"].as_f64().unwrap();
    assert!((rate - 2e6).abs() < 0.1e6, "managed rate {rate}");
    assert_eq!(managed["frames"][1], "Demo.OrderAudit.Record");
    assert_eq!(managed["location"], "OrderAudit.cs:17");
    assert_eq!(managed["frame_lines"][1], "OrderAudit.cs:17");
    assert_eq!(managed["frame_lines"][0], Value::Null);
    let native = findings.iter().find(|f| f["kind"] == "native").unwrap();
    assert_eq!(native["site"], "leak_from_here (leaky+0x1139)");
    assert!((native["bytes_per_min"].as_f64().unwrap() - 1e6).abs() < 0.1e6);

    let process = &report["processes"][0];
    assert_eq!(process["pid"], 4242);
    let verdict = |kind: &str, site: &str| -> String {
        process[kind].as_array().unwrap().iter().find(|s| s["site"] == site).unwrap()["growth"]["verdict"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_ne!(verdict("managed_sites", "Demo.PriceCache.Put"), "growing", "a bounded cache is not a leak");
    assert_eq!(verdict("managed_sites", "Demo.Parser.Parse"), "steady", "churn is not a leak");
    assert_eq!(verdict("native_sites", "steady_buffer (libfoo.so+0x20)"), "steady");
    assert_eq!(process["agent"]["ended"], "bye");
    assert_eq!(process["agent"]["runtime"], "10.0.12");
    assert!(process["heap"]["gen2"].as_u64().is_some(), "byte counts are integers in report.json");
    assert!(
        report["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| { m["message"].as_str().unwrap().contains("tracking budget 90% full") })
    );
}

#[test]
fn tail_renders_the_fixture_json_with_both_leaks_and_counts_every_bad_line() {
    let ran = run(leakscope(&["tail", fixture().to_str().unwrap(), "--json"])).expect_code(0);
    let report: Value = serde_json::from_str(&ran.stdout()).expect("stdout is report.json");
    assert_fixture_verdicts(&report);
    let input = &report["input"];
    assert_eq!(input["not_json"], 2, "garbage + the object cut mid-way");
    assert_eq!(input["unknown_type"], 1);
    assert_eq!(input["unknown_version"], 1);
    assert_eq!(input["unknown_source"], 1);
    assert_eq!(input["truncated"], 1, "the unfinished last line");
    assert_eq!(report["session"]["duration_ms"], 595_000, "the data's span, not the reading time");
}

#[test]
fn tail_text_names_the_leak_and_writes_reports_with_out() {
    let dir = TempDir::new("tail-out");
    let ran =
        run(leakscope(&["tail", fixture().to_str().unwrap(), "--out", dir.path().to_str().unwrap()])).expect_code(0);
    let text = ran.stdout();
    assert!(
        text.contains(
            "Leak suspect: System.String allocated at Demo.OrderAudit.Record (OrderAudit.cs:17), +2.00 MB/min"
        ),
        "{text}"
    );
    assert!(text.contains("Leak suspect: native memory allocated at leak_from_here (leaky+0x1139)"), "{text}");
    assert!(
        text.contains("6 skipped (2 not JSON, 1 unknown version, 1 unknown type, 1 unknown source, 1 truncated)"),
        "{text}"
    );
    assert_fixture_verdicts(&read_json(&dir.path().join("report.json")));
    assert_eq!(std::fs::read_to_string(dir.path().join("report.txt")).unwrap(), text);
}

#[test]
fn report_rerenders_a_recording_directory() {
    let dir = TempDir::new("report");
    std::fs::copy(fixture(), dir.path().join("recording.ndjson")).unwrap();
    let ran = run(leakscope(&["report", dir.path().to_str().unwrap()])).expect_code(0);
    assert!(ran.stdout().contains("Leak suspect: System.String allocated at Demo.OrderAudit.Record"));
    assert_fixture_verdicts(&read_json(&dir.path().join("report.json")));
    assert!(dir.path().join("report.txt").is_file());
    // A directory without a recording is an error with a hint, not a panic.
    let empty = TempDir::new("report-empty");
    let ran = run(leakscope(&["report", empty.path().to_str().unwrap()])).expect_code(1);
    assert!(ran.stderr().contains("has no recording.ndjson"), "{}", ran.stderr());
}

#[test]
fn garbage_input_never_panics() {
    let dir = TempDir::new("garbage");
    let file = dir.path().join("junk.ndjson");
    let mut junk: Vec<u8> = Vec::new();
    for i in 0..2000u32 {
        junk.extend_from_slice(&i.to_le_bytes().repeat((i % 7) as usize));
        junk.extend_from_slice(b"{\"v\":1,\"type\":\"summary\",\"source\":\"agent\",\"pid\":1,\"sites\":[{\"bytes\":");
        if i % 3 == 0 {
            junk.push(b'\n');
        }
    }
    junk.extend_from_slice(
        b"\n{\"v\":1,\"type\":\"summary\",\"source\":\"agent\",\"pid\":1,\"t_ms\":1e400,\"sites\":null}\n",
    );
    std::fs::write(&file, &junk).unwrap();
    let ran = run(leakscope(&["tail", file.to_str().unwrap(), "--json"])).expect_code(0);
    let report: Value = serde_json::from_str(&ran.stdout()).unwrap();
    assert!(report["input"]["lines"].as_u64().unwrap() > 600);
    assert_eq!(report["findings"].as_array().unwrap().len(), 0);
}

#[test]
fn wrong_arguments_exit_2() {
    for args in [
        &["run"][..],
        &["frobnicate"],
        &["run", "--interval", "1ms", "--", "true"],
        &["tail"],
        &["env", "--socket", "a", "--output", "b"],
    ] {
        let ran = run(&mut leakscope(args));
        assert_eq!(ran.code(), 2, "{args:?}: {}", ran.stderr());
    }
    let _ = run(&mut leakscope(&["--help"])).expect_code(0);
}

#[test]
fn run_without_the_agent_says_where_it_looked_and_exits_2() {
    let ran =
        run(&mut leakscope(&["run", "--agent", "/nonexistent/libleakscope_agent.so", "--", "true"])).expect_code(2);
    let err = ran.stderr();
    assert!(err.contains("cannot find the leakscope agent"), "{err}");
    assert!(err.contains("/nonexistent/libleakscope_agent.so"), "{err}");
    assert!(err.contains("cargo build --release"), "{err}");
}

#[test]
fn run_passes_the_exit_code_and_explains_a_target_that_never_connected() {
    let dir = TempDir::new("run-noagent");
    let agent = dir.dummy_agent();
    let out = dir.path().join("out");
    let ran = run(&mut leakscope(&[
        "run",
        "--plain",
        "--no-native",
        "--agent",
        agent.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo hello from the target; exit 3",
    ]))
    .expect_code(3);
    assert!(ran.stdout().contains("hello from the target"), "plain mode passes the target's output through");
    assert!(
        ran.stderr().contains("no agent connected: is the target a .NET app? Was the profiler blocked?"),
        "{}",
        ran.stderr()
    );
    let report = read_json(&out.join("report.json"));
    assert_eq!(report["session"]["exit"]["code"], 3);
    assert_eq!(report["session"]["exit_code"], 3);
    assert_eq!(report["session"]["native_tracking"]["enabled"], false);
    assert!(out.join("recording.ndjson").is_file());
    // A command that does not exist: 127, like a shell.
    let ran = run(&mut leakscope(&[
        "run",
        "--plain",
        "--no-native",
        "--agent",
        agent.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--",
        "/nonexistent/worker",
    ]))
    .expect_code(127);
    assert!(ran.stderr().contains("cannot start `/nonexistent/worker`"), "{}", ran.stderr());
}

#[test]
fn run_sets_the_documented_environment() {
    let dir = TempDir::new("run-env");
    let agent = dir.dummy_agent();
    let shim = dir.path().join("libleakscope_shim.so");
    // The preloaded "shim" must be a library the loader accepts: a copy of libc has the SONAME
    // libc.so.6, so the loader reuses it as the process's only libc and `env` runs unchanged.
    let libc_path = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("a libc to stand in for the shim");
    std::fs::copy(libc_path, &shim).unwrap();
    let out = dir.path().join("out");
    let ran = run(leakscope(&[
        "run",
        "--plain",
        "--interval",
        "2s",
        "--agent",
        agent.to_str().unwrap(),
        "--shim",
        shim.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--",
        "env",
    ])
    .env("LD_PRELOAD", ""))
    .expect_code(0);
    let env = ran.stdout();
    let has = |line: &str| env.lines().any(|l| l == line);
    assert!(has("CORECLR_ENABLE_PROFILING=1"), "{env}");
    assert!(has("CORECLR_PROFILER={E3F826A5-7C38-4392-A672-1BB85AF76D18}"));
    assert!(has(&format!("CORECLR_PROFILER_PATH={}", agent.canonicalize().unwrap().display())));
    assert!(has("LEAKSCOPE_INTERVAL=2000ms"));
    assert!(has(&format!("LD_PRELOAD={}", shim.canonicalize().unwrap().display())));
    assert!(has("DOTNET_PerfMapEnabled=3"));
    assert!(env.lines().any(|l| l.starts_with("LEAKSCOPE_SOCKET=/")));
}

/// Not a test on its own: the body of the fake producer when re-invoked by the tests below.
#[test]
fn fake_producer() {
    if std::env::var_os("LEAKSCOPE_TEST_FAKE_PRODUCER").is_none() {
        return;
    }
    let socket = std::env::var("LEAKSCOPE_SOCKET").expect("LEAKSCOPE_SOCKET is set by leakscope run");
    let mut s = UnixStream::connect(&socket).expect("connect to the collector");
    let data = std::fs::read(fixture()).unwrap();
    // In several writes, split mid-line, as a real producer's writes may be.
    for chunk in data.chunks(1777) {
        s.write_all(chunk).unwrap();
    }
}

fn fake_producer_command() -> Vec<String> {
    vec![
        std::env::current_exe().unwrap().display().to_string(),
        "fake_producer".into(),
        "--exact".into(),
        "--quiet".into(),
        "--test-threads=1".into(),
    ]
}

#[test]
fn run_records_a_producer_verbatim_and_reports_what_it_sent() {
    let dir = TempDir::new("run-fake");
    let agent = dir.dummy_agent();
    let out = dir.path().join("out");
    let mut args: Vec<String> =
        ["run", "--plain", "--no-native", "--agent", agent.to_str().unwrap(), "--out", out.to_str().unwrap(), "--"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    args.extend(fake_producer_command());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = run(leakscope(&args).env("LEAKSCOPE_TEST_FAKE_PRODUCER", "1")).expect_code(0);
    assert!(
        ran.stderr().contains("Leak suspect: System.String allocated at Demo.OrderAudit.Record"),
        "{}",
        ran.stderr()
    );
    let report = read_json(&out.join("report.json"));
    assert_fixture_verdicts(&report);
    assert_eq!(report["input"]["truncated"], 1, "the producer's last line was cut off");
    // Every complete line, verbatim and in order.
    let fixture_text = std::fs::read_to_string(fixture()).unwrap();
    let complete = &fixture_text[..fixture_text.rfind('\n').unwrap() + 1];
    assert_eq!(std::fs::read_to_string(out.join("recording.ndjson")).unwrap(), complete);
    // And the recording re-renders to the same findings.
    let again = run(&mut leakscope(&["report", out.to_str().unwrap(), "--json"])).expect_code(0);
    let again: Value = serde_json::from_str(&again.stdout()).unwrap();
    assert_eq!(again["findings"][0]["text"], report["findings"][0]["text"]);
    assert_eq!(again["session"]["command"], report["session"]["command"]);
}

fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn listen_accepts_producers_refuses_a_second_listener_and_reports_on_stop() {
    let dir = TempDir::new("listen");
    let socket = dir.path().join("l.sock");
    let out = dir.path().join("out");
    let mut listener = leakscope(&[
        "listen",
        "--plain",
        "--socket",
        socket.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--duration",
        "4s",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_for(&socket, "the listening socket");
    let second = run(&mut leakscope(&["listen", "--plain", "--socket", socket.to_str().unwrap(), "--duration", "1s"]));
    assert_eq!(second.code(), 1);
    assert!(second.stderr().contains("another listener is already running"), "{}", second.stderr());
    {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.write_all(&std::fs::read(fixture()).unwrap()).unwrap();
    }
    // A producer that connects and says nothing is harmless.
    let _idle = UnixStream::connect(&socket).unwrap();
    let status = listener.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_fixture_verdicts(&read_json(&out.join("report.json")));
    assert!(!socket.exists(), "the socket is removed on exit");
}

#[test]
fn tail_follow_keeps_reading_survives_truncation_and_stops_on_sigint() {
    let dir = TempDir::new("follow");
    let file = dir.path().join("w.ndjson");
    let fixture_text = std::fs::read_to_string(fixture()).unwrap();
    let lines: Vec<&str> = fixture_text.lines().collect();
    // First a stale segment from an earlier process, then truncation, then the real thing.
    std::fs::write(&file, format!("{}\n", lines[..20].join("\n"))).unwrap();
    let child = leakscope(&["tail", file.to_str().unwrap(), "--follow", "--plain", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    std::fs::write(&file, b"").unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
    for chunk in lines.chunks(64) {
        f.write_all(format!("{}\n", chunk.join("\n")).as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    std::thread::sleep(Duration::from_millis(1200));
    // SAFETY: sending SIGINT to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_str(&String::from_utf8_lossy(&output.stdout)).unwrap();
    assert_fixture_verdicts(&report);
    assert!(
        report["messages"].as_array().unwrap().iter().any(|m| m["message"].as_str().unwrap().contains("truncated")),
        "{:#?}",
        report["messages"]
    );
}

#[test]
fn run_stops_the_target_on_sigint_and_passes_its_exit_code() {
    let dir = TempDir::new("run-sigint");
    let agent = dir.dummy_agent();
    let out = dir.path().join("out");
    let child = leakscope(&[
        "run",
        "--plain",
        "--no-native",
        "--agent",
        agent.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "trap 'exit 7' INT; while :; do sleep 0.1; done",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    // SAFETY: sending SIGINT to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(7), "{}", String::from_utf8_lossy(&output.stderr));
    let report = read_json(&out.join("report.json"));
    assert_eq!(report["session"]["stopped_by"], "SIGINT (Ctrl-C)");
}

#[test]
fn env_prints_sourceable_exports() {
    let dir = TempDir::new("env");
    let agent = dir.dummy_agent();
    let ran = run(&mut leakscope(&["env", "--no-native", "--agent", agent.to_str().unwrap(), "--output", "w.ndjson"]))
        .expect_code(0);
    let text = ran.stdout();
    assert!(text.contains("export CORECLR_ENABLE_PROFILING=1"));
    let cwd = std::env::current_dir().unwrap();
    assert!(text.contains(&format!("export LEAKSCOPE_OUTPUT={}", cwd.join("w.ndjson").display())), "{text}");
    assert!(!text.contains("LD_PRELOAD"));
    // Source it in a shell: every variable arrives.
    let script = format!("{text}\necho \"$CORECLR_PROFILER|$LEAKSCOPE_INTERVAL\"");
    let sh = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&sh.stdout).trim(), "{E3F826A5-7C38-4392-A672-1BB85AF76D18}|5000ms");
}
