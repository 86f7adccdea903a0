//! Launching the target with the agent (and shim) enabled, and stopping it in order.

use crate::error::{CliError, EXIT_FAILURE};
use crate::locate::AGENT_CLSID;
use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// After SIGINT, how long the target gets to shut down (a .NET host drains its workers).
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(10);
/// After SIGTERM, how long before SIGKILL.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(5);

/// Where producers send their lines.
#[derive(Debug, Clone)]
pub enum Channel {
    Socket(PathBuf),
    Output(PathBuf),
}

/// The environment that turns the agent (and shim) on, in the order it is documented.
/// `ld_preload_tail` is appended after the shim (an existing LD_PRELOAD is kept, after ours).
pub fn profiler_env(
    agent: &Path,
    shim: Option<&Path>,
    channel: &Channel,
    interval: Duration,
    ld_preload_tail: Option<&str>,
) -> Vec<(String, String)> {
    let mut vars = vec![
        ("CORECLR_ENABLE_PROFILING".to_string(), "1".to_string()),
        ("CORECLR_PROFILER".to_string(), AGENT_CLSID.to_string()),
        ("CORECLR_PROFILER_PATH".to_string(), agent.display().to_string()),
    ];
    match channel {
        Channel::Socket(p) => vars.push(("LEAKSCOPE_SOCKET".to_string(), p.display().to_string())),
        Channel::Output(p) => vars.push(("LEAKSCOPE_OUTPUT".to_string(), p.display().to_string())),
    }
    vars.push(("LEAKSCOPE_INTERVAL".to_string(), format!("{}ms", interval.as_millis().max(1))));
    if let Some(shim) = shim {
        let mut preload = shim.display().to_string();
        if let Some(tail) = ld_preload_tail.filter(|t| !t.trim().is_empty()) {
            preload.push(':');
            preload.push_str(tail);
        }
        vars.push(("LD_PRELOAD".to_string(), preload));
        // Lets the shim symbolize JIT-compiled frames through /tmp/perf-PID.map.
        vars.push(("DOTNET_PerfMapEnabled".to_string(), "3".to_string()));
    }
    vars
}

/// Inherited variables that would make the runtime load a different library than ours:
/// CoreCLR checks the architecture-specific paths before CORECLR_PROFILER_PATH.
pub const CONFLICTING_VARS: &[&str] = &[
    "CORECLR_PROFILER_PATH_64",
    "CORECLR_PROFILER_PATH_32",
    "CORECLR_PROFILER_PATH_ARM64",
    "CORECLR_PROFILER_PATH_ARM32",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// The exit code leakscope passes on: the child's, or 128 + signal like a shell.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            _ => EXIT_FAILURE,
        }
    }

    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by {}", crate::signals::name(s)),
            _ => "unknown exit status".to_string(),
        }
    }
}

pub struct ChildSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub env_remove: Vec<String>,
    /// Redirect stdout/stderr to these files (see `files::Dir::create_file`); `None` inherits.
    pub stdout_log: Option<File>,
    pub stderr_log: Option<File>,
    /// Give the child /dev/null as stdin.
    pub stdin_null: bool,
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    Running,
    Interrupted(Instant),
    Terminated(Instant),
    Killed,
}

pub struct Child {
    child: std::process::Child,
    pub pid: u32,
    pub started: Instant,
    stage: Stage,
    pub stop_reason: Option<String>,
    exit: Option<ExitInfo>,
}

pub fn spawn(spec: ChildSpec) -> Result<Child, CliError> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(CliError::usage("no command given")
            .hint("put the command after `--`, e.g. `leakscope run -- dotnet Worker.dll`"));
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    for name in &spec.env_remove {
        cmd.env_remove(name);
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    if let Some(f) = spec.stdout_log {
        cmd.stdout(Stdio::from(f));
    }
    if let Some(f) = spec.stderr_log {
        cmd.stderr(Stdio::from(f));
    }
    if spec.stdin_null {
        cmd.stdin(Stdio::null());
    }
    // Its own process group: Ctrl-C reaches leakscope only, which then stops the whole group in
    // order (a `dotnet run` or a shell wrapper passes it on to the real worker).
    cmd.process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, sigaction
    // and sigprocmask, which are async-signal-safe. If leakscope dies, the child gets SIGTERM
    // instead of running on unseen.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
            restore_stop_signals()
        });
    }
    let child = cmd.spawn().map_err(|e| {
        let (code, hint) = match e.kind() {
            std::io::ErrorKind::NotFound => (127, format!("is `{program}` installed and on PATH?")),
            std::io::ErrorKind::PermissionDenied => (126, format!("is `{program}` executable?")),
            _ => (EXIT_FAILURE, "check the command".to_string()),
        };
        CliError::new(format!("cannot start `{program}`: {e}")).hint(hint).with_code(code)
    })?;
    Ok(Child { pid: child.id(), child, started: Instant::now(), stage: Stage::Running, stop_reason: None, exit: None })
}

/// The signals leakscope stops the target with (SIGINT, then SIGTERM) get their default
/// disposition and are unblocked, whatever leakscope inherited: a background job of a
/// non-interactive shell (`bash -c '… &'`) starts with SIGINT ignored, and an ignored signal
/// stays ignored across exec, so the worker would sit out the whole grace period. Called in the
/// forked child before exec: only async-signal-safe calls.
fn restore_stop_signals() -> std::io::Result<()> {
    // SAFETY: `sa` and `set` are fully initialised (zeroed, then emptied) before use; sigaction
    // and sigprocmask only read them, and are async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut sa.sa_mask);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM] {
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::sigaddset(&mut set, sig);
        }
        if libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Child {
    pub fn try_wait(&mut self) -> Option<ExitInfo> {
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(ExitInfo { code: status.code(), signal: status.signal() });
            }
        }
        self.exit
    }

    pub fn stopping(&self) -> bool {
        !matches!(self.stage, Stage::Running)
    }

    /// Starts the orderly stop: SIGINT now, SIGTERM and SIGKILL later if needed.
    pub fn request_stop(&mut self, reason: &str) {
        if let Stage::Running = self.stage {
            self.stop_reason = Some(reason.to_string());
            self.signal_group(libc::SIGINT);
            self.stage = Stage::Interrupted(Instant::now());
        }
    }

    /// Skips the current grace period (a second Ctrl-C).
    pub fn escalate(&mut self) {
        match self.stage {
            Stage::Running => self.request_stop("stop requested"),
            Stage::Interrupted(_) => {
                self.signal_group(libc::SIGTERM);
                self.stage = Stage::Terminated(Instant::now());
            }
            Stage::Terminated(_) | Stage::Killed => {
                self.signal_group(libc::SIGKILL);
                self.stage = Stage::Killed;
            }
        }
    }

    /// Advances the stop sequence when a grace period has run out.
    pub fn tick(&mut self) {
        if self.exit.is_some() {
            return;
        }
        match self.stage {
            Stage::Interrupted(at) if at.elapsed() >= INTERRUPT_GRACE => {
                self.signal_group(libc::SIGTERM);
                self.stage = Stage::Terminated(Instant::now());
            }
            Stage::Terminated(at) if at.elapsed() >= TERMINATE_GRACE => {
                self.signal_group(libc::SIGKILL);
                self.stage = Stage::Killed;
            }
            _ => {}
        }
    }

    /// One line for the live view while stopping.
    pub fn stop_status(&self) -> Option<String> {
        let reason = self.stop_reason.as_deref().unwrap_or("stopping");
        match self.stage {
            Stage::Running => None,
            Stage::Interrupted(at) => Some(format!(
                "{reason}: sent SIGINT {}s ago, SIGTERM in {}s (Ctrl-C again to skip)",
                at.elapsed().as_secs(),
                INTERRUPT_GRACE.saturating_sub(at.elapsed()).as_secs()
            )),
            Stage::Terminated(at) => Some(format!(
                "{reason}: sent SIGTERM {}s ago, SIGKILL in {}s (Ctrl-C again to skip)",
                at.elapsed().as_secs(),
                TERMINATE_GRACE.saturating_sub(at.elapsed()).as_secs()
            )),
            Stage::Killed => Some(format!("{reason}: sent SIGKILL")),
        }
    }

    fn signal_group(&self, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions; a negative pid addresses the process
        // group the child leads (we created it with process_group(0)). ESRCH (already gone) is fine.
        unsafe {
            if libc::kill(-(self.pid as libc::pid_t), sig) != 0 {
                libc::kill(self.pid as libc::pid_t, sig);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_has_every_variable_and_keeps_an_existing_preload_after_ours() {
        let env = profiler_env(
            Path::new("/opt/ls/libleakscope_agent.so"),
            Some(Path::new("/opt/ls/libleakscope_shim.so")),
            &Channel::Socket(PathBuf::from("/run/x.sock")),
            Duration::from_secs(5),
            Some("/usr/lib/libjemalloc.so"),
        );
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CORECLR_ENABLE_PROFILING"), Some("1"));
        assert_eq!(get("CORECLR_PROFILER"), Some("{E3F826A5-7C38-4392-A672-1BB85AF76D18}"));
        assert_eq!(get("CORECLR_PROFILER_PATH"), Some("/opt/ls/libleakscope_agent.so"));
        assert_eq!(get("LEAKSCOPE_SOCKET"), Some("/run/x.sock"));
        assert_eq!(get("LEAKSCOPE_INTERVAL"), Some("5000ms"));
        assert_eq!(get("LD_PRELOAD"), Some("/opt/ls/libleakscope_shim.so:/usr/lib/libjemalloc.so"));
        assert_eq!(get("DOTNET_PerfMapEnabled"), Some("3"));
    }

    #[test]
    fn without_the_shim_there_is_no_preload_and_no_perf_map() {
        let env = profiler_env(
            Path::new("/a.so"),
            None,
            &Channel::Output(PathBuf::from("/var/log/x.ndjson")),
            Duration::from_millis(1500),
            Some("/keep.so"),
        );
        assert!(env.iter().all(|(k, _)| k != "LD_PRELOAD" && k != "DOTNET_PerfMapEnabled"));
        assert!(env.iter().any(|(k, v)| k == "LEAKSCOPE_OUTPUT" && v == "/var/log/x.ndjson"));
        assert!(env.iter().any(|(k, v)| k == "LEAKSCOPE_INTERVAL" && v == "1500ms"));
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(ExitInfo { code: Some(3), signal: None }.shell_code(), 3);
        assert_eq!(ExitInfo { code: None, signal: Some(9) }.shell_code(), 137);
        assert_eq!(ExitInfo { code: None, signal: Some(2) }.describe(), "killed by SIGINT");
    }

    #[test]
    fn a_missing_command_exits_127_with_a_hint() {
        let spec = ChildSpec {
            argv: vec!["/nonexistent/leakscope-test-cmd".into()],
            env: vec![],
            env_remove: vec![],
            stdout_log: None,
            stderr_log: None,
            stdin_null: true,
        };
        let err = spawn(spec).err().unwrap();
        assert_eq!(err.exit_code, 127);
    }

    /// Tests that change this process's signal dispositions, and tests whose children must not
    /// inherit such a change, run one at a time.
    static SIGNALS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// The `SigIgn`/`SigBlk` masks of /proc/PID/status, as bit sets (bit n-1: signal n).
    fn ignored_and_blocked(status: &str) -> (u64, u64) {
        let mask = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
                .unwrap()
        };
        (mask("SigIgn:"), mask("SigBlk:"))
    }

    #[test]
    fn the_child_gets_default_stop_signals_even_when_leakscope_ignores_them() {
        let _one = SIGNALS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("status");
        let ignore = |sig: libc::c_int, how: libc::sighandler_t| {
            // SAFETY: a zeroed sigaction with an empty mask and SIG_IGN/SIG_DFL as the handler.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = how;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        };
        // As in a background job of `bash -c '… &'` (SIGINT), and under nohup-like wrappers.
        ignore(libc::SIGINT, libc::SIG_IGN);
        ignore(libc::SIGTERM, libc::SIG_IGN);
        let spec = ChildSpec {
            argv: vec!["cat".into(), "/proc/self/status".into()],
            env: vec![],
            env_remove: vec![],
            stdout_log: Some(std::fs::File::create(&out).unwrap()),
            stderr_log: None,
            stdin_null: true,
        };
        let spawned = spawn(spec);
        ignore(libc::SIGINT, libc::SIG_DFL);
        ignore(libc::SIGTERM, libc::SIG_DFL);
        let mut child = spawned.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().is_none() {
            assert!(Instant::now() < deadline, "cat did not finish");
            std::thread::sleep(Duration::from_millis(20));
        }
        let (ignored, blocked) = ignored_and_blocked(&std::fs::read_to_string(&out).unwrap());
        for sig in [libc::SIGINT, libc::SIGTERM] {
            let bit = 1u64 << (sig - 1);
            assert_eq!(ignored & bit, 0, "signal {sig} is ignored in the child: SigIgn {ignored:x}");
            assert_eq!(blocked & bit, 0, "signal {sig} is blocked in the child: SigBlk {blocked:x}");
        }
    }

    #[test]
    fn a_child_that_ignores_sigint_is_stopped_with_sigterm_on_escalation() {
        let _one = SIGNALS.lock().unwrap_or_else(|e| e.into_inner());
        let spec = ChildSpec {
            argv: vec!["sh".into(), "-c".into(), "trap '' INT; sleep 30".into()],
            env: vec![],
            env_remove: vec![],
            stdout_log: None,
            stderr_log: None,
            stdin_null: true,
        };
        let mut child = spawn(spec).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        child.request_stop("test");
        std::thread::sleep(Duration::from_millis(300));
        assert!(child.try_wait().is_none(), "SIGINT is ignored by this child");
        child.escalate();
        let deadline = Instant::now() + Duration::from_secs(5);
        let exit = loop {
            if let Some(e) = child.try_wait() {
                break e;
            }
            assert!(Instant::now() < deadline, "child did not stop");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(exit.signal, Some(libc::SIGTERM));
        assert_eq!(exit.shell_code(), 143);
    }
}
