//! Calling methods of COM interfaces the runtime hands us, by vtable slot.
//!
//! A COM object starts with a pointer to its vtable: an array of function pointers in
//! interface-declaration order, IUnknown's three first. Slot numbers come from
//! `corprof.idl` / `cor.h` and are listed next to each wrapper.

use std::ffi::c_void;

use super::types::{GUID, HRESULT};

/// Reads the function pointer in `slot` of the vtable of `this`.
///
/// # Safety
/// `this` must point to a live COM object whose vtable has more than `slot` entries, and `F`
/// must be an `unsafe extern "system" fn` type matching that method's signature (with `this`
/// first).
pub unsafe fn method<F: Copy>(this: *mut c_void, slot: usize) -> F {
    debug_assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<usize>());
    // SAFETY: per the contract, `this` points to an object whose first word is its vtable,
    // and the vtable has an entry at `slot` holding a function pointer of type `F`.
    unsafe {
        let vtable = *(this as *const *const usize);
        std::mem::transmute_copy::<usize, F>(&*vtable.add(slot))
    }
}

pub type QueryInterfaceFn = unsafe extern "system" fn(*mut c_void, *const GUID, *mut *mut c_void) -> HRESULT;
pub type RefCountFn = unsafe extern "system" fn(*mut c_void) -> u32;

/// `IUnknown::QueryInterface` (slot 0).
///
/// # Safety
/// `this` must be a live COM object.
pub unsafe fn query_interface(this: *mut c_void, iid: &GUID) -> Option<*mut c_void> {
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: slot 0 of every COM vtable is QueryInterface; `out` is a valid out-pointer.
    let hr = unsafe { method::<QueryInterfaceFn>(this, 0)(this, iid, &mut out) };
    (hr >= 0 && !out.is_null()).then_some(out)
}

/// `IUnknown::Release` (slot 2). Returns `S_OK`, to pass through [`super::gate`].
///
/// # Safety
/// `this` must be a live COM object on which the caller owns one reference.
pub unsafe fn release(this: *mut c_void) -> HRESULT {
    // SAFETY: slot 2 of every COM vtable is Release; the caller gives up its reference.
    unsafe { method::<RefCountFn>(this, 2)(this) };
    super::types::S_OK
}
