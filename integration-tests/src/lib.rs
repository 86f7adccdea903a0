//! Helpers for leakscope's integration tests: find the built agent, shim and CLI; build the
//! .NET scenario apps; run them under the real agent; read what the agent wrote.
//!
//! The tests need `cargo build --release --workspace` to have run first (`scripts/test.sh` does
//! it) and `dotnet` on PATH. A missing prerequisite fails the test with a message saying what
//! to do; nothing is skipped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

mod soak_runs;
pub use soak_runs::{SoakRun, run_soak, soak_app, soak_app_command};

/// The agent's CLSID, as `CORECLR_PROFILER` wants it.
pub const AGENT_CLSID: &str = "{E3F826A5-7C38-4392-A672-1BB85AF76D18}";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// `target/<profile>`: where the test binary itself was built.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary>
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf()
}

fn built_artifact(env: &str, file: &str, package: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let path = profile_dir().join(file);
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --release -p {package}` (scripts/test.sh does)",
        path.display()
    );
    path
}

pub fn agent_path() -> PathBuf {
    built_artifact("LEAKSCOPE_AGENT", "libleakscope_agent.so", "leakscope-agent")
}

pub fn shim_path() -> PathBuf {
    built_artifact("LEAKSCOPE_SHIM", "libleakscope_shim.so", "leakscope-shim")
}

pub fn cli_path() -> PathBuf {
    built_artifact("LEAKSCOPE_CLI", "leakscope", "leakscope")
}

/// The `dotnet` executable. Fails (never skips) when it is missing.
pub fn dotnet() -> PathBuf {
    static DOTNET: OnceLock<PathBuf> = OnceLock::new();
    DOTNET
        .get_or_init(|| {
            let candidates = std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).map(|d| d.join("dotnet")).collect::<Vec<_>>())
                .unwrap_or_default();
            candidates
                .into_iter()
                .chain([PathBuf::from("/usr/share/dotnet/dotnet"), PathBuf::from("/usr/bin/dotnet")])
                .find(|p| p.is_file())
                .expect("`dotnet` is not installed or not on PATH: these tests need the .NET SDK (10.0)")
        })
        .clone()
}

/// A `dotnet` global tool (`dotnet-gcdump`, …), installed by scripts/test.sh.
pub fn dotnet_tool(name: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let path = home.join(".dotnet/tools").join(name);
    assert!(path.is_file(), "{} is missing: install it with `dotnet tool install -g {name}`", path.display());
    path
}

/// How a scenario app is built.
#[derive(Clone, Copy)]
pub enum Build {
    /// `dotnet build`: run it with `dotnet <app>.dll`.
    FrameworkDependent,
    /// `dotnet publish --self-contained`: a native launcher carrying its own runtime.
    SelfContained,
}

/// A built .NET app: how to start it.
#[derive(Clone, Debug)]
pub struct DotnetApp {
    pub program: PathBuf,
    pub leading_args: Vec<String>,
}

impl DotnetApp {
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.leading_args);
        c
    }
}

/// Builds `integration-tests/dotnet/<name>` once per test process (and once across processes,
/// via a lock file), in a copy under the target directory so the source tree stays clean.
pub fn dotnet_app(name: &str, build: Build) -> DotnetApp {
    static BUILT: OnceLock<Mutex<HashMap<String, DotnetApp>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(app) = built.get(name) {
        return app.clone();
    }
    let source = workspace_root().join("integration-tests/dotnet").join(name);
    assert!(source.is_dir(), "no .NET app at {}", source.display());
    let work = profile_dir().join("dotnet").join(name);
    std::fs::create_dir_all(&work).unwrap();
    let _lock = FileLock::acquire(&work.join(".build.lock"));
    let src_copy = work.join("src");
    copy_dir(&workspace_root().join("integration-tests/dotnet"), &src_copy);
    let project_dir = src_copy.join(name);
    let out = work.join("out");
    let mut cmd = Command::new(dotnet());
    match build {
        Build::FrameworkDependent => {
            cmd.args(["build", "-c", "Release", "-o"]).arg(&out);
        }
        Build::SelfContained => {
            cmd.args(["publish", "-c", "Release", "-r", "linux-x64", "--self-contained", "-o"]).arg(&out);
        }
    }
    cmd.current_dir(&project_dir)
        .env("DOTNET_CLI_TELEMETRY_OPTOUT", "1")
        .env("DOTNET_NOLOGO", "1")
        .env_remove("LD_PRELOAD");
    let output = cmd.output().expect("run dotnet build");
    assert!(
        output.status.success(),
        "building {name} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let app = match build {
        Build::FrameworkDependent => {
            DotnetApp { program: dotnet(), leading_args: vec![out.join(format!("{name}.dll")).display().to_string()] }
        }
        Build::SelfContained => DotnetApp { program: out.join(name), leading_args: vec![] },
    };
    built.insert(name.to_string(), app.clone());
    app
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "bin" || name == "obj" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            let same = std::fs::read(&target).ok() == std::fs::read(entry.path()).ok();
            if !same {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
}

/// Holds an exclusive `flock` until dropped (closing the file releases it).
struct FileLock(#[allow(dead_code)] std::fs::File);

impl FileLock {
    fn acquire(path: &Path) -> FileLock {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).unwrap();
        // SAFETY: flock on a descriptor we own; blocks until the lock is ours.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}", path.display());
        FileLock(file)
    }
}

/// Environment that loads the agent, writing to `output` and logging to `log`.
pub fn agent_env(output: &Path, log: &Path, interval: &str) -> Vec<(String, String)> {
    vec![
        ("CORECLR_ENABLE_PROFILING".into(), "1".into()),
        ("CORECLR_PROFILER".into(), AGENT_CLSID.into()),
        ("CORECLR_PROFILER_PATH".into(), agent_path().display().to_string()),
        ("LEAKSCOPE_OUTPUT".into(), output.display().to_string()),
        ("LEAKSCOPE_LOG".into(), log.display().to_string()),
        ("LEAKSCOPE_INTERVAL".into(), interval.into()),
    ]
}

/// Runs a command to completion with a deadline; kills it (and fails) if it overstays.
pub fn run_with_timeout(mut command: Command, timeout: Duration) -> Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
    let mut child = command.spawn().expect("spawn");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_with_deadline(&mut child, timeout)
        .unwrap_or_else(|| panic!("{command:?} did not finish within {timeout:?} (hang?)"));
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// Reads a pipe to its end on a thread (so a chatty child never blocks on a full pipe).
pub fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

pub fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A scenario app started in the background, with its stdout readable line by line.
pub struct Running {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    pub fn start(mut command: Command) -> Running {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit()).stdin(Stdio::null());
        let mut child = command.spawn().expect("spawn scenario");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Running { child, lines }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line starting with `prefix`.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line starting with {prefix:?} within {timeout:?}"),
            }
        }
    }

    pub fn wait(mut self, timeout: Duration) -> ExitStatus {
        wait_with_deadline(&mut self.child, timeout).expect("scenario did not exit in time")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every JSON record of an NDJSON file (garbage lines are an error here: the agent wrote it).
pub fn read_records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line in {}: {e}: {l}", path.display())))
        .collect()
}

pub fn of_type<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == kind).collect()
}

/// What one run of LeakApp's alloc-bench under the agent left: its records and the agent's log.
pub struct AllocBenchRun {
    pub records: Vec<Value>,
    pub log: String,
}

/// LeakApp's alloc-bench for `seconds` on two threads under the agent (summaries every second,
/// plus `extra_env`); fails the test unless it ran to its end.
pub fn run_alloc_bench(app: &DotnetApp, seconds: u32, extra_env: &[(&str, &str)]) -> AllocBenchRun {
    let dir = tempfile::tempdir().unwrap();
    let (out, log) = (dir.path().join("out.ndjson"), dir.path().join("agent.log"));
    let mut c = app.command();
    c.args(["alloc-bench", &seconds.to_string(), "2"])
        .envs(agent_env(&out, &log, "1s"))
        .envs(extra_env.iter().copied());
    let output = run_with_timeout(c, std::time::Duration::from_secs(60 + u64::from(seconds)));
    assert!(output.status.success(), "alloc-bench under the agent: {}", String::from_utf8_lossy(&output.stderr));
    AllocBenchRun { records: read_records(&out), log: std::fs::read_to_string(&log).unwrap_or_default() }
}

/// The last `summary` record.
pub fn last_summary(records: &[Value]) -> &Value {
    of_type(records, "summary").last().copied().expect("the agent wrote no summary")
}

/// A worker started the ordinary way: none of leakscope's loader variables inherited from the
/// test's environment.
pub fn without_profiler_env(command: &mut Command) -> &mut Command {
    for var in ["CORECLR_ENABLE_PROFILING", "CORECLR_PROFILER", "CORECLR_PROFILER_PATH", "LD_PRELOAD"] {
        command.env_remove(var);
    }
    command
}

/// The summary's site rows.
pub fn sites(summary: &Value) -> &[Value] {
    summary["sites"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Estimated live bytes of `type_name` across all sites of a summary.
pub fn bytes_of_type(summary: &Value, type_name: &str) -> f64 {
    sites(summary).iter().filter(|s| s["type_name"] == type_name).map(|s| s["bytes"].as_f64().unwrap_or(0.0)).sum()
}

pub fn objects_of_type(summary: &Value, type_name: &str) -> f64 {
    sites(summary).iter().filter(|s| s["type_name"] == type_name).map(|s| s["objects"].as_f64().unwrap_or(0.0)).sum()
}

/// Waits until `path` holds at least `count` summaries (or `timeout` passes) and returns them.
pub fn wait_for_summaries(path: &Path, count: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let records = read_records_lenient(path);
        let n = records.iter().filter(|r| r["type"] == "summary").count();
        if n >= count || Instant::now() >= deadline {
            return records;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Like `read_records`, but tolerates a last line still being written.
pub fn read_records_lenient(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

pub fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether the tests run as root (CI does).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A second local user, for tests that play another user of the same host (a squatter, an
/// intruder). Created once, idempotently and safely against a concurrent creator; the tests that
/// need it fail (never skip) when it cannot be had.
#[derive(Clone, Debug)]
pub struct OtherUser {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
}

impl OtherUser {
    /// `program` to be run as this user (no supplementary groups).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--clear-groups", "--"])
            .arg(program);
        c
    }

    /// Runs a short command as this user; panics with its output unless it succeeds.
    pub fn run(&self, program: &str, args: &[&str]) {
        let mut c = self.command(program);
        c.args(args);
        let out = run_with_timeout(c, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "{program} {args:?} as {} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub fn other_user() -> OtherUser {
    const NAME: &str = "leakscope-other";
    let lookup = || -> Option<OtherUser> {
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").args([flag, NAME]).output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok().filter(|_| out.status.success())
        };
        Some(OtherUser { name: NAME, uid: id("-u")?, gid: id("-g")? })
    };
    if let Some(user) = lookup() {
        return user;
    }
    assert!(is_root(), "this test plays a second local user and must create one: run it as root (CI does)");
    let created = Command::new("useradd")
        .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", NAME])
        .output()
        .expect("run useradd");
    // Another test may have created it meanwhile: look again before calling it a failure.
    lookup()
        .unwrap_or_else(|| panic!("cannot create the test user {NAME}: {}", String::from_utf8_lossy(&created.stderr)))
}

/// A directory like `/tmp` (mode 1777: everyone may create entries, only owners remove them),
/// private to one test, to stand in for the shared temporary directory.
pub fn shared_tmp() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

/// The state `leakscope ps --json` gives the agent in `pid`.
pub fn ps_agent_state(pid: u32) -> String {
    let mut c = Command::new(cli_path());
    c.args(["ps", "--json"]);
    let out = run_with_timeout(c, Duration::from_secs(60));
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).expect("ps --json");
    listed
        .iter()
        .find(|p| p["pid"] == pid)
        .map(|p| p["agent"].as_str().unwrap_or("?").to_string())
        .unwrap_or_else(|| "not listed".to_string())
}

/// Polls `ps` until the agent in `pid` is in `state`; returns how long it took, or panics with
/// the last state seen.
pub fn wait_for_agent_state(pid: u32, state: &str, timeout: Duration) -> Duration {
    let started = Instant::now();
    // Every change of state with when it was seen, so a failure says what happened on the way.
    let mut seen: Vec<(String, Duration)> = Vec::new();
    loop {
        let now = ps_agent_state(pid);
        if now == state {
            return started.elapsed();
        }
        if seen.last().is_none_or(|(last, _)| *last != now) {
            seen.push((now.clone(), started.elapsed()));
        }
        if started.elapsed() >= timeout {
            let history: Vec<String> = seen.iter().map(|(s, at)| format!("{s} at {:.1}s", at.as_secs_f64())).collect();
            panic!("the agent in {pid} is {now:?}, not {state:?}, after {timeout:?} (seen: {})", history.join(", "));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Whether the agent's own thread runs in `pid` (it ends when the agent detaches).
pub fn agent_thread_running(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks
        .flatten()
        .any(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == "leakscope-agent"))
}
/// Compiles `integration-tests/native/<name>.c` with `compiler` (`cc`, `musl-gcc`) into `dir`.
/// Fails (never skips) when the compiler is missing, saying how to get it.
pub fn compile_c(name: &str, compiler: &str, dir: &Path) -> PathBuf {
    let out = dir
        .join(format!("{name}-{}", Path::new(compiler).file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    let source = workspace_root().join("integration-tests/native").join(format!("{name}.c"));
    let result = Command::new(compiler)
        .args(["-O1", "-g", "-fno-omit-frame-pointer", "-Wall", "-pthread"])
        .arg(&source)
        .arg("-o")
        .arg(&out)
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {compiler} ({e}): install it with `scripts/setup.sh --with-test-tools` (musl-gcc comes with musl-tools)")
        });
    assert!(
        result.status.success(),
        "compiling {name}.c with {compiler} failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

/// A collector's end of a Unix socket: accepts producers, and keeps every line they send, in
/// order, with the connection it came from (so commands can be sent back).
pub struct Collector {
    pub socket: PathBuf,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<Value>,
    connections: std::sync::Arc<Mutex<Vec<std::os::unix::net::UnixStream>>>,
}

impl Collector {
    /// Listens at `socket` (in a directory of the test's own).
    pub fn listen(socket: &Path) -> Collector {
        let listener = std::os::unix::net::UnixListener::bind(socket).expect("bind the test collector's socket");
        let (tx, lines) = std::sync::mpsc::channel();
        let connections = std::sync::Arc::new(Mutex::new(Vec::new()));
        let kept = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                if let Ok(writer) = stream.try_clone() {
                    kept.lock().unwrap_or_else(|e| e.into_inner()).push(writer);
                }
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Collector { socket: socket.to_path_buf(), lines, seen: Vec::new(), connections }
    }

    /// Waits until a record satisfies `wanted` (or fails after `timeout`), and returns it.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(found) = self.seen.iter().find(|r| wanted(r)) {
            return found.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let record: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {e}: {line}"));
                    self.seen.push(record.clone());
                    if wanted(&record) {
                        return record;
                    }
                }
                Err(_) => panic!("no {what} within {timeout:?}; records so far:\n{}", self.dump()),
            }
        }
    }

    /// Every record received so far (waiting `settle` for stragglers first).
    pub fn records(&mut self, settle: Duration) -> &[Value] {
        let deadline = Instant::now() + settle;
        while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if let Ok(record) = serde_json::from_str(&line) {
                self.seen.push(record);
            }
        }
        &self.seen
    }

    /// The `message` of every `status` record received so far.
    pub fn statuses(&mut self, settle: Duration) -> Vec<String> {
        self.records(settle)
            .iter()
            .filter(|r| r["type"] == "status")
            .filter_map(|r| r["message"].as_str().map(String::from))
            .collect()
    }

    /// Sends a command line to every connected producer.
    pub fn send(&self, command: &Value) {
        use std::io::Write;
        for stream in self.connections.lock().unwrap_or_else(|e| e.into_inner()).iter_mut() {
            let _ = writeln!(stream, "{command}");
        }
    }

    fn dump(&self) -> String {
        self.seen.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("\n")
    }
}
