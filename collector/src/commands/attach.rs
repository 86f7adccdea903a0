//! `leakscope attach PID` and `leakscope detach PID`: profile a .NET process that is already
//! running, through the runtime's diagnostics socket, with no restart.
//!
//! `attach` listens on a private socket the target can reach, asks the runtime to load the agent
//! (AttachProfiler, with the agent's settings as client data: the target's environment predates
//! us), then shows and records exactly what `run` would. Ctrl-C or `--duration` sends the agent
//! `{"cmd":"detach"}`: it stops, releases what it holds and asks the runtime to unload it, and the
//! process runs on. What only works from process start (native tracking through `LD_PRELOAD`) is
//! said in the output and the report.
//!
//! Containers: a target in another mount namespace sees its own `/tmp`. Its diagnostics socket is
//! found through `/proc/PID/root`, and the socket the agent reports to is placed in the target's
//! own temporary directory through the same path (with a copy of the agent when the target cannot
//! see ours), so the paths handed to the runtime resolve inside the container.

use crate::cli::{AttachArgs, DetachArgs};
use crate::commands::{print_stderr, ps};
use crate::diagnostics_ipc::{self, IpcError};
use crate::error::{CliError, CliResult};
use crate::ingest::{self, Recorder, Replies};
use crate::live::{Level, ViewMode};
use crate::locate::{self, Library};
use crate::protocol::Source;
use crate::report::{NativeTracking, SessionInfo};
use crate::session::Session;
use crate::signals;
use crate::terminal;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the runtime may take to load and initialise the agent.
const ATTACH_TIMEOUT_MS: u32 = 10_000;
/// After asking the agent to detach, how long to wait for its last summary and `bye`.
const DETACH_WAIT: Duration = Duration::from_secs(10);
/// Without any summary this long after attaching, say so.
const QUIET_WARNING: Duration = Duration::from_secs(15);

const RESTART_NOTE: &str = "attached to a running process: native memory tracking needs the shim \
    preloaded at start (LD_PRELOAD), so only managed memory is tracked; restart the worker under \
    `leakscope run` (or with `leakscope env`'s variables) to see native memory too";

/// The agent loaded into a running process and reporting to a socket of ours.
pub struct Attachment {
    pub place: Place,
    pub diag_socket: PathBuf,
    pub replies: Replies,
    pub events: std::sync::mpsc::Receiver<ingest::Event>,
}

/// Checks `pid`, makes a place it can reach, starts listening there, and asks its runtime to load
/// the agent with `settings` (KEY=VALUE lines) on top of the socket, interval and log.
pub fn load_agent(pid: u32, agent: Option<&Path>, interval: Duration, settings: &str) -> CliResult<Attachment> {
    check_target(pid)?;
    let diag_socket = diagnostics_ipc::find_socket(pid).ok_or_else(|| {
        CliError::usage(format!("process {pid} has no .NET diagnostics socket"))
            .hint("the runtime opens one unless DOTNET_EnableDiagnostics=0 (or DOTNET_EnableDiagnostics_IPC=0) is set")
            .hint("a process in another container must have its /tmp reachable through /proc/PID/root")
    })?;
    let agent = locate::find_library(Library::Agent, agent).map_err(|nf| nf.into_error())?;
    let place = Place::prepare(pid, &agent)?;
    let listener = UnixListener::bind(&place.host_socket)
        .map_err(|e| CliError::io(format!("cannot listen on {}", place.host_socket.display()), e))?;
    place.hand_over_to_target(pid);
    let (tx, events) = ingest::channel();
    let replies = ingest::serve(listener, tx);
    let settings = format!(
        "LEAKSCOPE_SOCKET={}\nLEAKSCOPE_INTERVAL={}ms\nLEAKSCOPE_LOG={}\n{settings}",
        place.target_socket,
        interval.as_millis(),
        place.target_log
    );
    let clsid = diagnostics_ipc::guid_bytes(locate::AGENT_CLSID).expect("the agent's CLSID parses");
    diagnostics_ipc::attach_profiler(&diag_socket, clsid, &place.target_agent, settings.as_bytes(), ATTACH_TIMEOUT_MS)
        .map_err(|e| attach_error(pid, e, &place))?;
    Ok(Attachment { place, diag_socket, replies, events })
}

pub fn attach(args: AttachArgs) -> CliResult<i32> {
    let pid = args.pid;
    let settings = args.gc_every.map(|every| format!("LEAKSCOPE_INDUCE_FULL_GC={}ms\n", every.as_millis())).unwrap_or_default();
    // The output directory comes after the checks, so a refused attach leaves nothing behind.
    let Attachment { place, diag_socket, replies, events: rx } = load_agent(pid, args.agent.as_deref(), args.interval, &settings)?;
    let (out_dir, out_note) = locate::create_out_dir(args.out.as_deref(), "leakscope-attach")?;
    let recording = out_dir.join("recording.ndjson");
    let recorder = Recorder::create(&recording)
        .map_err(|e| CliError::io(format!("cannot create {}", recording.display()), e))?;

    let _state = AttachState::write(pid, &place.host_socket, &out_dir);
    let mut info = SessionInfo::new("attach");
    info.command = Some(vec![format!("attach {pid}"), ps::describe(pid).command_line]);
    info.interval_ms = Some(args.interval.as_millis() as u64);
    info.native_tracking = Some(NativeTracking { enabled: false, reason: Some(RESTART_NOTE.into()) });
    info.note("info", RESTART_NOTE);
    if let Some(n) = out_note {
        info.note("warn", n);
    }
    let live = !args.plain && terminal::stdout_is_tty() && terminal::stderr_is_tty();
    let mode = if live { ViewMode::Live } else { ViewMode::Plain };
    signals::install();
    print_stderr(&format!(
        "leakscope: attached to pid {pid} ({}), writing to {} — Ctrl-C to detach; the process keeps running\n",
        diag_socket.display(),
        out_dir.display()
    ));
    let mut session = Session::new(Some(rx), Some(recorder), mode, info);
    let deadline = args.duration.map(|d| Instant::now() + d);
    // What keeps the growing types alive: asked as each is confirmed, and once more before detaching.
    let mut paths = crate::retention_asker::PathAsker::new(false);
    let ended = loop {
        session.pump(Duration::from_millis(100));
        if !Path::new(&format!("/proc/{pid}")).exists() {
            break Ending::TargetExited;
        }
        paths.tick(&mut session, &replies, &[]);
        if signals::received() > 0 {
            session.info.stopped_by = Some(signals::last_signal_name().to_string());
            paths.ask_and_wait(&mut session, &replies, &[], PATHS_WAIT, &|| signals::received() > 1);
            break Ending::Detach;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            session.info.stopped_by = Some("--duration elapsed".to_string());
            paths.ask_and_wait(&mut session, &replies, &[], PATHS_WAIT, &|| signals::received() > 0);
            break Ending::Detach;
        }
        if agent_said_bye(&session) {
            break Ending::AgentLeft;
        }
        let mut frame = session.frame_base(format!("attached to pid {pid}"), args.interval);
        frame.out_dir = Some(out_dir.display().to_string());
        if session.connections_seen == 0 && session.started.elapsed() > QUIET_WARNING {
            frame.alerts.push((Level::Warn, format!("the agent has not reported yet: see {}", place.host_log.display())));
        }
        frame.footer = "Ctrl-C: detach (the process keeps running) and write the report".to_string();
        session.view.update(&session.store, &frame);
    };
    let outcome = match ended {
        Ending::Detach => detach_now(&mut session, &replies),
        Ending::TargetExited => format!("pid {pid} exited while attached"),
        Ending::AgentLeft => format!("the agent in pid {pid} stopped on its own; see the report's messages"),
    };
    session.finish();
    session.info.note("info", outcome.clone());
    let _ = std::fs::copy(&place.host_log, out_dir.join("agent.log"));
    let report = session.write_outputs(&out_dir)?;
    print_stderr(&crate::report::render_summary(&report, Some(&out_dir)));
    print_stderr(&format!("leakscope: {outcome}\n"));
    Ok(0)
}

enum Ending {
    Detach,
    TargetExited,
    AgentLeft,
}

/// Asks the agent to detach and waits for its last summary and `bye`.
/// How long to wait, before detaching, for the agent's retention answer.
const PATHS_WAIT: Duration = Duration::from_secs(15);

pub fn detach_now(session: &mut Session, replies: &Replies) -> String {
    if replies.broadcast(r#"{"cmd":"detach"}"#) == 0 {
        return "the agent was not connected, so it could not be asked to detach; it stays loaded and retries \
                to connect (run `leakscope detach PID` to finish)"
            .to_string();
    }
    let until = Instant::now() + DETACH_WAIT;
    while Instant::now() < until && !agent_said_bye(session) {
        session.pump(Duration::from_millis(100));
    }
    if agent_said_bye(session) {
        "detached; the process keeps running".to_string()
    } else {
        format!("asked the agent to detach but heard no goodbye within {DETACH_WAIT:?}")
    }
}

pub fn agent_said_bye(session: &Session) -> bool {
    session.store.producers().any(|p| p.key.source == Source::Agent && p.bye.is_some())
}

/// Fails with exit code 2 unless `pid` is a running .NET process this user may attach to and
/// leakscope is not already in it.
fn check_target(pid: u32) -> CliResult<()> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let Ok(meta) = std::fs::metadata(&proc_dir) else {
        return Err(CliError::usage(format!("no process with pid {pid}"))
            .hint("list the .NET processes you can attach to with `leakscope ps`"));
    };
    let maps = std::fs::read_to_string(proc_dir.join("maps"));
    let foreign_user = meta.uid() != locate::uid() && locate::uid() != 0;
    match maps {
        Err(_) if foreign_user => {
            return Err(CliError::usage(format!(
                "process {pid} belongs to another user (uid {}): leakscope can only attach to processes of the same user",
                meta.uid()
            ))
            .hint("run leakscope as that user (or as root)"));
        }
        Err(e) => return Err(CliError::io(format!("cannot inspect process {pid}"), e).with_code(2)),
        Ok(maps) if !maps.contains("libcoreclr.so") => {
            return Err(CliError::usage(format!("process {pid} is not a .NET process (it has not loaded libcoreclr.so)"))
                .hint("list the .NET processes with `leakscope ps`"));
        }
        Ok(maps) if maps.contains("libleakscope_agent.so") && ps::agent_state(pid) != "idle" => {
            return Err(CliError::usage(format!(
                "leakscope's agent is already profiling process {pid} ({})",
                ps::agent_state(pid)
            ))
            .hint("if a `leakscope attach` is running for it, stop that one (Ctrl-C) or run `leakscope detach PID`")
            .hint("if the process was started with leakscope's variables, watch it with `leakscope listen` or `tail`"));
        }
        Ok(_) => {}
    }
    if foreign_user {
        return Err(CliError::usage(format!("process {pid} belongs to another user (uid {})", meta.uid()))
            .hint("run leakscope as that user (or as root)"));
    }
    Ok(())
}

fn attach_error(pid: u32, e: IpcError, place: &Place) -> CliError {
    let err = match &e {
        IpcError::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            CliError::usage(format!("not allowed to talk to process {pid}'s runtime: {io}"))
                .hint("run leakscope as the process's user (or as root)")
        }
        _ => CliError::new(format!("the runtime of process {pid} did not load the agent: {e}")).with_code(2),
    };
    err.hint(format!("the agent's log, if it got that far: {}", place.host_log.display()))
}

/// Where the files the target must reach live: the socket the agent reports to, its log, and
/// (for a target with another root) a copy of the agent; each with its path seen from here and
/// from the target.
pub struct Place {
    dir: PathBuf,
    host_socket: PathBuf,
    pub host_log: PathBuf,
    target_socket: String,
    target_log: String,
    target_agent: String,
}

impl Place {
    /// Makes a private directory in the target's own temporary directory, reached from here
    /// through `/proc/PID/root` (the same place when the target shares our mounts; the
    /// container's `/tmp` when it does not). The agent is copied there too when the target cannot
    /// see it at our path.
    fn prepare(pid: u32, agent: &Path) -> CliResult<Place> {
        use std::os::unix::fs::DirBuilderExt;
        let name = format!("leakscope-attach-{pid}-{}", std::process::id());
        let target_tmp = diagnostics_ipc::target_env(pid, "TMPDIR")
            .filter(|t| t.starts_with('/'))
            .unwrap_or_else(|| "/tmp".to_string());
        let target_dir = PathBuf::from(&target_tmp).join(&name);
        let host_dir = through_target_root(pid, &target_dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&host_dir)
            .map_err(|e| CliError::io(format!("cannot create {} (the target's temporary directory)", host_dir.display()), e))?;
        let target_agent = if target_sees_same_file(pid, agent) {
            agent.display().to_string()
        } else {
            let copy = host_dir.join(locate::AGENT_FILE);
            std::fs::copy(agent, &copy)
                .map_err(|e| CliError::io(format!("cannot copy the agent into the target's filesystem ({})", copy.display()), e))?;
            target_dir.join(locate::AGENT_FILE).display().to_string()
        };
        Ok(Place {
            host_socket: host_dir.join("agent.sock"),
            host_log: host_dir.join("agent.log"),
            target_socket: target_dir.join("agent.sock").display().to_string(),
            target_log: target_dir.join("agent.log").display().to_string(),
            target_agent,
            dir: host_dir,
        })
    }

    /// As root attaching to another user's process, the private directory must be theirs for
    /// the agent (running as them) to connect and log.
    fn hand_over_to_target(&self, pid: u32) {
        let Ok(meta) = std::fs::metadata(format!("/proc/{pid}")) else { return };
        if locate::uid() == 0 && meta.uid() != 0 {
            for path in [&self.dir, &self.host_socket] {
                let _ = std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()));
            }
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A path as the target sees it, reached from here.
fn through_target_root(pid: u32, target_path: &Path) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root")).join(target_path.strip_prefix("/").unwrap_or(target_path))
}

/// Whether `path` names the same file for the target as for us (no container in between).
fn target_sees_same_file(pid: u32, path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else { return false };
    match (std::fs::metadata(through_target_root(pid, &path)), std::fs::metadata(&path)) {
        (Ok(theirs), Ok(ours)) => theirs.dev() == ours.dev() && theirs.ino() == ours.ino(),
        _ => false,
    }
}

/// A note left while `attach` runs, so `detach PID` from another terminal can find it.
struct AttachState {
    path: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AttachRecord {
    cli_pid: u32,
    socket: PathBuf,
    out_dir: PathBuf,
}

impl AttachState {
    fn path_for(pid: u32) -> PathBuf {
        locate::cache_dir().join("attached").join(format!("{pid}.json"))
    }

    fn write(pid: u32, socket: &Path, out_dir: &Path) -> Option<AttachState> {
        let path = Self::path_for(pid);
        std::fs::create_dir_all(path.parent()?).ok()?;
        let record = AttachRecord { cli_pid: std::process::id(), socket: socket.to_path_buf(), out_dir: out_dir.to_path_buf() };
        std::fs::write(&path, serde_json::to_vec(&record).ok()?).ok()?;
        Some(AttachState { path })
    }

    fn read(pid: u32) -> Option<AttachRecord> {
        serde_json::from_slice(&std::fs::read(Self::path_for(pid)).ok()?).ok()
    }
}

impl Drop for AttachState {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a `leakscope attach` session of this user is attached to `pid` (its note exists).
pub fn attached_by_session(pid: u32) -> bool {
    AttachState::read(pid).is_some()
}

/// `leakscope detach PID`: ends an attach session from another terminal. If the `attach` that
/// started it is still running, it is told to stop (it detaches and writes its report); if it
/// died, this command takes its socket and tells the agent, which reconnects there, to detach.
pub fn detach(args: DetachArgs) -> CliResult<i32> {
    let pid = args.pid;
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(CliError::usage(format!("no process with pid {pid}")));
    }
    if !diagnostics_ipc::maps_contain(pid, "libleakscope_agent.so") {
        return Err(CliError::usage(format!("leakscope is not loaded in process {pid}"))
            .hint("`leakscope ps` shows where it is"));
    }
    let Some(record) = AttachState::read(pid) else {
        return Err(CliError::usage(format!("process {pid} was not attached by this user's `leakscope attach`"))
            .hint("an agent loaded at startup by leakscope's variables stays until the process exits"));
    };
    if Path::new(&format!("/proc/{}", record.cli_pid)).exists() {
        // SAFETY: kill(2) with a pid and a signal number; no memory is involved.
        unsafe { libc::kill(record.cli_pid as i32, libc::SIGINT) };
        let until = Instant::now() + DETACH_WAIT + Duration::from_secs(10);
        while Path::new(&format!("/proc/{}", record.cli_pid)).exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        print_stderr(&format!(
            "leakscope: asked the attach session (pid {}) to detach from {pid}; report in {}\n",
            record.cli_pid,
            record.out_dir.display()
        ));
        return Ok(0);
    }
    // The attach session is gone: take over its socket; the agent retries it with backoff.
    let _ = std::fs::remove_file(&record.socket);
    let listener = UnixListener::bind(&record.socket)
        .map_err(|e| CliError::io(format!("cannot listen on {}", record.socket.display()), e))?;
    let (tx, rx) = ingest::channel();
    let replies = ingest::serve(listener, tx);
    let mut session = Session::new(Some(rx), None, ViewMode::Plain, SessionInfo::new("detach"));
    let until = Instant::now() + Duration::from_secs(60);
    while session.connections_seen == 0 && Instant::now() < until {
        session.pump(Duration::from_millis(200));
    }
    if session.connections_seen == 0 {
        return Err(CliError::new(format!("the agent in {pid} did not reconnect within a minute")).with_code(2));
    }
    let outcome = detach_now(&mut session, &replies);
    let _ = std::fs::remove_file(AttachState::path_for(pid));
    print_stderr(&format!("leakscope: {outcome}\n"));
    Ok(0)
}
