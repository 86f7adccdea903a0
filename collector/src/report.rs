//! `report.json` (schema `leakscope.report/1`, documented in docs/CLI.md) and `report.txt`.
//!
//! The report is built once from the store into [`Report`]; the text is rendered from that
//! model, so both files always agree. Re-rendering a recording gives the same report, because
//! the run's own facts (command, exit, notes) are kept beside it in `session.json`.

use crate::analysis::{Growth, Thresholds, Verdict};
use crate::files::{Dir, FileError};
use crate::launch::ExitInfo;
use crate::protocol::{AgentHealth, GcStats, HeapSizes, Source};
use crate::sites::{self, SiteRow};
use crate::store::{Connection, InputStats, Note, Producer, Store, site_label};
use crate::units::{format_bytes, format_count, format_duration, format_rate_per_min};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const REPORT_SCHEMA: &str = "leakscope.report/1";
pub const SESSION_SCHEMA: &str = "leakscope.session/1";
/// Sites listed per process and kind in report.json (growing ones always included).
const JSON_TOP_SITES: usize = 50;
/// …and in report.txt.
const TEXT_TOP_SITES: usize = 15;
/// Frames shown under a finding in report.txt (all of them are in report.json).
const TEXT_FRAMES: usize = 8;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NativeTracking {
    pub enabled: bool,
    pub reason: Option<String>,
}

/// What the collector knows about the session beyond the producers' lines: `session.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionInfo {
    pub schema: String,
    /// `run`, `demo`, `listen`, `tail` or `report`.
    pub mode: String,
    pub command: Option<Vec<String>>,
    pub started_unix_ms: Option<u64>,
    pub ended_unix_ms: Option<u64>,
    pub exit: Option<ExitInfo>,
    /// Why leakscope stopped the target, if it did (`--duration elapsed`, `SIGINT (Ctrl-C)`).
    pub stopped_by: Option<String>,
    pub interval_ms: Option<u64>,
    pub native_tracking: Option<NativeTracking>,
    pub notes: Vec<Note>,
    /// `soak` sessions: what the user asked for (duration, warm-up, rules, baseline).
    #[serde(default)]
    pub soak: Option<crate::soak::SoakSettings>,
}

impl SessionInfo {
    pub fn new(mode: &str) -> Self {
        SessionInfo {
            schema: SESSION_SCHEMA.to_string(),
            mode: mode.to_string(),
            command: None,
            started_unix_ms: None,
            ended_unix_ms: None,
            exit: None,
            stopped_by: None,
            interval_ms: None,
            native_tracking: None,
            notes: Vec::new(),
            soak: None,
        }
    }

    pub fn note(&mut self, level: &str, message: impl Into<String>) {
        self.notes.push(Note { level: level.to_string(), message: message.into() });
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub generator: Generator,
    pub generated_unix_ms: u64,
    pub session: SessionSection,
    pub thresholds: Thresholds,
    pub input: InputStats,
    pub processes: Vec<ProcessReport>,
    pub findings: Vec<Finding>,
    /// Whether the sites had the points for a verdict (null when no producer connected).
    pub sufficiency: Option<crate::sufficiency::DataSufficiency>,
    pub messages: Vec<Message>,
    /// `soak` sessions: verdicts, rules, baseline (schema `leakscope.soak/1`); null otherwise.
    pub soak: Option<crate::soak::SoakReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Generator {
    pub name: &'static str,
    pub version: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionSection {
    pub mode: String,
    pub command: Option<Vec<String>>,
    pub started_unix_ms: Option<u64>,
    pub ended_unix_ms: Option<u64>,
    pub duration_ms: u64,
    pub exit: Option<ExitInfo>,
    pub exit_code: Option<i32>,
    pub stopped_by: Option<String>,
    pub interval_ms: Option<u64>,
    pub native_tracking: Option<NativeTracking>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessReport {
    pub pid: u32,
    pub cmdline: Option<String>,
    pub agent: Option<ProducerReport>,
    pub shim: Option<ProducerReport>,
    pub rss_bytes: Option<u64>,
    pub gc: Option<GcStats>,
    pub heap: Option<HeapSizes>,
    pub heap_total_bytes: Option<u64>,
    pub agent_health: Option<AgentHealth>,
    /// What the retention requests (`kept alive by`) cost the application.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_cost: Option<RetentionCost>,
    pub native_totals: Option<NativeTotalsReport>,
    pub managed_sites_total: usize,
    pub managed_sites: Vec<SiteReport>,
    pub native_sites_total: usize,
    pub native_sites: Vec<SiteReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProducerReport {
    pub version: Option<String>,
    pub runtime: Option<String>,
    pub sampling: Option<String>,
    pub mode: Option<String>,
    pub mean_bytes: Option<u64>,
    pub interval_ms: Option<u64>,
    pub start_unix_ms: Option<u64>,
    pub config: Option<serde_json::Value>,
    /// `summary` or `native` records received.
    pub reports: u64,
    pub first_t_ms: Option<u64>,
    pub last_t_ms: Option<u64>,
    pub duration_ms: u64,
    /// `bye`, `lost` (connection closed without bye) or `open`.
    pub ended: &'static str,
    pub bye_reason: Option<String>,
    pub degraded: Vec<String>,
    pub status_messages: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NativeTotalsReport {
    pub live_bytes: Option<u64>,
    pub live_allocs: Option<u64>,
    pub total_allocs: Option<u64>,
    pub total_frees: Option<u64>,
    pub mmap_bytes: Option<u64>,
    pub sampling_mean_bytes: Option<u64>,
    pub dropped: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteReport {
    /// Managed type; null for native sites.
    pub type_name: Option<String>,
    pub site: String,
    /// The call site's `File:line`, when the producer knows it.
    pub location: Option<String>,
    /// Full stack, innermost first; empty when the producer never sent it.
    pub frames: Vec<String>,
    /// `File:line` per frame (same length as `frames`), null where unknown.
    pub frame_lines: Vec<Option<String>>,
    pub live_bytes: u64,
    /// Estimated live objects (managed) or allocations (native).
    pub live_count: u64,
    pub samples: u64,
    pub age_gcs: Option<f64>,
    pub gens: Vec<u64>,
    pub peak_bytes: u64,
    /// Listed in the producer's latest record.
    pub present: bool,
    pub growth: Growth,
    /// Managed sites: full (gen2) GCs inside the analysed window (null for native sites).
    pub full_gcs_in_window: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `managed` or `native`.
    pub kind: &'static str,
    pub pid: u32,
    pub type_name: Option<String>,
    pub site: String,
    pub location: Option<String>,
    pub frames: Vec<String>,
    pub frame_lines: Vec<Option<String>>,
    pub bytes_per_min: f64,
    pub ci95_bytes_per_min: Option<[f64; 2]>,
    pub p_value: f64,
    pub live_bytes: u64,
    pub live_count: u64,
    pub window_ms: f64,
    /// Managed: full (gen2) GCs in the window; 0 means the growth has not yet been seen to
    /// survive a full GC (it could still be garbage waiting for one).
    pub full_gcs_in_window: Option<u64>,
    /// Managed: what keeps the type alive (reference paths from roots), when the agent was asked
    /// before the end (`retention` record), most instances first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_alive_by: Vec<KeptAliveBy>,
    /// Managed: the path whose instances kept rising over successive retention records: the
    /// owner to fix, even with no call site sampled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_to_fix: Option<crate::path_growth::GrowingPath>,
    /// One line, as printed at the end of a run.
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeptAliveBy {
    /// `static LeakApp.Clock.Tick → System.EventHandler → …`; `unknown (walk cut short: …)`
    /// when a budget stopped the search before this path's root.
    pub path: String,
    /// Instances on it (estimated, when the agent followed a sample of them).
    pub instances: u64,
    /// Their share of all the type's instances (when the record says how many there are).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
    /// The search found the root (false: `unknown`, cut short).
    pub finished: bool,
    /// Their own (shallow) bytes.
    pub bytes: u64,
    /// What the path's first object of the application's own keeps alive by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained: Option<Retained>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Retained {
    pub type_name: String,
    pub bytes_per_instance: u64,
    pub bytes: u64,
    /// Cut short: at least this much.
    pub lower_bound: bool,
}

impl From<&crate::protocol::RetentionPath> for KeptAliveBy {
    fn from(p: &crate::protocol::RetentionPath) -> KeptAliveBy {
        KeptAliveBy {
            path: p.render(),
            instances: p.instances.map_or(0, |n| n.u64()),
            share: None,
            finished: p.finished(),
            bytes: p.bytes.map_or(0, |n| n.u64()),
            retained: p.retained.as_ref().map(|r| Retained {
                type_name: r.type_name.clone(),
                bytes_per_instance: r.bytes_per_instance.map_or(0, |n| n.u64()),
                bytes: r.bytes.map_or(0, |n| n.u64()),
                lower_bound: r.lower_bound,
            }),
        }
    }
}

impl KeptAliveBy {
    /// The paths of a retention record for a type, with their shares; an unknown (cut short)
    /// path is kept among them however far down it ranks. A share is of the instances the walk
    /// met (`walked`, what the estimates add up to), not of the census's count, which the heap
    /// has moved away from by then (that only from an agent that does not say `walked`).
    pub fn of_type(r: &crate::protocol::Retention, type_name: &str, keep: usize) -> Vec<KeptAliveBy> {
        let total = r.type_entry(type_name).and_then(|t| t.walked.or(t.instances)).map(|n| n.u64()).filter(|&n| n > 0);
        let mut out: Vec<KeptAliveBy> = Vec::new();
        for (i, p) in r.paths_for(type_name).enumerate() {
            if i < keep || !p.finished() {
                let mut k = KeptAliveBy::from(p);
                k.share = total.map(|t| k.instances as f64 / t as f64);
                out.push(k);
            }
        }
        out
    }

    /// `static X → … (2 400 instances, 98 % of them; 77 KB shallow, 2.4 MB retained by X: 1 KB each)`
    pub fn line(&self) -> String {
        let mut o = format!("{} ({} instances", self.path, format_count(self.instances as f64));
        if let Some(share) = self.share {
            o.push_str(&format!(", {:.0} % of them", share * 100.0));
        }
        if let Some(r) = &self.retained {
            o.push_str(&format!(
                "; {} shallow, {}{} retained by {} ({}{} each)",
                format_bytes(self.bytes as f64),
                if r.lower_bound { "≥ " } else { "" },
                format_bytes(r.bytes as f64),
                short_type(&r.type_name),
                if r.lower_bound { "≥ " } else { "" },
                format_bytes(r.bytes_per_instance as f64)
            ));
        }
        o.push(')');
        o
    }
}

/// `LeakApp.PayloadSubscriber` → `PayloadSubscriber` (generic arguments kept).
fn short_type(name: &str) -> &str {
    let head = name.split('<').next().unwrap_or(name);
    match head.rfind('.') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RetentionCost {
    pub requests: usize,
    /// All their pauses together, and the longest single one (a walk, or the roots' GC).
    pub pause_ms: f64,
    pub max_pause_ms: f64,
    /// Requests that asked the GC for its roots, where from, and the longest such pause.
    pub roots_requests: usize,
    pub roots_source: Option<String>,
    pub roots_max_pause_ms: f64,
}

fn retention_cost(p: &Producer) -> Option<RetentionCost> {
    let h = &p.retention_history;
    if h.is_empty() {
        return None;
    }
    let f = |n: Option<crate::protocol::Num>| n.map_or(0.0, |n| n.0);
    let with_roots: Vec<_> = h.iter().filter_map(|r| r.roots.as_ref().filter(|x| x.reported)).collect();
    Some(RetentionCost {
        requests: h.len(),
        pause_ms: h.iter().map(|r| f(r.pause_ms)).sum(),
        max_pause_ms: h.iter().map(|r| f(r.max_pause_ms)).fold(0.0, f64::max),
        roots_requests: with_roots.len(),
        roots_source: with_roots.iter().find_map(|x| x.source.clone()),
        roots_max_pause_ms: with_roots.iter().map(|x| f(x.pause_ms)).fold(0.0, f64::max),
    })
}

/// Paths kept per finding.
const PATHS_PER_FINDING: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub level: String,
    /// `agent`, `shim` or `collector`.
    pub source: String,
    pub pid: Option<u32>,
    pub message: String,
}

pub fn build(store: &Store, session: &SessionInfo, th: &Thresholds) -> Report {
    build_with_soak(store, session, th, None)
}

/// Like [`build`], with the soak verdicts when `soak` is given (a `soak` session).
pub fn build_with_soak(
    store: &Store,
    session: &SessionInfo,
    th: &Thresholds,
    soak: Option<&crate::soak::Context>,
) -> Report {
    let managed = sites::ranked(store, Source::Agent, th, None);
    let native = sites::ranked(store, Source::Shim, th, None);
    let multi_process = store.processes().len() > 1;
    let mut processes = Vec::new();
    for view in store.processes() {
        let select = |rows: &[SiteRow]| -> (usize, Vec<SiteReport>) {
            let mine: Vec<&SiteRow> = rows.iter().filter(|r| r.pid == view.pid).collect();
            let listed = mine
                .iter()
                .enumerate()
                .filter(|(i, r)| *i < JSON_TOP_SITES || r.growth.verdict == Verdict::Growing)
                .map(|(_, r)| site_report(r))
                .collect();
            (mine.len(), listed)
        };
        let (managed_total, managed_sites) = select(&managed);
        let (native_total, native_sites) = select(&native);
        let agent = view.agent;
        processes.push(ProcessReport {
            pid: view.pid,
            cmdline: view.cmdline().map(str::to_string),
            agent: agent.map(producer_report),
            shim: view.shim.map(producer_report),
            rss_bytes: view.rss(),
            gc: agent.and_then(|a| a.gc.clone()),
            heap: agent.and_then(|a| a.heap.clone()),
            heap_total_bytes: agent.and_then(|a| a.heap.as_ref()).map(|h| h.total() as u64),
            agent_health: agent.and_then(|a| a.health.clone()),
            retention_cost: agent.and_then(retention_cost),
            native_totals: view.shim.and_then(|s| s.native.as_ref()).map(|n| NativeTotalsReport {
                live_bytes: n.live_bytes,
                live_allocs: n.live_allocs,
                total_allocs: n.total_allocs,
                total_frees: n.total_frees,
                mmap_bytes: n.mmap_bytes,
                sampling_mean_bytes: n.sampling_mean_bytes,
                dropped: n.dropped,
            }),
            managed_sites_total: managed_total,
            managed_sites,
            native_sites_total: native_total,
            native_sites,
        });
    }
    let findings = managed
        .iter()
        .chain(native.iter())
        .filter(|r| r.growth.verdict == Verdict::Growing)
        .map(|r| {
            let mut f = finding(r, multi_process);
            f.kept_alive_by = kept_alive_by(store, &f);
            f.owner_to_fix = owner_to_fix(store, f.pid, f.type_name.as_deref());
            f
        })
        .collect();
    let duration_ms = match (session.started_unix_ms, session.ended_unix_ms) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => store.producers().map(Producer::duration_ms).max().unwrap_or(0),
    };
    Report {
        schema: REPORT_SCHEMA,
        generator: Generator { name: "leakscope", version: env!("CARGO_PKG_VERSION") },
        generated_unix_ms: crate::units::unix_ms_now(),
        session: SessionSection {
            mode: session.mode.clone(),
            command: session.command.clone(),
            started_unix_ms: session.started_unix_ms,
            ended_unix_ms: session.ended_unix_ms,
            duration_ms,
            exit: session.exit,
            exit_code: session.exit.map(|e| e.shell_code()),
            stopped_by: session.stopped_by.clone(),
            interval_ms: session.interval_ms,
            native_tracking: session.native_tracking.clone(),
        },
        thresholds: th.clone(),
        input: store.input.clone(),
        sufficiency: crate::sufficiency::assess(&processes, session.interval_ms, th),
        processes,
        findings,
        messages: messages(store, session),
        soak: soak.map(|ctx| crate::soak::evaluate(store, session, ctx)),
    }
}

fn producer_report(p: &Producer) -> ProducerReport {
    let h = p.hello.clone().unwrap_or_default();
    ProducerReport {
        version: h.version,
        runtime: h.runtime,
        sampling: h.sampling,
        mode: h.mode,
        mean_bytes: h.mean_bytes.map(|n| n.u64()),
        interval_ms: h.interval_ms.map(|n| n.u64()),
        start_unix_ms: h.start_unix_ms.map(|n| n.u64()),
        config: h.config,
        reports: p.reports,
        first_t_ms: p.first_t_ms,
        last_t_ms: p.last_t_ms,
        duration_ms: p.duration_ms(),
        ended: match p.connection {
            Connection::SaidBye => "bye",
            Connection::Lost => "lost",
            Connection::Open => "open",
        },
        bye_reason: p.bye.as_ref().and_then(|b| b.reason.clone()),
        degraded: p.degraded_seen.clone(),
        status_messages: p.status_total,
    }
}

/// Frames and their `File:line`s as two arrays of the same length.
fn frames_and_lines(r: &SiteRow) -> (Vec<String>, Vec<Option<String>>) {
    match &r.frames {
        Some(stack) => {
            (stack.frames.clone(), (0..stack.frames.len()).map(|i| stack.line(i).map(str::to_string)).collect())
        }
        None => (Vec::new(), Vec::new()),
    }
}

fn site_report(r: &SiteRow) -> SiteReport {
    let (frames, frame_lines) = frames_and_lines(r);
    SiteReport {
        type_name: r.type_name.clone(),
        site: r.site.clone(),
        location: r.location.clone(),
        frames,
        frame_lines,
        live_bytes: r.latest.bytes.max(0.0).round() as u64,
        live_count: r.latest.count.max(0.0).round() as u64,
        samples: r.latest.samples.max(0.0).round() as u64,
        age_gcs: r.latest.age_gcs,
        gens: r.latest.gens.clone(),
        peak_bytes: r.peak_bytes.max(0.0).round() as u64,
        present: r.present,
        growth: r.growth.clone(),
        full_gcs_in_window: r.full_gcs,
    }
}

/// The paths of the producer's latest `retention` record for a managed finding's type.
fn kept_alive_by(store: &Store, f: &Finding) -> Vec<KeptAliveBy> {
    let Some(type_name) = f.type_name.as_deref() else { return Vec::new() };
    match latest_retention(store, f.pid, type_name) {
        Some(r) => KeptAliveBy::of_type(r, type_name, PATHS_PER_FINDING),
        None => Vec::new(),
    }
}

/// The latest retention record of a process's agent that answers for `type_name`.
pub fn latest_retention<'a>(store: &'a Store, pid: u32, type_name: &str) -> Option<&'a crate::protocol::Retention> {
    let producer = store.producers().find(|p| p.key.pid == pid && p.key.source == Source::Agent)?;
    producer.retention_history.iter().rev().map(|r| r.as_ref()).find(|r| r.type_entry(type_name).is_some())
}

/// The path of a managed type whose instances kept rising over the producer's retention records.
pub fn owner_to_fix(store: &Store, pid: u32, type_name: Option<&str>) -> Option<crate::path_growth::GrowingPath> {
    let producer = store.producers().find(|p| p.key.pid == pid && p.key.source == Source::Agent)?;
    crate::path_growth::growing_path(producer.retention_history.iter().map(|r| r.as_ref()), type_name?)
}

/// Managed types of the growing findings: what to ask the agent about before a run ends.
pub fn growing_managed_types(store: &Store, th: &Thresholds) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = Vec::new();
    for r in sites::ranked(store, Source::Agent, th, None).iter().filter(|r| r.growth.verdict == Verdict::Growing) {
        if let Some(t) = &r.type_name {
            if !out.iter().any(|(pid, name)| *pid == r.pid && name == t) {
                out.push((r.pid, t.clone()));
            }
        }
    }
    out
}

fn finding(r: &SiteRow, multi_process: bool) -> Finding {
    let g = &r.growth;
    let at = match &r.location {
        Some(loc) => format!("{} ({loc})", r.site),
        None => r.site.clone(),
    };
    let what = match &r.type_name {
        Some(t) => format!("{t} allocated at {at}"),
        None => format!("native memory allocated at {at}"),
    };
    let count_word = if r.source == Source::Agent { "objects" } else { "allocations" };
    let mut text = format!("Leak suspect: {what}, {}", format_rate_per_min(g.bytes_per_min));
    if let Some([lo, hi]) = g.ci95_bytes_per_min {
        let _ = write!(text, " (95% CI {} to {})", format_rate_per_min(lo), format_rate_per_min(hi));
    }
    let _ = write!(
        text,
        ", {} live in {} {count_word}, trend p {} over {}",
        format_bytes(r.latest.bytes),
        format_count(r.latest.count),
        format_p(g.p_value),
        format_duration(Duration::from_millis(g.window_ms as u64))
    );
    match r.full_gcs {
        Some(0) => text.push_str(
            "; no full GC in the window yet, so this could still be garbage waiting for one: record longer to confirm",
        ),
        Some(n) => {
            let _ = write!(text, ", across {n} full GC{}", if n == 1 { "" } else { "s" });
        }
        None => {}
    }
    if multi_process {
        let _ = write!(text, " [pid {}]", r.pid);
    }
    let (frames, frame_lines) = frames_and_lines(r);
    Finding {
        kind: if r.source == Source::Agent { "managed" } else { "native" },
        pid: r.pid,
        type_name: r.type_name.clone(),
        site: r.site.clone(),
        location: r.location.clone(),
        frames,
        frame_lines,
        bytes_per_min: g.bytes_per_min,
        ci95_bytes_per_min: g.ci95_bytes_per_min,
        p_value: g.p_value,
        live_bytes: r.latest.bytes.max(0.0).round() as u64,
        live_count: r.latest.count.max(0.0).round() as u64,
        window_ms: g.window_ms,
        full_gcs_in_window: r.full_gcs,
        kept_alive_by: Vec::new(),
        owner_to_fix: None,
        text,
    }
}

/// The frames worth reading: from the site down, with the count of runtime frames above it
/// (allocation helpers such as `System.String.Ctor`). report.json keeps them all.
pub fn frames_from_site<'a>(frames: &'a [String], site: &str) -> (usize, &'a [String]) {
    match frames.iter().position(|f| f == site) {
        Some(i) => (i, &frames[i..]),
        None => (0, frames),
    }
}

fn write_frames(o: &mut String, all_frames: &[String], lines: &[Option<String>], site: &str, max: usize) {
    let (above, frames) = frames_from_site(all_frames, site);
    for (i, frame) in frames.iter().take(max).enumerate() {
        let line = match lines.get(above + i) {
            Some(Some(l)) => format!(" ({l})"),
            _ => String::new(),
        };
        let _ = writeln!(o, "      {} {frame}{line}", if i == 0 { "at" } else { "  " });
    }
    if frames.len() > max {
        let _ = writeln!(o, "         … {} more frames in report.json", frames.len() - max);
    }
    if above > 0 && !frames.is_empty() {
        let _ = writeln!(o, "         ({above} runtime frame(s) above the site, in report.json)");
    }
}

pub fn format_p(p: f64) -> String {
    if p < 0.001 { "< 0.001".to_string() } else { format!("= {p:.3}") }
}

fn messages(store: &Store, session: &SessionInfo) -> Vec<Message> {
    let mut out = Vec::new();
    for n in &session.notes {
        out.push(Message { level: n.level.clone(), source: "collector".into(), pid: None, message: n.message.clone() });
    }
    for p in store.producers() {
        if let Some(reason) = p.hello.as_ref().and_then(|h| h.native_off_reason()) {
            let message = format!("native tracking off: {reason}");
            // The shim usually says it in a status too (with its own level): once is enough.
            if !p.statuses.iter().any(|st| st.message == message) {
                out.push(Message {
                    level: "warn".into(),
                    source: p.key.source.as_str().into(),
                    pid: Some(p.key.pid),
                    message,
                });
            }
        }
        for d in &p.degraded_seen {
            out.push(Message {
                level: "warn".into(),
                source: p.key.source.as_str().into(),
                pid: Some(p.key.pid),
                message: format!("degraded: {d}"),
            });
        }
        for s in &p.statuses {
            out.push(Message {
                level: s.level.clone(),
                source: p.key.source.as_str().into(),
                pid: Some(p.key.pid),
                message: s.message.clone(),
            });
        }
        if p.status_total > p.statuses.len() as u64 {
            out.push(Message {
                level: "info".into(),
                source: "collector".into(),
                pid: Some(p.key.pid),
                message: format!("{} earlier status messages not kept", p.status_total - p.statuses.len() as u64),
            });
        }
        if p.series_evicted > 0 {
            out.push(Message {
                level: "info".into(),
                source: "collector".into(),
                pid: Some(p.key.pid),
                message: format!("{} small sites dropped to bound memory", p.series_evicted),
            });
        }
    }
    for n in &store.notes {
        out.push(Message { level: n.level.clone(), source: "collector".into(), pid: None, message: n.message.clone() });
    }
    for m in bounds_messages(store) {
        out.push(Message { level: "warn".into(), source: "collector".into(), pid: None, message: m });
    }
    out
}

/// What the collector's bounds dropped (producers beyond the cap, data over the memory
/// budget, stacks over their cap), so no report looks complete when it is not.
pub fn bounds_messages(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    let r = &store.refused;
    if r.records > 0 {
        let pids: Vec<String> = r.pids.iter().map(u32::to_string).collect();
        out.push(format!(
            "{} record(s) of producers the session did not keep were dropped ({}); pid(s) {}{}",
            r.records,
            r.reason.as_deref().unwrap_or("over the limit"),
            pids.join(", "),
            if r.pids.len() >= 5 { ", …" } else { "" }
        ));
    }
    for p in store.producers() {
        if p.budget_dropped > 0 {
            out.push(format!(
                "{} pid {}: {} series, stacks or records dropped: the collector's memory budget ({}) was full",
                p.key.source.as_str(),
                p.key.pid,
                p.budget_dropped,
                format_bytes(store.budget.limit() as f64)
            ));
        } else if p.stacks_dropped > 0 {
            out.push(format!(
                "{} pid {}: {} stacks dropped (more than {} distinct): some sites show no frames",
                p.key.source.as_str(),
                p.key.pid,
                p.stacks_dropped,
                crate::store::MAX_STACKS_PER_PRODUCER
            ));
        }
    }
    out
}

/// The files a session wrote into its output directory, and the ones it could not write (a
/// full disk, a link or FIFO planted there). A failure never stops the others, nor the summary.
#[derive(Debug, Default)]
pub struct Written {
    pub files: Vec<PathBuf>,
    pub failed: Vec<FileError>,
}

impl Written {
    pub fn add(&mut self, result: Result<PathBuf, FileError>) {
        match result {
            Ok(p) => self.files.push(p),
            Err(e) => self.failed.push(e),
        }
    }

    /// Whether `name` was written (by this call, into that directory).
    pub fn has(&self, name: &str) -> bool {
        self.files.iter().any(|p| p.file_name().is_some_and(|n| n == name))
    }

    /// One line per file that could not be written, naming it and why (for stderr).
    pub fn render_failures(&self) -> String {
        let mut o = String::new();
        for e in &self.failed {
            let _ = writeln!(o, "leakscope: error: could not write {e}");
        }
        if self.failed.iter().any(|e| e.io_kind().is_some()) {
            let _ = writeln!(
                o,
                "  hint: nothing half-written was left; free some space (or pick another --out) and re-render with `leakscope report`"
            );
        }
        o
    }
}

/// Writes report.json and report.txt into `dir`.
pub fn write_files(dir: &Dir, report: &Report, written: &mut Written) {
    let json = serde_json::to_string_pretty(report).map(|mut j| {
        j.push('\n');
        j
    });
    match json {
        Ok(json) => written.add(dir.write_file("report.json", json.as_bytes())),
        Err(e) => written.add(Err(FileError {
            path: dir.join("report.json"),
            problem: crate::files::Problem::Io(std::io::Error::other(e)),
        })),
    }
    written.add(dir.write_file("report.txt", render_text(report).as_bytes()));
}

/// Soak sessions: junit.xml and the self-contained report.html (charts need the store).
pub fn write_soak_files(dir: &Dir, report: &Report, store: &Store, written: &mut Written) {
    if report.soak.is_none() {
        return;
    }
    written.add(dir.write_file("junit.xml", crate::soak::junit::render(report).as_bytes()));
    written.add(dir.write_file("report.html", crate::soak::html::render(report, store).as_bytes()));
}

pub fn write_session(dir: &Dir, session: &SessionInfo, written: &mut Written) {
    let mut json = serde_json::to_string_pretty(session).unwrap_or_default();
    json.push('\n');
    written.add(dir.write_file("session.json", json.as_bytes()));
}

/// session.json is small; anything this large is not one of ours.
const MAX_SESSION_BYTES: u64 = 16 << 20;

/// The session.json beside a recording (never through a link, never more than 16 MiB).
pub fn read_session(dir: &Path) -> Option<SessionInfo> {
    let text = crate::files::read_regular_nofollow(&dir.join("session.json"), MAX_SESSION_BYTES).ok()?;
    serde_json::from_slice(&text).ok()
}

fn opt_bytes(v: Option<u64>) -> String {
    v.map(|b| format_bytes(b as f64)).unwrap_or_else(|| "—".to_string())
}

/// The human report.
pub fn render_text(r: &Report) -> String {
    let mut o = String::new();
    let s = &r.session;
    let title = s
        .command
        .as_ref()
        .map(|c| c.join(" "))
        // The .NET process (the one with an agent) names the session, not a wrapper like `timeout`.
        .or_else(|| r.processes.iter().filter(|p| p.agent.is_some()).find_map(|p| p.cmdline.clone()))
        .or_else(|| r.processes.iter().find_map(|p| p.cmdline.clone()))
        .unwrap_or_else(|| "(unknown command)".to_string());
    let _ = writeln!(o, "leakscope report: {title}");
    let mut line = format!("{} session, {}", s.mode, format_duration(Duration::from_millis(s.duration_ms)));
    if let Some(exit) = &s.exit {
        let _ = write!(line, "; target {}", exit.describe());
    }
    if let Some(by) = &s.stopped_by {
        let _ = write!(line, " (stopped by leakscope: {by})");
    }
    let _ = writeln!(o, "{line}");
    let th = &r.thresholds;
    let _ = writeln!(
        o,
        "Sizes in decimal units (1 MB = 1,000,000 bytes). Growth: Theil–Sen slope after a {:.0}% warm-up. \
         Growing: Mann–Kendall p < {} and > {} and > {:.0}% of the site's peak, still rising at the end.",
        th.warmup_fraction * 100.0,
        th.alpha,
        format_bytes(th.min_growth_bytes),
        th.min_growth_fraction * 100.0
    );
    let _ = writeln!(o);
    if let Some(soak) = &r.soak {
        o.push_str(&crate::soak::render_text(soak));
        let _ = writeln!(o);
    }

    if r.soak.is_some() {
        let _ =
            writeln!(o, "FINDINGS OF THE LIVE VIEW (sampled survivors per summary; the soak verdicts above decide)");
    } else {
        let _ = writeln!(o, "FINDINGS");
    }
    if r.findings.is_empty() {
        let connected = r.processes.iter().any(|p| p.agent.is_some() || p.shim.is_some());
        if !connected {
            let _ = writeln!(o, "  Nothing to analyse: no agent or shim sent data (see MESSAGES).");
        } else if let Some(s) = &r.sufficiency {
            let _ = writeln!(o, "  {}", crate::sufficiency::verdict_line(s, &r.session.mode));
        }
    }
    for f in &r.findings {
        let _ = writeln!(o, "  {}", f.text);
        write_frames(&mut o, &f.frames, &f.frame_lines, &f.site, TEXT_FRAMES);
        write_kept_alive_by(&mut o, f);
    }

    for p in &r.processes {
        let _ = writeln!(o);
        let _ = writeln!(o, "PROCESS {}{}", p.pid, p.cmdline.as_ref().map(|c| format!(": {c}")).unwrap_or_default());
        if let Some(a) = &p.agent {
            let _ = writeln!(
                o,
                "  agent {}: .NET {}, sampling {}{}, interval {}, {} summaries over {}, ended: {}",
                a.version.as_deref().unwrap_or("?"),
                a.runtime.as_deref().unwrap_or("?"),
                a.sampling.as_deref().unwrap_or("?"),
                a.mode.as_deref().map(|m| format!(" ({m})")).unwrap_or_default(),
                a.interval_ms.map(|i| format_duration(Duration::from_millis(i))).unwrap_or_else(|| "?".into()),
                a.reports,
                format_duration(Duration::from_millis(a.duration_ms)),
                ended_text(a)
            );
            if let Some(c) = &p.retention_cost {
                let mut line = format!(
                    "  retention paths: {} request{}, pausing the application {:.0} ms in all, {:.0} ms at most",
                    c.requests,
                    if c.requests == 1 { "" } else { "s" },
                    c.pause_ms,
                    c.max_pause_ms
                );
                if c.roots_requests > 0 {
                    let _ = write!(
                        line,
                        "; GC roots asked for {} time{} ({}, up to {:.0} ms)",
                        c.roots_requests,
                        if c.roots_requests == 1 { "" } else { "s" },
                        match c.roots_source.as_deref() {
                            Some("heap-dump") => "the runtime's heap dump: needs no setting, background GC stays on",
                            _ => "GC callbacks",
                        },
                        c.roots_max_pause_ms
                    );
                }
                let _ = writeln!(o, "{line}");
            }
            if let Some(kinds) = a.config.as_ref().and_then(|c| c.get("retention_roots")) {
                let list = |k: &str| {
                    kinds[k]
                        .as_array()
                        .map(|v| v.iter().filter_map(|s| s.as_str()).collect::<Vec<_>>().join("; "))
                        .unwrap_or_default()
                };
                let _ = writeln!(o, "  retention paths can start at: {}", list("named"));
                let not = list("not_named");
                if !not.is_empty() {
                    let _ = writeln!(o, "  retention paths cannot name: {not}");
                }
            }
        } else {
            let _ = writeln!(o, "  agent: not connected (no managed data)");
        }
        if let Some(sh) = &p.shim {
            let _ = writeln!(
                o,
                "  shim {}: sampling {}{}, {} reports over {}, ended: {}",
                sh.version.as_deref().unwrap_or("?"),
                sh.sampling.as_deref().unwrap_or("?"),
                sh.mean_bytes.map(|m| format!(" (mean {})", format_bytes(m as f64))).unwrap_or_default(),
                sh.reports,
                format_duration(Duration::from_millis(sh.duration_ms)),
                ended_text(sh)
            );
        }
        let mut mem = format!("  memory at end: RSS {}", opt_bytes(p.rss_bytes));
        if let Some(h) = &p.heap {
            let _ = write!(mem, "; managed heap {} ({})", opt_bytes(p.heap_total_bytes), heap_parts(h));
        }
        if let Some(n) = &p.native_totals {
            let _ = write!(
                mem,
                "; native live {} in {} allocations, mmap {}",
                opt_bytes(n.live_bytes),
                n.live_allocs.map(|c| format_count(c as f64)).unwrap_or_else(|| "?".into()),
                opt_bytes(n.mmap_bytes)
            );
        }
        let _ = writeln!(o, "{mem}");
        if let Some(gc) = &p.gc {
            let _ = writeln!(o, "  gc: {}", gc_text(gc));
        }
        if let Some(h) = &p.agent_health {
            let _ = writeln!(o, "  agent health: {}", health_text(h));
        }
        site_table(&mut o, "Managed survivors", &p.managed_sites, p.managed_sites_total, true);
        site_table(&mut o, "Native survivors", &p.native_sites, p.native_sites_total, false);
    }

    if !r.messages.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "MESSAGES");
        for m in &r.messages {
            let who = match m.pid {
                Some(pid) => format!("{} {pid}", m.source),
                None => m.source.clone(),
            };
            let _ = writeln!(o, "  {:<5} {who}: {}", m.level, m.message);
        }
    }

    let i = &r.input;
    let _ = writeln!(o);
    let _ = writeln!(o, "INPUT");
    let _ = writeln!(o, "  {} lines, {} records, {} skipped{}", i.lines, i.records, i.skipped(), skipped_breakdown(i));
    for ex in &i.examples {
        let _ = writeln!(o, "    {ex}");
    }
    o
}

/// The short version printed when a session ends: findings, one memory line per process,
/// the top sites, warnings, and where the files are.
/// The main path in full; the others (in report.json) only counted: a common type such as
/// String has many holders, and the leak's is the one with most instances.
fn write_kept_alive_by(o: &mut String, f: &Finding) {
    if let Some(owner) = &f.owner_to_fix {
        let _ = writeln!(o, "      owner to fix: {}", owner.text());
    }
    for line in kept_alive_lines(&f.kept_alive_by) {
        let _ = writeln!(o, "      {line}");
    }
}

/// `kept alive by: …` lines: the main path; and, when a budget cut the search short, the share
/// whose path is unknown (with what would have been needed), never a guessed root.
pub fn kept_alive_lines(paths: &[KeptAliveBy]) -> Vec<String> {
    let mut lines = Vec::new();
    let Some(top) = paths.first() else { return lines };
    lines.push(format!("kept alive by: {}", top.line()));
    if let Some(unknown) = paths[1..].iter().find(|k| !k.finished) {
        lines.push(format!("kept alive by: {}", unknown.line()));
    }
    let shown: u64 = top.instances + paths[1..].iter().find(|k| !k.finished).map_or(0, |k| k.instances);
    let others: u64 = paths.iter().map(|k| k.instances).sum::<u64>() - shown;
    let other_paths = paths.len() - 1 - paths[1..].iter().any(|k| !k.finished) as usize;
    if others > 0 {
        lines.push(format!(
            "(and {} more instances of the type on {} other paths, in report.json)",
            format_count(others as f64),
            other_paths
        ));
    }
    lines
}

pub fn render_summary(r: &Report, out_dir: Option<&Path>) -> String {
    const SUMMARY_SITES: usize = 5;
    const SUMMARY_FRAMES: usize = 4;
    let mut o = String::new();
    let s = &r.session;
    let _ = writeln!(o);
    let mut head = format!("leakscope: {} session, {}", s.mode, format_duration(Duration::from_millis(s.duration_ms)));
    if let Some(exit) = &s.exit {
        let _ = write!(head, "; target {}", exit.describe());
    }
    if let Some(by) = &s.stopped_by {
        let _ = write!(head, " (stopped: {by})");
    }
    let _ = writeln!(o, "{head}");
    for f in &r.findings {
        let _ = writeln!(o, "  {}", f.text);
        write_frames(&mut o, &f.frames, &f.frame_lines, &f.site, SUMMARY_FRAMES);
        write_kept_alive_by(&mut o, f);
    }
    let connected = r.processes.iter().any(|p| p.agent.is_some() || p.shim.is_some());
    if let (true, true, Some(suff)) = (r.findings.is_empty(), connected, &r.sufficiency) {
        let _ = writeln!(o, "  {}", crate::sufficiency::verdict_line(suff, &s.mode));
    }
    for p in &r.processes {
        let mut mem = format!("  pid {}: RSS {}", p.pid, opt_bytes(p.rss_bytes));
        if p.heap.is_some() {
            let _ = write!(mem, ", managed heap {}", opt_bytes(p.heap_total_bytes));
        }
        if let Some(n) = &p.native_totals {
            let _ = write!(mem, ", native live {}", opt_bytes(n.live_bytes));
        }
        if let Some(h) = &p.agent_health {
            if let Some(d) = h.degraded.as_ref().filter(|d| !d.is_empty()) {
                let _ = write!(mem, "; agent degraded: {d}");
            }
        }
        let _ = writeln!(o, "{mem}");
        for site in p.managed_sites.iter().take(SUMMARY_SITES).chain(p.native_sites.iter().take(SUMMARY_SITES.min(3))) {
            let label = match &site.type_name {
                Some(_) => site_label(site.type_name.as_deref(), &site.site, site.location.as_deref()),
                None => format!("native @ {}", site.site),
            };
            let growth = match site.growth.verdict {
                Verdict::InsufficientData => "—".to_string(),
                _ => format_rate_per_min(site.growth.bytes_per_min),
            };
            let _ = writeln!(
                o,
                "    {:<17} {:>14} {:>10}  {label}",
                site.growth.verdict.as_str(),
                growth,
                format_bytes(site.live_bytes as f64)
            );
        }
    }
    for m in r.messages.iter().filter(|m| m.level == "warn" || m.level == "error").take(6) {
        let _ = writeln!(o, "  {}: {}", m.level, m.message);
    }
    if r.input.skipped() > 0 {
        let _ = writeln!(o, "  {} input lines skipped{}", r.input.skipped(), skipped_breakdown(&r.input));
    }
    if let Some(dir) = out_dir {
        let _ = writeln!(o, "Full report: {}", dir.join("report.txt").display());
        let _ = writeln!(
            o,
            "             {} (JSON), recording.ndjson (re-render: leakscope report {})",
            dir.join("report.json").display(),
            dir.display()
        );
    }
    o
}

fn ended_text(p: &ProducerReport) -> String {
    match p.ended {
        "bye" => format!("bye ({})", p.bye_reason.as_deref().unwrap_or("no reason given")),
        "lost" => "connection lost without bye".to_string(),
        _ => "still connected".to_string(),
    }
}

pub fn heap_parts(h: &HeapSizes) -> String {
    let part = |name: &str, v: Option<crate::protocol::Num>| v.map(|n| format!("{name} {}", format_bytes(n.0)));
    [part("gen0", h.gen0), part("gen1", h.gen1), part("gen2", h.gen2), part("LOH", h.loh), part("POH", h.poh)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn gc_text(gc: &GcStats) -> String {
    let mut t = gc.count.iter().enumerate().map(|(i, c)| format!("gen{i} {}", c.u64())).collect::<Vec<_>>().join(", ");
    if t.is_empty() {
        t = "no collections reported".to_string();
    }
    if let Some(induced) = gc.induced.filter(|n| n.u64() > 0) {
        let _ = write!(t, " ({} induced)", induced.u64());
    }
    if let Some(total) = gc.pause_ms_total {
        let _ = write!(t, "; pause {:.1} ms total", total.0);
    }
    if let Some(max) = gc.pause_ms_max {
        let _ = write!(t, ", {:.1} ms max", max.0);
    }
    t
}

pub fn health_text(h: &AgentHealth) -> String {
    let n = |v: Option<crate::protocol::Num>| v.map(|x| x.u64().to_string()).unwrap_or_else(|| "?".into());
    let mut t = format!("tracked {}/{} samples, {} dropped", n(h.tracked), n(h.max_tracked), n(h.dropped));
    if let Some(m) = h.memory_bytes {
        let _ = write!(t, ", agent memory {}", format_bytes(m.0));
    }
    match &h.degraded {
        Some(d) if !d.is_empty() => {
            let _ = write!(t, "; DEGRADED: {d}");
        }
        _ => t.push_str("; not degraded"),
    }
    t
}

fn skipped_breakdown(i: &InputStats) -> String {
    let parts: Vec<String> = [
        (i.not_json, "not JSON"),
        (i.malformed, "malformed"),
        (i.unknown_version, "unknown version"),
        (i.unknown_type, "unknown type"),
        (i.unknown_source, "unknown source"),
        (i.oversize, "over 4 MiB"),
        (i.truncated, "truncated"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if parts.is_empty() { String::new() } else { format!(" ({})", parts.join(", ")) }
}

fn site_table(o: &mut String, title: &str, sites: &[SiteReport], total: usize, managed: bool) {
    if total == 0 {
        return;
    }
    let shown = sites.len().min(TEXT_TOP_SITES);
    let _ = writeln!(o, "  {title} (top {shown} of {total} sites)");
    let count_head = if managed { "objects" } else { "allocs" };
    let _ = writeln!(
        o,
        "    {:<17} {:>14} {:>10} {:>10} {:>10}  {}",
        "verdict",
        "growth",
        "live",
        "peak",
        count_head,
        if managed { "type @ site" } else { "site" }
    );
    for s in sites.iter().take(shown) {
        let label = site_label(s.type_name.as_deref(), &s.site, s.location.as_deref());
        let growth = match s.growth.verdict {
            Verdict::InsufficientData => "—".to_string(),
            _ => format_rate_per_min(s.growth.bytes_per_min),
        };
        let _ = writeln!(
            o,
            "    {:<17} {:>14} {:>10} {:>10} {:>10}  {label}",
            s.growth.verdict.as_str(),
            growth,
            format_bytes(s.live_bytes as f64),
            format_bytes(s.peak_bytes as f64),
            format_count(s.live_count as f64),
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A search a budget cut short: report.txt keeps the path it finished (as a share of the
    /// instances) and says `unknown` for the rest, with the budget that would have sufficed,
    /// never a root kind.
    #[test]
    fn a_search_cut_short_prints_unknown_with_the_budget_needed() {
        let mut store = sample_store();
        store.ingest_line(br#"{"v":1,"type":"retention","source":"agent","pid":42,"t_ms":61000,"truncated":true,"truncated_by":["memory"],"cut_short":"walk cut short: 900 of 4096 sampled instances (22 %) not followed to a root after 3 walks of 3.10 M objects, memory budget 1 MB ran out following 12 k objects; at least 3 MB needed","types":[{"type_name":"System.String","instances":10000,"sampled":4096,"unknown":2200,"paths":[{"root":{"kind":"static","name":"Demo.OrderAudit.Lines"},"steps":[{"type_name":"System.Collections.Generic.List<String>"},{"type_name":"System.String[]","field":"_items"},{"type_name":"System.String","field":"[]"}],"instances":7800,"bytes":624000},{"root":{"kind":"unknown","detail":"walk cut short: 900 of 4096 sampled instances (22 %) not followed to a root after 3 walks of 3.10 M objects, memory budget 1 MB ran out following 12 k objects; at least 3 MB needed"},"steps":[{"type_name":"System.String"}],"instances":2200,"bytes":176000}]}]}"#);
        let report = build(&store, &SessionInfo::new("run"), &Thresholds::default());
        let finding = report.findings.iter().find(|f| f.type_name.as_deref() == Some("System.String")).unwrap();
        let lines = kept_alive_lines(&finding.kept_alive_by);
        assert_eq!(
            lines[0],
            "kept alive by: static Demo.OrderAudit.Lines → System.Collections.Generic.List<String> → System.String[] (_items) → System.String ([]) (7800 instances, 78 % of them)"
        );
        assert!(lines[1].starts_with("kept alive by: unknown (walk cut short: "), "{lines:?}");
        assert!(lines[1].contains("memory budget 1 MB") && lines[1].contains("at least 3 MB needed"), "{lines:?}");
        assert!(lines[1].ends_with("(2200 instances, 22 % of them)"), "{lines:?}");
        let text = render_text(&report);
        assert!(text.contains("      kept alive by: unknown (walk cut short: "), "{text}");
        assert!(!text.contains("referenced by no object"), "{text}");
    }

    /// The share of a path is of the instances the search's walk met (`walked`), which its
    /// estimates add up to, not of the census's count: here the heap grew by a fifth between the
    /// two, and 9000 of the 12 000 met is 75 %, not 90 %.
    #[test]
    fn a_paths_share_is_of_the_instances_the_walk_met() {
        let mut store = sample_store();
        store.ingest_line(br#"{"v":1,"type":"retention","source":"agent","pid":42,"t_ms":61000,"types":[{"type_name":"System.String","instances":10000,"walked":12000,"sampled":4096,"paths":[{"root":{"kind":"static","name":"Demo.OrderAudit.Lines"},"steps":[{"type_name":"System.String"}],"instances":9000,"bytes":720000},{"root":{"kind":"other","detail":"referenced by no object"},"steps":[{"type_name":"System.String"}],"instances":3000,"bytes":240000}]}]}"#);
        let report = build(&store, &SessionInfo::new("run"), &Thresholds::default());
        let finding = report.findings.iter().find(|f| f.type_name.as_deref() == Some("System.String")).unwrap();
        let shares: Vec<f64> = finding.kept_alive_by.iter().filter_map(|k| k.share).collect();
        assert_eq!(shares.first(), Some(&0.75), "{:?}", finding.kept_alive_by);
        let lines = kept_alive_lines(&finding.kept_alive_by);
        assert!(lines[0].ends_with("(9000 instances, 75 % of them)"), "{lines:?}");
    }

    /// A synthetic session: one process with a leaking site, a churning one and a shim.
    pub(crate) fn sample_store() -> Store {
        let mut store = Store::new();
        store.ingest_line(br#"{"v":1,"type":"hello","source":"agent","pid":42,"version":"0.1.0","cmdline":"dotnet Demo.dll","interval_ms":2000,"runtime":"10.0.12","sampling":"AllocationSampled","mode":"sampled"}"#);
        store.ingest_line(br#"{"v":1,"type":"stack","source":"agent","pid":42,"id":1,"frames":["Demo.OrderAudit.Record","Demo.OrderWorker.Handle","Demo.Program.Main"],"lines":["OrderAudit.cs:17","OrderWorker.cs:20",null]}"#);
        store.ingest_line(
            br#"{"v":1,"type":"hello","source":"shim","pid":42,"sampling":"poisson","mean_bytes":524288}"#,
        );
        for i in 0..30u64 {
            let leak = 100_000 + i * 100_000;
            let churn = if i % 2 == 0 { 5_000_000 } else { 4_500_000 };
            store.ingest_line(format!(
                r#"{{"v":1,"type":"summary","source":"agent","pid":42,"t_ms":{},"rss":90000000,"heap":{{"gen0":1,"gen2":{}}},"gc":{{"count":[{i},1,0]}},"agent":{{"tracked":10,"max_tracked":100000,"dropped":0}},"sites":[{{"type_name":"System.String","site":"Demo.OrderAudit.Record","location":"OrderAudit.cs:17","stack":1,"samples":{i},"objects":{},"bytes":{leak}}},{{"type_name":"System.Byte[]","site":"Demo.Parser.Parse","samples":3,"objects":10,"bytes":{churn}}}]}}"#,
                2000 * (i + 1),
                leak,
                leak / 150
            ).as_bytes());
            store.ingest_line(format!(
                r#"{{"v":1,"type":"native","source":"shim","pid":42,"t_ms":{},"live_bytes":1000000,"live_allocs":50,"sites":[{{"site":"malloc_steady (libx.so+0x10)","allocs":50,"bytes":1000000}}]}}"#,
                2000 * (i + 1)
            ).as_bytes());
        }
        store.ingest_line(
            br#"{"v":1,"type":"status","source":"agent","pid":42,"level":"warn","message":"tracking budget full"}"#,
        );
        store
            .ingest_line(br#"{"v":1,"type":"bye","source":"agent","pid":42,"t_ms":61000,"reason":"runtime shutdown"}"#);
        store.ingest_line(b"garbage");
        store
    }

    #[test]
    fn report_names_the_leak_and_not_the_churn() {
        let store = sample_store();
        let mut session = SessionInfo::new("run");
        session.command = Some(vec!["dotnet".into(), "Demo.dll".into()]);
        session.exit = Some(ExitInfo { code: Some(0), signal: None });
        let r = build(&store, &session, &Thresholds::default());
        assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
        let f = &r.findings[0];
        assert_eq!(f.type_name.as_deref(), Some("System.String"));
        assert_eq!(f.site, "Demo.OrderAudit.Record");
        assert_eq!(f.frames.len(), 3);
        assert!((f.bytes_per_min - 3_000_000.0).abs() < 100_000.0, "{}", f.bytes_per_min);
        assert!(
            f.text.starts_with(
                "Leak suspect: System.String allocated at Demo.OrderAudit.Record (OrderAudit.cs:17), +3.00 MB/min"
            ),
            "{}",
            f.text
        );
        let p = &r.processes[0];
        assert_eq!(p.managed_sites_total, 2);
        assert_eq!(p.managed_sites[1].growth.verdict, Verdict::Steady);
        assert_eq!(p.native_sites[0].growth.verdict, Verdict::Steady);
        assert_eq!(p.agent.as_ref().unwrap().ended, "bye");
        assert_eq!(r.input.not_json, 1);
        assert!(r.messages.iter().any(|m| m.message == "tracking budget full"));
    }

    #[test]
    fn report_json_is_versioned_and_has_the_documented_fields() {
        let store = sample_store();
        let r = build(&store, &SessionInfo::new("tail"), &Thresholds::default());
        let v: serde_json::Value = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(v["schema"], "leakscope.report/1");
        for key in ["generator", "session", "thresholds", "input", "processes", "findings", "messages"] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        let site = &v["processes"][0]["managed_sites"][0];
        for key in ["type_name", "site", "frames", "live_bytes", "live_count", "peak_bytes", "growth"] {
            assert!(site.get(key).is_some(), "site lacks {key}");
        }
        assert_eq!(site["growth"]["verdict"], "growing");
        assert!(site["growth"]["ci95_bytes_per_min"].is_array());
        assert_eq!(v["processes"][0]["native_sites"][0]["type_name"], serde_json::Value::Null);
    }

    #[test]
    fn text_report_reads_like_a_finding() {
        let store = sample_store();
        let r = build(&store, &SessionInfo::new("tail"), &Thresholds::default());
        let text = render_text(&r);
        assert!(text.contains("FINDINGS\n  Leak suspect: System.String allocated at Demo.OrderAudit.Record"), "{text}");
        assert!(
            text.contains("      at Demo.OrderAudit.Record (OrderAudit.cs:17)\n         Demo.OrderWorker.Handle (OrderWorker.cs:20)\n         Demo.Program.Main\n"),
            "{text}"
        );
        assert!(text.contains("PROCESS 42: dotnet Demo.dll"));
        assert!(text.contains("ended: bye (runtime shutdown)"));
        assert!(text.contains("Native survivors (top 1 of 1 sites)"));
        assert!(text.contains("1 skipped (1 not JSON)"));
    }

    #[test]
    fn a_shim_that_turned_itself_off_is_reported_with_its_reason() {
        let mut store = Store::new();
        store.ingest_line(
            br#"{"v":1,"type":"hello","source":"shim","pid":9,"native":"off","native_reason":"LEAKSCOPE_NATIVE=0"}"#,
        );
        let r = build(&store, &SessionInfo::new("listen"), &Thresholds::default());
        assert!(r.messages.iter().any(|m| m.level == "warn" && m.message == "native tracking off: LEAKSCOPE_NATIVE=0"));
    }

    #[test]
    fn a_shim_reason_said_in_a_status_too_is_reported_once() {
        let mut store = Store::new();
        store.ingest_line(br#"{"v":1,"type":"hello","source":"shim","pid":9,"native":"off","native_reason":"not first in LD_PRELOAD"}"#);
        store.ingest_line(br#"{"v":1,"type":"status","source":"shim","pid":9,"level":"error","message":"native tracking off: not first in LD_PRELOAD"}"#);
        let r = build(&store, &SessionInfo::new("listen"), &Thresholds::default());
        let said: Vec<&str> =
            r.messages.iter().filter(|m| m.message.contains("LD_PRELOAD")).map(|m| m.level.as_str()).collect();
        assert_eq!(said, ["error"], "{:?}", r.messages);
    }

    #[test]
    fn an_empty_session_says_nothing_connected() {
        let mut session = SessionInfo::new("run");
        session.note("error", "no agent connected: is the target a .NET app?");
        let r = build(&Store::new(), &session, &Thresholds::default());
        let text = render_text(&r);
        assert!(text.contains("Nothing to analyse"));
        assert!(text.contains("no agent connected"));
    }
}
