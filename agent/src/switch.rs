//! Whether the agent is on: switched on after `Initialize`, off at `Shutdown` or detach, and off
//! for good (with the reason kept for the next summary) after a panic or running out of memory.
//!
//! The lowest layer, so that the guard around the runtime's entries (`guard.rs`), the memory
//! accounting, the lifecycle and the agent thread all read and write one state.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

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

pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}
