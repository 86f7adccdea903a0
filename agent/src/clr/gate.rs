//! The way into the runtime. Every call leakscope makes through the runtime's interfaces
//! passes here and is counted while it runs, so that `Shutdown` can close the way and wait
//! (bounded) for the last call to come back before it lets the runtime tear itself down: the
//! agent is never inside the runtime after `Shutdown` has returned. A call made once the way is
//! closed fails at once with `E_ABORT`, which every caller handles like any other failure.
//! Failures are shown to `own_thread`, which counts the calls refused to the agent thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::types::HRESULT;

/// `E_ABORT`: the way into the runtime is closed.
pub const CLOSED_HR: HRESULT = 0x8000_4004_u32 as HRESULT;

/// Calls in progress, times two, plus one once closed.
pub struct Gate(AtomicUsize);

const CLOSED: usize = 1;
const ONE: usize = 2;

/// The process's gate into the runtime.
pub static RUNTIME: Gate = Gate::new();

impl Gate {
    pub const fn new() -> Gate {
        Gate(AtomicUsize::new(0))
    }

    /// Runs `call` (one call into the runtime) unless the gate is closed.
    pub fn call(&self, call: impl FnOnce() -> HRESULT) -> HRESULT {
        if self.0.fetch_add(ONE, Ordering::SeqCst) & CLOSED != 0 {
            self.0.fetch_sub(ONE, Ordering::SeqCst);
            return CLOSED_HR;
        }
        /// Counts the call out however it ends.
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(ONE, Ordering::SeqCst);
            }
        }
        let _leave = Leave(&self.0);
        let hr = call();
        if hr < 0 {
            super::own_thread::note_failure(hr);
        }
        hr
    }

    /// Counts one call in for as long as the returned guard lives: for work that spans several
    /// calls and must not be cut between them (a suspension and its resume). None once closed.
    pub fn hold(&self) -> Option<Held<'_>> {
        if self.0.fetch_add(ONE, Ordering::SeqCst) & CLOSED != 0 {
            self.0.fetch_sub(ONE, Ordering::SeqCst);
            return None;
        }
        Some(Held(&self.0))
    }

    /// Calls in progress right now.
    pub fn inside(&self) -> usize {
        self.0.load(Ordering::SeqCst) / ONE
    }

    /// Closes the gate (no new call gets in) and waits until no call is in progress or
    /// `bound` has passed. True when none is left inside.
    pub fn close_and_wait(&self, bound: Duration) -> bool {
        self.0.fetch_or(CLOSED, Ordering::SeqCst);
        let until = Instant::now() + bound;
        loop {
            if self.inside() == 0 {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// One call counted in by [`Gate::hold`], counted out on drop.
pub struct Held<'a>(&'a AtomicUsize);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(ONE, Ordering::SeqCst);
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clr::types::S_OK;
    use std::sync::mpsc;

    #[test]
    fn closing_waits_for_the_call_inside_and_keeps_new_ones_out() {
        let gate: &'static Gate = Box::leak(Box::new(Gate::new()));
        assert_eq!(gate.call(|| S_OK), S_OK);
        let (entered, wait_entered) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let caller = std::thread::spawn(move || {
            gate.call(|| {
                entered.send(()).unwrap();
                released.recv().unwrap();
                S_OK
            })
        });
        wait_entered.recv().unwrap();
        assert_eq!(gate.inside(), 1);
        // Still inside: the wait runs out.
        assert!(!gate.close_and_wait(Duration::from_millis(50)));
        assert_eq!(gate.call(|| panic!("must not be called once closed")), CLOSED_HR);
        release.send(()).unwrap();
        assert!(gate.close_and_wait(Duration::from_secs(5)));
        assert_eq!(caller.join().unwrap(), S_OK, "the call already inside completes");
        assert_eq!(gate.inside(), 0);
    }

    #[test]
    fn a_hold_keeps_the_gate_waiting_and_none_is_given_once_closed() {
        let gate = Gate::new();
        let held = gate.hold().expect("open");
        assert_eq!(gate.inside(), 1);
        assert!(!gate.close_and_wait(Duration::from_millis(20)), "the hold is still inside");
        drop(held);
        assert!(gate.close_and_wait(Duration::from_millis(20)));
        assert!(gate.hold().is_none());
    }

    #[test]
    fn a_call_that_panics_is_counted_out() {
        let gate = Gate::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gate.call(|| panic!("boom"))));
        assert!(r.is_err());
        assert_eq!(gate.inside(), 0);
    }
}
