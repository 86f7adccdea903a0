//! A tiny spin lock for the shim's shared tables.
//!
//! Who takes it: hook slow paths (sampled allocation, free of a maybe-sampled
//! pointer, mmap bookkeeping) and the writer thread, always with the calling
//! thread's reentrancy guard set, so a signal handler that interrupts a holder
//! and calls malloc passes through instead of self-deadlocking. Critical
//! sections are a few dozen instructions (the writer copies one shard out).
//! Hook paths that can afford to lose a sample use [`SpinLock::try_lock_for`]
//! and drop the sample when busy; a free must not lose its removal, so it
//! spins, yielding the CPU, and gives up only if it finds itself in a forked
//! child whose parent thread held the lock at `fork` time.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::{state, sys};

#[derive(Debug)]
pub(crate) struct SpinLock {
    word: AtomicU32,
}

pub(crate) struct SpinGuard<'a> {
    lock: &'a SpinLock,
}

impl Drop for SpinGuard<'_> {
    fn drop(&mut self) {
        self.lock.word.store(0, Ordering::Release);
    }
}

impl SpinLock {
    pub(crate) const fn new() -> Self {
        SpinLock { word: AtomicU32::new(0) }
    }

    pub(crate) fn try_lock(&self) -> Option<SpinGuard<'_>> {
        if self.word.load(Ordering::Relaxed) == 0
            && self.word.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_ok()
        {
            Some(SpinGuard { lock: self })
        } else {
            None
        }
    }

    /// Spins, then yields the CPU a few times (the holder may have been
    /// preempted); `None` if the lock stayed busy throughout. Bounded.
    pub(crate) fn try_lock_patiently(&self) -> Option<SpinGuard<'_>> {
        if let Some(g) = self.try_lock_for(200) {
            return Some(g);
        }
        for _ in 0..16 {
            sys::sched_yield();
            if let Some(g) = self.try_lock_for(50) {
                return Some(g);
            }
        }
        None
    }

    /// Spins up to `spins` times; `None` if the lock stayed busy.
    pub(crate) fn try_lock_for(&self, spins: u32) -> Option<SpinGuard<'_>> {
        for _ in 0..spins {
            if let Some(g) = self.try_lock() {
                return Some(g);
            }
            core::hint::spin_loop();
        }
        self.try_lock()
    }

    /// Spins, then yields, until the lock is free. Returns `None` only when
    /// this process is a fork child that inherited a held lock.
    pub(crate) fn lock(&self) -> Option<SpinGuard<'_>> {
        if let Some(g) = self.try_lock_for(200) {
            return Some(g);
        }
        let mut rounds = 0u32;
        loop {
            sys::sched_yield();
            if let Some(g) = self.try_lock_for(50) {
                return Some(g);
            }
            rounds = rounds.wrapping_add(1);
            if rounds % 64 == 0 && !state::same_process() {
                return None;
            }
        }
    }
}
