//! The heap census: exact live object counts and bytes by type, from a walk of the whole GC
//! heap right after a full blocking GC (when every object left on the heap is reachable).
//! Needs `EnumerateGCHeapObjects` (.NET 9+). The walk pauses the application; its length is
//! measured and reported with the result.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::heap_walk::{self, Pace, Stopped};
use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{ClassID, HRESULT, ObjectID};
use crate::clr::walks::ObjectVisitor;

#[derive(Clone, Copy, Debug, Default)]
pub struct TypeTotals {
    pub count: u64,
    pub bytes: u64,
}

pub struct Census {
    pub by_class: HashMap<ClassID, TypeTotals>,
    pub objects: u64,
    pub bytes: u64,
    /// How long the application was paused for the walk.
    pub pause: Duration,
    /// Objects whose class or size the runtime would not give.
    pub unreadable: u64,
    /// Set when the walk was interrupted: the counts cover part of the heap only.
    pub stopped: Option<Stopped>,
    /// Objects met in generation 0 and left out as allocated after the GC (`take_as_left_by_gc`).
    pub allocated_since: u64,
}

struct Walk<'a> {
    info: &'a ProfilerInfo,
    by_class: HashMap<ClassID, TypeTotals>,
    unreadable: u64,
    /// Runs of same-type objects are common (arrays of records, strings in a list): count
    /// them here and touch the map once per run.
    run: (ClassID, TypeTotals),
    pace: Pace,
    stopped: Option<Stopped>,
    /// Generation 0's address ranges, sorted, when objects there are to be left out.
    young: Vec<(usize, usize)>,
    allocated_since: u64,
}

/// Walks the heap. The runtime suspends itself for the duration.
pub fn take(info: &ProfilerInfo) -> Result<Census, HRESULT> {
    take_leaving_out(info, Vec::new())
}

/// The heap as the last full blocking GC left it: generation 0 is left out. That GC promotes
/// what survives, so what the walk meets in generation 0 was allocated since: the application
/// runs between the GC and the walk, and one that catches up after the pause allocates in a
/// burst (a bounded cache then showed its new entries and the ones they evicted, dead but not
/// yet collected: a flat cache read as growing). What the GC itself left in generation 0 (a few
/// demoted objects: `gen0` of the census record's heap sizes, hundreds of bytes in the soak
/// tests) is left out with them, at every census alike. If the runtime will not give the
/// ranges, nothing is left out.
pub fn take_as_left_by_gc(info: &ProfilerInfo) -> Result<Census, HRESULT> {
    let mut young = Vec::new();
    let mut ranges = Vec::new();
    if info.generation_bounds(&mut ranges).is_ok() {
        young = ranges
            .iter()
            .filter(|r| r.generation == 0)
            .map(|r| (r.range_start, r.range_start.saturating_add(r.range_length_reserved.max(r.range_length))))
            .collect();
        young.sort_unstable();
    }
    take_leaving_out(info, young)
}

fn take_leaving_out(info: &ProfilerInfo, young: Vec<(usize, usize)>) -> Result<Census, HRESULT> {
    let mut walk = Walk {
        info,
        by_class: HashMap::with_capacity(4096),
        unreadable: 0,
        run: (0, TypeTotals::default()),
        pace: Pace::new(None),
        stopped: None,
        young,
        allocated_since: 0,
    };
    let started = Instant::now();
    heap_walk::walk(info, &mut walk)?;
    let pause = started.elapsed();
    walk.flush_run();
    let objects = walk.by_class.values().map(|t| t.count).sum();
    let bytes = walk.by_class.values().map(|t| t.bytes).sum();
    Ok(Census {
        by_class: walk.by_class,
        objects,
        bytes,
        pause,
        unreadable: walk.unreadable,
        stopped: walk.stopped,
        allocated_since: walk.allocated_since,
    })
}

/// Whether `address` lies in one of `ranges` (sorted, not overlapping).
fn in_ranges(ranges: &[(usize, usize)], address: usize) -> bool {
    let after = ranges.partition_point(|&(start, _)| start <= address);
    after > 0 && address < ranges[after - 1].1
}

impl Walk<'_> {
    fn flush_run(&mut self) {
        let (class, totals) = std::mem::take(&mut self.run);
        if totals.count > 0 {
            let entry = self.by_class.entry(class).or_default();
            entry.count += totals.count;
            entry.bytes += totals.bytes;
        }
    }
}

impl ObjectVisitor for Walk<'_> {
    const WALK: &'static str = "the census heap walk";

    fn object(&mut self, object: ObjectID) -> bool {
        if let Some(why) = self.pace.step() {
            self.stopped = Some(why);
            return false;
        }
        if !self.young.is_empty() && in_ranges(&self.young, object) {
            self.allocated_since += 1;
            return true;
        }
        match (self.info.class_of_object(object), self.info.object_size(object)) {
            (Ok(class), Ok(size)) => {
                if class != self.run.0 {
                    self.flush_run();
                    self.run.0 = class;
                }
                self.run.1.count += 1;
                self.run.1.bytes += size as u64;
            }
            _ => self.unreadable += 1,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::in_ranges;

    #[test]
    fn addresses_are_found_only_inside_the_ranges() {
        let ranges = [(0x1000, 0x2000), (0x5000, 0x5100)];
        assert!(!in_ranges(&ranges, 0x0fff));
        assert!(in_ranges(&ranges, 0x1000));
        assert!(in_ranges(&ranges, 0x1fff));
        assert!(!in_ranges(&ranges, 0x2000));
        assert!(!in_ranges(&ranges, 0x4fff));
        assert!(in_ranges(&ranges, 0x50ff));
        assert!(!in_ranges(&ranges, 0x5100));
        assert!(!in_ranges(&[], 0x1000));
    }
}
