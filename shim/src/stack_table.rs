//! Lock-free, insert-only stack table: deduplicates captured stacks so that
//! live samples carry a 4-byte id instead of their frames.
//!
//! A sampling thread hashes its return addresses and probes a fixed,
//! preallocated open-addressed array of small slots: a matching ready slot
//! gives the id; for a new stack it reserves room in a bump-allocated arena
//! of addresses (one `fetch_add`), claims an empty slot with one CAS on its
//! hash word, copies the frames, and publishes with a release store. A slot
//! still being filled by another thread is skipped (at worst the same stack
//! gets two ids; they are named alike). When slots or arena run out the
//! sample gets id 0 ("stack table full"). Nobody waits, nothing allocates.
//!
//! The slots (384 KiB) are populated up front; the arena is written
//! sequentially, so its pages are faulted in once each, by a write.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::frame_walk::MAX_DEPTH;

const EMPTY: u64 = 0;
const READY: u32 = 1;
const PROBES: usize = 64;

#[repr(C)]
pub(crate) struct Slot {
    hash: AtomicU64,
    ready: AtomicU32,
    depth: UnsafeCell<u32>,
    offset: UnsafeCell<u32>,
}

pub(crate) struct StackTable {
    slots: *mut Slot,
    mask: usize,
    arena: *mut usize,
    arena_cap: u32,
    arena_next: AtomicU32,
    pub(crate) full: AtomicU64,
}

// SAFETY: a slot and its arena range are only written by the thread that won
// the slot's CAS (and reserved the range), before the release store of
// `ready`; readers read after an acquire load of `ready`.
unsafe impl Sync for StackTable {}
// SAFETY: see Sync; the table owns its mappings and never frees them.
unsafe impl Send for StackTable {}

fn hash_ips(ips: &[usize]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ ips.len() as u64;
    for &ip in ips {
        h = (h ^ ip as u64).wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    if h == EMPTY { 1 } else { h }
}

impl StackTable {
    /// `capacity` stacks (rounded up to a power of two), with room for an
    /// average of 16 frames each.
    pub(crate) fn new(capacity: usize) -> Option<StackTable> {
        let cap = capacity.max(64).next_power_of_two();
        let slot_bytes = cap.checked_mul(core::mem::size_of::<Slot>())?;
        let slots = crate::real::map_populated(slot_bytes)?.cast::<Slot>();
        let arena_cap = cap.checked_mul(16)?.min(u32::MAX as usize / 2);
        let arena = crate::real::map_zeroed(arena_cap * core::mem::size_of::<usize>())?.cast::<usize>();
        Some(StackTable {
            slots,
            mask: cap - 1,
            arena,
            arena_cap: arena_cap as u32,
            arena_next: AtomicU32::new(0),
            full: AtomicU64::new(0),
        })
    }

    pub(crate) fn capacity(&self) -> usize {
        self.mask + 1
    }

    pub(crate) fn mapped_bytes(&self) -> usize {
        self.capacity() * core::mem::size_of::<Slot>() + self.arena_cap as usize * core::mem::size_of::<usize>()
    }

    fn slot(&self, i: usize) -> &Slot {
        // SAFETY: `i & mask` is within the zero-initialised mapping of
        // `mask + 1` slots, which lives for the rest of the process (an
        // all-zero Slot is a valid empty slot).
        unsafe { &*self.slots.add(i & self.mask) }
    }

    /// Reserves `n` arena entries; `None` when the arena is exhausted.
    fn reserve(&self, n: usize) -> Option<u32> {
        let n = n as u32;
        let off = self.arena_next.fetch_add(n, Ordering::Relaxed);
        if off.checked_add(n).is_none_or(|end| end > self.arena_cap) {
            // Leave the counter saturated past the end: later reservations fail too.
            return None;
        }
        Some(off)
    }

    /// Returns the id (index + 1) of `ips`, inserting it if new; 0 if full.
    pub(crate) fn intern(&self, ips: &[usize]) -> u32 {
        let ips = ips.get(..ips.len().min(MAX_DEPTH)).unwrap_or(&[]);
        let h = hash_ips(ips);
        let start = (h as usize) & self.mask;
        let mut reserved: Option<u32> = None;
        for i in 0..PROBES {
            let idx = (start + i) & self.mask;
            let slot = self.slot(idx);
            let cur = slot.hash.load(Ordering::Acquire);
            if cur == h {
                if slot.ready.load(Ordering::Acquire) == READY && self.same(slot, ips) {
                    return idx as u32 + 1;
                }
                continue;
            }
            if cur != EMPTY {
                continue;
            }
            let off = match reserved {
                Some(o) => o,
                None => match self.reserve(ips.len()) {
                    Some(o) => {
                        reserved = Some(o);
                        o
                    }
                    None => break,
                },
            };
            if slot.hash.compare_exchange(EMPTY, h, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                // SAFETY: we won the CAS and reserved `off..off+len` in the
                // arena: no one else writes either; readers wait for `ready`.
                unsafe {
                    for (k, ip) in ips.iter().enumerate() {
                        *self.arena.add(off as usize + k) = *ip;
                    }
                    *slot.depth.get() = ips.len() as u32;
                    *slot.offset.get() = off;
                }
                slot.ready.store(READY, Ordering::Release);
                return idx as u32 + 1;
            }
        }
        self.full.fetch_add(1, Ordering::Relaxed);
        0
    }

    /// The frames of a published slot.
    fn frames(&self, slot: &Slot) -> &[usize] {
        // SAFETY: called after observing `ready` with acquire ordering: the
        // slot and its arena range are published and immutable.
        unsafe {
            let depth = (*slot.depth.get() as usize).min(MAX_DEPTH);
            let off = *slot.offset.get() as usize;
            core::slice::from_raw_parts(self.arena.add(off), depth)
        }
    }

    fn same(&self, slot: &Slot, ips: &[usize]) -> bool {
        self.frames(slot) == ips
    }

    /// The frames of stack `id`, if published.
    pub(crate) fn get(&self, id: u32) -> Option<Vec<usize>> {
        if id == 0 || id as usize > self.capacity() {
            return None;
        }
        let slot = self.slot(id as usize - 1);
        if slot.ready.load(Ordering::Acquire) != READY {
            return None;
        }
        Some(self.frames(slot).to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_stable_and_distinguishes_stacks() {
        let t = StackTable::new(256).unwrap();
        let a = t.intern(&[1, 2, 3]);
        let b = t.intern(&[1, 2, 4]);
        let c = t.intern(&[]);
        assert_ne!(a, 0);
        assert_ne!(a, b);
        assert_eq!(t.intern(&[1, 2, 3]), a);
        assert_eq!(t.get(a).unwrap(), vec![1, 2, 3]);
        assert_eq!(t.get(c).unwrap(), Vec::<usize>::new());
        assert!(t.get(0).is_none());
    }

    #[test]
    fn concurrent_interning() {
        let t = std::sync::Arc::new(StackTable::new(4096).unwrap());
        let hs: Vec<_> = (0..4)
            .map(|k| {
                let t = t.clone();
                std::thread::Builder::new()
                    .spawn(move || (0..1000usize).map(|i| t.intern(&[i % 300, k % 2])).collect::<Vec<_>>())
                    .unwrap()
            })
            .collect();
        for h in hs {
            for id in h.join().unwrap() {
                assert!(t.get(id).is_some());
            }
        }
    }
}
