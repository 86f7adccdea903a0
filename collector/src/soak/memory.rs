//! The memory comparison: RSS, the GC's heap, live managed data and native live bytes side by
//! side per process, and what their trends mean together (kept by the GC or the allocator, or
//! kept by the application).

use super::candidates::to_points;
use super::evidence::rate;
use super::model::{MEMORY_THRESHOLD_PER_HOUR, MemoryLine, ProcessMemory};
use crate::analysis::{SoakVerdict, TrendSettings, assess_trend};
use crate::store::Store;
use crate::store::soak_series;

fn memory_line(series: &soak_series::Series, warmup: f64, ts: &TrendSettings) -> Option<MemoryLine> {
    let last = series.last()?;
    Some(MemoryLine {
        latest_bytes: last.bytes,
        growth: assess_trend(&to_points(series.points()), warmup, MEMORY_THRESHOLD_PER_HOUR, ts),
    })
}

fn grows(m: &Option<MemoryLine>) -> bool {
    m.as_ref().is_some_and(|m| m.growth.verdict == SoakVerdict::Leaking)
}

fn flat(m: &Option<MemoryLine>) -> bool {
    m.as_ref().is_some_and(|m| matches!(m.growth.verdict, SoakVerdict::Stable | SoakVerdict::Plateaued))
}

/// RSS, heap and live data side by side, and what their trends mean together.
/// `types_leak`: processes with a type judged leaking (else live data grows spread thinly).
pub(super) fn memory_report(store: &Store, warmup: f64, ts: &TrendSettings, types_leak: &[u32]) -> Vec<ProcessMemory> {
    let mut out = Vec::new();
    for view in store.processes() {
        let agent = view.agent.map(|a| &a.soak);
        let shim = view.shim.map(|s| &s.soak);
        let rss_series = agent.filter(|a| !a.rss.is_empty()).or(shim).map(|s| &s.rss);
        let rss = rss_series.and_then(|s| memory_line(s, warmup, ts));
        let heap = agent.and_then(|a| memory_line(&a.heap, warmup, ts));
        let live = agent.and_then(|a| memory_line(&a.live, warmup, ts));
        let native = shim.and_then(|s| memory_line(&s.native_live, warmup, ts));
        let mut lines = Vec::new();
        let mut kept = false;
        let live_name = "live managed data (census)";
        let r = |m: &Option<MemoryLine>| {
            m.as_ref()
                .map(|m| format!("{} ({})", rate(m.growth.bytes_per_hour), m.growth.verdict.as_str()))
                .unwrap_or_else(|| "not measured".to_string())
        };
        if grows(&live) {
            lines.push(format!(
                "{live_name} grows at {}: the application keeps objects — {}",
                r(&live),
                if types_leak.contains(&view.pid) {
                    "see the leaking types"
                } else {
                    "spread over types none of which is leaking on its own (see the fastest steadily growing types)"
                }
            ));
        }
        if grows(&native) {
            lines.push(format!("native live memory grows at {}: see the native verdicts", r(&native)));
        }
        let live_flat = flat(&live);
        let native_ok = native.is_none() || flat(&native);
        if grows(&rss) && live_flat && native_ok && !grows(&heap) {
            kept = true;
            lines.push(format!(
                "RSS grows at {} while {live_name} does not ({}){}: this memory is retained by the GC or the allocator (free space it keeps for reuse, fragmentation, allocator caches), not leaked",
                r(&rss),
                r(&live),
                if native.is_some() { " and neither does native live memory" } else { "" }
            ));
        } else if grows(&heap) && live_flat {
            kept = true;
            lines.push(format!(
                "the managed heap grows at {} while {live_name} does not ({}): the GC kept it — memory it has not returned or compacted yet, not leaked objects{}",
                r(&heap),
                r(&live),
                if grows(&rss) { format!("; RSS follows at {}", r(&rss)) } else { String::new() }
            ));
        }
        if lines.is_empty() && (rss.is_some() || live.is_some()) {
            {
                lines.push(format!(
                    "after warm-up: RSS {}, managed heap {}, {live_name} {}{}",
                    r(&rss),
                    r(&heap),
                    r(&live),
                    if native.is_some() { format!(", native {}", r(&native)) } else { String::new() }
                ));
            }
        }
        if rss.is_none() && heap.is_none() && live.is_none() && native.is_none() {
            continue;
        }
        out.push(ProcessMemory {
            pid: view.pid,
            rss,
            heap,
            live,
            native,
            kept_not_leaked: kept,
            interpretation: lines,
            growing_types: Vec::new(),
            warning: None,
        });
    }
    out
}
