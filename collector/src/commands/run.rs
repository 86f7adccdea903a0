//! `leakscope run [OPTIONS] -- COMMAND…`: launch with the agent (and shim), watch, report.

use crate::capture_rules::Captures;
use crate::cli::{LibraryArgs, RunArgs};
use crate::commands::print_stderr;
use crate::error::{CliError, CliResult};
use crate::files::Dir;
use crate::ingest::{self, Recorder, Replies};
use crate::launch::{self, CONFLICTING_VARS, Channel, Child, ChildSpec, ExitInfo};
use crate::live::{FrameInfo, Level, ViewMode};
use crate::locate::{self, Library, PrivateDir};
use crate::protocol::Source;
use crate::report::{Report, Written};
use crate::retention_asker::PathAsker;
use crate::session::{Session, tail_lines};
use crate::session_info::{NativeTracking, SessionInfo};
use crate::signals;
use crate::terminal;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// After the target exits, how long to wait for its producers' last lines.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

pub fn run(args: RunArgs) -> CliResult<i32> {
    let capture = crate::capture_rules::Settings::from_args(&args.capture)?;
    let outcome = run_target(TargetSpec {
        argv: args.command,
        out: args.out,
        interval: args.interval,
        duration: args.duration,
        plain: args.plain,
        libs: args.libs,
        mode: "run",
        out_prefix: "leakscope",
        extra_env: Vec::new(),
        soak: None,
        ask_paths: !args.no_paths,
        capture,
    })?;
    Ok(outcome.exit_code)
}

pub struct TargetSpec {
    pub argv: Vec<String>,
    pub out: Option<PathBuf>,
    pub interval: Duration,
    pub duration: Option<Duration>,
    pub plain: bool,
    pub libs: LibraryArgs,
    pub mode: &'static str,
    pub out_prefix: &'static str,
    /// More variables for the target (soak mode: LEAKSCOPE_INDUCE_FULL_GC).
    pub extra_env: Vec<(String, String)>,
    /// `soak`: the rules and baseline; adds the progress line, verdicts and soak reports.
    pub soak: Option<crate::soak::Context>,
    /// When `duration` runs out, ask the agent what keeps the growing types alive first.
    pub ask_paths: bool,
    /// `--on RULE --capture DIR`: snapshots when a rule breaks.
    pub capture: Option<crate::capture_rules::Settings>,
}

pub struct Outcome {
    pub exit_code: i32,
    pub report: Report,
    pub out_dir: PathBuf,
}

/// The agent (required) and the shim (optional, with the reason when it is off).
pub struct Libraries {
    pub agent: PathBuf,
    pub shim: Option<PathBuf>,
    pub native: NativeTracking,
}

/// How long to wait for the agent's retention answer before stopping the target anyway.
const PATHS_WAIT: Duration = Duration::from_secs(15);

pub fn resolve_libraries(libs: &LibraryArgs) -> CliResult<Libraries> {
    let agent = locate::find_library(Library::Agent, libs.agent.as_deref()).map_err(|nf| nf.into_error())?;
    if libs.no_native {
        return Ok(Libraries {
            agent,
            shim: None,
            native: NativeTracking { enabled: false, reason: Some("turned off with --no-native".into()) },
        });
    }
    let explicit = libs.shim.is_some() || std::env::var_os("LEAKSCOPE_SHIM").is_some_and(|v| !v.is_empty());
    match locate::find_library(Library::Shim, libs.shim.as_deref()) {
        // The dynamic loader splits LD_PRELOAD at spaces and colons: such a path cannot be
        // preloaded, and the loader would complain on the target's stderr.
        Ok(shim) if !locate::preloadable(&shim) => {
            let reason = format!(
                "the shim's path {} has a space or a colon, which LD_PRELOAD cannot hold; put it (or a copy) at a path without and pass --shim PATH",
                crate::untrusted::clean(&shim.display().to_string())
            );
            if explicit {
                return Err(CliError::usage(reason).hint("or run without native tracking: --no-native"));
            }
            Ok(Libraries { agent, shim: None, native: NativeTracking { enabled: false, reason: Some(reason) } })
        }
        Ok(shim) => Ok(Libraries { agent, shim: Some(shim), native: NativeTracking { enabled: true, reason: None } }),
        // Asked for a specific shim that is not there: say so rather than quietly run without.
        Err(nf) if explicit => Err(nf.into_error().hint("or run without native tracking: --no-native")),
        Err(nf) => Ok(Libraries {
            agent,
            shim: None,
            native: NativeTracking {
                enabled: false,
                reason: Some(format!("{}; build it with `cargo build --release` or pass --shim PATH", nf.summary())),
            },
        }),
    }
}

/// Leaves the shim out when the program about to be launched is not a glibc program (musl:
/// preloading it would stop the process from starting), and says why.
pub fn keep_shim_only_for_glibc(libs: &mut Libraries, argv: &[String]) {
    if libs.shim.is_none() {
        return;
    }
    if let Some(reason) = crate::target_libc::shim_refusal(argv) {
        libs.shim = None;
        libs.native = NativeTracking { enabled: false, reason: Some(reason) };
    }
}

/// What to tell the user when no agent ever connected.
pub fn no_agent_message(agent: &Path) -> String {
    format!(
        "no agent connected: is the target a .NET app? Was the profiler blocked? Check that: \
         (1) the command starts a .NET (CoreCLR) process and no wrapper clears the environment (sudo, env -i, su -); \
         (2) the CORECLR_* variables reach it: tr '\\0' '\\n' < /proc/PID/environ | grep CORECLR; \
         (3) {} is readable by the target's user and built for this machine's architecture; \
         (4) DOTNET_ProfAPI_ProfilerCompatibilitySetting is not PreventLoad; \
         (5) the target's stderr has no message from the runtime or the agent",
        agent.display()
    )
}

/// Launches the target with the agent (and shim), watches it until it exits or is stopped,
/// and writes the reports. Shared by `run`, `soak` and `demo`.
pub fn run_target(mut spec: TargetSpec) -> CliResult<Outcome> {
    if spec.argv.is_empty() {
        return Err(CliError::usage("no command given").hint("leakscope run -- dotnet Worker.dll"));
    }
    let mut libs = resolve_libraries(&spec.libs)?;
    keep_shim_only_for_glibc(&mut libs, &spec.argv);
    let (out, out_note) = locate::create_out_dir(spec.out.as_deref(), spec.out_prefix)?;
    let out_dir = out.path().to_path_buf();
    let mut info = session_info(&spec, &libs, out_note);
    let output = TargetOutput::choose(&out, spec.plain, &mut info);
    let mode = if output.captured() { ViewMode::Live } else { ViewMode::Plain };

    let private = PrivateDir::create()?;
    let socket = private.path.join("agent.sock");
    let listener = crate::owner_only::bind(&socket)
        .map_err(|e| CliError::io(format!("cannot listen on {}", socket.display()), e))?;
    let (tx, rx) = ingest::channel();
    let replies = ingest::serve(listener, tx);
    let recorder = open_recording(&out, &mut info);
    let target_env = TargetEnv::new(&libs, &socket, &spec, &out, &mut info);

    signals::install();
    let mut child = launch::spawn(ChildSpec {
        argv: spec.argv.clone(),
        env: target_env.env,
        env_remove: target_env.remove,
        stdout_log: output.stdout_file,
        stderr_log: output.stderr_file,
        // Its own process group cannot read the terminal; services do not need stdin.
        stdin_null: terminal::stdin_is_tty(),
    })?;

    // A plain soak prints its own progress line instead of the generic status line.
    let view_mode = if spec.soak.is_some() && mode == ViewMode::Plain { ViewMode::Quiet } else { mode };
    let mut session = Session::new(Some(rx), recorder, view_mode, info);
    session.soak = spec.soak.take();
    let mut captures = spec.capture.take().map(|settings| Captures::start(settings, &mut session));
    if mode == ViewMode::Plain {
        print_start(&spec.argv, child.pid, &out_dir, &libs, &session);
    }
    let mut watch = Watch {
        spec: &spec,
        libs: &libs,
        mode,
        out_dir: &out_dir,
        socket: &socket,
        title: spec.argv.join(" "),
        no_agent_after: (spec.interval * 3).max(Duration::from_secs(10)),
        deadline: spec.duration.map(|d| Instant::now() + d),
        signals_handled: 0,
        progress: SoakProgress::new(spec.interval),
        output_tail: OutputTail::new(output.stdout_log, output.stderr_log),
        // What keeps the growing types alive: asked as each is confirmed (so a worker that
        // exits by itself has its paths), periodically in a soak (which path grows), and again
        // at the end.
        paths: PathAsker::new(session.soak.is_some()),
    };
    let exit = watch.until_exit(&mut session, &mut child, &replies, captures.as_mut());

    drain(&mut session, captures.as_mut());
    drop(private);
    record_end(&mut session, &child, exit, &libs, &target_env.producer_log);
    // Whatever could not be written (a full disk), the summary is printed and the exit code
    // stays the target's.
    let (report, written) = session.write_outputs(&out);
    print_summary(&report, &written, &out_dir);
    Ok(Outcome { exit_code: exit.shell_code(), report, out_dir })
}

/// What the session records about itself before the target starts.
fn session_info(spec: &TargetSpec, libs: &Libraries, out_note: Option<String>) -> SessionInfo {
    let mut info = SessionInfo::new(spec.mode);
    info.soak = spec.soak.as_ref().map(|c| c.settings.clone());
    info.command = Some(spec.argv.clone());
    info.interval_ms = Some(spec.interval.as_millis() as u64);
    info.native_tracking = Some(libs.native.clone());
    if let Some(n) = out_note {
        info.note("warn", n);
    }
    if let Some(reason) = &libs.native.reason {
        info.note("info", format!("native tracking off: {reason}"));
    }
    info
}

/// Where the target's stdout and stderr go: to log files beside the report when the live view
/// takes the terminal, else through to the terminal.
struct TargetOutput {
    stdout_file: Option<File>,
    stderr_file: Option<File>,
    stdout_log: Option<PathBuf>,
    stderr_log: Option<PathBuf>,
}

impl TargetOutput {
    /// The live view takes the terminal; the target's output then goes to log files (when
    /// they cannot be created, the output passes through and the view is plain).
    fn choose(out: &Dir, plain: bool, info: &mut SessionInfo) -> TargetOutput {
        let passes_through = TargetOutput { stdout_file: None, stderr_file: None, stdout_log: None, stderr_log: None };
        if plain || !terminal::stdout_is_tty() || !terminal::stderr_is_tty() {
            return passes_through;
        }
        match (out.create_file("stdout.log"), out.create_file("stderr.log")) {
            (Ok(o), Ok(e)) => TargetOutput {
                stdout_file: Some(o),
                stderr_file: Some(e),
                stdout_log: Some(out.join("stdout.log")),
                stderr_log: Some(out.join("stderr.log")),
            },
            (Err(e), _) | (_, Err(e)) => {
                info.note(
                    "warn",
                    format!("not capturing the target's output: {e}; it passes through, with a plain view"),
                );
                passes_through
            }
        }
    }

    /// The output goes to log files: the live view may take the terminal.
    fn captured(&self) -> bool {
        self.stdout_file.is_some()
    }
}

/// recording.ndjson, or a note saying why there is none.
fn open_recording(out: &Dir, info: &mut SessionInfo) -> Option<Recorder> {
    match out.create_file("recording.ndjson") {
        Ok(f) => Some(Recorder::new(f, out.join("recording.ndjson"))),
        Err(e) => {
            info.note("error", format!("not recording: {e}"));
            None
        }
    }
}

/// The target's environment: the profiler's variables, the producers' log, and the variables
/// that would load another profiler, removed.
struct TargetEnv {
    env: Vec<(String, String)>,
    remove: Vec<String>,
    /// Where the agent and the shim log (unless the user chose with LEAKSCOPE_LOG).
    producer_log: PathBuf,
}

impl TargetEnv {
    fn new(libs: &Libraries, socket: &Path, spec: &TargetSpec, out: &Dir, info: &mut SessionInfo) -> TargetEnv {
        let existing_preload = std::env::var("LD_PRELOAD").ok();
        let mut env = launch::profiler_env(
            &libs.agent,
            libs.shim.as_deref(),
            &Channel::Socket(socket.to_path_buf()),
            spec.interval,
            existing_preload.as_deref(),
        );
        env.extend(spec.extra_env.iter().cloned());
        // The agent's and shim's own logs land beside the report, unless the user chose a place.
        // Created here (0600, never through a link) so the producers only append to it.
        let producer_log = out.path().join("agent.log");
        if std::env::var_os("LEAKSCOPE_LOG").is_none() {
            match out.create_file("agent.log") {
                Ok(_) => env.push(("LEAKSCOPE_LOG".to_string(), producer_log.display().to_string())),
                Err(e) => info.note("warn", format!("the agent logs to its default place instead: {e}")),
            }
        }
        let remove: Vec<String> =
            CONFLICTING_VARS.iter().filter(|v| std::env::var_os(v).is_some()).map(|v| v.to_string()).collect();
        if !remove.is_empty() {
            info.note(
                "warn",
                format!(
                    "removed {} from the target's environment: it would load another profiler instead of ours",
                    remove.join(", ")
                ),
            );
        }
        TargetEnv { env, remove, producer_log }
    }
}

/// The plain view's first lines: what runs, where the reports go, and the notes so far.
fn print_start(argv: &[String], pid: u32, out_dir: &Path, libs: &Libraries, session: &Session) {
    print_stderr(&format!("leakscope: running `{}` (pid {pid}), writing to {}\n", argv.join(" "), out_dir.display()));
    if let Some(reason) = &libs.native.reason {
        print_stderr(&format!("leakscope: native tracking off: {reason}\n"));
    }
    for n in session.info.notes.iter().filter(|n| n.level != "info") {
        print_stderr(&format!("leakscope: {}: {}\n", n.level, n.message));
    }
}

/// The types a soak already judges leaking (none outside a soak): asked about first.
fn leaking_types(session: &Session) -> Vec<(u32, String)> {
    session.soak.as_ref().map(|ctx| crate::soak::leaking_types(&session.store, ctx)).unwrap_or_default()
}

/// The watch loop's state: events in, signals and the deadline handled, the view refreshed.
struct Watch<'a> {
    spec: &'a TargetSpec,
    libs: &'a Libraries,
    mode: ViewMode,
    out_dir: &'a Path,
    socket: &'a Path,
    title: String,
    no_agent_after: Duration,
    deadline: Option<Instant>,
    signals_handled: usize,
    progress: SoakProgress,
    output_tail: OutputTail,
    paths: PathAsker,
}

impl Watch<'_> {
    /// Runs until the target exits (by itself, or stopped by a signal or `--duration`).
    fn until_exit(
        &mut self,
        session: &mut Session,
        child: &mut Child,
        replies: &Replies,
        mut captures: Option<&mut Captures>,
    ) -> ExitInfo {
        loop {
            session.pump(Duration::from_millis(100));
            if let Some(exit) = child.try_wait() {
                return exit;
            }
            if let Some(c) = captures.as_deref_mut().filter(|_| !child.stopping()) {
                c.tick(session, replies);
            }
            if self.spec.ask_paths && !child.stopping() && self.paths.ready() {
                let leaking = leaking_types(session);
                self.paths.tick(session, replies, &leaking);
            }
            self.on_signals(session, child, replies);
            self.on_deadline(session, child, replies);
            child.tick();
            if let Some(ctx) = session.soak.as_ref() {
                self.progress.update(session, ctx, self.mode, child.started.elapsed());
            }
            let frame = self.frame(session, child, captures.as_deref());
            session.view.update(&session.store, &frame);
        }
    }

    /// A signal stops the target (after asking what keeps the growing types alive); a second
    /// one while it stops escalates.
    fn on_signals(&mut self, session: &mut Session, child: &mut Child, replies: &Replies) {
        let received = signals::received();
        if received <= self.signals_handled {
            return;
        }
        if child.stopping() {
            child.escalate();
        } else {
            if self.spec.ask_paths {
                // Ctrl-C: the worker can still answer; a second Ctrl-C stops waiting.
                let leaking = leaking_types(session);
                self.paths.ask_and_wait(session, replies, &leaking, PATHS_WAIT, &|| signals::received() > received);
            }
            child.request_stop(signals::last_signal_name());
        }
        self.signals_handled = received;
    }

    /// `--duration` elapsed: ask what keeps the growing types alive, then stop the target.
    fn on_deadline(&mut self, session: &mut Session, child: &mut Child, replies: &Replies) {
        if self.deadline.is_none_or(|d| Instant::now() < d) || child.stopping() {
            return;
        }
        if self.spec.ask_paths {
            let leaking = leaking_types(session);
            let handled = self.signals_handled;
            self.paths.ask_and_wait(session, replies, &leaking, PATHS_WAIT, &|| signals::received() > handled);
        }
        child.request_stop("--duration elapsed");
    }

    /// What the view shows besides the store: progress, alerts, where things are.
    fn frame(&mut self, session: &Session, child: &Child, captures: Option<&Captures>) -> FrameInfo {
        let mut frame = session.frame_base(self.title.clone(), self.spec.interval);
        if session.soak.is_some() && !self.progress.line.is_empty() {
            frame.alerts.push((Level::Info, self.progress.line.clone()));
        }
        frame.out_dir = Some(self.out_dir.display().to_string());
        frame.waiting_on = Some(self.socket.display().to_string());
        if let Some(s) = child.stop_status() {
            frame.alerts.push((Level::Warn, s));
        }
        if let Some(alert) = captures.and_then(|c| c.alert()) {
            frame.alerts.push(alert);
        }
        if let Some(reason) = &self.libs.native.reason {
            frame.alerts.push((Level::Info, format!("native tracking off: {reason}")));
        }
        if !session.store.has_source(Source::Agent) && child.started.elapsed() >= self.no_agent_after {
            frame.alerts.push((
                Level::Error,
                format!(
                    "no agent connected after {}s: is the target a .NET app? Was the profiler blocked? (details in the report)",
                    child.started.elapsed().as_secs()
                ),
            ));
        }
        if self.mode == ViewMode::Live {
            frame.output_tail = self.output_tail.lines();
            frame.footer = format!(
                "Ctrl-C: stop the target and write the report · target output: {}/std{{out,err}}.log",
                self.out_dir.display()
            );
        }
        frame
    }
}

/// The soak progress line: recomputed every `every` (printed in a plain view), and in the
/// live view whenever new data came (at most every 2 s).
struct SoakProgress {
    every: Duration,
    at: Option<Instant>,
    line: String,
    version: u64,
}

impl SoakProgress {
    fn new(interval: Duration) -> SoakProgress {
        SoakProgress { every: interval.max(Duration::from_secs(10)), at: None, line: String::new(), version: u64::MAX }
    }

    fn update(&mut self, session: &Session, ctx: &crate::soak::Context, mode: ViewMode, elapsed: Duration) {
        let due = self.at.is_none_or(|t| t.elapsed() >= self.every);
        let refresh = mode == ViewMode::Live
            && self.version != session.store.data_version
            && self.at.is_none_or(|t| t.elapsed() >= Duration::from_secs(2));
        if due || refresh {
            self.line = crate::soak::progress_line(&session.store, ctx, elapsed);
            self.version = session.store.data_version;
            if mode == ViewMode::Plain && due {
                print_stderr(&format!("leakscope {}\n", self.line));
            }
            self.at = Some(Instant::now());
        }
    }
}

/// The last line of the target's logged output, re-read at most once a second.
struct OutputTail {
    stdout_log: Option<PathBuf>,
    stderr_log: Option<PathBuf>,
    lines: Vec<String>,
    read_at: Option<Instant>,
}

impl OutputTail {
    fn new(stdout_log: Option<PathBuf>, stderr_log: Option<PathBuf>) -> OutputTail {
        OutputTail { stdout_log, stderr_log, lines: Vec::new(), read_at: None }
    }

    fn lines(&mut self) -> Vec<String> {
        if self.read_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            self.lines = [&self.stderr_log, &self.stdout_log]
                .iter()
                .filter_map(|p| p.as_ref())
                .flat_map(|p| tail_lines(p, 1))
                .collect();
            self.read_at = Some(Instant::now());
        }
        self.lines.clone()
    }
}

/// After the target is gone: lets producers finish their last lines (summary, bye), writes
/// what the captures got, and closes the session.
fn drain(session: &mut Session, captures: Option<&mut Captures>) {
    let drain_until = Instant::now() + DRAIN_TIMEOUT;
    while session.open_connections > 0 && Instant::now() < drain_until {
        session.pump(Duration::from_millis(50));
    }
    session.pump(Duration::from_millis(20));
    if let Some(c) = captures {
        // A capture the worker could not finish answering is written with what came.
        c.flush(session);
    }
    session.finish();
}

/// How the target ended, and what to check when a producer never connected.
fn record_end(session: &mut Session, child: &Child, exit: ExitInfo, libs: &Libraries, producer_log: &Path) {
    session.info.exit = Some(exit);
    session.info.stopped_by = child.stop_reason.clone();
    let lifetime = child.started.elapsed();
    if !session.store.has_source(Source::Agent) {
        if lifetime < Duration::from_secs(2) && child.stop_reason.is_none() {
            session.info.note(
                "error",
                format!(
                    "the target exited after {} with {} before any agent connected: check the command and its output",
                    crate::units::format_duration(lifetime),
                    exit.describe()
                ),
            );
        }
        session.info.note("error", no_agent_message(&libs.agent));
        if std::fs::symlink_metadata(producer_log).is_ok_and(|m| m.is_file() && m.len() > 0) {
            session.info.note("info", format!("the agent/shim log may say more: {}", producer_log.display()));
        }
    }
    if libs.shim.is_some() && session.store.has_source(Source::Agent) && !session.store.has_source(Source::Shim) {
        session.info.note(
            "warn",
            format!(
                "the shim was preloaded but never connected, so native memory was not tracked: \
                 check that LEAKSCOPE_NATIVE is not 0 and see {}",
                producer_log.display()
            ),
        );
    }
}

/// The summary on stderr (the soak's verdict for a soak), and any file that could not be written.
fn print_summary(report: &Report, written: &Written, out_dir: &Path) {
    let shown_dir = written.has("report.txt").then_some(out_dir);
    if report.soak.is_some() {
        print_stderr(&crate::report::render_soak_summary(report, shown_dir));
    } else {
        print_stderr(&crate::report::render_summary(report, shown_dir));
    }
    print_stderr(&written.render_failures());
}
