//! The heap census: exact live object counts and bytes by type, from a walk of the whole GC
//! heap right after a full blocking GC (when every object left on the heap is reachable).
//! Needs `EnumerateGCHeapObjects` (.NET 9+). The walk pauses the application; its length is
//! measured and reported with the result.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::heap_walk::{self, Pace, Stopped};
use crate::capture::gc_extents::Extents;
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
    /// Objects left out as allocated after the GC (`take_as_left_by_gc`; 0 otherwise).
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
    /// Where the GC left the heap, when what lies outside is to be left out.
    as_left: Option<Extents>,
    allocated_since: u64,
}

/// Walks the heap. The runtime suspends itself for the duration.
pub fn take(info: &ProfilerInfo) -> Result<Census, HRESULT> {
    take_within(info, None)
}

/// The heap as a GC left it (`extents`, recorded when it finished): objects the walk meets
/// outside were allocated since, while the application ran between the GC and the walk, and
/// are left out. A later GC in between moves what it keeps beyond the extents too: only what
/// the first one left is counted either way.
pub fn take_as_left_by_gc(info: &ProfilerInfo, extents: Extents) -> Result<Census, HRESULT> {
    take_within(info, Some(extents))
}

fn take_within(info: &ProfilerInfo, as_left: Option<Extents>) -> Result<Census, HRESULT> {
    let mut walk = Walk {
        info,
        by_class: HashMap::with_capacity(4096),
        unreadable: 0,
        run: (0, TypeTotals::default()),
        pace: Pace::new(None),
        stopped: None,
        as_left,
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
        if self.as_left.as_mut().is_some_and(|extents| !extents.contains(object)) {
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
