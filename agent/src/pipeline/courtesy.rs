//! The agent thread gives way to the application's threads.
//!
//! It sleeps between short bursts (resolving and aggregating samples, checking survivors, writing
//! records). Two things would otherwise let a burst hold a busy core while a request waits:
//! - the kernel's scheduler favours a thread waking from sleep, so each burst would preempt
//!   whichever request thread had the core. `SCHED_BATCH` keeps the thread's fair share of CPU
//!   time but gives up that wake-up preference. An unprivileged thread may always take it; if
//!   refused, the thread runs as before and says so in the log.
//! - once running, a thread keeps the core for its whole slice (about a millisecond or more) even
//!   when a request thread wakes meanwhile. So the thread offers the core back (`sched_yield`)
//!   between units of work once it has worked for `STRETCH`: a request that became ready waits
//!   for at most about that much of the agent's work. With nothing else ready, the yield returns
//!   at once.

use std::time::{Duration, Instant};

/// Puts the calling thread under `SCHED_BATCH`. Returns whether it took.
pub fn give_way_to_the_application() -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param for SCHED_BATCH (whose
    // only priority is 0) and outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if rc != 0 {
        tracing::info!(
            "the agent thread keeps the default scheduling (SCHED_BATCH refused: {})",
            std::io::Error::last_os_error()
        );
        return false;
    }
    true
}

/// The most the agent thread works at a stretch before offering the core back: about what the
/// application's own median request takes in bench/Service (4 µs) times five.
pub const STRETCH: Duration = Duration::from_micros(20);

/// Where the agent thread is in its current stretch of work.
pub struct Stretch {
    started: Instant,
    /// Times the thread offered the core back mid-work.
    pub yields: u64,
}

impl Stretch {
    pub fn new() -> Self {
        Stretch { started: Instant::now(), yields: 0 }
    }

    /// The thread has just woken: a new stretch starts.
    pub fn begin(&mut self) {
        self.started = Instant::now();
    }

    /// Between two units of work: offers the core back once the stretch has lasted `STRETCH`.
    /// Returns whether it did.
    pub fn between_units(&mut self) -> bool {
        if self.started.elapsed() < STRETCH {
            return false;
        }
        // SAFETY: sched_yield takes no arguments and touches no memory of ours.
        unsafe { libc::sched_yield() };
        self.yields += 1;
        self.started = Instant::now();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_can_give_way_and_reads_back_as_batch() {
        std::thread::spawn(|| {
            assert!(give_way_to_the_application());
            // SAFETY: pid 0 is the calling thread.
            assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_BATCH);
        })
        .join()
        .unwrap();
        // Other threads keep theirs.
        // SAFETY: as above.
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
    }

    #[test]
    fn a_stretch_yields_only_once_it_has_lasted_long_enough() {
        let mut stretch = Stretch::new();
        stretch.begin();
        assert!(!stretch.between_units(), "yielded at once");
        std::thread::sleep(STRETCH * 2);
        assert!(stretch.between_units(), "did not yield after the stretch");
        assert!(!stretch.between_units(), "a yield starts a new stretch");
        assert_eq!(stretch.yields, 1);
    }
}
