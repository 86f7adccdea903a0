//! The GC's root scan, for retention paths. Only while a retention request has switched
//! `MONITOR_GC` on for its own induced GC (which the runtime allows after startup only with
//! background GC off): the runtime then reports every root (`RootReferences2`) and walks the
//! heap (`ObjectReferences`). leakscope walks the heap itself, later and bounded, so it stops
//! the runtime's walk at the first object.

use super::object::ProfilerCallback;
use crate::capture::root_references;
use crate::clr::types::*;
use crate::guard;

/// Runs on a GC thread with the runtime suspended, possibly several times per GC.
pub(super) unsafe extern "system" fn root_references2(
    _this: *mut ProfilerCallback,
    count: u32,
    objects: *const ObjectID,
    kinds: *const u32,
    flags: *const u32,
    ids: *const usize,
) -> HRESULT {
    guard::callback("RootReferences2", || {
        if count == 0 || objects.is_null() || kinds.is_null() || flags.is_null() || ids.is_null() {
            return Ok(());
        }
        let n = count as usize;
        // SAFETY: the runtime passes four arrays of `count` entries, valid for this call; the
        // slices do not outlive it.
        let (objects, kinds, flags, ids) = unsafe {
            (
                std::slice::from_raw_parts(objects, n),
                std::slice::from_raw_parts(kinds, n),
                std::slice::from_raw_parts(flags, n),
                std::slice::from_raw_parts(ids, n),
            )
        };
        let gc =
            crate::agent::get().map_or(0, |a| a.capture.counters.last_gc.load(std::sync::atomic::Ordering::Relaxed));
        root_references::RECORDER.record(gc, objects, kinds, flags, ids);
        Ok(())
    })
}

/// The runtime's own heap walk: not needed (an error return stops it until the next GC).
pub(super) unsafe extern "system" fn object_references(
    _this: *mut ProfilerCallback,
    _object: ObjectID,
    _class: ClassID,
    _count: u32,
    _refs: *const ObjectID,
) -> HRESULT {
    guard::com_entry("ObjectReferences", E_FAIL, || E_FAIL)
}
