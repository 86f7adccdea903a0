//! The one guard around every entry from the runtime into leakscope.
//!
//! No panic may unwind into the runtime (that would abort the host), and a broken agent must
//! not keep running half-working: the first panic turns the agent off for good, records why,
//! and every later callback returns `S_OK` at once.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::clr::types::{HRESULT, S_OK};

/// True between a successful `Initialize` and `Shutdown` (or the first failure).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static DISABLED_BECAUSE: Mutex<Option<String>> = Mutex::new(None);

pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

pub fn activate() {
    ACTIVE.store(true, Ordering::Release);
}

/// Turns every callback into a no-op from now on.
pub fn deactivate() {
    ACTIVE.store(false, Ordering::Release);
}

/// Turns the agent off and remembers why, for the log and the next summary.
pub fn disable(reason: String) {
    deactivate();
    tracing::error!("agent disabled: {reason}");
    let mut slot = DISABLED_BECAUSE.lock();
    if slot.is_none() {
        *slot = Some(reason);
    }
}

/// Why the agent turned itself off, if it did.
pub fn disabled_reason() -> Option<String> {
    DISABLED_BECAUSE.lock().clone()
}

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
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(hr) => hr,
        Err(panic) => {
            disable(format!("panic in {name}: {}", panic_message(&*panic)));
            on_panic
        }
    }
}

pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}
