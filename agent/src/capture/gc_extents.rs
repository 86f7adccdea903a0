//! Where the heap's objects lay when a GC finished, for a census of the heap as that GC left it.
//!
//! A soak census walks the heap after an induced full GC, but the application runs between the
//! two: what it allocates meanwhile would be counted as if the GC had found it alive (a bounded
//! cache that catches up after the pause counted its new entries and the ones they evicted:
//! 40 024–40 147 for 40 000, and read as growing). So, while armed, `GarbageCollectionFinished`
//! (on the GC's thread, the runtime still suspended) records the generation ranges and how far
//! each was filled, and the non-GC heap's (frozen string literals and type objects, which the
//! walk meets too). What lies outside those extents at walk time was allocated since.
//!
//! Runs only around an induced GC: arming allocates the buffer, the callback copies into it
//! behind a lock nothing else holds then (`try_lock`, never waiting).

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{GenerationRange, HRESULT, NonGcHeapRange};

/// The filled part of every generation range, `[start, end)`, sorted by start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extents {
    ranges: Vec<(usize, usize)>,
    /// The range the last lookup met (a heap walk goes through a range in address order).
    last: usize,
}

impl Extents {
    /// From (start, filled length) pairs.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (usize, usize)>) -> Extents {
        let mut ranges: Vec<(usize, usize)> = ranges
            .into_iter()
            .filter(|&(_, length)| length > 0)
            .map(|(start, length)| (start, start.saturating_add(length)))
            .collect();
        ranges.sort_unstable();
        Extents { ranges, last: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether `address` lay in the filled part of some range.
    pub fn contains(&mut self, address: usize) -> bool {
        if let Some(&(start, end)) = self.ranges.get(self.last) {
            if start <= address && address < end {
                return true;
            }
        }
        let after = self.ranges.partition_point(|&(start, _)| start <= address);
        if after > 0 && address < self.ranges[after - 1].1 {
            self.last = after - 1;
            return true;
        }
        false
    }
}

struct State {
    armed: bool,
    /// GCs finished while armed.
    gcs: u32,
    ranges: Vec<GenerationRange>,
    frozen: Vec<NonGcHeapRange>,
    error: Option<HRESULT>,
}

static ARMED: AtomicBool = AtomicBool::new(false);
static STATE: Mutex<State> =
    Mutex::new(State { armed: false, gcs: 0, ranges: Vec::new(), frozen: Vec::new(), error: None });

/// From `GarbageCollectionFinished`: records the generation ranges while armed (the latest GC's).
pub fn on_gc_finished(info: &ProfilerInfo) {
    if !ARMED.load(Ordering::Acquire) {
        return;
    }
    let Some(mut state) = STATE.try_lock() else { return };
    if !state.armed {
        return;
    }
    state.gcs += 1;
    let (mut ranges, mut frozen) = (std::mem::take(&mut state.ranges), std::mem::take(&mut state.frozen));
    state.error = info.generation_bounds(&mut ranges).and_then(|()| info.non_gc_heap_bounds(&mut frozen)).err();
    (state.ranges, state.frozen) = (ranges, frozen);
}

/// What one armed stretch recorded.
#[derive(Debug)]
pub enum Recorded {
    /// The extents as the last GC left them, and how many GCs finished while armed.
    Extents(Extents, u32),
    /// No GC finished while armed, or the callback could not take the lock.
    NoGc,
    /// The runtime would not give the bounds.
    Refused(HRESULT),
}

/// Records the extents at every GC until [`take`]. Call before inducing the GC.
pub fn arm() {
    let mut state = STATE.lock();
    state.armed = true;
    state.gcs = 0;
    state.error = None;
    state.ranges.clear();
    state.ranges.reserve(1024);
    state.frozen.clear();
    state.frozen.reserve(64);
    ARMED.store(true, Ordering::Release);
}

/// Stops recording and returns what the last GC since [`arm`] left.
pub fn take() -> Recorded {
    ARMED.store(false, Ordering::Release);
    let mut state = STATE.lock();
    state.armed = false;
    let ranges = std::mem::take(&mut state.ranges);
    let frozen = std::mem::take(&mut state.frozen);
    match (state.gcs, state.error) {
        (0, _) => Recorded::NoGc,
        (_, Some(hr)) => Recorded::Refused(hr),
        (gcs, None) => {
            let filled = ranges.iter().map(|r| (r.range_start, r.range_length));
            let extents = Extents::from_ranges(filled.chain(frozen.iter().map(|r| (r.range_start, r.range_length))));
            Recorded::Extents(extents, gcs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_filled_part_of_each_range_counts() {
        let mut extents = Extents::from_ranges([(0x5000, 0x100), (0x1000, 0x1000), (0x9000, 0)]);
        for (address, inside) in [
            (0x0fff, false),
            (0x1000, true),
            (0x1fff, true),
            (0x2000, false), // past the filled part
            (0x4fff, false),
            (0x5000, true),
            (0x50ff, true),
            (0x5100, false),
            (0x9000, false), // an empty range
            (0x1800, true),  // back to an earlier range
        ] {
            assert_eq!(extents.contains(address), inside, "{address:#x}");
        }
        assert!(!Extents::default().contains(0x1000));
    }

    #[test]
    fn nothing_is_recorded_unless_armed() {
        // No runtime here: arming and taking without a GC says so.
        arm();
        assert!(matches!(take(), Recorded::NoGc));
    }
}
