//! Building the run report from the store: processes, producers, sites, findings (with what
//! keeps them alive), messages, the data sufficiency and, for a soak, the soak verdicts.

use super::model::*;
use super::sufficiency;
use super::text::format_p;
use crate::analysis::{FullGcCheck, LiveVerdict, Thresholds};
use crate::protocol::Source;
use crate::retention_view::{KeptAliveBy, latest_retention, owner_to_fix};
use crate::session_info::SessionInfo;
use crate::sites::{self, SiteRow};
use crate::store::{Connection, Producer, Store};
use crate::units::{format_bytes, format_count, format_duration, format_rate_per_min};
use std::fmt::Write as _;
use std::time::Duration;

/// Sites listed per process and kind in report.json (growing ones always included).
const JSON_TOP_SITES: usize = 50;

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
                .filter(|(i, r)| {
                    *i < JSON_TOP_SITES || matches!(r.growth.verdict, LiveVerdict::Growing | LiveVerdict::Rising)
                })
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
                totals: if n.sampled { "sampled" } else { "exact" },
                live_bytes: n.live_bytes,
                live_bytes_se: n.live_bytes_se,
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
    let findings_of = |verdict: LiveVerdict| -> Vec<Finding> {
        managed
            .iter()
            .chain(native.iter())
            .filter(|r| r.growth.verdict == verdict)
            .map(|r| {
                let mut f = finding(r, multi_process);
                f.kept_alive_by = kept_alive_by(store, &f);
                f.owner_to_fix = owner_to_fix(store, f.pid, f.type_name.as_deref());
                f
            })
            .collect()
    };
    let findings = findings_of(LiveVerdict::Growing);
    let rising = findings_of(LiveVerdict::Rising);
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
        sufficiency: sufficiency::assess(&processes, session.interval_ms, th),
        processes,
        findings,
        rising,
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
        full_gc_check: r.full_gc_check,
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

/// Managed types of the growing and rising findings: what to ask the agent about before a run
/// ends.
pub fn growing_managed_types(store: &Store, th: &Thresholds) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = Vec::new();
    let suspects = sites::ranked(store, Source::Agent, th, None);
    for r in suspects.iter().filter(|r| matches!(r.growth.verdict, LiveVerdict::Growing | LiveVerdict::Rising)) {
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
    let head = if g.verdict == LiveVerdict::Rising { "Rising, not yet a leak suspect" } else { "Leak suspect" };
    let mut text = format!("{head}: {what}, {}", format_rate_per_min(g.bytes_per_min));
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
    match (r.full_gc_check, r.full_gcs) {
        (Some(FullGcCheck::Confirmed { bytes, .. }), n) => {
            let n = n.unwrap_or(1);
            let _ = write!(
                text,
                ", across {n} full GC{}: {} more live after the latest than at the start",
                if n == 1 { "" } else { "s" },
                format_bytes(bytes)
            );
        }
        (Some(FullGcCheck::Unconfirmed { full_gcs: 0 }), _) => text.push_str(
            "; no full GC since it began to rise, so this could still be garbage waiting for one: \
             record longer (or use `leakscope soak`, which induces full GCs) to confirm",
        ),
        (Some(FullGcCheck::Unconfirmed { .. }), _) => text.push_str(
            "; the full GCs so far left too little of the rise to call it a leak or garbage: record longer to confirm",
        ),
        _ => {}
    }
    if multi_process {
        let _ = write!(text, " [pid {}]", r.pid);
    }
    let (frames, frame_lines) = frames_and_lines(r);
    Finding {
        kind: if r.source == Source::Agent { "managed" } else { "native" },
        verdict: g.verdict,
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
        full_gc_check: r.full_gc_check,
        kept_alive_by: Vec::new(),
        owner_to_fix: None,
        text,
    }
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
    for m in store.bounds_messages() {
        out.push(Message { level: "warn".into(), source: "collector".into(), pid: None, message: m });
    }
    out
}
