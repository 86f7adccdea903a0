//! One heap walk inside a suspension of our own: `SuspendRuntime`, work before the first
//! object (addresses refreshed from handles, statics read), `EnumerateGCHeapObjects` (which
//! does not suspend again), work after the last object (handles for what was found), and
//! `ResumeRuntime`. Nothing can move from the first step to the last, so addresses read in
//! one step are good in the others.
//!
//! The visitor is asked to give up (deadline, shutdown) every few thousand objects by its own
//! `object` returning false; a walk given up still resumes the runtime. A panic in the visitor
//! never crosses into the runtime: the walk stops, the runtime resumes, and the walk fails.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{BOOL, CORPROF_E_SUSPENSION_IN_PROGRESS, E_FAIL, HRESULT, ObjectID};

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
    let started = Instant::now();
    suspend(info)?;
    let mut state = State { info, visitor, panicked: None };
    let before = catch_unwind(AssertUnwindSafe(|| state.visitor.before(info)));
    let walked = match before {
        // SAFETY: `on_object` gets `&mut state` back and `state` outlives the synchronous call;
        // the callbacks run on this thread while the runtime is suspended.
        Ok(()) => unsafe { info.enumerate_gc_heap_objects(on_object, &mut state as *mut State<'_> as *mut c_void) },
        Err(panic) => {
            state.panicked = Some(crate::switch::panic_message(&*panic));
            Ok(())
        }
    };
    if state.panicked.is_none() {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| state.visitor.after(info))) {
            state.panicked = Some(crate::switch::panic_message(&*panic));
        }
    }
    let resumed = info.resume_runtime();
    let pause = started.elapsed();
    if let Err(hr) = resumed {
        tracing::error!("ResumeRuntime failed ({hr:#x})");
    }
    if let Some(why) = state.panicked {
        tracing::error!("heap walk stopped by a panic: {why}");
        return Err(E_FAIL);
    }
    walked?;
    Ok(pause)
}

/// Visits the references of `object` (during a walk, from [`Visit::object`]).
pub fn references(info: &ProfilerInfo, object: ObjectID, visitor: &mut dyn Visit) {
    let mut v: &mut dyn Visit = visitor;
    // SAFETY: the runtime is suspended for the walk and `object` is the live object it handed
    // us; `on_reference` gets `v` back, which outlives the synchronous call.
    let _ =
        unsafe { info.enumerate_object_references(object, on_reference, &mut v as *mut &mut dyn Visit as *mut c_void) };
    if let Some(panic) = REFERENCE_PANIC.with(|p| p.borrow_mut().take()) {
        std::panic::resume_unwind(panic);
    }
}

struct State<'a> {
    info: &'a ProfilerInfo,
    visitor: &'a mut dyn Visit,
    /// A panic in the visitor: the walk stops and fails.
    panicked: Option<String>,
}

unsafe extern "system" fn on_object(object: ObjectID, state: *mut c_void) -> BOOL {
    if state.is_null() {
        return 0;
    }
    // SAFETY: `state` is the `State` passed by `suspended`, alive for the walk; the runtime
    // calls back on the walking thread only.
    let state = unsafe { &mut *(state as *mut State<'_>) };
    if state.panicked.is_some() {
        return 0;
    }
    let info = state.info;
    crate::pipeline::heap_walk::test_delay();
    match catch_unwind(AssertUnwindSafe(|| state.visitor.object(info, object))) {
        Ok(go_on) => go_on as BOOL,
        Err(panic) => {
            state.panicked = Some(crate::switch::panic_message(&*panic));
            0
        }
    }
}

unsafe extern "system" fn on_reference(_object: ObjectID, slot: *const ObjectID, state: *mut c_void) -> BOOL {
    if state.is_null() || slot.is_null() {
        return 1;
    }
    // SAFETY: `state` is the `&mut dyn Visit` passed by `references`, on this thread.
    let visitor = unsafe { &mut *(state as *mut &mut dyn Visit) };
    // SAFETY: the runtime passes the address of a reference slot inside a live object while it
    // is suspended; the slot holds an ObjectID (or 0).
    let target = unsafe { slot.read_volatile() };
    if target == 0 {
        return 1;
    }
    match catch_unwind(AssertUnwindSafe(|| visitor.reference(target, slot as usize))) {
        Ok(go_on) => go_on as BOOL,
        Err(panic) => {
            // Not across the runtime's frames: raised again once `EnumerateObjectReferences`
            // has returned (see `references`).
            REFERENCE_PANIC.with(|p| *p.borrow_mut() = Some(panic));
            0
        }
    }
}

/// How long a suspension of our own waits for one already under way (a GC's) to end.
const SUSPEND_WAIT: Duration = Duration::from_millis(500);

/// `SuspendRuntime`, waiting (bounded) while another suspension is under way: in a process that
/// collects many times a second, a GC's suspension is often in progress when the walk begins.
fn suspend(info: &ProfilerInfo) -> Result<(), HRESULT> {
    let deadline = Instant::now() + SUSPEND_WAIT;
    loop {
        match info.suspend_runtime() {
            Err(CORPROF_E_SUSPENSION_IN_PROGRESS) if Instant::now() < deadline && !crate::stop::shutting_down() => {
                std::thread::sleep(Duration::from_millis(1));
            }
            result => return result,
        }
    }
}

thread_local! {
    /// A panic caught in `on_reference`, to raise again on our side of the runtime's call.
    static REFERENCE_PANIC: std::cell::RefCell<Option<Box<dyn std::any::Any + Send>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with the runtime suspended (no walk): for reading handles consistently with
/// addresses the GC just reported.
pub fn suspended_only<T>(info: &ProfilerInfo, f: impl FnOnce() -> T) -> Result<(T, Duration), HRESULT> {
    let _inside = crate::clr::gate::RUNTIME.hold().ok_or(crate::clr::gate::CLOSED_HR)?;
    let started = Instant::now();
    suspend(info)?;
    let value = f();
    if let Err(hr) = info.resume_runtime() {
        tracing::error!("ResumeRuntime failed ({hr:#x})");
    }
    Ok((value, started.elapsed()))
}
