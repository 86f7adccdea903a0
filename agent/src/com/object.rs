//! The COM objects leakscope exposes: the class factory the runtime gets from
//! `DllGetClassObject`, and the profiler-callback object it creates. Both are static: a process
//! loads one profiler, and a static object can never be freed while the runtime still calls it.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering};

use super::callback_vtable::{CallbackVtable, VTABLE};
use crate::clr::guids::{CLSID_LEAKSCOPE, IID_CALLBACKS, IID_ICLASSFACTORY, IID_IUNKNOWN};
use crate::clr::types::*;
use crate::guard;

/// The object whose vtable is `ICorProfilerCallback11`.
#[repr(C)]
pub struct ProfilerCallback {
    vtable: &'static CallbackVtable,
    references: AtomicU32,
}

static PROFILER: ProfilerCallback = ProfilerCallback { vtable: &VTABLE, references: AtomicU32::new(0) };

fn profiler_ptr() -> *mut c_void {
    &PROFILER as *const ProfilerCallback as *mut c_void
}

/// Answers IUnknown and every callback interface from 1 to 11; nothing else.
pub(super) unsafe extern "system" fn query_interface(
    _this: *mut ProfilerCallback,
    iid: *const GUID,
    out: *mut *mut c_void,
) -> HRESULT {
    guard::com_entry("QueryInterface", E_NOINTERFACE, || {
        if out.is_null() || iid.is_null() {
            return E_POINTER;
        }
        // SAFETY: both pointers were checked for NULL; the runtime passes a valid IID and an
        // out-slot it owns.
        unsafe {
            let iid = &*iid;
            if *iid == IID_IUNKNOWN || IID_CALLBACKS.contains(iid) {
                PROFILER.references.fetch_add(1, Ordering::Relaxed);
                *out = profiler_ptr();
                S_OK
            } else {
                *out = std::ptr::null_mut();
                E_NOINTERFACE
            }
        }
    })
}

pub(super) unsafe extern "system" fn add_ref(_this: *mut ProfilerCallback) -> u32 {
    guard::entry("AddRef", 1, || PROFILER.references.fetch_add(1, Ordering::Relaxed).wrapping_add(1))
}

/// The object is static, so reaching zero frees nothing; the count is kept for COM's sake.
pub(super) unsafe extern "system" fn release(_this: *mut ProfilerCallback) -> u32 {
    guard::entry("Release", 1, || {
        let previous = PROFILER
            .references
            .fetch_update(Ordering::Release, Ordering::Relaxed, |n| Some(n.saturating_sub(1)))
            .unwrap_or(0);
        previous.saturating_sub(1)
    })
}

/// `IClassFactory`: slots 0–2 IUnknown, 3 CreateInstance, 4 LockServer.
#[repr(C)]
struct ClassFactoryVtable {
    query_interface: unsafe extern "system" fn(*mut ClassFactory, *const GUID, *mut *mut c_void) -> HRESULT,
    add_ref: unsafe extern "system" fn(*mut ClassFactory) -> u32,
    release: unsafe extern "system" fn(*mut ClassFactory) -> u32,
    create_instance:
        unsafe extern "system" fn(*mut ClassFactory, *mut c_void, *const GUID, *mut *mut c_void) -> HRESULT,
    lock_server: unsafe extern "system" fn(*mut ClassFactory, BOOL) -> HRESULT,
}

#[repr(C)]
struct ClassFactory {
    vtable: &'static ClassFactoryVtable,
}

static FACTORY_VTABLE: ClassFactoryVtable = ClassFactoryVtable {
    query_interface: factory_query_interface,
    add_ref: factory_add_ref,
    release: factory_release,
    create_instance: factory_create_instance,
    lock_server: factory_lock_server,
};

static FACTORY: ClassFactory = ClassFactory { vtable: &FACTORY_VTABLE };

fn factory_ptr() -> *mut c_void {
    &FACTORY as *const ClassFactory as *mut c_void
}

unsafe extern "system" fn factory_query_interface(
    _this: *mut ClassFactory,
    iid: *const GUID,
    out: *mut *mut c_void,
) -> HRESULT {
    guard::com_entry("IClassFactory::QueryInterface", E_NOINTERFACE, || {
        if out.is_null() || iid.is_null() {
            return E_POINTER;
        }
        // SAFETY: both pointers were checked for NULL and come from the runtime.
        unsafe {
            if *iid == IID_IUNKNOWN || *iid == IID_ICLASSFACTORY {
                *out = factory_ptr();
                S_OK
            } else {
                *out = std::ptr::null_mut();
                E_NOINTERFACE
            }
        }
    })
}

// The factory is static and counts nothing: these cannot fail, and have nothing to guard.
unsafe extern "system" fn factory_add_ref(_this: *mut ClassFactory) -> u32 {
    1
}

unsafe extern "system" fn factory_release(_this: *mut ClassFactory) -> u32 {
    1
}

unsafe extern "system" fn factory_create_instance(
    _this: *mut ClassFactory,
    outer: *mut c_void,
    iid: *const GUID,
    out: *mut *mut c_void,
) -> HRESULT {
    guard::com_entry("IClassFactory::CreateInstance", E_FAIL, || {
        if out.is_null() {
            return E_POINTER;
        }
        if !outer.is_null() {
            return CLASS_E_NOAGGREGATION;
        }
        // SAFETY: forwards the runtime's own arguments to our QueryInterface.
        unsafe { query_interface(std::ptr::null_mut(), iid, out) }
    })
}

/// Nothing to lock: the factory is static. Cannot fail.
unsafe extern "system" fn factory_lock_server(_this: *mut ClassFactory, _lock: BOOL) -> HRESULT {
    S_OK
}

/// The profiler library's only required export: the runtime asks it for a class factory
/// for the CLSID named in `CORECLR_PROFILER`.
///
/// # Safety
/// Called by the runtime with a valid CLSID, IID and out-pointer (each is NULL-checked anyway).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn DllGetClassObject(
    clsid: *const GUID,
    iid: *const GUID,
    out: *mut *mut c_void,
) -> HRESULT {
    // The runtime's first call into the library: from here on no panic reaches stderr.
    crate::log::install_panic_hook();
    guard::com_entry("DllGetClassObject", E_FAIL, || {
        if clsid.is_null() || iid.is_null() || out.is_null() {
            return E_POINTER;
        }
        // SAFETY: all three pointers were checked for NULL and come from the runtime.
        unsafe {
            *out = std::ptr::null_mut();
            if *clsid != CLSID_LEAKSCOPE {
                return CLASS_E_CLASSNOTAVAILABLE;
            }
            factory_query_interface(std::ptr::null_mut(), iid, out)
        }
    })
}
