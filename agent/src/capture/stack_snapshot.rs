//! Walking the allocating thread's managed stack with `DoStackSnapshot`.

use std::ffi::c_void;

use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::FunctionID;
use crate::clr::walks::{FrameVisitor, on_frame};

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
    let _ = unsafe { info.do_stack_snapshot_current_thread(on_frame::<Walk>, &mut walk as *mut Walk as *mut c_void) };
    walk.frames
}

impl FrameVisitor for Walk {
    fn frame(&mut self, function: FunctionID, ip: usize) -> bool {
        if function != 0 {
            self.frames.push(Frame { function, ip });
            if self.frames.len() >= self.limit {
                return false;
            }
        }
        true
    }
}
