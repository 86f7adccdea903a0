//! Exact mode's target list: the types whose every allocation is followed.
//!
//! Written by the agent thread (rarely: when a census sees a type keep growing), read by
//! `ObjectAllocated` on every allocation in the process while any type is aimed at. So the read
//! side is a scan of a few atomics: no lock, no allocation, no hashing.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::clr::types::ClassID;

/// Most types followed at once: a leak investigation has a handful of suspects, and every slot
/// is scanned on every allocation.
pub const SLOTS: usize = 8;

#[derive(Default)]
pub struct Aim {
    classes: [AtomicUsize; SLOTS],
    len: AtomicUsize,
}

impl Aim {
    /// Whether every allocation of `class` is followed.
    #[inline]
    pub fn contains(&self, class: ClassID) -> bool {
        let len = self.len.load(Ordering::Acquire).min(SLOTS);
        self.classes[..len].iter().any(|c| c.load(Ordering::Relaxed) == class)
    }

    pub fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }

    /// Adds `class`; false when it is already there or every slot is taken. One writer only
    /// (the agent thread).
    pub fn add(&self, class: ClassID) -> bool {
        let len = self.len.load(Ordering::Acquire);
        if class == 0 || len >= SLOTS || self.contains(class) {
            return false;
        }
        self.classes[len].store(class, Ordering::Relaxed);
        // Publish the slot after its value.
        self.len.store(len + 1, Ordering::Release);
        true
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire).min(SLOTS)
    }

    pub fn is_full(&self) -> bool {
        self.len.load(Ordering::Acquire) >= SLOTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_a_few_distinct_classes() {
        let aim = Aim::default();
        assert!(aim.is_empty() && !aim.contains(7));
        assert!(aim.add(7));
        assert!(!aim.add(7), "no duplicates");
        assert!(!aim.add(0), "no null class");
        for c in 100..100 + SLOTS - 1 {
            assert!(aim.add(c));
        }
        assert!(aim.is_full() && !aim.add(999));
        assert!(aim.contains(7) && aim.contains(100 + SLOTS - 2) && !aim.contains(999));
    }
}
