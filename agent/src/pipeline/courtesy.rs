//! The agent thread gives way to the application's threads.
//!
//! It sleeps between short bursts (resolving and aggregating samples, writing records), so the
//! kernel's scheduler, which favours a thread waking from sleep, would let each burst preempt
//! whichever request thread had the core: on a busy core that request waits for the burst, and
//! the application's latency tail feels it. `SCHED_BATCH` keeps the thread's fair share of CPU
//! time but gives up that wake-up preference: a burst runs when the current thread's slice ends
//! or it blocks. An unprivileged thread may always take it; if refused, the thread runs as before
//! and says so in the log.

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
}
