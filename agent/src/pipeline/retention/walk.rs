//! One heap walk inside a suspension of our own: `SuspendRuntime`, work before the first
//! object (addresses refreshed from handles, statics read), `EnumerateGCHeapObjects` (which
//! does not suspend again), work after the last object (handles for what was found), and
//! `ResumeRuntime`. Nothing can move from the first step to the last, so addresses read in
//! one step are good in the others.
//!
//! The visitor is asked to give up (deadline, shutdown) every few thousand objects by its own
//! `object` returning false; a walk given up still resumes the runtime. The runtime's callbacks
//! go through the one guard every runtime entry has ([`crate::clr::walks`]): a panic in the
//! visitor never crosses into the runtime; it turns the agent off like a panic in any other
//! callback, the walk stops, the runtime resumes, and the walk fails. A panic in `before` or
//! `after` (our own thread's calls, not the runtime's) unwinds to the agent thread's guard, the
//! runtime resumed on the way (`Resume`).

use std::ffi::c_void;
use std::time::{Duration, Instant};

use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{E_FAIL, HRESULT, ObjectID};
use crate::clr::walks::{ObjectVisitor, ReferenceVisitor, on_object, on_reference};

pub trait Visit {
    /// The runtime is suspended; no object visited yet.
    fn before(&mut self, info: &ProfilerInfo);
    /// One object of the heap; false stops the walk.
    fn object(&mut self, info: &ProfilerInfo, object: ObjectID) -> bool;
    /// One reference `slot` (an address inside the object being visited) holding `target`;
    /// false stops the object's references.
    fn reference(&mut self, target: ObjectID, slot: usize) -> bool;
    /// The runtime is still suspended; the walk is over (or was given up).
    fn after(&mut self, info: &ProfilerInfo);
}

/// Walks the heap once with `visitor`; returns how long the application was paused.
pub fn suspended(info: &ProfilerInfo, visitor: &mut dyn Visit) -> Result<Duration, HRESULT> {
    // Shutdown waits for the resume; a termination signal meanwhile stops the walk (`crate::stop`).
    let _inside = crate::clr::gate::RUNTIME.hold().ok_or(crate::clr::gate::CLOSED_HR)?;
    let _signals = crate::stop::SignalWatch::start();
    let resume = Resume::suspend(info)?;
    visitor.before(info);
    let mut objects = Objects { info, visitor, broken: false };
    // SAFETY: `on_object::<Objects>` gets `objects` back; it outlives the synchronous walk and
    // nothing else touches it meanwhile. The callbacks run on this thread, runtime suspended.
    let walked = unsafe {
        info.enumerate_gc_heap_objects(on_object::<Objects<'_>>, &mut objects as *mut Objects<'_> as *mut c_void)
    };
    let broken = objects.broken;
    if !broken {
        visitor.after(info);
    }
    let pause = resume.finish();
    if broken {
        tracing::error!("retention heap walk stopped by a panic in its visitor");
        return Err(E_FAIL);
    }
    walked?;
    Ok(pause)
}

/// Visits the references of `object` (during a walk, from [`Visit::object`]). A panic in the
/// visitor's `reference` stops the enumeration (the guard catches it on the runtime's side)
/// and is raised again here, on ours, so that the object's visit fails too.
pub fn references(info: &ProfilerInfo, object: ObjectID, visitor: &mut dyn Visit) {
    let mut references = References { visitor, broken: false };
    // SAFETY: the runtime is suspended for the walk and `object` is the live object it handed
    // us; `on_reference::<References>` gets `references` back, which outlives the synchronous call.
    let _ = unsafe {
        info.enumerate_object_references(
            object,
            on_reference::<References<'_>>,
            &mut references as *mut References<'_> as *mut c_void,
        )
    };
    if references.broken {
        panic!("the object references callback panicked");
    }
}

/// The heap walk's objects, handed to the visitor.
struct Objects<'a> {
    info: &'a ProfilerInfo,
    visitor: &'a mut dyn Visit,
    /// Set while the visitor runs: still set after it means it panicked (the walk fails).
    broken: bool,
}

impl ObjectVisitor for Objects<'_> {
    const WALK: &'static str = "the retention heap walk";

    fn object(&mut self, object: ObjectID) -> bool {
        if self.broken {
            return false;
        }
        crate::pipeline::heap_walk::test_delay();
        self.broken = true;
        let go_on = self.visitor.object(self.info, object);
        self.broken = false;
        go_on
    }
}

/// One object's references, handed to the visitor.
struct References<'a> {
    visitor: &'a mut dyn Visit,
    broken: bool,
}

impl ReferenceVisitor for References<'_> {
    fn reference(&mut self, target: ObjectID, slot: usize) -> bool {
        if target == 0 {
            return true;
        }
        self.broken = true;
        let go_on = self.visitor.reference(target, slot);
        self.broken = false;
        go_on
    }
}

/// The runtime suspended by us: resumed when this is dropped, on every way out (a panic too).
struct Resume<'a> {
    info: &'a ProfilerInfo,
    started: Instant,
}

impl<'a> Resume<'a> {
    /// Suspends the runtime, waiting out a suspension of its own under way (its GC).
    fn suspend(info: &'a ProfilerInfo) -> Result<Resume<'a>, HRESULT> {
        // The pause counts from the attempt that succeeded (suspending is part of it).
        let mut started = Instant::now();
        crate::pipeline::heap_walk::once_not_suspending(|| {
            started = Instant::now();
            info.suspend_runtime()
        })?;
        Ok(Resume { info, started })
    }

    /// Resumes the runtime; how long it was suspended.
    fn finish(self) -> Duration {
        let started = self.started;
        drop(self);
        started.elapsed()
    }
}

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        if let Err(hr) = self.info.resume_runtime() {
            tracing::error!("ResumeRuntime failed ({hr:#x})");
        }
    }
}

/// Runs `f` with the runtime suspended (no walk): for reading handles consistently with
/// addresses the GC just reported.
pub fn suspended_only<T>(info: &ProfilerInfo, f: impl FnOnce() -> T) -> Result<(T, Duration), HRESULT> {
    let _inside = crate::clr::gate::RUNTIME.hold().ok_or(crate::clr::gate::CLOSED_HR)?;
    let resume = Resume::suspend(info)?;
    let value = f();
    Ok((value, resume.finish()))
}
