//! When the agent must stop what it is doing in the runtime: the process is shutting down
//! (`Shutdown` was called), or it was asked to end while a heap walk holds the runtime
//! suspended.
//!
//! The second case needs a signal hook. A walk suspends every managed thread, and a worker
//! that ends gracefully on SIGTERM (a `PosixSignalRegistration`, the generic host) handles the
//! signal in managed code, which cannot run until the walk is over: the runtime's `Shutdown`
//! (which would tell the agent to stop) comes only after that. So for the length of each
//! suspended walk, and only then, the agent puts its own handler in front of SIGHUP, SIGINT,
//! SIGQUIT and SIGTERM. It notes the signal (the walk stops at its next object) and passes it on
//! to the handler it replaced exactly as the kernel would have (the previous action, the default
//! action, or nothing for an ignored signal), then puts the previous handler back when the walk
//! ends. The host sees the same signal handling, only sooner.

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

static SHUTDOWN: AtomicBool = AtomicBool::new(false);
/// The termination signal that arrived during the current walk (0: none).
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

/// The runtime is shutting down: walks give up, nothing new is started.
pub fn request_shutdown() {
    SHUTDOWN.store(true, Ordering::SeqCst);
}

pub fn shutting_down() -> bool {
    SHUTDOWN.load(Ordering::Relaxed)
}

/// A walk in progress should give up now (checked at every object: two relaxed loads).
pub fn walk_should_stop() -> bool {
    shutting_down() || SIGNALLED.load(Ordering::Relaxed) != 0
}

/// Why [`walk_should_stop`] says so.
/// A signal during the walk comes first: it is the cause when a graceful exit then shuts the
/// runtime down.
pub fn why() -> Option<String> {
    match SIGNALLED.load(Ordering::Relaxed) {
        0 if shutting_down() => Some("the runtime is shutting down".to_string()),
        0 => None,
        sig => Some(format!("the process received {} during the walk", signal_name(sig))),
    }
}

/// Signals that ask a process to end.
const TERMINATING: [c_int; 4] = [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM];

fn signal_name(sig: c_int) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Per signal: the handler we replaced (`sa_sigaction`) and its flags, read by our handler.
/// Atomics, so the handler reads them without a lock.
static PREVIOUS_HANDLER: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];
static PREVIOUS_FLAGS: [AtomicI32; 4] = [const { AtomicI32::new(0) }; 4];
/// Per signal: the replaced action was one-shot (`SA_RESETHAND`) and has been used up, so the
/// default action is what must be restored.
static USED_UP: [AtomicBool; 4] = [const { AtomicBool::new(false) }; 4];
/// Per signal: someone installed a handler over ours during a walk (and may chain to it), so
/// ours stays where it is and is never installed again: its saved predecessor stays valid.
static LEFT_IN_PLACE: [AtomicBool; 4] = [const { AtomicBool::new(false) }; 4];

/// `on_terminating` as `sigaction` holds a handler.
fn our_handler() -> usize {
    on_terminating as *const () as usize
}

/// Our handler: note the signal, then do what the replaced action would have done.
extern "C" fn on_terminating(sig: c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: __errno_location returns this thread's errno slot; a handler must preserve it.
    let saved_errno = unsafe { *libc::__errno_location() };
    SIGNALLED.store(sig, Ordering::SeqCst);
    if let Some(i) = TERMINATING.iter().position(|&s| s == sig) {
        let handler = PREVIOUS_HANDLER[i].load(Ordering::Acquire);
        let flags = PREVIOUS_FLAGS[i].load(Ordering::Acquire);
        if flags & libc::SA_RESETHAND != 0 && handler != libc::SIG_DFL {
            // A one-shot handler: after this delivery the kernel would have reset it.
            PREVIOUS_HANDLER[i].store(libc::SIG_DFL, Ordering::Release);
            PREVIOUS_FLAGS[i].store(0, Ordering::Release);
            USED_UP[i].store(true, Ordering::Release);
        }
        if handler == libc::SIG_DFL {
            // The default action (terminate, or core dump for SIGQUIT): restore it and send the
            // signal again; it is blocked while this handler runs and is delivered on return.
            // SAFETY: sigaction and raise are async-signal-safe; the struct is fully initialised.
            unsafe {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &default, std::ptr::null_mut());
                libc::raise(sig);
            }
        } else if handler != libc::SIG_IGN {
            if flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous action was installed with SA_SIGINFO, so its handler has
                // this signature; it receives the kernel's own arguments.
                let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(handler) };
                f(sig, info, context);
            } else {
                // SAFETY: a plain `sa_handler`.
                let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
                f(sig);
            }
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved_errno };
}

/// Our handler in front of the termination signals, for as long as it lives (one suspended
/// heap walk). Create it on the walking thread right before the walk.
pub struct SignalWatch {
    /// The complete action replaced, per signal we installed over.
    replaced: [Option<libc::sigaction>; 4],
}

impl SignalWatch {
    pub fn start() -> SignalWatch {
        SIGNALLED.store(0, Ordering::SeqCst);
        let mut replaced = [None; 4];
        for (i, &sig) in TERMINATING.iter().enumerate() {
            if LEFT_IN_PLACE[i].load(Ordering::Relaxed) {
                continue;
            }
            // SAFETY: an all-zero sigaction is a valid value; sigaction with a NULL new action
            // only reads the current one.
            let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: valid out-pointer.
            if unsafe { libc::sigaction(sig, std::ptr::null(), &mut current) } != 0 {
                continue;
            }
            if current.sa_sigaction == libc::SIG_IGN || current.sa_sigaction == our_handler() {
                // An ignored signal stays ignored (nothing to learn from it); ours is already
                // there (left in place), nothing to do.
                continue;
            }
            PREVIOUS_HANDLER[i].store(current.sa_sigaction, Ordering::Release);
            PREVIOUS_FLAGS[i].store(current.sa_flags, Ordering::Release);
            USED_UP[i].store(false, Ordering::Release);
            // SAFETY: as above.
            let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
            ours.sa_sigaction = our_handler();
            ours.sa_mask = current.sa_mask;
            ours.sa_flags = libc::SA_SIGINFO | (current.sa_flags & (libc::SA_ONSTACK | libc::SA_RESTART));
            // SAFETY: as above.
            let mut was: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: both structs are valid; `on_terminating` has the SA_SIGINFO signature.
            if unsafe { libc::sigaction(sig, &ours, &mut was) } != 0 {
                continue;
            }
            // Another thread may have changed the action between the two calls: forward to
            // what was really there.
            PREVIOUS_HANDLER[i].store(was.sa_sigaction, Ordering::Release);
            PREVIOUS_FLAGS[i].store(was.sa_flags, Ordering::Release);
            replaced[i] = Some(was);
        }
        SignalWatch { replaced }
    }
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        for (i, &sig) in TERMINATING.iter().enumerate() {
            let Some(previous) = self.replaced[i] else { continue };
            // SAFETY: an all-zero sigaction is valid; a NULL new action only reads.
            let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: valid out-pointer.
            if unsafe { libc::sigaction(sig, std::ptr::null(), &mut current) } != 0 {
                continue;
            }
            if current.sa_sigaction == our_handler() {
                let mut restore = previous;
                if USED_UP[i].load(Ordering::Acquire) {
                    restore.sa_sigaction = libc::SIG_DFL;
                    restore.sa_flags = 0;
                }
                // SAFETY: `restore` is the complete action sigaction gave us (or the default).
                unsafe { libc::sigaction(sig, &restore, std::ptr::null_mut()) };
            } else {
                LEFT_IN_PLACE[i].store(true, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    static SEEN: AtomicU32 = AtomicU32::new(0);

    extern "C" fn counting(_: c_int) {
        SEEN.fetch_add(1, Ordering::SeqCst);
    }

    fn handler_of(sig: c_int) -> usize {
        // SAFETY: an all-zero sigaction is valid; a NULL new action only reads.
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: valid out-pointer.
        unsafe { libc::sigaction(sig, std::ptr::null(), &mut current) };
        current.sa_sigaction
    }

    /// With the watch on, a signal is noted and still reaches the handler the host had; once
    /// the walk is over that handler is back in place. (SIGHUP: no other test uses it.)
    #[test]
    fn a_signal_during_a_walk_is_noted_and_passed_on_to_the_hosts_handler() {
        // SAFETY: installs a plain handler for SIGHUP in this test process.
        unsafe { libc::signal(libc::SIGHUP, counting as *const () as usize) };
        assert!(!walk_should_stop());
        let watch = SignalWatch::start();
        assert_eq!(handler_of(libc::SIGHUP), our_handler());
        // SAFETY: raise delivers SIGHUP to this thread, whose handler is ours.
        unsafe { libc::raise(libc::SIGHUP) };
        assert_eq!(SEEN.load(Ordering::SeqCst), 1, "the host's handler ran");
        assert!(walk_should_stop());
        assert!(why().is_some_and(|why| why.contains("SIGHUP")));
        drop(watch);
        assert_eq!(handler_of(libc::SIGHUP), counting as *const () as usize, "the host's handler is back");
        // The next walk starts afresh.
        let watch = SignalWatch::start();
        assert!(!walk_should_stop());
        drop(watch);
        // SAFETY: raise delivers SIGHUP to the restored counting handler.
        unsafe { libc::raise(libc::SIGHUP) };
        assert_eq!(SEEN.load(Ordering::SeqCst), 2);

        // A one-shot handler (SA_RESETHAND) is used up by a signal during the walk: afterwards
        // the default action is in place, as the kernel would have left it.
        // SAFETY: an all-zero sigaction is valid; installs the counting handler, one-shot.
        unsafe {
            let mut once: libc::sigaction = std::mem::zeroed();
            once.sa_sigaction = counting as *const () as usize;
            once.sa_flags = libc::SA_RESETHAND;
            libc::sigaction(libc::SIGHUP, &once, std::ptr::null_mut());
        }
        let watch = SignalWatch::start();
        // SAFETY: raise delivers SIGHUP to our handler, which forwards it once.
        unsafe { libc::raise(libc::SIGHUP) };
        assert_eq!(SEEN.load(Ordering::SeqCst), 3);
        drop(watch);
        assert_eq!(handler_of(libc::SIGHUP), libc::SIG_DFL, "a one-shot handler is not put back");
        // SAFETY: leave SIGHUP with a harmless handler for the rest of the test process.
        unsafe { libc::signal(libc::SIGHUP, counting as *const () as usize) };
    }
}
