//! The callbacks leakscope implements. Each is a thin, guarded hop into the safe core.

use std::ffi::c_void;

use super::object::ProfilerCallback;
use crate::clr::types::*;
use crate::guard;
use crate::{agent, lifecycle};

pub(super) unsafe extern "system" fn initialize(_this: *mut ProfilerCallback, unknown: *mut c_void) -> HRESULT {
    // SAFETY: the runtime passes its ICorProfilerInfo IUnknown (or NULL, which is checked).
    guard::com_entry("Initialize", CORPROF_E_PROFILER_CANCEL_ACTIVATION, || unsafe {
        lifecycle::initialize(unknown, lifecycle::Start::Startup)
    })
}

pub(super) unsafe extern "system" fn shutdown(_this: *mut ProfilerCallback) -> HRESULT {
    guard::com_entry("Shutdown", S_OK, || {
        lifecycle::shutdown();
        S_OK
    })
}

/// Loaded into a running process (`leakscope attach`): settings come as client data.
pub(super) unsafe extern "system" fn initialize_for_attach(
    _this: *mut ProfilerCallback,
    unknown: *mut c_void,
    client_data: *mut c_void,
    client_data_len: u32,
) -> HRESULT {
    guard::com_entry("InitializeForAttach", CORPROF_E_PROFILER_CANCEL_ACTIVATION, || {
        let data = if client_data.is_null() || client_data_len == 0 {
            Vec::new()
        } else {
            // SAFETY: the runtime passes `client_data_len` readable bytes for this call; they
            // are copied before it returns.
            unsafe { std::slice::from_raw_parts(client_data as *const u8, client_data_len as usize) }.to_vec()
        };
        // SAFETY: the runtime passes its ICorProfilerInfo IUnknown (or NULL, which is checked).
        unsafe { lifecycle::initialize(unknown, lifecycle::Start::Attach { client_data: data }) }
    })
}

/// The runtime has unloaded nothing yet, but will release us: nothing left to do, the agent
/// thread stopped itself before asking to detach.
pub(super) unsafe extern "system" fn profiler_detach_succeeded(_this: *mut ProfilerCallback) -> HRESULT {
    guard::com_entry("ProfilerDetachSucceeded", S_OK, || {
        tracing::info!("profiler detached");
        S_OK
    })
}

/// Exact mode only: every allocation in the process while some type is aimed at. Entered through
/// `trampoline::object_allocated`, which passes its frame record (`frame`) for the stack walk.
pub(super) unsafe extern "system" fn object_allocated(
    _this: *mut ProfilerCallback,
    object: ObjectID,
    class: ClassID,
    frame: usize,
) -> HRESULT {
    guard::callback("ObjectAllocated", || {
        if let Some(agent) = agent::get() {
            agent.capture.on_object_allocated(&agent.info, object, class, frame);
        }
        Ok(())
    })
}

/// leakscope is a full profiler, not a notification-only one.
pub(super) unsafe extern "system" fn load_as_notification_only(
    _this: *mut ProfilerCallback,
    notification_only: *mut BOOL,
) -> HRESULT {
    guard::com_entry("LoadAsNotificationOnly", S_OK, || {
        if !notification_only.is_null() {
            // SAFETY: checked for NULL; the runtime passes a BOOL it owns.
            unsafe { *notification_only = 0 };
        }
        S_OK
    })
}

/// Runs on the thread that emitted the event: for allocation samples, the allocating thread,
/// in the middle of the allocation; for GC events, a GC thread with the runtime suspended.
/// Entered through `trampoline::event_pipe_event_delivered`, which adds `frame`, the frame record
/// the stack walk starts at.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe extern "system" fn event_pipe_event_delivered(
    _this: *mut ProfilerCallback,
    provider: EventPipeProvider,
    event_id: u32,
    event_version: u32,
    _metadata_len: u32,
    _metadata: *const u8,
    payload_len: u32,
    payload: *const u8,
    _activity_id: *const GUID,
    _related_activity_id: *const GUID,
    _thread: ThreadID,
    _stack_frame_count: u32,
    _stack_frames: *const usize,
    frame: usize,
) -> HRESULT {
    guard::callback("EventPipeEventDelivered", || {
        let Some(agent) = agent::get() else { return Ok(()) };
        if payload.is_null() || payload_len == 0 {
            return Ok(());
        }
        // SAFETY: the runtime guarantees `payload` holds `payload_len` bytes for the duration of
        // this call; the slice does not outlive it.
        let payload = unsafe { std::slice::from_raw_parts(payload, payload_len as usize) };
        agent.capture.on_event(&agent.info, provider, event_id, event_version, payload, frame);
        Ok(())
    })
}

/// A module is about to go (a collectible assembly unloading): its code addresses may soon be
/// reused, so the agent thread resolves what was captured before and forgets what it knew.
pub(super) unsafe extern "system" fn module_unload_started(_this: *mut ProfilerCallback, module: ModuleID) -> HRESULT {
    guard::callback("ModuleUnloadStarted", || {
        if let Some(agent) = agent::get() {
            agent.capture.on_module_unloading(module);
        }
        Ok(())
    })
}

/// Every class the runtime finishes loading: generic instantiations are kept for their statics.
pub(super) unsafe extern "system" fn class_load_finished(
    _this: *mut ProfilerCallback,
    class: ClassID,
    status: HRESULT,
) -> HRESULT {
    guard::callback("ClassLoadFinished", || {
        if status >= 0 {
            if let Some(agent) = agent::get() {
                crate::pipeline::retention::generics::LOADED.on_load(&agent.info, class);
            }
        }
        Ok(())
    })
}

/// A class of a collectible assembly is going away: its ClassID must not be used again.
pub(super) unsafe extern "system" fn class_unload_started(_this: *mut ProfilerCallback, class: ClassID) -> HRESULT {
    guard::callback("ClassUnloadStarted", || {
        crate::pipeline::retention::generics::LOADED.on_unload(class);
        Ok(())
    })
}

/// A GC is over, the runtime still suspended: where it left the heap, while a census wants it.
pub(super) unsafe extern "system" fn garbage_collection_finished(_this: *mut ProfilerCallback) -> HRESULT {
    guard::callback("GarbageCollectionFinished", || {
        if let Some(agent) = agent::get() {
            crate::capture::gc_extents::on_gc_finished(&agent.info);
        }
        Ok(())
    })
}
