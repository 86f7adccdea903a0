//! A worker asked to end while the agent walks its heap. A walk suspends every managed thread,
//! so a worker that ends gracefully on SIGTERM or SIGINT (its handler is managed code) could not
//! even start doing so until the walk was over, and the runtime's `Shutdown` used to return
//! while the agent was still inside the runtime. Here a real .NET app holds a heap of over a
//! million objects, the agent is asked for retention paths with a 60 s budget and made to take
//! 60 µs per object (`LEAKSCOPE_TEST_WALK_DELAY_US`: a walk of over a minute), and the signal
//! comes 1 s into the walk. The worker must end within 5 s, as it ends without leakscope: same
//! stdout, same exit code (or the same killing signal, for a worker that does not handle it).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use integration_tests::*;
use serde_json::json;

/// HeapApp's scale for over a million live objects (about 36 000 per unit).
const SCALE: &str = "32";
/// Per object visited: with over a million objects, a walk of over 60 s.
const DELAY_US: &str = "60";
/// How long the worker may take to end once signalled.
const EXIT_BOUND: Duration = Duration::from_secs(5);

/// A started worker: its stdout line by line (and whole, at the end), its stderr.
struct Worker {
    child: Child,
    lines: Receiver<String>,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<Vec<u8>>,
}

impl Worker {
    fn start(mut c: Command) -> Worker {
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("start the worker");
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        let stdout = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send(line);
            }
            all
        });
        let stderr = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            buf
        });
        Worker { child, lines, stdout, stderr }
    }

    fn wait_ready(&self) {
        let line = self.lines.recv_timeout(Duration::from_secs(120)).expect("the worker printed nothing");
        assert!(line.starts_with("ready "), "{line}");
    }

    fn signal(&self, sig: i32) -> Instant {
        // SAFETY: kill on the pid of a child we started and have not reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
        Instant::now()
    }

    /// Waits for the end (at most `bound` after `since`); returns how it ended and its output.
    fn end(mut self, since: Instant, bound: Duration) -> (ExitStatus, Duration, String, Vec<u8>) {
        let status =
            wait_with_deadline(&mut self.child, bound.saturating_sub(since.elapsed()) + Duration::from_millis(50));
        let took = since.elapsed();
        let status = status.unwrap_or_else(|| panic!("the worker did not end within {bound:?} of the signal (killed)"));
        (status, took, self.stdout.join().unwrap(), self.stderr.join().unwrap())
    }
}

fn app(mode: &str) -> Command {
    let mut c = dotnet_app("HeapApp", Build::FrameworkDependent).command();
    c.args([mode, "300", SCALE]);
    without_profiler_env(&mut c);
    // The worker starts as a foreground program would, whatever started the tests: a shell's
    // background job passes SIGINT and SIGQUIT on ignored, and the runtime (and the agent) keep
    // an inherited SIG_IGN, so the signal would never reach either.
    // SAFETY: only `signal`, which is async-signal-safe, runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    c
}

/// How the worker ends on `sig` without leakscope.
fn baseline(mode: &str, sig: i32) -> (ExitStatus, String, Vec<u8>) {
    let worker = Worker::start(app(mode));
    worker.wait_ready();
    std::thread::sleep(Duration::from_secs(1));
    let at = worker.signal(sig);
    let (status, _, stdout, stderr) = worker.end(at, Duration::from_secs(30));
    (status, stdout, stderr)
}

/// Starts the worker under the agent, asks for retention paths, and signals it 1 s into the
/// walk. Returns how it ended, how long after the signal, and what the agent said.
fn signal_during_walk(mode: &str, sig: i32, dir: &Path) -> (ExitStatus, Duration, String, Vec<u8>, Collector, String) {
    let mut collector = Collector::listen(&dir.join("collector.sock"));
    let log = dir.join("agent.log");
    let mut c = app(mode);
    c.env("CORECLR_ENABLE_PROFILING", "1")
        .env("CORECLR_PROFILER", AGENT_CLSID)
        .env("CORECLR_PROFILER_PATH", agent_path())
        .env("LEAKSCOPE_SOCKET", &collector.socket)
        .env("LEAKSCOPE_LOG", &log)
        .env("LEAKSCOPE_INTERVAL", "1s")
        .env("LEAKSCOPE_MEMORY_LIMIT_MB", "2048")
        .env("LEAKSCOPE_TEST_WALK_DELAY_US", DELAY_US);
    let worker = Worker::start(c);
    worker.wait_ready();
    collector.wait_for("hello", Duration::from_secs(30), |r| r["type"] == "hello");
    collector.send(&json!({"cmd": "retention", "types": ["HeapApp.Customer"], "max_ms": 60_000}));
    // The walk has begun when the agent says so; 1 s into it, the signal.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("retention paths requested") {
        assert!(Instant::now() < deadline, "the agent never started the walk");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    let at = worker.signal(sig);
    let (status, took, stdout, stderr) = worker.end(at, EXIT_BOUND);
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    (status, took, stdout, stderr, collector, log)
}

/// A worker that ends gracefully (HeapApp `serve`: exit code 42 after its last line).
#[test]
fn a_graceful_worker_signalled_during_a_long_walk_ends_within_5s_as_without_leakscope() {
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let (base_status, base_stdout, base_stderr) = baseline("serve", sig);
        assert_eq!(base_status.code(), Some(42), "{name}: the app's own graceful exit");
        let dir = tempfile::tempdir().unwrap();
        let (status, took, stdout, stderr, mut collector, log) = signal_during_walk("serve", sig, dir.path());
        assert!(took <= EXIT_BOUND, "{name}: ended {took:?} after the signal");
        assert_eq!(status.code(), base_status.code(), "{name}: exit status {status:?}\n{log}");
        assert_eq!(stdout, base_stdout, "{name}: stdout");
        assert_eq!(stderr, base_stderr, "{name}: stderr");
        // The walk gave up and said why; the agent said goodbye and left the runtime in time.
        let retention =
            collector.wait_for("the retention record", Duration::from_secs(5), |r| r["type"] == "retention");
        assert_eq!(retention["truncated_by"], json!(["interrupted"]), "{name}: {retention}");
        let cut_short = retention["cut_short"].as_str().unwrap_or_default();
        assert!(cut_short.contains(name), "{name}: {cut_short}\n{log}");
        assert!(retention["elapsed_ms"].as_f64().unwrap() < 5000.0, "{retention}");
        collector.wait_for("bye", Duration::from_secs(5), |r| r["type"] == "bye");
        assert!(log.contains("agent shut down (no call of ours left inside the runtime"), "{name}:\n{log}");
    }
}

/// A worker that does not handle the signal dies of it, with or without leakscope (the agent's
/// handler passes it on to the runtime's, or restores the default action).
#[test]
fn a_worker_that_dies_of_the_signal_still_dies_of_it_during_a_walk() {
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let (base_status, base_stdout, _) = baseline("hold", sig);
        assert!(base_status.code().is_some() || base_status.signal().is_some(), "{name}: {base_status:?}");
        let dir = tempfile::tempdir().unwrap();
        let (status, took, stdout, _, _, log) = signal_during_walk("hold", sig, dir.path());
        assert!(took <= EXIT_BOUND, "{name}: ended {took:?} after the signal");
        assert_eq!((status.code(), status.signal()), (base_status.code(), base_status.signal()), "{name}\n{log}");
        assert_eq!(stdout, base_stdout, "{name}: stdout");
    }
}
