//! `leakscope snapshot PID`: attach, sample allocations for a moment (so the snapshot can name
//! the call sites whose allocations survive), ask the agent for a heap census (a full GC, then
//! every object counted by type), detach, and keep it all in one NDJSON file for `diff`.

use crate::cli::SnapshotArgs;
use crate::commands::attach::{self, Attachment};
use crate::commands::{print_stderr, print_stdout};
use crate::error::{CliError, CliResult};
use crate::ingest::{Recorder, Replies};
use crate::live::ViewMode;
use crate::protocol::{Source, census_not_coming};
use crate::session::Session;
use crate::session_info::SessionInfo;
use crate::signals;
use crate::snapshot_file::{self, Point, render};
use crate::units::{format_count, format_duration};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the agent may take to connect after the runtime loaded it.
const CONNECT_WAIT: Duration = Duration::from_secs(20);
/// How long a census may take: a full GC and a walk of the heap (seconds at 10M objects).
const CENSUS_WAIT: Duration = Duration::from_secs(120);
/// After the census, how long to wait for the survivors of the same GC.
const RETAINED_WAIT: Duration = Duration::from_secs(5);
const INTERVAL: Duration = Duration::from_secs(1);

pub fn snapshot(args: SnapshotArgs) -> CliResult<i32> {
    // First of all, so that Ctrl-C (or SIGTERM) at any phase detaches instead of killing us.
    signals::install();
    let pid = args.pid;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!("leakscope-snapshot-{pid}-{}.ndjson", crate::units::local_timestamp()))
    });
    // The snapshot may hold string values (--peek-strings): 0600, never through a link; made
    // before attaching, so a refused path never leaves an agent loaded.
    let (file, created) = crate::files::create_named_file(&out).map_err(|e| e.to_cli("cannot create"))?;
    // `--peek-strings` is the owner's (or root's) say-so: only they can reach the runtime's
    // diagnostics socket that carries it. The worker's environment can still forbid it.
    let settings = if args.peek_strings { "LEAKSCOPE_PEEK_STRINGS=1\n" } else { "" };
    let Attachment { place, replies, events, .. } =
        match attach::load_agent(pid, args.agent.as_deref(), INTERVAL, settings) {
            Ok(a) => a,
            Err(e) => {
                let _ = std::fs::remove_file(&created);
                return Err(e);
            }
        };
    let recorder = Recorder::new(file, out.clone());
    let mut session = Session::new(Some(events), Some(recorder), ViewMode::Quiet, SessionInfo::new("snapshot"));
    let failure = collect(&mut session, &replies, &args, pid, &place).err();
    // Every way out detaches: success, failure and interruption alike.
    let outcome =
        if gone(pid) { "the process exited".to_string() } else { attach::detach_now(&mut session, &replies, pid) };
    session.finish();
    if let Some(why) = failure {
        let interrupted = signals::received() > 0;
        let err = CliError::new(format!("no snapshot of {pid}: {why}"))
            .with_code(if interrupted { 128 + signals::last_signal() } else { 2 })
            .hint(format!("the agent: {outcome}"));
        return Err(err.hint(format!("what was received is in {}", out.display())));
    }
    // The profile comes from what this session received; a failure to write it is said after
    // the snapshot is printed, and the exit code says so too.
    let pprof = args.pprof.as_ref().map(|path| {
        let moment = crate::export::pprof::Moment {
            unix_ms: crate::units::unix_ms_now(),
            duration_ms: args.sample.as_millis() as u64,
        };
        crate::export::write_pprof(path, &session.store, moment)
    });
    let points = snapshot_file::load(&out)?;
    let point = points.last().expect("a census was received");
    if args.json {
        let text = serde_json::to_string_pretty(&json(point, args.top))
            .map_err(|e| CliError::new(format!("cannot encode JSON: {e}")))?;
        print_stdout(&format!("{text}\n"));
    } else {
        print_stdout(&render(point, args.top));
    }
    if let Some(why) = point.peek.as_ref().and_then(|p| p.strings_withheld.as_ref()) {
        print_stderr(&format!("leakscope: --peek-strings: the agent withheld the strings' contents: {why}\n"));
    }
    print_stderr(&format!("leakscope: snapshot written to {}; {outcome}\n", out.display()));
    print_stderr(&format!(
        "leakscope: later, `leakscope snapshot {pid} -o after.ndjson` and `leakscope diff {} after.ndjson`\n",
        out.display()
    ));
    match pprof {
        Some(Ok((written, samples))) => {
            print_stderr(&format!(
                "leakscope: pprof profile of {samples} call sites written to {}\n",
                written.display()
            ));
        }
        Some(Err(e)) => return Err(e.to_cli("cannot write the pprof profile").with_code(2)),
        None => {}
    }
    Ok(0)
}

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// How a wait ended.
enum Waited {
    Done,
    TimedOut,
    /// The process exited.
    Gone,
    /// Ctrl-C, SIGTERM or SIGHUP.
    Interrupted,
}

/// Pumps the session until `done`, `limit` passes, the process exits or a signal arrives.
fn wait(session: &mut Session, limit: Duration, pid: u32, done: impl Fn(&Session) -> bool) -> Waited {
    let until = Instant::now() + limit;
    loop {
        if done(session) {
            return Waited::Done;
        }
        if signals::received() > 0 {
            return Waited::Interrupted;
        }
        if gone(pid) {
            return Waited::Gone;
        }
        if Instant::now() >= until {
            return Waited::TimedOut;
        }
        session.pump(Duration::from_millis(100));
    }
}

fn interrupted() -> String {
    format!("interrupted ({})", signals::last_signal_name())
}

/// Everything between the attach and the detach: wait for the agent, sample, census, and the
/// paths and peek asked for. `Err` says why there is no snapshot.
fn collect(
    session: &mut Session,
    replies: &Replies,
    args: &SnapshotArgs,
    pid: u32,
    place: &attach::Place,
) -> Result<(), String> {
    match wait(session, CONNECT_WAIT, pid, |s| s.connections_seen > 0) {
        Waited::Done => {}
        Waited::Interrupted => return Err(interrupted()),
        Waited::Gone => return Err(format!("process {pid} exited before the agent reported")),
        Waited::TimedOut => {
            return Err(format!(
                "the agent loaded into {pid} but did not report within {CONNECT_WAIT:?} (its log: {})",
                place.shown_log().display()
            ));
        }
    }
    if !args.sample.is_zero() {
        print_stderr(&format!(
            "leakscope: attached to {pid}; sampling allocations for {} to find the call sites…\n",
            format_duration(args.sample)
        ));
        match wait(session, args.sample, pid, |_| false) {
            Waited::Interrupted => return Err(interrupted()),
            Waited::Gone => return Err(format!("process {pid} exited before the census")),
            Waited::Done | Waited::TimedOut => {}
        }
    }
    print_stderr("leakscope: counting the heap (a full GC, then every object)…\n");
    replies.broadcast(r#"{"cmd":"census"}"#);
    let census_count = |s: &Session| agent(s).map_or(0, |p| p.soak.census_records);
    let retained_count = |s: &Session| agent(s).map_or(0, |p| p.soak.retained_records);
    let retained_before = retained_count(session);
    match wait(session, CENSUS_WAIT, pid, |s| census_count(s) > 0 || census_refused(s).is_some()) {
        Waited::Done => {}
        Waited::Interrupted => return Err(interrupted()),
        Waited::Gone => return Err(format!("process {pid} exited before the census")),
        Waited::TimedOut => return Err(format!("no census within {CENSUS_WAIT:?}")),
    }
    if let Some(why) = census_refused(session).filter(|_| census_count(session) == 0) {
        return Err(why);
    }
    if let Waited::Interrupted = wait(session, RETAINED_WAIT, pid, |s| retained_count(s) != retained_before) {
        return Err(interrupted());
    }
    if let Some(asked) = &args.paths {
        ask_retention(session, replies, asked, pid)?;
    }
    if !args.peek.is_empty() {
        ask_peek(session, replies, &args.peek, args.peek_strings, pid)?;
    }
    Ok(())
}

/// How long a retention walk may take: its turn (the agent spaces pausing commands by up to 30 s),
/// the agent's own budget (10 s), then the reply.
const RETENTION_WAIT: Duration = Duration::from_secs(60);
/// Types asked about when `--paths` names none.
const DEFAULT_PATH_TYPES: usize = 3;

/// Asks the agent what keeps `asked` (or the types of the top surviving call sites) alive and
/// waits for the answer; `Err` says why not.
fn ask_retention(session: &mut Session, replies: &Replies, asked: &[String], pid: u32) -> Result<(), String> {
    let types: Vec<String> = if asked.is_empty() {
        let mut types: Vec<String> = Vec::new();
        let sites = agent(session).map(|p| p.soak.latest_retained_sites()).unwrap_or_default();
        for t in sites {
            if !types.contains(&t) && types.len() < DEFAULT_PATH_TYPES {
                types.push(t);
            }
        }
        types
    } else {
        asked.to_vec()
    };
    if types.is_empty() {
        return Err("no surviving call sites to ask about: name the types (`--paths TYPE`)".to_string());
    }
    print_stderr(&format!("leakscope: finding what keeps {} alive…\n", types.join(", ")));
    let command = serde_json::json!({"cmd": "retention", "types": types}).to_string();
    replies.broadcast(&command);
    let started = Instant::now();
    let mut told = 0;
    loop {
        // Progress every 2 s: the walk is bounded by the agent's time budget (10 s by default),
        // after the spacing the agent keeps between pausing commands.
        match wait(session, Duration::from_secs(2), pid, |s| agent(s).is_some_and(|p| p.retention.is_some())) {
            Waited::Done => break,
            Waited::Interrupted => return Err(interrupted()),
            Waited::Gone => return Err(format!("process {pid} exited before the retention walk")),
            Waited::TimedOut if started.elapsed() >= RETENTION_WAIT => {
                return Err(format!("no retention answer within {RETENTION_WAIT:?}"));
            }
            Waited::TimedOut => {
                let waited = started.elapsed().as_secs();
                if waited >= told + 2 {
                    told = waited;
                    print_stderr(&format!(
                        "leakscope: … {waited} s (the agent stops at its 10 s budget and says so)\n"
                    ));
                }
            }
        }
    }
    match agent(session).and_then(|p| p.retention.as_ref()) {
        None => Err(format!("no retention answer within {RETENTION_WAIT:?}")),
        Some(r) if r.error.is_some() => {
            Err(r.error.clone().map(|e| format!("retention paths: {e}")).unwrap_or_default())
        }
        Some(r) => {
            print_stderr(&format!(
                "leakscope: paths found in {:.0} ms ({} objects walked; the application paused {:.0} ms)\n",
                r.elapsed_ms.map_or(0.0, |n| n.0),
                format_count(r.objects.map_or(0.0, |n| n.0)),
                r.pause_ms.map_or(0.0, |n| n.0)
            ));
            Ok(())
        }
    }
}

/// How long a peek may take: its turn (up to 30 s after the previous pausing command), a full GC,
/// a count of the classes and a heap walk.
const PEEK_WAIT: Duration = Duration::from_secs(90);
/// Instances shown per type.
const PEEK_COUNT: usize = 3;

/// Asks the agent for a few instances of `types` with their fields and waits for the answer;
/// `Err` says why not.
fn ask_peek(session: &mut Session, replies: &Replies, types: &[String], strings: bool, pid: u32) -> Result<(), String> {
    print_stderr(&format!("leakscope: reading a few instances of {}…\n", types.join(", ")));
    let command =
        serde_json::json!({"cmd": "peek", "types": types, "count": PEEK_COUNT, "strings": strings}).to_string();
    replies.broadcast(&command);
    match wait(session, PEEK_WAIT, pid, |s| agent(s).is_some_and(|p| p.peek.is_some())) {
        Waited::Done => {}
        Waited::Interrupted => return Err(interrupted()),
        Waited::Gone => return Err(format!("process {pid} exited before the peek")),
        Waited::TimedOut => return Err(format!("no peek answer within {PEEK_WAIT:?}")),
    }
    match agent(session).and_then(|p| p.peek.as_ref()) {
        None => Err(format!("no peek answer within {PEEK_WAIT:?}")),
        Some(p) if p.error.is_some() && p.types.is_empty() => {
            Err(p.error.clone().map(|e| format!("peek: {e}")).unwrap_or_default())
        }
        Some(_) => Ok(()),
    }
}

fn agent(session: &Session) -> Option<&crate::store::Producer> {
    session.store.producers().find(|p| p.key.source == Source::Agent)
}

/// The agent's word that no census will come: given up on this runtime, or for this request.
fn census_refused(session: &Session) -> Option<String> {
    agent(session)?
        .statuses
        .iter()
        .find(|s| census_not_coming(s.unavailable.as_deref(), &s.message))
        .map(|s| s.message.clone())
}

fn json(point: &Point, top: usize) -> serde_json::Value {
    let c = &point.census;
    serde_json::json!({
        "retention": point.retention,
        "peek": point.peek,
        "pid": point.pid,
        "gc": c.gc,
        "unix_ms": c.unix_ms.map(|n| n.u64()),
        "pause_ms": c.pause_ms.map(|n| n.0),
        "gc_ms": c.gc_ms.map(|n| n.0),
        "objects": c.objects.map(|n| n.u64()),
        "bytes": c.bytes.map(|n| n.u64()),
        "types": c.types.iter().take(top).map(|t| serde_json::json!({
            "type_name": t.type_name,
            "count": t.count.map(|n| n.u64()),
            "bytes": t.bytes.map(|n| n.u64()),
        })).collect::<Vec<_>>(),
        "sites": point.sites.iter().take(top).map(|s| serde_json::json!({
            "type_name": s.type_name,
            "site": s.site,
            "location": s.location,
            "objects": s.objects.map(|n| n.0),
            "bytes": s.bytes.map(|n| n.0),
        })).collect::<Vec<_>>(),
    })
}
