//! The samples of one worker (process): its agent's and shim's latest counters, and its top
//! sites with their growth, labelled by `pid`, `service` and `host`.

use super::families::{Def, Kind, Sample};
use crate::analysis::{LiveVerdict, Thresholds};
use crate::held_verdicts::HeldVerdicts;
use crate::live::RECENT_WINDOW_MS;
use crate::sites::{self, SiteRow};
use crate::store::{Connection, ProcessView, Producer};

macro_rules! defs {
    ($($id:ident $kind:ident $name:literal $help:literal;)*) => {
        $(pub static $id: Def = Def { name: $name, help: $help, kind: Kind::$kind };)*
        /// Every family, in the order they are written.
        pub static ALL: &[&Def] = &[$(&$id),*];
    };
}

defs! {
    WORKERS Gauge "leakscope_workers" "Workers (processes) with a producer connected to this listener.";
    WORKER_INFO Gauge "leakscope_worker_info" "1 per connected worker; labels say which producers it has and its runtime.";
    VERDICT Gauge "leakscope_verdict" "The worker's verdict: 1 for the current state (leak_suspected if any site is growing, else rising if a managed rise awaits a full GC to confirm it, else plateaued, steady, insufficient_data), 0 for the others.";
    SITE_BYTES Gauge "leakscope_site_live_bytes" "Estimated live bytes allocated at this managed (type, call site) that survived a GC (sampled, upscaled).";
    SITE_BYTES_AFTER_FULL_GC Gauge "leakscope_site_live_bytes_after_full_gc" "Estimated live bytes at this managed (type, call site) right after the worker's latest full (gen2) GC: its sampled objects allocated before that GC and still alive after it (upscaled). Unlike leakscope_site_live_bytes between full GCs, it holds no dead objects waiting for a full GC to collect them, so churn does not draw a sawtooth in it; it changes only at full GCs (see leakscope_last_full_gc_timestamp_seconds). Absent until a full GC has come since the site was first listed.";
    LAST_FULL_GC Gauge "leakscope_last_full_gc_timestamp_seconds" "Unix time at which the agent reported the worker's latest full (gen2) GC, right after it ended: the moment leakscope_site_live_bytes_after_full_gc describes. Absent before the first one.";
    SITE_OBJECTS Gauge "leakscope_site_live_objects" "Estimated live objects allocated at this managed (type, call site).";
    SITE_GROWTH Gauge "leakscope_site_growth_bytes_per_second" "Growth of the site's live bytes over the last 10 minutes after warm-up (Theil-Sen slope); absent until there are enough points.";
    SITE_VERDICT Gauge "leakscope_site_verdict" "The site's verdict over the last 10 minutes: 1 for the current state, 0 for the others.";
    NATIVE_SITE_BYTES Gauge "leakscope_native_site_live_bytes" "Estimated live native bytes allocated at this call site (shim, sampled, upscaled).";
    NATIVE_SITE_GROWTH Gauge "leakscope_native_site_growth_bytes_per_second" "Growth of the native site's live bytes over the last 10 minutes (Theil-Sen slope); absent until there are enough points.";
    OMITTED Gauge "leakscope_series_omitted" "Sites or census types of this worker left out of the metrics by --metrics-top (the largest and growing ones are kept).";
    CENSUS_TYPE_BYTES Gauge "leakscope_census_type_live_bytes" "Exact live bytes of this type in the latest heap census (soak mode or a census command).";
    CENSUS_TYPE_OBJECTS Gauge "leakscope_census_type_live_objects" "Exact live objects of this type in the latest heap census.";
    CENSUS_BYTES Gauge "leakscope_census_live_bytes" "Exact live managed bytes in the latest heap census.";
    NATIVE_BYTES Gauge "leakscope_native_live_bytes" "Live native bytes of the malloc family, from the shim: estimated from its samples by default, exact when it runs with LEAKSCOPE_NATIVE_TOTALS=exact.";
    NATIVE_BYTES_SE Gauge "leakscope_native_live_bytes_standard_error" "Standard error of leakscope_native_live_bytes while it is estimated from the shim's samples (the default); absent when the shim counts every call.";
    NATIVE_ALLOCS Gauge "leakscope_native_live_allocations" "Live native allocations, from the shim: estimated from its samples by default, exact with LEAKSCOPE_NATIVE_TOTALS=exact.";
    NATIVE_MMAP Gauge "leakscope_native_mmap_bytes" "Live anonymous mmap bytes tracked by the shim.";
    NATIVE_DROPPED Counter "leakscope_native_dropped_samples_total" "Native samples the shim could not track (table full).";
    RSS Gauge "leakscope_rss_bytes" "Resident set size of the worker.";
    HEAP Gauge "leakscope_gc_heap_bytes" "Size of each GC generation after the latest GC.";
    GC_COUNT Counter "leakscope_gc_collections_total" "Garbage collections by condemned generation.";
    GC_INDUCED Counter "leakscope_gc_induced_total" "Induced garbage collections (soak mode, census commands).";
    GC_PAUSE Counter "leakscope_gc_pause_seconds_total" "Time the runtime was paused for GCs.";
    GC_PAUSE_MAX Gauge "leakscope_gc_pause_max_seconds" "Longest GC pause seen.";
    TRACKED Gauge "leakscope_agent_tracked_samples" "Sampled objects the agent follows now.";
    TRACKED_BUDGET Gauge "leakscope_agent_tracked_samples_budget" "Most sampled objects the agent follows at once (LEAKSCOPE_MAX_TRACKED).";
    DROPPED Counter "leakscope_agent_dropped_samples_total" "Samples the agent counted but could not follow (budget, queue, handle or stack failures).";
    AGENT_MEMORY Gauge "leakscope_agent_memory_bytes" "The agent's own heap.";
    AGENT_MEMORY_LIMIT Gauge "leakscope_agent_memory_limit_bytes" "Ceiling on the agent's own heap (LEAKSCOPE_MEMORY_LIMIT_MB).";
    DEGRADED Gauge "leakscope_agent_degraded" "1 while the agent says it turned something off (see its status records), else 0.";
    CAPTURES Counter "leakscope_captures_total" "Snapshots written for this worker by a capture rule (--on RULE --capture DIR).";
}

const VERDICTS: [(LiveVerdict, &str); 5] = [
    (LiveVerdict::Growing, "growing"),
    (LiveVerdict::Rising, "rising"),
    (LiveVerdict::Plateaued, "plateaued"),
    (LiveVerdict::Steady, "steady"),
    (LiveVerdict::InsufficientData, "insufficient_data"),
];

/// Whether a producer still has a connection open (or is read from a file).
pub fn connected(p: &Producer) -> bool {
    p.connection == Connection::Open
}

/// What changes a worker's samples: re-rendering is skipped while this stays the same.
pub fn change_key(view: &ProcessView<'_>, captures: u64) -> (u64, u64, u32, u32, bool, bool) {
    let key = |p: Option<&Producer>| {
        p.map(|p| (p.reports + p.soak.census_records + p.soak.retained_records, p.hellos, connected(p)))
            .unwrap_or((0, 0, false))
    };
    let (a, s) = (key(view.agent), key(view.shim));
    (a.0 + s.0, captures, a.1, s.1, a.2, s.2)
}

/// The samples of one worker. `top` caps the sites (managed and native, each) and census types;
/// `held` is what the worker's earlier samples called growing or rising, kept while the rise
/// goes on, so that a site's verdict does not flicker (and reset an alert's `for:` clock).
pub fn samples(
    view: &ProcessView<'_>,
    host: &str,
    top: usize,
    captures: u64,
    th: &Thresholds,
    held: &mut HeldVerdicts,
) -> Vec<Sample> {
    let base: Vec<(&'static str, String)> =
        vec![("pid", view.pid.to_string()), ("service", service_name(view)), ("host", host.to_string())];
    let mut out = Samples { base: &base, list: Vec::new() };
    let runtime = view.agent.and_then(|a| a.hello.as_ref()).and_then(|h| h.runtime.clone()).unwrap_or_default();
    out.push(
        &WORKER_INFO,
        &[
            ("agent", yes_no(view.agent.is_some_and(connected))),
            ("shim", yes_no(view.shim.is_some_and(connected))),
            ("runtime", runtime),
        ],
        1.0,
    );
    let mut worst = None;
    if let Some(agent) = view.agent {
        agent_samples(&mut out, agent, top, th, held, &mut worst);
    }
    if let Some(shim) = view.shim {
        shim_samples(&mut out, shim, top, th, held, &mut worst);
    }
    if let Some(rss) = view.rss() {
        out.push(&RSS, &[], rss as f64);
    }
    let current = worst.unwrap_or(LiveVerdict::InsufficientData);
    for (v, name) in VERDICTS {
        let name = if v == LiveVerdict::Growing { "leak_suspected" } else { name };
        out.push(&VERDICT, &[("verdict", name.to_string())], (v == current) as u8 as f64);
    }
    out.push(&CAPTURES, &[], captures as f64);
    out.list
}

struct Samples<'a> {
    base: &'a [(&'static str, String)],
    list: Vec<Sample>,
}

impl Samples<'_> {
    fn push(&mut self, def: &'static Def, extra: &[(&'static str, String)], value: f64) {
        if !value.is_finite() {
            return;
        }
        let mut labels = self.base.to_vec();
        labels.extend(extra.iter().cloned());
        self.list.push(Sample { def, labels, value });
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// Growing ranks worst, then rising (not yet confirmed by a full GC), plateaued, steady;
/// insufficient data says nothing.
fn worse(a: Option<LiveVerdict>, b: LiveVerdict) -> Option<LiveVerdict> {
    let rank = |v: LiveVerdict| match v {
        LiveVerdict::Growing => 4,
        LiveVerdict::Rising => 3,
        LiveVerdict::Plateaued => 2,
        LiveVerdict::Steady => 1,
        LiveVerdict::InsufficientData => 0,
    };
    match a {
        Some(a) if rank(a) >= rank(b) => Some(a),
        _ => Some(b),
    }
}

/// Ranked sites of a producer, those still listed only (a site gone from the summaries has no
/// live samples left), and how many were left out.
fn top_sites(
    p: &Producer,
    top: usize,
    th: &Thresholds,
    held: &mut HeldVerdicts,
    worst: &mut Option<LiveVerdict>,
) -> (Vec<SiteRow>, usize) {
    let mut rows = sites::assessed(p, th, Some(RECENT_WINDOW_MS));
    held.apply(p.key.source, &mut rows);
    for r in &rows {
        *worst = worse(*worst, r.growth.verdict);
    }
    rows.retain(|r| r.present);
    sites::sort_ranked(&mut rows);
    let omitted = rows.len().saturating_sub(top);
    rows.truncate(top);
    (rows, omitted)
}

fn agent_samples(
    out: &mut Samples<'_>,
    agent: &Producer,
    top: usize,
    th: &Thresholds,
    held: &mut HeldVerdicts,
    worst: &mut Option<LiveVerdict>,
) {
    let (rows, omitted) = top_sites(agent, top, th, held, worst);
    for r in &rows {
        let labels = [
            ("type", r.type_name.clone().unwrap_or_default()),
            ("site", r.site.clone()),
            ("location", r.location.clone().unwrap_or_default()),
        ];
        out.push(&SITE_BYTES, &labels, r.latest.bytes);
        let type_name = r.type_name.as_deref().unwrap_or_default();
        if let Some(after) = agent.soak.after_latest_full_gc(type_name, &r.site) {
            out.push(&SITE_BYTES_AFTER_FULL_GC, &labels, after.bytes);
        }
        out.push(&SITE_OBJECTS, &labels, r.latest.count);
        if r.growth.verdict != LiveVerdict::InsufficientData {
            out.push(&SITE_GROWTH, &labels, r.growth.bytes_per_min / 60.0);
        }
        for (v, name) in VERDICTS {
            let mut l = labels.to_vec();
            l.push(("verdict", name.to_string()));
            out.push(&SITE_VERDICT, &l, (v == r.growth.verdict) as u8 as f64);
        }
    }
    out.push(&OMITTED, &[("kind", "managed_site".to_string())], omitted as f64);
    if let Some(ms) = agent.soak.last_full_gc_unix_ms {
        out.push(&LAST_FULL_GC, &[], ms as f64 / 1000.0);
    }

    // The latest census: the types it listed, largest first.
    let census_t = agent.soak.live.last().map(|p| p.t_ms);
    let mut types: Vec<(&String, f64, f64)> = agent
        .soak
        .types
        .iter()
        .filter(|(_, t)| t.present)
        .filter_map(|(name, t)| {
            let last = t.series.last()?;
            (Some(last.t_ms) == census_t).then_some((name, last.bytes, last.count))
        })
        .collect();
    if let Some(last) = agent.soak.live.last() {
        out.push(&CENSUS_BYTES, &[], last.bytes);
        types.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let omitted = types.len().saturating_sub(top);
        for (name, bytes, count) in types.into_iter().take(top) {
            out.push(&CENSUS_TYPE_BYTES, &[("type", name.clone())], bytes);
            out.push(&CENSUS_TYPE_OBJECTS, &[("type", name.clone())], count);
        }
        out.push(&OMITTED, &[("kind", "census_type".to_string())], omitted as f64);
    }

    if let Some(h) = &agent.heap {
        for (generation, v) in [("gen0", h.gen0), ("gen1", h.gen1), ("gen2", h.gen2), ("loh", h.loh), ("poh", h.poh)] {
            if let Some(v) = v {
                out.push(&HEAP, &[("generation", generation.to_string())], v.0);
            }
        }
    }
    if let Some(gc) = &agent.gc {
        for (i, n) in gc.count.iter().enumerate() {
            out.push(&GC_COUNT, &[("generation", i.to_string())], n.0);
        }
        if let Some(n) = gc.induced {
            out.push(&GC_INDUCED, &[], n.0);
        }
        if let Some(ms) = gc.pause_ms_total {
            out.push(&GC_PAUSE, &[], ms.0 / 1000.0);
        }
        if let Some(ms) = gc.pause_ms_max {
            out.push(&GC_PAUSE_MAX, &[], ms.0 / 1000.0);
        }
    }
    if let Some(h) = &agent.health {
        let pairs = [
            (&TRACKED, h.tracked),
            (&TRACKED_BUDGET, h.max_tracked),
            (&DROPPED, h.dropped),
            (&AGENT_MEMORY, h.memory_bytes),
            (&AGENT_MEMORY_LIMIT, h.memory_limit_bytes),
        ];
        for (def, v) in pairs {
            if let Some(v) = v {
                out.push(def, &[], v.0);
            }
        }
        let degraded = h.degraded.as_deref().is_some_and(|d| !d.is_empty());
        out.push(&DEGRADED, &[], degraded as u8 as f64);
    }
}

fn shim_samples(
    out: &mut Samples<'_>,
    shim: &Producer,
    top: usize,
    th: &Thresholds,
    held: &mut HeldVerdicts,
    worst: &mut Option<LiveVerdict>,
) {
    let (rows, omitted) = top_sites(shim, top, th, held, worst);
    for r in &rows {
        let labels = [("site", r.site.clone())];
        out.push(&NATIVE_SITE_BYTES, &labels, r.latest.bytes);
        if r.growth.verdict != LiveVerdict::InsufficientData {
            out.push(&NATIVE_SITE_GROWTH, &labels, r.growth.bytes_per_min / 60.0);
        }
    }
    out.push(&OMITTED, &[("kind", "native_site".to_string())], omitted as f64);
    if let Some(n) = &shim.native {
        let pairs = [
            (&NATIVE_BYTES, n.live_bytes),
            (&NATIVE_BYTES_SE, n.live_bytes_se),
            (&NATIVE_ALLOCS, n.live_allocs),
            (&NATIVE_MMAP, n.mmap_bytes),
            (&NATIVE_DROPPED, n.dropped),
        ];
        for (def, v) in pairs {
            if let Some(v) = v {
                out.push(def, &[], v as f64);
            }
        }
    }
}

/// `LEAKSCOPE_SERVICE` as the agent or shim said it, else the entry assembly (`dotnet
/// Orders.dll` → `Orders`), else the command's file name.
pub fn service_name(view: &ProcessView<'_>) -> String {
    let said = [view.agent, view.shim]
        .into_iter()
        .flatten()
        .filter_map(|p| p.hello.as_ref()?.service.as_deref())
        .map(str::trim)
        .find(|s| !s.is_empty());
    if let Some(s) = said {
        return s.to_string();
    }
    view.cmdline().map(service_from_cmdline).unwrap_or_default()
}

pub fn service_from_cmdline(cmdline: &str) -> String {
    let file_name = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    let mut args = cmdline.split_whitespace();
    let Some(program) = args.next() else {
        return String::new();
    };
    let program = file_name(program);
    if program == "dotnet" || program == "dotnet.exe" {
        if let Some(dll) = args.find(|a| a.ends_with(".dll")) {
            let dll = file_name(dll);
            return dll.trim_end_matches(".dll").to_string();
        }
    }
    program
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_falls_back_to_the_entry_assembly_then_the_command() {
        assert_eq!(service_from_cmdline("/usr/bin/dotnet /srv/app/Orders.Api.dll --port 80"), "Orders.Api");
        assert_eq!(service_from_cmdline("dotnet exec --runtimeconfig x.json Billing.dll"), "Billing");
        assert_eq!(service_from_cmdline("/opt/app/LeakApp strings 30"), "LeakApp");
        assert_eq!(service_from_cmdline("dotnet run"), "dotnet");
        assert_eq!(service_from_cmdline(""), "");
    }
}
