//! The collector's memory budget for what producers send: one counter for the whole session,
//! and a [`Charge`] carried by everything the store keeps (a producer, a series, a stack, a
//! latest record) that gives its bytes back when it is dropped, whichever way it goes.
//!
//! Sizes are estimates from above (a series is charged for all the points it may ever hold), so
//! the real memory stays under the budget; what does not fit is dropped and counted, and the
//! report says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes the store may hold for producers' data, all producers together.
pub const DEFAULT_LIMIT: usize = 256 << 20;

#[derive(Debug)]
struct Counter {
    held: AtomicUsize,
    limit: usize,
}

#[derive(Debug, Clone)]
pub struct Budget {
    counter: Arc<Counter>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(DEFAULT_LIMIT)
    }
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget { counter: Arc::new(Counter { held: AtomicUsize::new(0), limit }) }
    }

    /// Takes `bytes` from the budget, or `None` when they do not fit.
    pub fn charge(&self, bytes: usize) -> Option<Charge> {
        let c = &self.counter;
        c.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(bytes).filter(|&n| n <= c.limit)
            })
            .ok()?;
        Some(Charge { counter: Some(Arc::clone(c)), bytes })
    }

    pub fn held(&self) -> usize {
        self.counter.held.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.counter.limit
    }
}

/// Bytes taken from a [`Budget`], given back on drop. The default charge is empty.
#[derive(Debug, Default)]
pub struct Charge {
    counter: Option<Arc<Counter>>,
    bytes: usize,
}

impl Charge {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes over `other`'s bytes (of the same budget): both are given back together.
    pub fn absorb(&mut self, mut other: Charge) {
        if self.counter.is_none() {
            self.counter = other.counter.take();
        }
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Clone for Charge {
    /// A copy holds as much again (copies are short-lived: reports, tests).
    fn clone(&self) -> Self {
        if let Some(c) = &self.counter {
            c.held.fetch_add(self.bytes, Ordering::Relaxed);
        }
        Charge { counter: self.counter.clone(), bytes: self.bytes }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(c) = &self.counter {
            c.held.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

/// What a charge is compared on: never (a stack with a charge equals one without).
impl PartialEq for Charge {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_refused_past_the_limit_and_returned_on_drop() {
        let b = Budget::new(100);
        let a = b.charge(60).unwrap();
        assert!(b.charge(50).is_none());
        let c = b.charge(40).unwrap();
        assert_eq!(b.held(), 100);
        let copy = c.clone();
        assert_eq!(b.held(), 140, "a copy holds its bytes too");
        drop((a, c, copy));
        assert_eq!(b.held(), 0);
        assert!(b.charge(100).is_some());
        assert_eq!(b.held(), 0, "the charge was dropped at once");
    }
}
