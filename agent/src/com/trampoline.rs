//! Entry trampolines for the callbacks that capture stacks.
//!
//! The agent is built without frame pointers, so from inside Rust code there is no reliable
//! frame record to start a frame-pointer walk at. These naked entry points push one
//! (`push rbp; mov rbp, rsp`) before anything else runs: its saved RBP is the runtime caller's
//! frame pointer and its return address is in the runtime, exactly as a framed function's
//! would be. Its address is passed to the Rust callback as one extra, last argument; the
//! runtime's own arguments are passed through unchanged (register arguments untouched, stack
//! arguments copied below the new record).

use super::object::ProfilerCallback;
use crate::clr::types::*;

/// `EventPipeEventDelivered`: 13 arguments, the last 7 on the stack. The trampoline copies them
/// and adds the frame record as a 14th, keeping the stack 16-byte aligned at the call
/// (entry: 8 mod 16; `push rbp`: 0; eight more pushes: 0).
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
pub(super) unsafe extern "system" fn event_pipe_event_delivered(
    _this: *mut ProfilerCallback,
    _provider: EventPipeProvider,
    _event_id: u32,
    _event_version: u32,
    _metadata_len: u32,
    _metadata: *const u8,
    _payload_len: u32,
    _payload: *const u8,
    _activity_id: *const GUID,
    _related_activity_id: *const GUID,
    _thread: ThreadID,
    _stack_frame_count: u32,
    _stack_frames: *const usize,
) -> HRESULT {
    core::arch::naked_asm!(
        "push rbp",
        "mov rbp, rsp",
        "push rbp",
        "push qword ptr [rbp + 64]",
        "push qword ptr [rbp + 56]",
        "push qword ptr [rbp + 48]",
        "push qword ptr [rbp + 40]",
        "push qword ptr [rbp + 32]",
        "push qword ptr [rbp + 24]",
        "push qword ptr [rbp + 16]",
        "call {imp}",
        "leave",
        "ret",
        imp = sym super::callbacks::event_pipe_event_delivered,
    )
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe extern "system" fn event_pipe_event_delivered(
    this: *mut ProfilerCallback,
    provider: EventPipeProvider,
    event_id: u32,
    event_version: u32,
    metadata_len: u32,
    metadata: *const u8,
    payload_len: u32,
    payload: *const u8,
    activity_id: *const GUID,
    related_activity_id: *const GUID,
    thread: ThreadID,
    stack_frame_count: u32,
    stack_frames: *const usize,
) -> HRESULT {
    // SAFETY: forwards the runtime's arguments; no frame record (stacks come from DoStackSnapshot).
    unsafe {
        super::callbacks::event_pipe_event_delivered(
            this,
            provider,
            event_id,
            event_version,
            metadata_len,
            metadata,
            payload_len,
            payload,
            activity_id,
            related_activity_id,
            thread,
            stack_frame_count,
            stack_frames,
            0,
        )
    }
}

/// `ObjectAllocated` (exact mode): 3 register arguments; the record goes in the 4th (rcx).
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
pub(super) unsafe extern "system" fn object_allocated(
    _this: *mut ProfilerCallback,
    _object: ObjectID,
    _class: ClassID,
) -> HRESULT {
    core::arch::naked_asm!(
        "push rbp",
        "mov rbp, rsp",
        "mov rcx, rbp",
        "call {imp}",
        "pop rbp",
        "ret",
        imp = sym super::callbacks::object_allocated,
    )
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe extern "system" fn object_allocated(
    this: *mut ProfilerCallback,
    object: ObjectID,
    class: ClassID,
) -> HRESULT {
    // SAFETY: forwards the runtime's arguments; no frame record.
    unsafe { super::callbacks::object_allocated(this, object, class, 0) }
}
