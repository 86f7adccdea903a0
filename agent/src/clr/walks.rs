//! The functions the runtime calls back during the walks leakscope starts: `DoStackSnapshot`
//! (per frame), `EnumerateGCHeapObjects` (per object) and `EnumerateObjectReferences` (per
//! reference). Each is a thin, guarded hop into a visitor: a panic in the visitor never
//! unwinds into the runtime (which would abort the host); it stops the walk and turns the agent
//! off, like a panic in any other callback.

use std::ffi::c_void;

use crate::clr::types::{BOOL, FunctionID, HRESULT, ObjectID, S_FALSE, S_OK};
use crate::guard;

/// Receives a stack walk's managed frames; false stops the walk.
pub trait FrameVisitor {
    fn frame(&mut self, function: FunctionID, ip: usize) -> bool;
}

/// Receives a heap walk's objects; false stops the walk.
pub trait ObjectVisitor {
    /// Which walk this is, for the reason the agent gives if it panics.
    const WALK: &'static str;
    fn object(&mut self, object: ObjectID) -> bool;
}

/// Receives the references one object holds: the referenced object and the address of the
/// slot holding it; false stops the enumeration.
pub trait ReferenceVisitor {
    fn reference(&mut self, target: ObjectID, slot: usize) -> bool;
}

/// `StackSnapshotCallback` for a `V` passed as client data.
///
/// # Safety
/// `client_data` must be NULL or point to a live `V` that nothing else uses during the walk.
pub unsafe extern "system" fn on_frame<V: FrameVisitor>(
    function: FunctionID,
    ip: usize,
    _frame_info: usize,
    _context_size: u32,
    _context: *mut u8,
    client_data: *mut c_void,
) -> HRESULT {
    guard::entry("the stack walk callback", S_FALSE, || {
        if client_data.is_null() {
            return S_FALSE;
        }
        // SAFETY: per the contract, `client_data` is the caller's `V`, alive for the walk; the
        // runtime calls back on the walking thread only.
        let visitor = unsafe { &mut *(client_data as *mut V) };
        if visitor.frame(function, ip) { S_OK } else { S_FALSE }
    })
}

/// `ObjectCallback` for a `V` passed as state.
///
/// # Safety
/// `state` must be NULL or point to a live `V` that nothing else uses during the walk.
pub unsafe extern "system" fn on_object<V: ObjectVisitor>(object: ObjectID, state: *mut c_void) -> BOOL {
    guard::entry(V::WALK, 0, || {
        if state.is_null() {
            return 0;
        }
        // SAFETY: per the contract, `state` is the caller's `V`, alive for the walk; the runtime
        // calls back on the walking thread only.
        let visitor = unsafe { &mut *(state as *mut V) };
        visitor.object(object) as BOOL
    })
}

/// `ObjectReferenceCallback` for a `V` passed as state.
///
/// # Safety
/// `state` must be NULL or point to a live `V` that nothing else uses during the enumeration,
/// and `slot` NULL or the address of a reference slot of a live object, with the runtime
/// suspended (as it is during `EnumerateObjectReferences` inside a heap walk).
pub unsafe extern "system" fn on_reference<V: ReferenceVisitor>(
    _object: ObjectID,
    slot: *const ObjectID,
    state: *mut c_void,
) -> BOOL {
    guard::entry("the object references callback", 0, || {
        if state.is_null() || slot.is_null() {
            return 1;
        }
        // SAFETY: per the contract, `state` is the caller's `V`, on this thread.
        let visitor = unsafe { &mut *(state as *mut V) };
        // SAFETY: per the contract, `slot` is a reference slot inside a live object while the
        // runtime is suspended; it holds an ObjectID (or 0).
        let target = unsafe { slot.read_volatile() };
        visitor.reference(target, slot as usize) as BOOL
    })
}
