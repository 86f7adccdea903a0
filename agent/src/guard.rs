//! The one guard around every entry from the runtime into leakscope.
//!
//! No panic may unwind into the runtime (that would abort the host), and a broken agent must
//! not keep running half-working: the first panic turns the agent off for good, records why,
//! and every later callback returns `S_OK` at once. (The on/off state itself is `switch.rs`,
//! which the agent's lower layers read too.)

use crate::clr::types::{HRESULT, S_OK};
use crate::switch::{disable, is_active, panic_message};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Wraps a profiler callback: skipped unless the agent is active; panics are caught and turn
/// the agent off. Errors are logged at debug level (callbacks must not flood the log) and
/// `S_OK` is returned: a callback's failure is never the runtime's problem.
pub fn callback(name: &'static str, f: impl FnOnce() -> Result<(), HRESULT>) -> HRESULT {
    if !is_active() {
        return S_OK;
    }
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => S_OK,
        Ok(Err(hr)) => {
            tracing::debug!("{name} failed: {hr:#x}");
            S_OK
        }
        Err(panic) => {
            disable(format!("panic in {name}: {}", panic_message(&*panic)));
            S_OK
        }
    }
}

/// Wraps COM plumbing and lifecycle calls, which run whether or not the agent is active and
/// must return their own HRESULT. A panic yields `on_panic`.
pub fn com_entry(name: &'static str, on_panic: HRESULT, f: impl FnOnce() -> HRESULT) -> HRESULT {
    entry(name, on_panic, f)
}

/// Wraps any other function the runtime calls (a reference count, a walk's callback, which
/// return something else than an HRESULT): a panic turns the agent off and yields `on_panic`.
pub fn entry<T>(name: &'static str, on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(panic) => {
            disable(format!("panic in {name}: {}", panic_message(&*panic)));
            on_panic
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clr::types::{BOOL, E_FAIL, FunctionID, ObjectID, S_FALSE};
    use crate::clr::walks::{self, FrameVisitor, ObjectVisitor, ReferenceVisitor};
    use crate::switch::{activate, disabled_reason};
    use std::ffi::c_void;

    /// A walk visitor that panics whenever it is called.
    struct Panics;

    impl FrameVisitor for Panics {
        fn frame(&mut self, _: FunctionID, _: usize) -> bool {
            panic!("frame visitor broke")
        }
    }
    impl ObjectVisitor for Panics {
        const WALK: &'static str = "the test heap walk";
        fn object(&mut self, _: ObjectID) -> bool {
            panic!("object visitor broke")
        }
    }
    impl ReferenceVisitor for Panics {
        fn reference(&mut self, _: ObjectID, _: usize) -> bool {
            panic!("reference visitor broke")
        }
    }

    /// Every kind of function the runtime calls — a profiler callback, COM plumbing, a
    /// reference count, and the stack-walk, heap-walk and object-reference callbacks, called as
    /// the runtime calls them — catches a panic (else it would unwind into the runtime and abort
    /// this test process), returns its "stop" value, and turns the agent off saying why. The
    /// guard's state is global, so the kinds are checked in one test, in order.
    #[test]
    fn a_panic_in_every_kind_of_runtime_entry_is_caught() {
        activate();
        assert_eq!(callback("TestCallback", || panic!("callback broke")), S_OK);
        assert!(!is_active(), "the first panic turns the agent off");
        assert!(disabled_reason().is_some_and(|r| r.contains("TestCallback") && r.contains("callback broke")));
        assert_eq!(com_entry("TestComEntry", E_FAIL, || panic!("plumbing broke")), E_FAIL);
        assert_eq!(entry("TestAddRef", 7u32, || panic!("count broke")), 7);

        let mut v = Panics;
        let state = &mut v as *mut Panics as *mut c_void;
        // SAFETY: `state` is a live `Panics` that nothing else uses.
        let hr = unsafe { walks::on_frame::<Panics>(1, 2, 0, 0, std::ptr::null_mut(), state) };
        assert_eq!(hr, S_FALSE, "a stack walk stops");
        // SAFETY: as above.
        let go_on: BOOL = unsafe { walks::on_object::<Panics>(0x1000, state) };
        assert_eq!(go_on, 0, "a heap walk stops");
        let slot: ObjectID = 0x2000;
        // SAFETY: as above; `slot` is a live local holding an ObjectID.
        let go_on: BOOL = unsafe { walks::on_reference::<Panics>(0x1000, &slot, state) };
        assert_eq!(go_on, 0, "a reference enumeration stops");
        // SAFETY: NULL state is allowed and refused without being touched.
        assert_eq!(unsafe { walks::on_object::<Panics>(0x1000, std::ptr::null_mut()) }, 0);
        assert!(disabled_reason().is_some_and(|r| r.contains("TestCallback")), "the first reason is kept");
    }
}
