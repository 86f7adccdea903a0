//! GC and heap counters, from the runtime's GC events.

use std::collections::BTreeMap;

use crate::clr::events::{GcStart, HeapStats, gc_reason_name};
use crate::output::records::{GcEntry, Num};

/// Most GCs listed per summary; beyond it the oldest are dropped (the counters stay exact).
const MAX_LISTED: usize = 256;

/// One collection, as the next summary lists it (`gc.recent`). Kept with a static reason so
/// that noting a GC allocates nothing; it becomes the protocol's `GcEntry` when published.
#[derive(Clone, Debug)]
pub struct Collection {
    pub n: u32,
    pub generation: u32,
    pub reason: &'static str,
    pub background: bool,
    pub pause_ms: f64,
    /// Generation sizes after this GC: gen0, gen1, gen2, LOH, POH.
    pub after: [u64; 5],
}

impl Collection {
    pub fn entry(&self) -> GcEntry {
        GcEntry {
            n: Some(self.n.into()),
            generation: Some(self.generation.into()),
            reason: Some(self.reason.to_string()),
            background: Some(self.background),
            pause_ms: Num::some(self.pause_ms),
            after: self.after.iter().map(|&b| b.into()).collect(),
        }
    }
}

#[derive(Default)]
pub struct GcStats {
    /// GCs since the last summary, oldest first.
    pub recent: Vec<Collection>,
    /// Collections by condemned generation (0, 1, 2).
    pub by_generation: [u64; 3],
    pub induced: u64,
    pub reasons: BTreeMap<&'static str, u64>,
    pub heap: HeapStats,
    pub pause_ns_total: u64,
    pub pause_ns_max: u64,
    suspend_began_ns: Option<u64>,
    pub latest_gc: u32,
}

impl GcStats {
    pub fn on_start(&mut self, start: GcStart) {
        self.by_generation[start.depth.min(2) as usize] += 1;
        let reason = gc_reason_name(start.reason);
        if matches!(start.reason, 1 | 7 | 9 | 10) {
            self.induced += 1;
        }
        *self.reasons.entry(reason).or_default() += 1;
        self.latest_gc = self.latest_gc.max(start.count);
        if self.recent.len() == MAX_LISTED {
            self.recent.remove(0);
        }
        self.recent.push(Collection {
            n: start.count,
            generation: start.depth,
            reason,
            background: start.kind == 1,
            pause_ms: 0.0,
            after: [0; 5],
        });
    }

    pub fn on_heap_stats(&mut self, stats: HeapStats) {
        self.heap = stats;
        if let Some(last) = self.recent.last_mut() {
            last.after = [stats.gen0, stats.gen1, stats.gen2, stats.loh, stats.poh];
        }
    }

    /// The GCs since the previous call.
    pub fn take_recent(&mut self) -> Vec<Collection> {
        std::mem::take(&mut self.recent)
    }

    pub fn on_suspend_begin(&mut self, at_ns: u64) {
        self.suspend_began_ns = Some(at_ns);
    }

    /// A pause runs from the start of suspension to the end of the restart.
    pub fn on_restart_end(&mut self, at_ns: u64) {
        if let Some(began) = self.suspend_began_ns.take() {
            let pause = at_ns.saturating_sub(began);
            self.pause_ns_total += pause;
            self.pause_ns_max = self.pause_ns_max.max(pause);
            if let Some(last) = self.recent.iter_mut().rev().find(|g| !g.background && g.pause_ms == 0.0) {
                last.pause_ms = pause as f64 / 1e6;
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.by_generation.iter().sum()
    }
}

/// Resident set size of this process, in bytes.
pub fn resident_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else { return 0 };
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    pages * page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_generations_reasons_and_pauses() {
        let mut s = GcStats::default();
        s.on_start(GcStart { count: 1, depth: 0, reason: 0, kind: 0 });
        s.on_start(GcStart { count: 2, depth: 2, reason: 1, kind: 0 });
        s.on_heap_stats(HeapStats { gen2: 77, ..Default::default() });
        s.on_suspend_begin(1_000);
        s.on_restart_end(3_500);
        s.on_restart_end(9_000); // unmatched: ignored
        assert_eq!(s.by_generation, [1, 0, 1]);
        assert_eq!(s.induced, 1);
        assert_eq!(s.reasons["Induced"], 1);
        assert_eq!((s.pause_ns_total, s.pause_ns_max), (2_500, 2_500));
        assert_eq!(s.latest_gc, 2);
        let recent = s.take_recent();
        assert_eq!(recent.len(), 2);
        assert_eq!((recent[1].n, recent[1].generation, recent[1].reason, recent[1].after[2]), (2, 2, "Induced", 77));
        assert_eq!(recent[1].pause_ms, 0.0025);
        assert!(s.take_recent().is_empty());
    }

    #[test]
    fn resident_size_is_plausible() {
        let rss = resident_bytes();
        assert!(rss > 1 << 20 && rss < 1 << 40, "{rss}");
    }
}
