//! GC roots as the runtime reports them (`RootReferences2`), for the kind of root a path starts
//! from: a stack frame (and which method's), a GC handle, the finalizer queue.
//!
//! The runtime reports roots only under `COR_PRF_MONITOR_GC`, which it lets a profiler switch
//! on after startup only while background GC is off (`DOTNET_gcConcurrent=0`, or
//! `<ConcurrentGarbageCollection>false</ConcurrentGarbageCollection>`); otherwise it answers
//! `CORPROF_E_CONCURRENT_GC_NOT_PROFILABLE` and paths fall back to "referenced by no object".
//! When allowed, the flag is on only around a retention request's own induced GC.
//!
//! The callback runs on a GC thread with the runtime suspended: it only copies into a vector
//! behind a lock nothing else holds at that time (`try_lock`, never waiting), bounded, and
//! keeps only the latest GC's roots.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{HRESULT, ObjectID, monitor, root};

/// Most roots kept from one GC; further ones are counted.
pub const MAX_ROOTS: usize = 1 << 20;

/// One root: the object, what holds it, and the runtime's id for the holder (for a stack root,
/// the FunctionID of the frame's method; for a handle, the handle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcRoot {
    pub object: ObjectID,
    pub id: usize,
    pub kind: u32,
    pub flags: u32,
}

struct State {
    gc: u32,
    roots: Vec<GcRoot>,
    dropped: u64,
}

pub struct RootRecorder {
    armed: AtomicBool,
    state: Mutex<State>,
    /// Roots not kept because another GC thread held the lock (counted, never waited for).
    contended: AtomicU64,
}

pub static RECORDER: RootRecorder = RootRecorder {
    armed: AtomicBool::new(false),
    state: Mutex::new(State { gc: 0, roots: Vec::new(), dropped: 0 }),
    contended: AtomicU64::new(0),
};

impl RootRecorder {
    /// From `RootReferences2`: keeps the strong roots of GC `gc` while armed.
    pub fn record(&self, gc: u32, objects: &[ObjectID], kinds: &[u32], flags: &[u32], ids: &[usize]) {
        if !self.armed.load(Ordering::Acquire) {
            return;
        }
        let Some(mut state) = self.state.try_lock() else {
            self.contended.fetch_add(objects.len() as u64, Ordering::Relaxed);
            return;
        };
        if state.gc != gc {
            state.gc = gc;
            state.roots.clear();
            state.dropped = 0;
        }
        for i in 0..objects.len().min(kinds.len()).min(flags.len()).min(ids.len()) {
            // A weak reference does not keep anything alive.
            if objects[i] == 0 || flags[i] & root::FLAG_WEAKREF != 0 {
                continue;
            }
            if state.roots.len() >= MAX_ROOTS {
                state.dropped += 1;
                continue;
            }
            state.roots.push(GcRoot { object: objects[i], id: ids[i], kind: kinds[i], flags: flags[i] });
        }
    }

    /// The latest GC's roots (and how many did not fit), leaving none behind.
    pub fn take(&self) -> (u32, Vec<GcRoot>, u64) {
        let mut state = self.state.lock();
        let roots = std::mem::take(&mut state.roots);
        let dropped = std::mem::take(&mut state.dropped) + self.contended.swap(0, Ordering::Relaxed);
        (state.gc, roots, dropped)
    }
}

/// Root reports switched on; [`Armed::disarm`] switches them off again.
#[must_use]
pub struct Armed(());

/// Asks the runtime to report the next GC's roots (on the agent thread, before inducing it).
pub fn arm(info: &ProfilerInfo) -> Result<Armed, HRESULT> {
    let _ = RECORDER.take();
    let (low, high) = info.event_mask2()?;
    info.set_event_mask2(low | monitor::GC, high)?;
    RECORDER.armed.store(true, Ordering::Release);
    Ok(Armed(()))
}

impl Armed {
    pub fn disarm(self, info: &ProfilerInfo) {
        RECORDER.armed.store(false, Ordering::Release);
        match info.event_mask2() {
            Ok((low, high)) => {
                if let Err(hr) = info.set_event_mask2(low & !monitor::GC, high) {
                    tracing::warn!("cannot switch GC callbacks off again ({hr:#x})");
                }
            }
            Err(hr) => tracing::warn!("cannot read the event mask ({hr:#x}); GC callbacks may stay on"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_strong_roots_of_the_latest_gc_while_armed() {
        let r = RootRecorder {
            armed: AtomicBool::new(false),
            state: Mutex::new(State { gc: 0, roots: Vec::new(), dropped: 0 }),
            contended: AtomicU64::new(0),
        };
        r.record(1, &[0x10], &[root::STACK], &[0], &[7]);
        assert!(r.take().1.is_empty(), "not armed: nothing kept");
        r.armed.store(true, Ordering::Release);
        r.record(1, &[0x10, 0x20], &[root::STACK, root::HANDLE], &[0, root::FLAG_WEAKREF], &[7, 8]);
        r.record(2, &[0x30, 0], &[root::HANDLE, root::OTHER], &[root::FLAG_PINNING, 0], &[9, 0]);
        r.record(2, &[0x40], &[root::FINALIZER], &[0], &[0]);
        let (gc, roots, dropped) = r.take();
        assert_eq!((gc, dropped), (2, 0));
        assert_eq!(roots.iter().map(|r| r.object).collect::<Vec<_>>(), [0x30, 0x40]);
    }
}
