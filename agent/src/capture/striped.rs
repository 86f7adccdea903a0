//! A counter bumped by every allocating thread on every sampled allocation: striped over cache
//! lines so that two threads bumping it do not fight over one line. The agent thread sums it.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const STRIPES: usize = 8;

#[repr(align(64))]
#[derive(Default)]
struct Line(AtomicU64);

#[derive(Default)]
pub struct Striped {
    lines: [Line; STRIPES],
}

/// Hands each thread the next stripe, round-robin.
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialised and free of destructors: safe on any thread at any time.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn stripe() -> usize {
    STRIPE.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            s.set(i);
        }
        i
    })
}

impl Striped {
    /// Same shape as `AtomicU64::fetch_add`, returning nothing useful (0).
    #[inline]
    pub fn fetch_add(&self, n: u64, order: Ordering) -> u64 {
        self.lines[stripe()].0.fetch_add(n, order);
        0
    }

    /// The sum over all stripes.
    pub fn load(&self, order: Ordering) -> u64 {
        self.lines.iter().map(|l| l.0.load(order)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_what_every_thread_added() {
        let c = std::sync::Arc::new(Striped::default());
        let threads: Vec<_> = (0..5)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    (0..1000).for_each(|_| {
                        c.fetch_add(2, Ordering::Relaxed);
                    })
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(c.load(Ordering::Relaxed), 10_000);
    }
}
