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
//! own temporary directory through the same root (with a copy of the agent when the target cannot
//! see ours), so the paths handed to the runtime resolve inside the container. Every path taken
//! from the target is resolved inside its root and everything is created relative to directory
//! descriptors (`target_root.rs`): nothing is ever written outside the target's root.
//!
//! Every way out detaches: Ctrl-C, SIGTERM and SIGHUP at any phase, `--duration`, and errors after
//! the agent is loaded. A session killed outright (`kill -9`) leaves an agent with no collector:
//! `ps` calls it orphaned, and it detaches itself after `--orphan-timeout`.

use crate::attach_places::{PLACE_PREFIX, places_in, session_alive};
use crate::cli::{AttachArgs, DetachArgs};
use crate::commands::{print_stderr, ps};
use crate::diagnostics_ipc::{self, DiagSocket, IpcError};
use crate::error::{CliError, CliResult};
use crate::ingest::{self, Recorder, Replies};
use crate::live::{Level, ViewMode};
use crate::locate::{self, Library};
use crate::owner_only::Allowed;
use crate::protocol::Source;
use crate::session::Session;
use crate::session_info::{NativeTracking, SessionInfo};
use crate::signals;
use crate::target_root::Dir;
use crate::terminal;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
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
    pub pid: u32,
    pub place: Place,
    pub diag_socket: DiagSocket,
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
    let listener = crate::owner_only::bind(&place.host_socket())
        .map_err(|e| CliError::io(format!("cannot listen on {}", place.shown_socket().display()), e))?;
    place.hand_over_to_target(pid);
    let (tx, events) = ingest::channel();
    // The agent runs as the target's user: root attaching to another user's process lets that
    // user (and only that one) report here.
    let replies = ingest::serve_allowing(listener, tx, Allowed::owner_and_root().and(diag_socket.uid));
    let settings = format!(
        "LEAKSCOPE_SOCKET={}\nLEAKSCOPE_INTERVAL={}ms\nLEAKSCOPE_LOG={}\n{settings}",
        place.target_socket(),
        interval.as_millis(),
        place.target_log()
    );
    let clsid = diagnostics_ipc::guid_bytes(locate::AGENT_CLSID).expect("the agent's CLSID parses");
    diagnostics_ipc::attach_profiler(&diag_socket, clsid, &place.target_agent, settings.as_bytes(), ATTACH_TIMEOUT_MS)
        .map_err(|e| attach_error(pid, e, &place))?;
    Ok(Attachment { pid, place, diag_socket, replies, events })
}

/// Ends an attachment that cannot go on (an error after the agent was loaded): detaches it, and
/// returns `err` with what became of the agent.
pub fn abandon(attachment: Attachment, err: CliError) -> CliError {
    let Attachment { pid, replies, events, .. } = attachment;
    let mut session = Session::new(Some(events), None, ViewMode::Quiet, SessionInfo::new("attach"));
    let outcome = detach_now(&mut session, &replies, pid);
    err.hint(format!("the agent in {pid}: {outcome}"))
}

pub fn attach(args: AttachArgs) -> CliResult<i32> {
    // First of all: a Ctrl-C while the runtime loads the agent is seen afterwards, and detaches.
    signals::install();
    let pid = args.pid;
    let mut settings = format!("LEAKSCOPE_ORPHAN_TIMEOUT={}ms\n", args.orphan_timeout.as_millis());
    if let Some(every) = args.gc_every {
        settings.push_str(&format!("LEAKSCOPE_INDUCE_FULL_GC={}ms\n", every.as_millis()));
    }
    // The output directory comes after the checks, so a refused attach leaves nothing behind.
    let attachment = load_agent(pid, args.agent.as_deref(), args.interval, &settings)?;
    let (out, out_note) = match locate::create_out_dir(args.out.as_deref(), "leakscope-attach") {
        Ok(output) => output,
        Err(e) => return Err(abandon(attachment, e)),
    };
    let Attachment { place, diag_socket, replies, events: rx, .. } = attachment;
    let out_dir = out.path().to_path_buf();
    let recorder = out.create_file("recording.ndjson");

    let _state = AttachState::write(pid, &place.target_dir, &out_dir);
    let mut info = SessionInfo::new("attach");
    info.command = Some(vec![format!("attach {pid}"), ps::describe(pid).command_line]);
    info.interval_ms = Some(args.interval.as_millis() as u64);
    info.native_tracking = Some(NativeTracking { enabled: false, reason: Some(RESTART_NOTE.into()) });
    info.note("info", RESTART_NOTE);
    if let Some(n) = out_note {
        info.note("warn", n);
    }
    let recorder = match recorder {
        Ok(f) => Some(Recorder::new(f, out.join("recording.ndjson"))),
        Err(e) => {
            info.note("error", format!("not recording: {e}"));
            None
        }
    };
    let live = !args.plain && terminal::stdout_is_tty() && terminal::stderr_is_tty();
    let mode = if live { ViewMode::Live } else { ViewMode::Plain };
    print_stderr(&format!(
        "leakscope: attached to pid {pid} ({}), writing to {} — Ctrl-C to detach; the process keeps running\n",
        diag_socket.shown().display(),
        out_dir.display()
    ));
    let mut session = Session::new(Some(rx), recorder, mode, info);
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
            frame
                .alerts
                .push((Level::Warn, format!("the agent has not reported yet: see {}", place.shown_log().display())));
        }
        frame.footer = "Ctrl-C: detach (the process keeps running) and write the report".to_string();
        session.view.update(&session.store, &frame);
    };
    let outcome = match ended {
        Ending::Detach => detach_now(&mut session, &replies, pid),
        Ending::TargetExited => format!("pid {pid} exited while attached"),
        Ending::AgentLeft => format!("the agent in pid {pid} stopped on its own; see the report's messages"),
    };
    session.finish();
    session.info.note("info", outcome.clone());
    place.copy_log(&out, MAX_LOG_COPY);
    let (report, written) = session.write_outputs(&out);
    let shown_dir = written.has("report.txt").then_some(out_dir.as_path());
    print_stderr(&crate::report::render_summary(&report, shown_dir));
    print_stderr(&written.render_failures());
    print_stderr(&format!("leakscope: {outcome}\n"));
    Ok(0)
}

/// The agent's log copied beside the report: its warnings, not a flood.
const MAX_LOG_COPY: u64 = 16 << 20;

enum Ending {
    Detach,
    TargetExited,
    AgentLeft,
}

/// How long to wait, before detaching, for the agent's retention answer.
const PATHS_WAIT: Duration = Duration::from_secs(15);

/// How long a detach waits for an agent that has not connected yet (a Ctrl-C right after the
/// attach), so it can still be told.
const DETACH_CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Asks the agent to detach and waits for its last summary and `bye`. A further signal (a second
/// Ctrl-C) cuts the waits short.
pub fn detach_now(session: &mut Session, replies: &Replies, pid: u32) -> String {
    let signals_before = signals::received();
    let hurry = || signals::received() > signals_before;
    let alive = || Path::new(&format!("/proc/{pid}")).exists();
    let until = Instant::now() + DETACH_CONNECT_WAIT;
    while session.open_connections == 0 && Instant::now() < until && alive() && !hurry() {
        session.pump(Duration::from_millis(100));
    }
    if replies.broadcast(r#"{"cmd":"detach"}"#) == 0 {
        return format!(
            "the agent was not connected, so it could not be asked to detach; it detaches itself once it has been \
             without a collector for its orphan timeout (60 s unless --orphan-timeout said otherwise), or run \
             `leakscope detach {pid}`"
        );
    }
    let until = Instant::now() + DETACH_WAIT;
    while Instant::now() < until && !agent_said_bye(session) && !hurry() {
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
            return Err(CliError::usage(format!(
                "process {pid} is not a .NET process (it has not loaded libcoreclr.so)"
            ))
            .hint("list the .NET processes with `leakscope ps`"));
        }
        Ok(maps) if maps.contains("libleakscope_agent.so") && ps::agent_state(pid) == "orphaned" => {
            return Err(CliError::usage(format!(
                "leakscope's agent in process {pid} is orphaned: the session that attached it is gone"
            ))
            .hint("it detaches itself once it has been without a collector for its orphan timeout (60 s unless `attach --orphan-timeout` said otherwise); try again then")
            .hint(format!("or end it now with `leakscope detach {pid}` (as the user who attached it)")));
        }
        Ok(maps) if maps.contains("libleakscope_agent.so") && ps::agent_state(pid) != "idle" => {
            return Err(CliError::usage(format!(
                "leakscope's agent is already profiling process {pid} ({})",
                ps::agent_state(pid)
            ))
            .hint("if a `leakscope attach` is running for it, stop that one (Ctrl-C) or run `leakscope detach PID`")
            .hint(
                "if the process was started with leakscope's variables, watch it with `leakscope listen` or `tail`",
            ));
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
        IpcError::Refused(_) => CliError::usage(format!("not attaching to process {pid}: {e}"))
            .hint("another process may have put a socket of its own where the runtime's should be"),
        _ => CliError::new(format!("the runtime of process {pid} did not load the agent: {e}")).with_code(2),
    };
    err.hint(format!("the agent's log, if it got that far: {}", place.shown_log().display()))
}

/// Where the files the target must reach live, in its own temporary directory: the socket the
/// agent reports to, its log, and (for a target with another root) a copy of the agent. Held as
/// directory descriptors resolved inside the target's root; paths as the target sees them are
/// what the runtime is given.
pub struct Place {
    /// The target's temporary directory, and our private directory in it.
    tmp: Dir,
    name: String,
    dir: Dir,
    /// Our directory, the socket's and the agent's paths as the target sees them.
    target_dir: String,
    target_agent: String,
}

impl Place {
    /// Makes a private directory (0700) in the target's own temporary directory (its `TMPDIR`,
    /// else `/tmp`, resolved inside its root: the container's `/tmp` when it has one). The
    /// agent is copied there too when the target cannot see it at our path.
    fn prepare(pid: u32, agent: &Path) -> CliResult<Place> {
        let root = Dir::root_of(pid)
            .map_err(|e| CliError::io(format!("cannot reach process {pid}'s filesystem (/proc/{pid}/root)"), e))?;
        let (tmp, target_tmp) = target_tmp(&root, pid)
            .map_err(|e| CliError::io(format!("cannot find process {pid}'s temporary directory"), e))?;
        remove_stale_places(&tmp, pid);
        let name = format!("{PLACE_PREFIX}{pid}-{}", std::process::id());
        let dir = tmp.create_dir(&name, 0o700).map_err(|e| {
            CliError::io(
                format!("cannot create {} (the target's temporary directory)", tmp.shown().join(&name).display()),
                e,
            )
        })?;
        let target_dir = format!("{}/{name}", target_tmp.trim_end_matches('/'));
        let mut place = Place { tmp, name, dir, target_agent: agent.display().to_string(), target_dir };
        if !target_sees_same_file(&root, agent) {
            let copied = File::open(agent).and_then(|mut from| {
                let mut to = place.dir.create_file(locate::AGENT_FILE, 0o755)?;
                std::io::copy(&mut from, &mut to)
            });
            copied.map_err(|e| {
                CliError::io(
                    format!(
                        "cannot copy the agent into the target's filesystem ({})",
                        place.dir.shown().join(locate::AGENT_FILE).display()
                    ),
                    e,
                )
            })?;
            place.target_agent = format!("{}/{}", place.target_dir, locate::AGENT_FILE);
        }
        Ok(place)
    }

    /// The socket, for binding it (valid while `self` lives).
    pub fn host_socket(&self) -> PathBuf {
        self.dir.entry("agent.sock")
    }

    pub fn shown_socket(&self) -> PathBuf {
        self.dir.shown().join("agent.sock")
    }

    pub fn shown_log(&self) -> PathBuf {
        self.dir.shown().join("agent.log")
    }

    fn target_socket(&self) -> String {
        format!("{}/agent.sock", self.target_dir)
    }

    fn target_log(&self) -> String {
        format!("{}/agent.log", self.target_dir)
    }

    /// Copies the agent's log out (never through a symlink, never blocking on a FIFO: the
    /// directory is the target's once handed over).
    pub fn copy_log(&self, out: &crate::files::Dir, max: u64) {
        use std::io::Read;
        let mut log = Vec::new();
        let Ok(from) = self.dir.open_file("agent.log") else { return };
        if from.take(max).read_to_end(&mut log).is_ok() {
            let _ = out.write_file("agent.log", &log);
        }
    }

    /// As root attaching to another user's process, the private directory must be theirs for
    /// the agent (running as them) to connect and log. The socket first, while the directory is
    /// still ours alone, so nothing can be swapped in its place.
    fn hand_over_to_target(&self, pid: u32) {
        let Ok(meta) = std::fs::metadata(format!("/proc/{pid}")) else { return };
        if crate::owner_only::euid() == 0 && meta.uid() != 0 {
            let _ = self.dir.chown_entry("agent.sock", meta.uid(), meta.gid());
            let _ = self.dir.chown(meta.uid(), meta.gid());
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let _ = self.tmp.remove_tree(&self.name);
    }
}

/// The target's temporary directory resolved inside its root, and its path as the target sees
/// it: its `TMPDIR` when that resolves to a directory there, else `/tmp`.
fn target_tmp(root: &Dir, pid: u32) -> std::io::Result<(Dir, String)> {
    if let Some(tmp) = diagnostics_ipc::target_env(pid, "TMPDIR").filter(|t| t.starts_with('/')) {
        if let Ok(dir) = root.resolve_dir(&tmp) {
            return Ok((dir, tmp));
        }
    }
    Ok((root.resolve_dir("/tmp")?, "/tmp".to_string()))
}

/// The places of earlier sessions for `pid` whose `leakscope` is gone (killed before it could
/// clean up): removed, so they do not pile up.
fn remove_stale_places(tmp: &Dir, pid: u32) {
    for (name, cli) in places_in(tmp, pid) {
        let is_dir = tmp.entry_metadata(&name).is_ok_and(|m| m.file_type().is_dir());
        if is_dir && !session_alive(cli) {
            let _ = tmp.remove_tree(&name);
        }
    }
}

/// Whether `path` names the same file for the target as for us (no container in between).
fn target_sees_same_file(root: &Dir, path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else { return false };
    match (root.resolve_metadata(&path.display().to_string()), std::fs::metadata(&path)) {
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
    /// The session's private directory, as the target sees it (resolved again in its root).
    target_dir: String,
    out_dir: PathBuf,
}

impl AttachState {
    fn path_for(pid: u32) -> PathBuf {
        locate::cache_dir().join("attached").join(format!("{pid}.json"))
    }

    fn write(pid: u32, target_dir: &str, out_dir: &Path) -> Option<AttachState> {
        // In the user's private cache (0700, never through a link), as 0600 files.
        let dir = crate::files::Dir::private(&locate::cache_dir()).ok()?.private_subdir("attached").ok()?;
        let record = AttachRecord {
            cli_pid: std::process::id(),
            target_dir: target_dir.to_string(),
            out_dir: out_dir.to_path_buf(),
        };
        let path = dir.write_file(&format!("{pid}.json"), &serde_json::to_vec(&record).ok()?).ok()?;
        Some(AttachState { path })
    }

    fn read(pid: u32) -> Option<AttachRecord> {
        serde_json::from_slice(&crate::files::read_regular_nofollow(&Self::path_for(pid), 1 << 20).ok()?).ok()
    }
}

impl Drop for AttachState {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
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
    if ps::agent_state(pid) == "idle" {
        let _ = std::fs::remove_file(AttachState::path_for(pid));
        return Err(CliError::usage(format!(
            "leakscope's agent in process {pid} is not active any more: it has detached already"
        ))
        .hint("an agent whose session died detaches itself after its orphan timeout"));
    }
    if session_alive(record.cli_pid) {
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
    // The attach session is gone: take over its socket (resolved again inside the target's
    // root); the agent retries it with backoff.
    let dir = Dir::root_of(pid)
        .and_then(|root| root.resolve_dir(&record.target_dir))
        .map_err(|e| CliError::io(format!("cannot reach the attach session's directory {}", record.target_dir), e))?;
    let _ = dir.remove_file("agent.sock");
    let listener = crate::owner_only::bind(&dir.entry("agent.sock"))
        .map_err(|e| CliError::io(format!("cannot listen on {}", dir.shown().join("agent.sock").display()), e))?;
    let target_uid = diagnostics_ipc::process_uid(pid).unwrap_or(0);
    if crate::owner_only::euid() == 0 && target_uid != 0 {
        let gid = std::fs::metadata(format!("/proc/{pid}")).map(|m| m.gid()).unwrap_or(0);
        let _ = dir.chown_entry("agent.sock", target_uid, gid);
    }
    let (tx, rx) = ingest::channel();
    let replies = ingest::serve_allowing(listener, tx, Allowed::owner_and_root().and(target_uid));
    let mut session = Session::new(Some(rx), None, ViewMode::Plain, SessionInfo::new("detach"));
    let until = Instant::now() + Duration::from_secs(60);
    while session.connections_seen == 0 && Instant::now() < until {
        session.pump(Duration::from_millis(200));
    }
    if session.connections_seen == 0 {
        return Err(CliError::new(format!("the agent in {pid} did not reconnect within a minute")).with_code(2));
    }
    let outcome = detach_now(&mut session, &replies, pid);
    let _ = std::fs::remove_file(AttachState::path_for(pid));
    print_stderr(&format!("leakscope: {outcome}\n"));
    Ok(0)
}
