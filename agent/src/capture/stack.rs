//! Walking the allocating thread's managed stack with `DoStackSnapshot`.

use std::ffi::c_void;

use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{FunctionID, HRESULT, S_FALSE, S_OK};

/// One managed frame: the function and the instruction pointer within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    pub function: FunctionID,
    pub ip: usize,
}

struct Walk {
    frames: Vec<Frame>,
    limit: usize,
}

/// Managed frames of the current thread, innermost first, at most `limit` of them.
/// Runs of native frames (the runtime's allocator and EventPipe) are skipped.
pub fn capture_current_thread(info: &ProfilerInfo, limit: usize) -> Vec<Frame> {
    let mut walk = Walk { frames: Vec::with_capacity(limit.min(32)), limit };
    // SAFETY: `on_frame` receives `&mut walk` back as client data; `walk` outlives the call,
    // which is synchronous.
    let _ = unsafe {
        info.do_stack_snapshot_current_thread(on_frame, &mut walk as *mut Walk as *mut c_void)
    };
    walk.frames
}

unsafe extern "system" fn on_frame(
    function: FunctionID,
    ip: usize,
    _frame_info: usize,
    _context_size: u32,
    _context: *mut u8,
    client_data: *mut c_void,
) -> HRESULT {
    if client_data.is_null() {
        return S_FALSE;
    }
    // SAFETY: `client_data` is the `Walk` passed by capture_current_thread, alive for the walk,
    // and the runtime calls this callback on the walking thread only.
    let walk = unsafe { &mut *(client_data as *mut Walk) };
    if function != 0 {
        walk.frames.push(Frame { function, ip });
        if walk.frames.len() >= walk.limit {
            return S_FALSE;
        }
    }
    S_OK
}
