//! The heap census: exact live object counts and bytes by type, from a walk of the whole GC
//! heap right after a full blocking GC (when every object left on the heap is reachable).
//! Needs `EnumerateGCHeapObjects` (.NET 9+). The walk pauses the application; its length is
//! measured and reported with the result.

use std::collections::HashMap;
use std::ffi::c_void;
use std::time::{Duration, Instant};

use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{BOOL, ClassID, HRESULT, ObjectID};

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
}

struct Walk<'a> {
    info: &'a ProfilerInfo,
    by_class: HashMap<ClassID, TypeTotals>,
    unreadable: u64,
    /// Runs of same-type objects are common (arrays of records, strings in a list): count
    /// them here and touch the map once per run.
    run: (ClassID, TypeTotals),
}

/// Walks the heap. The runtime suspends itself for the duration.
pub fn take(info: &ProfilerInfo) -> Result<Census, HRESULT> {
    let mut walk = Walk { info, by_class: HashMap::with_capacity(4096), unreadable: 0, run: (0, TypeTotals::default()) };
    let started = Instant::now();
    // SAFETY: `on_object` receives `&mut walk` back, and `walk` outlives the synchronous call.
    unsafe { info.enumerate_gc_heap_objects(on_object, &mut walk as *mut Walk<'_> as *mut c_void)? };
    let pause = started.elapsed();
    walk.flush_run();
    let objects = walk.by_class.values().map(|t| t.count).sum();
    let bytes = walk.by_class.values().map(|t| t.bytes).sum();
    Ok(Census { by_class: walk.by_class, objects, bytes, pause, unreadable: walk.unreadable })
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

unsafe extern "system" fn on_object(object: ObjectID, state: *mut c_void) -> BOOL {
    if state.is_null() {
        return 0;
    }
    // SAFETY: `state` is the `Walk` passed by `take`, alive for the walk; the runtime calls
    // back on the walking thread only.
    let walk = unsafe { &mut *(state as *mut Walk<'_>) };
    match (walk.info.class_of_object(object), walk.info.object_size(object)) {
        (Ok(class), Ok(size)) => {
            if class != walk.run.0 {
                walk.flush_run();
                walk.run.0 = class;
            }
            walk.run.1.count += 1;
            walk.run.1.bytes += size as u64;
        }
        _ => walk.unreadable += 1,
    }
    1
}
