//! Collection rules for `run` and `listen`: `--on RULE --capture DIR`. When a worker first
//! breaks a rule (the soak gate's grammar, [`crate::soak::rules`]), ask that worker's agent —
//! and only it — for a census and for what keeps the breaking types alive, and write what it
//! answers, with the rules broken, into one snapshot file in DIR, which `leakscope diff` reads.
//! At most one capture per worker per `--capture-every`.
//!
//! The interface for the rest of the collector is [`Captures::tick`], called from the command's
//! loop: it returns a [`CaptureEvent`] for each snapshot written (a metrics counter takes them
//! from there), and has already announced each one on stderr or in the live view, in the
//! recording (a `capture` record) and in the report's notes.

pub mod judge;
mod out;

use crate::analysis::TrendSettings;
use crate::error::{CliError, CliResult};
use crate::ingest::{ConnId, Replies};
use crate::live::{Level, ViewMode};
use crate::protocol::{ProducerKey, Record, Source};
use crate::session::Session;
use crate::soak::rules::{self, Rule};
use judge::Breach;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a census may take: its turn (the agent spaces pausing commands by up to 30 s), a
/// full GC and a heap walk (seconds at 10M objects).
const CENSUS_WAIT: Duration = Duration::from_secs(120);
/// After the census, how long the paths may take (the agent's 10 s budget, after its turn).
const PATHS_WAIT: Duration = Duration::from_secs(60);
/// Types whose paths one capture asks for.
const MAX_PATH_TYPES: usize = 3;
/// Least time between two evaluations of the rules (each judges every series of every worker).
const JUDGE_EVERY: Duration = Duration::from_secs(2);
/// A capture keeps at most this much of a worker's lines; the rest is dropped, and the file says so.
const MAX_CAPTURE_BYTES: usize = 16 << 20;

/// `--on`, `--capture`, `--capture-every`, `--capture-warmup`, checked, and DIR open.
pub struct Settings {
    pub rules: Vec<Rule>,
    dir: out::CaptureDir,
    pub every: Duration,
    /// Growth is judged on each worker's data after this much of its own time.
    pub warmup: Duration,
}

impl Settings {
    /// `None` when no rule was given; a usage error when only half of `--on … --capture` was.
    pub fn from_args(args: &crate::cli::CaptureArgs) -> CliResult<Option<Settings>> {
        match (args.on.is_empty(), &args.capture) {
            (true, None) => return Ok(None),
            (true, Some(_)) => {
                return Err(CliError::usage("--capture needs a rule: when to take the snapshot")
                    .hint(format!("e.g. --on 'growth > 1MB/h' --capture DIR; {}", rules::RULE_EXAMPLES)));
            }
            (false, None) => {
                return Err(CliError::usage("--on needs --capture DIR: where to write the snapshots"));
            }
            (false, Some(_)) => {}
        }
        let mut parsed = Vec::new();
        for text in &args.on {
            parsed.push(
                rules::parse_rule(text)
                    .map_err(|e| CliError::usage(e.render_for("--on")).hint(rules::RULE_EXAMPLES))?,
            );
        }
        // Checked (and made) before anything starts: a bad directory is a usage error.
        let dir = out::CaptureDir::open(args.capture.as_deref().unwrap_or(std::path::Path::new(".")))?;
        Ok(Some(Settings { rules: parsed, dir, every: args.capture_every, warmup: args.capture_warmup }))
    }
}

/// One snapshot written: the `capture` record (the protocol crate's type).
pub use crate::protocol::{Breach as BreachInfo, Capture as CaptureEvent};

/// One capture under way: the lines of the worker's agent since the request.
struct Pending {
    conn: ConnId,
    asked: Instant,
    asked_unix_ms: u64,
    breaches: Vec<Breach>,
    paths_for: Vec<String>,
    lines: Vec<Vec<u8>>,
    /// Where in `lines` the latest summary is.
    summary_at: Option<usize>,
    bytes: usize,
    dropped: usize,
    census: bool,
    census_at: Option<Instant>,
    census_refused: Option<String>,
    retention: bool,
    /// A retention answer came before the census (the runtime refused the census at start-up and
    /// the paths ran first, on a runtime not ready): asked again once the census is in.
    retention_too_early: bool,
    /// Requests the agent refused, to send again at these times.
    resend: Vec<(Instant, Resend)>,
}

/// Why a capture is written now: what a missing answer is put down to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    /// Every answer asked for is in, refused, or past its wait.
    Settled,
    /// The worker's agent disconnected (the worker exited, most often).
    AgentGone,
    /// The session ended first.
    SessionOver,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Resend {
    Census,
    Retention,
}

/// What the session's line tap fills: lines of the workers being captured.
#[derive(Default)]
struct Tap {
    pending: HashMap<u32, Pending>,
}

impl Tap {
    fn line(&mut self, key: &ProducerKey, line: &[u8]) {
        if key.source != Source::Agent {
            return;
        }
        let Some(p) = self.pending.get_mut(&key.pid) else { return };
        let record = crate::protocol::parse_line(line).map(|e| e.record);
        if let Ok(Record::Summary(_)) = record {
            // Only the latest summary: the census and the paths are what the capture waits for.
            if let Some(i) = p.summary_at.take() {
                let old = p.lines.remove(i);
                p.bytes -= old.len();
            }
            if p.bytes + line.len() <= MAX_CAPTURE_BYTES {
                p.summary_at = Some(p.lines.len());
                p.bytes += line.len();
                p.lines.push(line.to_vec());
            } else {
                p.dropped += 1;
            }
            return;
        }
        match record {
            Ok(Record::Census(_)) => {
                p.census = true;
                p.census_at = Some(Instant::now());
                if std::mem::take(&mut p.retention_too_early) {
                    p.resend.push((Instant::now(), Resend::Retention));
                }
            }
            Ok(Record::Retention(_)) if p.census => p.retention = true,
            Ok(Record::Retention(_)) => p.retention_too_early = !p.paths_for.is_empty(),
            Ok(Record::Status(s)) if s.census_not_coming() => {
                p.census_refused = Some(s.message.clone());
            }
            Ok(Record::Status(_)) => {
                // The agent keeps one pausing command waiting and refuses more (someone else's
                // request got there first): ask again when it says to.
                let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
                let retry = Duration::from_millis(v["retry_after_ms"].as_u64().unwrap_or(1000).min(60_000));
                match v["refused"].as_str() {
                    Some("census") if !p.census => p.resend.push((Instant::now() + retry, Resend::Census)),
                    Some("retention") if !p.retention && !p.paths_for.is_empty() => {
                        p.resend.push((Instant::now() + retry, Resend::Retention));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        if p.bytes + line.len() > MAX_CAPTURE_BYTES {
            p.dropped += 1;
            return;
        }
        p.bytes += line.len();
        p.lines.push(line.to_vec());
    }
}

#[derive(Default)]
struct Worker {
    last_capture: Option<Instant>,
    /// (rule, subject) pairs already captured: a rule that stays broken is not captured again.
    captured: BTreeSet<(String, String)>,
    /// The producer's record count at the last judgement (nothing new: nothing to judge).
    judged_reports: u64,
}

pub struct Captures {
    settings: Settings,
    trend: TrendSettings,
    tap: Rc<RefCell<Tap>>,
    workers: HashMap<u32, Worker>,
    judged_at: Option<Instant>,
    total: u64,
    /// The latest announcement, for the live view.
    last: Option<String>,
}

impl Captures {
    /// Creates (or checks) DIR and hooks into the session's lines.
    pub fn start(settings: Settings, session: &mut Session) -> Captures {
        let tap = Rc::new(RefCell::new(Tap::default()));
        let hook = Rc::clone(&tap);
        session.tap = Some(Box::new(move |key, line| hook.borrow_mut().line(key, line)));
        session.info.note(
            "info",
            format!(
                "capture rules: {} → snapshots in {} (at most one per worker every {})",
                settings.rules.iter().map(|r| format!("'{}'", r.text)).collect::<Vec<_>>().join(", "),
                settings.dir.path().display(),
                crate::units::format_duration(settings.every)
            ),
        );
        Captures {
            settings,
            trend: TrendSettings::default(),
            tap,
            workers: HashMap::new(),
            judged_at: None,
            total: 0,
            last: None,
        }
    }

    /// Snapshots written so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The latest announcement, for a line in the live view.
    pub fn alert(&self) -> Option<(Level, String)> {
        self.last.clone().map(|m| (Level::Warn, m))
    }

    /// Judges the rules (every few seconds), starts captures for workers that newly break one,
    /// and finishes those whose answers are in. Returns the snapshots written by this call.
    pub fn tick(&mut self, session: &mut Session, replies: &Replies) -> Vec<CaptureEvent> {
        let mut events = Vec::new();
        if self.judged_at.is_none_or(|t| t.elapsed() >= JUDGE_EVERY) {
            self.judged_at = Some(Instant::now());
            events = self.judge(session, replies);
        }
        self.resend_refused(replies);
        events.extend(self.finish_ready(session));
        events
    }

    /// Returns the snapshots written at once (a worker without an agent to ask).
    fn judge(&mut self, session: &mut Session, replies: &Replies) -> Vec<CaptureEvent> {
        let warmup_ms = self.settings.warmup.as_secs_f64() * 1000.0;
        let mut starts: Vec<(u32, Vec<Breach>)> = Vec::new();
        let pending: BTreeSet<u32> = self.tap.borrow().pending.keys().copied().collect();
        let pids: BTreeSet<u32> = session.store.producers().map(|p| p.key.pid).collect();
        for pid in pids {
            let w = self.workers.entry(pid).or_default();
            if pending.contains(&pid) || w.last_capture.is_some_and(|t| t.elapsed() < self.settings.every) {
                continue;
            }
            let producers: Vec<_> = session.store.producers().filter(|p| p.key.pid == pid).collect();
            let reports: u64 = producers.iter().map(|p| p.reports).sum();
            if reports == w.judged_reports {
                continue;
            }
            w.judged_reports = reports;
            let breaches: Vec<Breach> = producers
                .iter()
                .flat_map(|p| judge::breaches_of(&session.store, p, &self.settings.rules, warmup_ms, &self.trend))
                .collect();
            if breaches.iter().any(|b| !w.captured.contains(&(b.rule.clone(), b.subject.clone()))) {
                starts.push((pid, breaches));
            }
        }
        starts.into_iter().filter_map(|(pid, breaches)| self.ask(session, replies, pid, breaches)).collect()
    }

    /// Asks the worker's agent for a census, then for the paths of the breaking types.
    fn ask(
        &mut self,
        session: &mut Session,
        replies: &Replies,
        pid: u32,
        breaches: Vec<Breach>,
    ) -> Option<CaptureEvent> {
        let w = self.workers.entry(pid).or_default();
        w.last_capture = Some(Instant::now());
        w.captured.extend(breaches.iter().map(|b| (b.rule.clone(), b.subject.clone())));
        let agent = ProducerKey { pid, source: Source::Agent };
        let conn = session.connection_of(&agent).filter(|c| replies.send_to(*c, &census_command()));
        let Some(conn) = conn else {
            // A shim alone, or a file being read: nobody to ask; the snapshot is what we have.
            let mut p = pending(0, breaches, Vec::new());
            p.census_refused = Some("no agent connection to ask for a census".to_string());
            let ev = self.write(session, pid, p, Ending::Settled);
            self.done(session, ev.clone());
            return ev;
        };
        let mut types: Vec<String> = Vec::new();
        let growing = crate::report::growing_managed_types(&session.store, &crate::analysis::Thresholds::default());
        let named = breaches.iter().filter_map(|b| b.type_name.clone());
        // Types that broke a rule; for a process-level rule (rss, heap, native), the growing ones.
        for t in named.chain(growing.into_iter().filter(|(p, _)| *p == pid).map(|(_, t)| t)) {
            if !types.contains(&t) && types.len() < MAX_PATH_TYPES {
                types.push(t);
            }
        }
        if !types.is_empty() {
            // Queued by the agent behind the census (it keeps one pausing command waiting).
            if !replies.send_to(conn, &retention_command(&types)) {
                types.clear();
            }
        }
        let text = format!(
            "capture: pid {pid} broke {}; asking its agent for a census{}",
            describe(&breaches),
            if types.is_empty() { String::new() } else { format!(" and what keeps {} alive", types.join(", ")) }
        );
        self.say(session, text);
        self.tap.borrow_mut().pending.insert(pid, pending(conn, breaches, types));
        None
    }

    fn resend_refused(&mut self, replies: &Replies) {
        let now = Instant::now();
        for p in self.tap.borrow_mut().pending.values_mut() {
            let due: Vec<Resend> = p.resend.iter().filter(|(t, _)| *t <= now).map(|(_, r)| *r).collect();
            p.resend.retain(|(t, _)| *t > now);
            for r in due {
                let command = match r {
                    Resend::Census => census_command(),
                    Resend::Retention => retention_command(&p.paths_for),
                };
                replies.send_to(p.conn, &command);
            }
        }
    }

    fn finish_ready(&mut self, session: &mut Session) -> Vec<CaptureEvent> {
        let open: BTreeSet<ConnId> = session.connections().collect();
        let ready: Vec<(u32, Ending)> = self
            .tap
            .borrow()
            .pending
            .iter()
            .filter_map(|(pid, p)| {
                let census_over = p.census || p.census_refused.is_some() || p.asked.elapsed() >= CENSUS_WAIT;
                let paths_over = p.paths_for.is_empty()
                    || p.retention
                    || p.census_refused.is_some()
                    || p.census_at.unwrap_or(p.asked).elapsed() >= PATHS_WAIT;
                if census_over && paths_over {
                    Some((*pid, Ending::Settled))
                } else if !open.contains(&p.conn) {
                    Some((*pid, Ending::AgentGone))
                } else {
                    None
                }
            })
            .collect();
        let mut events = Vec::new();
        for (pid, ending) in ready {
            let Some(p) = self.tap.borrow_mut().pending.remove(&pid) else { continue };
            if let Some(ev) = self.write(session, pid, p, ending) {
                events.push(ev.clone());
                self.done(session, Some(ev));
            }
        }
        events
    }

    /// At the end of the session: whatever is pending is written as it is.
    pub fn flush(&mut self, session: &mut Session) -> Vec<CaptureEvent> {
        let pending: Vec<(u32, Pending)> = self.tap.borrow_mut().pending.drain().collect();
        let open: BTreeSet<ConnId> = session.connections().collect();
        let mut events = Vec::new();
        for (pid, p) in pending {
            // `run` ends when its worker does: then it is the worker that went first.
            let ending = if open.contains(&p.conn) { Ending::SessionOver } else { Ending::AgentGone };
            if let Some(ev) = self.write(session, pid, p, ending) {
                events.push(ev.clone());
                self.done(session, Some(ev));
            }
        }
        events
    }

    fn done(&mut self, session: &mut Session, ev: Option<CaptureEvent>) {
        let Some(ev) = ev else { return };
        self.total += 1;
        // The `capture` record, in the recording beside the producers' lines.
        let mut record = serde_json::to_value(&ev).unwrap_or_default();
        if let Some(obj) = record.as_object_mut() {
            obj.insert("v".into(), 1.into());
            obj.insert("type".into(), "capture".into());
            obj.insert("source".into(), "collector".into());
        }
        if let Some(r) = session.recorder.as_mut() {
            r.record(record.to_string().as_bytes());
        }
        let mut text = format!("capture: snapshot of pid {} written to {}", ev.pid, ev.file.display());
        if !ev.missing.is_empty() {
            text.push_str(&format!(" (without {})", ev.missing.join("; ")));
        }
        self.say(session, text);
    }

    /// Stderr in a plain session, the live view's alert line otherwise, and the report's notes.
    fn say(&mut self, session: &mut Session, text: String) {
        if session.view.mode() != ViewMode::Live {
            crate::terminal::print_stderr(&format!("leakscope: {text}\n"));
        }
        session.info.note("info", text.clone());
        self.last = Some(text);
    }

    fn write(&mut self, session: &mut Session, pid: u32, p: Pending, ending: Ending) -> Option<CaptureEvent> {
        let agent = session.store.producer(&ProducerKey { pid, source: Source::Agent });
        let cmdline = agent.and_then(|a| a.cmdline()).map(str::to_string);
        let mut missing = Vec::new();
        if !p.census {
            missing.push(match &p.census_refused {
                Some(why) => format!("census: {why}"),
                None => format!("census: {}", unanswered(ending, p.asked.elapsed(), CENSUS_WAIT)),
            });
        }
        if !p.paths_for.is_empty() && !p.retention {
            missing.push(if p.census_refused.is_some() && ending == Ending::Settled {
                "paths: not waited for (the census was refused)".to_string()
            } else {
                format!("paths: {}", unanswered(ending, p.census_at.unwrap_or(p.asked).elapsed(), PATHS_WAIT))
            });
        }
        if p.dropped > 0 {
            missing.push(format!("{} lines past the {} MiB a capture keeps", p.dropped, MAX_CAPTURE_BYTES >> 20));
        }
        let unix_ms = crate::units::unix_ms_now();
        let mut ndjson: Vec<u8> = Vec::new();
        // The hello first, so `diff` knows the command line.
        if let Some(h) = agent.and_then(|a| a.hello.as_ref()) {
            let mut v = serde_json::to_value(h).unwrap_or_default();
            if let Some(obj) = v.as_object_mut() {
                obj.insert("v".into(), 1.into());
                obj.insert("type".into(), "hello".into());
                obj.insert("source".into(), "agent".into());
                obj.insert("pid".into(), pid.into());
            }
            ndjson.extend_from_slice(v.to_string().as_bytes());
            ndjson.push(b'\n');
        }
        for line in &p.lines {
            ndjson.extend_from_slice(line);
            ndjson.push(b'\n');
        }
        let stem = format!("capture-{pid}-{}", crate::units::local_timestamp());
        let file = match self.settings.dir.write_new(&stem, "ndjson", &ndjson) {
            Ok(f) => f,
            Err(e) => {
                let text = format!("capture: cannot write the snapshot of pid {pid}: {e}");
                self.say(session, text);
                return None;
            }
        };
        let breaches: Vec<BreachInfo> = p
            .breaches
            .iter()
            .map(|b| BreachInfo { rule: b.rule.clone(), subject: b.subject.clone(), evidence: b.evidence.clone() })
            .collect();
        let mut rules: Vec<String> = Vec::new();
        for b in &breaches {
            if !rules.contains(&b.rule) {
                rules.push(b.rule.clone());
            }
        }
        let mut text = format!(
            "leakscope capture of pid {pid}{}\nat {} (unix ms {unix_ms})\n\nrules broken:\n",
            cmdline.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(),
            crate::units::local_timestamp()
        );
        for b in &breaches {
            text.push_str(&format!("  '{}'  by {}: {}\n", b.rule, b.subject, b.evidence));
        }
        for m in &missing {
            text.push_str(&format!("(missing: {m})\n"));
        }
        text.push('\n');
        text.push_str(&render_snapshot(&file, pid, session));
        let text_file = self.settings.dir.write_new(&stem, "txt", text.as_bytes()).ok();
        Some(CaptureEvent {
            pid,
            cmdline,
            asked_unix_ms: p.asked_unix_ms,
            unix_ms,
            rules,
            breaches,
            file,
            text_file,
            census: p.census,
            paths_for: p.paths_for,
            paths: p.retention,
            missing,
        })
    }
}

/// Why an answer is missing: the wait ran out, or the worker or the session ended first (then
/// with the time actually waited, so a short wait is never passed off as the full one).
fn unanswered(ending: Ending, waited: Duration, limit: Duration) -> String {
    let waited = crate::units::format_duration(Duration::from_secs(waited.as_secs()));
    match ending {
        Ending::Settled => format!("no answer within {}", crate::units::format_duration(limit)),
        Ending::AgentGone => format!("the worker's agent disconnected {waited} after the request, before answering"),
        Ending::SessionOver => format!("the session ended {waited} after the request, before an answer"),
    }
}

fn census_command() -> String {
    r#"{"cmd":"census"}"#.to_string()
}

fn retention_command(types: &[String]) -> String {
    serde_json::json!({"cmd": "retention", "types": types}).to_string()
}

fn pending(conn: ConnId, breaches: Vec<Breach>, paths_for: Vec<String>) -> Pending {
    Pending {
        conn,
        asked: Instant::now(),
        asked_unix_ms: crate::units::unix_ms_now(),
        breaches,
        paths_for,
        lines: Vec::new(),
        summary_at: None,
        bytes: 0,
        dropped: 0,
        census: false,
        census_at: None,
        census_refused: None,
        retention: false,
        retention_too_early: false,
        resend: Vec::new(),
    }
}

/// `'growth > 1MB/h' (site:T @ S +12 MB/h […]), …` — the first few.
fn describe(breaches: &[Breach]) -> String {
    let mut parts: Vec<String> =
        breaches.iter().take(3).map(|b| format!("'{}' ({} {})", b.rule, b.subject, b.evidence)).collect();
    if breaches.len() > 3 {
        parts.push(format!("{} more", breaches.len() - 3));
    }
    parts.join(", ")
}

/// The census table, the surviving sites and the paths, as `leakscope snapshot` prints them;
/// without a census, the worker's top sampled sites from the session.
fn render_snapshot(file: &std::path::Path, pid: u32, session: &Session) -> String {
    if let Ok(points) = crate::snapshot_file::load(file) {
        if let Some(point) = points.iter().rev().find(|p| p.pid == pid) {
            return crate::snapshot_file::render(point, 30);
        }
    }
    let th = crate::analysis::Thresholds::default();
    let mut out = String::from("no census: the top sampled sites of the session instead\n");
    for r in crate::sites::ranked(&session.store, Source::Agent, &th, None).iter().filter(|r| r.pid == pid).take(10) {
        out.push_str(&format!("{:>12}  {}\n", crate::units::format_bytes(r.latest.bytes), r.label()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tap_with(pid: u32, paths_for: &[&str]) -> Tap {
        let mut tap = Tap::default();
        tap.pending.insert(pid, pending(1, Vec::new(), paths_for.iter().map(|t| t.to_string()).collect()));
        tap
    }

    fn agent(pid: u32) -> ProducerKey {
        ProducerKey { pid, source: Source::Agent }
    }

    #[test]
    fn a_missing_answer_says_how_long_it_was_waited_for_and_why_the_wait_ended() {
        let waited = Duration::from_millis(20_400);
        assert_eq!(unanswered(Ending::Settled, CENSUS_WAIT, CENSUS_WAIT), "no answer within 2m00s");
        let gone = unanswered(Ending::AgentGone, waited, CENSUS_WAIT);
        assert!(gone.contains("disconnected 20s after the request"), "{gone}");
        assert!(!gone.contains("2m"), "{gone}");
        let over = unanswered(Ending::SessionOver, waited, PATHS_WAIT);
        assert!(over.contains("session ended 20s after"), "{over}");
    }

    #[test]
    fn refused_requests_are_sent_again_when_the_agent_says() {
        let mut tap = tap_with(7, &["App.Entry"]);
        let refused = br#"{"v":1,"type":"status","source":"agent","pid":7,"level":"warn","refused":"retention","retry_after_ms":2400,"message":"refused a retention command"}"#;
        tap.line(&agent(7), refused);
        let p = &tap.pending[&7];
        assert_eq!(p.resend.len(), 1);
        assert_eq!(p.resend[0].1, Resend::Retention);
        let wait = p.resend[0].0.saturating_duration_since(Instant::now());
        assert!(wait > Duration::from_secs(2) && wait <= Duration::from_millis(2400), "{wait:?}");
        // Another worker's lines and the shim's are not this capture's.
        tap.line(&agent(8), refused);
        tap.line(&ProducerKey { pid: 7, source: Source::Shim }, refused);
        assert_eq!(tap.pending[&7].lines.len(), 1);
    }

    #[test]
    fn paths_answered_before_the_census_are_asked_for_again_after_it() {
        let mut tap = tap_with(7, &["App.Entry"]);
        tap.line(
            &agent(7),
            br#"{"v":1,"type":"retention","source":"agent","pid":7,"types":[],"error":"cannot walk the heap yet"}"#,
        );
        assert!(!tap.pending[&7].retention && tap.pending[&7].resend.is_empty());
        tap.line(&agent(7), br#"{"v":1,"type":"census","source":"agent","pid":7,"gc":3,"types":[]}"#);
        let p = &tap.pending[&7];
        assert_eq!(p.resend.iter().map(|r| r.1).collect::<Vec<_>>(), vec![Resend::Retention]);
        assert!(!p.retention, "the early answer does not count");
    }

    #[test]
    fn a_capture_keeps_the_latest_summary_and_sees_its_answers() {
        let mut tap = tap_with(7, &["App.Entry"]);
        for seq in 0..5 {
            let line =
                format!(r#"{{"v":1,"type":"summary","source":"agent","pid":7,"seq":{seq},"t_ms":{}}}"#, seq * 1000);
            tap.line(&agent(7), line.as_bytes());
        }
        tap.line(&agent(7), br#"{"v":1,"type":"census","source":"agent","pid":7,"gc":3,"types":[]}"#);
        tap.line(&agent(7), br#"{"v":1,"type":"retention","source":"agent","pid":7,"types":[]}"#);
        let p = &tap.pending[&7];
        assert!(p.census && p.retention);
        let summaries: Vec<&Vec<u8>> = p.lines.iter().filter(|l| l.windows(9).any(|w| w == b"\"summary\"")).collect();
        assert_eq!(
            summaries.len(),
            1,
            "{:?}",
            p.lines.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect::<Vec<_>>()
        );
        assert!(String::from_utf8_lossy(summaries[0]).contains(r#""seq":4"#));
        assert_eq!(p.lines.len(), 3);
        assert_eq!(p.bytes, p.lines.iter().map(|l| l.len()).sum::<usize>());
    }
}
