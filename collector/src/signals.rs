//! Ctrl-C and friends. The handler only counts; the session loop polls the count, so stopping
//! is ordinary code (stop the child in order, flush, write reports) rather than signal-handler
//! code. A second Ctrl-C skips the remaining grace periods.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

static RECEIVED: AtomicUsize = AtomicUsize::new(0);
static LAST: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only atomics: async-signal-safe.
    LAST.store(sig, Ordering::Relaxed);
    RECEIVED.fetch_add(1, Ordering::Relaxed);
}

/// Installs the counting handler for SIGINT, SIGTERM and SIGHUP.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `sa` is fully initialised (zeroed, then handler and mask set); the handler
        // only touches atomics, which is async-signal-safe. SA_RESTART keeps std's blocking
        // calls from failing with EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// How many stop signals arrived so far.
pub fn received() -> usize {
    RECEIVED.load(Ordering::Relaxed)
}

/// The number of the last stop signal received (0 if none).
pub fn last_signal() -> i32 {
    LAST.load(Ordering::Relaxed)
}

pub fn last_signal_name() -> &'static str {
    match LAST.load(Ordering::Relaxed) {
        libc::SIGINT => "SIGINT (Ctrl-C)",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

pub fn name(sig: i32) -> String {
    let known = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => "",
    };
    if known.is_empty() { format!("signal {sig}") } else { known.to_string() }
}
