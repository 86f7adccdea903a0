//! GC and heap counters, from the runtime's GC events.

use std::collections::BTreeMap;

use crate::clr::events::{GcStart, HeapStats, gc_reason_name};

#[derive(Default)]
pub struct GcStats {
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
        s.on_start(GcStart { count: 1, depth: 0, reason: 0 });
        s.on_start(GcStart { count: 2, depth: 2, reason: 1 });
        s.on_suspend_begin(1_000);
        s.on_restart_end(3_500);
        s.on_restart_end(9_000); // unmatched: ignored
        assert_eq!(s.by_generation, [1, 0, 1]);
        assert_eq!(s.induced, 1);
        assert_eq!(s.reasons["Induced"], 1);
        assert_eq!((s.pause_ns_total, s.pause_ns_max), (2_500, 2_500));
        assert_eq!(s.latest_gc, 2);
    }

    #[test]
    fn resident_size_is_plausible() {
        let rss = resident_bytes();
        assert!(rss > 1 << 20 && rss < 1 << 40, "{rss}");
    }
}
