//! Anonymous mappings made through `mmap`/`mremap`, so `munmap` (whole or
//! partial) and `mremap` keep `mmap_bytes` exact and each mapping is
//! attributed to the stack that created it (every mapping is recorded: they
//! are rare and large, so no sampling).
//!
//! A sorted array of disjoint ranges behind a spin lock, taken with the
//! thread's reentrancy guard set.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::spin::{SpinGuard, SpinLock};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) stack: u32,
}

pub(crate) struct MmapTable {
    lock: SpinLock,
    len: UnsafeCell<usize>,
    ranges: *mut Range,
    cap: usize,
    bytes: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

// SAFETY: the ranges are only touched with `lock` held; the mapping lives
// for the rest of the process.
unsafe impl Sync for MmapTable {}
// SAFETY: as above.
unsafe impl Send for MmapTable {}

/// Exclusive access to the table.
pub(crate) struct Locked<'a> {
    t: &'a MmapTable,
    _g: SpinGuard<'a>,
}

impl MmapTable {
    pub(crate) fn new(cap: usize) -> Option<MmapTable> {
        let cap = cap.max(16);
        let ranges = crate::real::map_zeroed(cap.checked_mul(core::mem::size_of::<Range>())?)?.cast::<Range>();
        Some(MmapTable {
            lock: SpinLock::new(),
            len: UnsafeCell::new(0),
            ranges,
            cap,
            bytes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    pub(crate) fn mapped_bytes(&self) -> usize {
        self.cap * core::mem::size_of::<Range>()
    }

    /// Live bytes in tracked anonymous mappings.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn lock(&self) -> Option<Locked<'_>> {
        Some(Locked { t: self, _g: self.lock.lock()? })
    }

    /// Like `lock`, but gives up after spinning and a few yields.
    pub(crate) fn try_lock_patiently(&self) -> Option<Locked<'_>> {
        Some(Locked { t: self, _g: self.lock.try_lock_patiently()? })
    }
}

impl Locked<'_> {
    fn slice(&mut self) -> &mut [Range] {
        // SAFETY: lock held; `len <= cap` entries are initialised (zeroed
        // mapping + our writes).
        unsafe { core::slice::from_raw_parts_mut(self.t.ranges, *self.t.len.get()) }
    }

    fn set_len(&mut self, n: usize) {
        // SAFETY: lock held.
        unsafe { *self.t.len.get() = n };
    }

    /// Index of the first range with `end > addr`.
    fn lower_bound(&mut self, addr: usize) -> usize {
        self.slice().partition_point(|r| r.end <= addr)
    }

    /// Stops tracking `[start, end)`; returns the stack of the first range
    /// that overlapped it (0 if none).
    pub(crate) fn remove(&mut self, start: usize, end: usize) -> Option<u32> {
        if end <= start {
            return None;
        }
        let mut first_stack = None;
        let mut i = self.lower_bound(start);
        loop {
            let len = self.slice().len();
            let Some(r) = self.slice().get(i).copied() else {
                break;
            };
            if r.start >= end {
                break;
            }
            first_stack.get_or_insert(r.stack);
            let cut_lo = r.start.max(start);
            let cut_hi = r.end.min(end);
            self.t.bytes.fetch_sub((cut_hi - cut_lo) as u64, Ordering::Relaxed);
            let keep_left = r.start < start;
            let keep_right = r.end > end;
            match (keep_left, keep_right) {
                (false, false) => {
                    self.slice().copy_within(i + 1..len, i);
                    self.set_len(len - 1);
                    continue; // same index now holds the next range
                }
                (true, false) => {
                    if let Some(x) = self.slice().get_mut(i) {
                        x.end = start;
                    }
                }
                (false, true) => {
                    if let Some(x) = self.slice().get_mut(i) {
                        x.start = end;
                    }
                }
                (true, true) => {
                    // Split in two; if there is no room, keep the left part
                    // only (the right part is then no longer counted).
                    if let Some(x) = self.slice().get_mut(i) {
                        x.end = start;
                    }
                    // The right part stays counted (only the hole was subtracted).
                    let right = Range { start: end, end: r.end, stack: r.stack };
                    if !self.insert_at(i + 1, right) {
                        self.t.bytes.fetch_sub((r.end - end) as u64, Ordering::Relaxed);
                        self.t.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
            }
            i += 1;
        }
        first_stack
    }

    fn insert_at(&mut self, i: usize, r: Range) -> bool {
        let len = self.slice().len();
        if len >= self.t.cap {
            return false;
        }
        self.set_len(len + 1);
        let s = self.slice();
        s.copy_within(i..len, i + 1);
        if let Some(x) = s.get_mut(i) {
            *x = r;
        }
        true
    }

    /// Tracks `[start, end)`, replacing whatever overlapped it.
    pub(crate) fn insert(&mut self, start: usize, end: usize, stack: u32) {
        if end <= start {
            return;
        }
        self.remove(start, end);
        let i = self.lower_bound(start);
        if self.insert_at(i, Range { start, end, stack }) {
            self.t.bytes.fetch_add((end - start) as u64, Ordering::Relaxed);
        } else {
            self.t.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&mut self, out: &mut Vec<Range>) {
        out.extend_from_slice(self.slice());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_unmaps_keep_bytes_exact() {
        let t = MmapTable::new(64).unwrap();
        let mut l = t.lock().unwrap();
        l.insert(0x10000, 0x20000, 1);
        l.insert(0x30000, 0x34000, 2);
        assert_eq!(t.bytes(), 0x14000);
        // punch a hole in the middle of the first
        assert_eq!(l.remove(0x14000, 0x15000), Some(1));
        assert_eq!(t.bytes(), 0x13000);
        // trim across both ranges
        assert_eq!(l.remove(0x1f000, 0x31000), Some(1));
        assert_eq!(t.bytes(), 0x13000 - 0x1000 - 0x1000);
        let mut v = Vec::new();
        l.snapshot(&mut v);
        assert_eq!(
            v,
            vec![
                Range { start: 0x10000, end: 0x14000, stack: 1 },
                Range { start: 0x15000, end: 0x1f000, stack: 1 },
                Range { start: 0x31000, end: 0x34000, stack: 2 },
            ]
        );
        // MAP_FIXED over an existing range replaces it
        l.insert(0x12000, 0x16000, 3);
        assert_eq!(t.bytes(), 0x11000 - 0x2000 - 0x1000 + 0x4000);
        assert_eq!(l.remove(0, usize::MAX), Some(1));
        assert_eq!(t.bytes(), 0);
    }
}
