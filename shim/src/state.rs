//! The shim's state: an atomic state machine that hooks read with one relaxed load and never
//! wait on, the process it was started in, and why tracking is on or off. The lowest layer of
//! the shim's own: it imports only `sys`; `lifecycle.rs` drives the transitions.
//!
//! Counting needs no initialisation (static counter pool), so it runs from the
//! very first malloc, before the constructor; totals are exact from the start.

use core::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::sys;

pub(crate) const BOOT: u8 = 0;
pub(crate) const INIT: u8 = 1;
pub(crate) const ENABLED: u8 = 2;
/// First of the pass-through states.
pub(crate) const OFF: u8 = 3;
pub(crate) const CHILD: u8 = 4;
pub(crate) const STOPPED: u8 = 5;

static STATE: AtomicU8 = AtomicU8::new(BOOT);
static PID: AtomicI32 = AtomicI32::new(0);
static START_MS: AtomicU64 = AtomicU64::new(0);
static START_UNIX_MS: AtomicU64 = AtomicU64::new(0);
/// Writer tick counter, stamped on samples (for ages).
pub(crate) static TICK: AtomicU32 = AtomicU32::new(0);
static REASON: Mutex<String> = Mutex::new(String::new());

#[inline(always)]
pub(crate) fn state() -> u8 {
    STATE.load(Ordering::Relaxed)
}

/// BOOT → INIT, once: notes the process and the start times. False when already done.
pub(crate) fn begin_init() -> bool {
    if STATE.compare_exchange(BOOT, INIT, Ordering::AcqRel, Ordering::Relaxed).is_err() {
        return false;
    }
    PID.store(sys::getpid(), Ordering::Relaxed);
    START_MS.store(sys::monotonic_ms(), Ordering::Relaxed);
    START_UNIX_MS.store(sys::unix_ms(), Ordering::Relaxed);
    true
}

/// Enters `state` (published with release ordering).
pub(crate) fn set(state: u8) {
    STATE.store(state, Ordering::Release);
}

/// ENABLED, saying why.
pub(crate) fn enable(reason: &str) {
    set_reason(reason);
    set(ENABLED);
}

/// OFF (pass-through), saying why. The fast route is closed by the caller (`lifecycle::go_off`).
pub(crate) fn turn_off(reason: &str) {
    set(OFF);
    set_reason(reason);
}

pub(crate) fn pid() -> i32 {
    PID.load(Ordering::Relaxed)
}

/// False in a child created by fork/vfork/clone (the pid changed).
pub(crate) fn same_process() -> bool {
    sys::getpid() == pid()
}

pub(crate) fn start_ms() -> u64 {
    START_MS.load(Ordering::Relaxed)
}

pub(crate) fn start_unix_ms() -> u64 {
    START_UNIX_MS.load(Ordering::Relaxed)
}

/// Why native tracking is on or off, one sentence.
pub(crate) fn reason() -> String {
    match REASON.lock() {
        Ok(r) => r.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

fn set_reason(s: &str) {
    let mut r = match REASON.lock() {
        Ok(r) => r,
        Err(p) => p.into_inner(),
    };
    r.clear();
    r.push_str(s);
}
