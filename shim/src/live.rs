//! Live sampled allocations, keyed by address, kept until freed.
//!
//! * A bitset filter answers "was this pointer maybe sampled?" with one
//!   multiply and one load on every free; only a set bit leads to the table.
//!   It is small enough to stay in L2 (128 KiB by default: a 2 MiB byte-per-
//!   slot filter cost a cache miss per free, measured).
//! * 64 shards, each a linear-probing table behind a [`SpinLock`], hold the
//!   samples. Removal uses backward-shift deletion (no tombstones), so the
//!   tables never degrade. The writer copies one shard at a time.
//! * The shard of an address is derived from its filter slot, and every
//!   64-bit word of the bitset belongs to a single shard. So each filter bit
//!   (and the per-slot count behind it) is only changed under its shard's
//!   lock: bits are set on insert and cleared when the slot's count drops to
//!   zero, with no race that could hide a live sample from a free.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::spin::SpinLock;

pub(crate) const SHARDS: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) addr: usize,
    pub(crate) size: usize,
    pub(crate) stack: u32,
    /// Writer tick at which the sample was taken (for ages).
    pub(crate) tick: u32,
}

#[repr(C, align(64))]
struct Shard {
    lock: SpinLock,
    len: UnsafeCell<usize>,
    entries: *mut Entry,
}

pub(crate) struct LiveTable {
    shards: Box<[Shard; SHARDS]>,
    cap_per_shard: usize,
    /// One bit per filter slot.
    bits: *const AtomicU64,
    /// Samples per filter slot, saturating (changed under the slot's shard lock).
    counts: *mut u8,
    /// Filter slots - 1: a block's slot is its address in 16-byte granules, masked. Blocks
    /// are 16-byte aligned and distinct live blocks differ there, so no hash is needed: two
    /// blocks share a slot only when their addresses differ by a multiple of 16 × the slots.
    filter_mask: usize,
    pub(crate) dropped_full: AtomicU64,
    pub(crate) dropped_busy: AtomicU64,
    mapped: usize,
}

// SAFETY: shard contents are only accessed with the shard's lock held; the
// filter is atomics; the mappings live for the rest of the process.
unsafe impl Sync for LiveTable {}
// SAFETY: as above.
unsafe impl Send for LiveTable {}

/// Shard of a filter slot: all 64 slots of a bitset word share one shard. The slots are the
/// address's own bits (`LiveTable::filter_slot`), so the word is hashed here, where only a
/// sample's insert or removal pays for it, to spread neighbouring blocks over the shards.
#[inline(always)]
fn shard_of_slot(slot: usize) -> usize {
    (((slot >> 6) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize & (SHARDS - 1)
}

#[inline(always)]
fn mix2(addr: usize) -> u64 {
    let mut x = addr as u64;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl LiveTable {
    /// Room for about `max_tracked` samples (tables kept at most 3/4 full).
    pub(crate) fn new(max_tracked: usize) -> Option<LiveTable> {
        let per_shard = ((max_tracked.max(SHARDS) * 4 / 3) / SHARDS + 1).next_power_of_two();
        let filter_slots = (max_tracked.max(1024) * 8).next_power_of_two().clamp(1 << 16, 1 << 24);
        let entry_bytes = per_shard.checked_mul(SHARDS)?.checked_mul(core::mem::size_of::<Entry>())?;
        let entries = crate::real::map_populated(entry_bytes)?.cast::<Entry>();
        let bits = crate::real::map_populated(filter_slots / 8)?.cast::<AtomicU64>();
        let counts = crate::real::map_populated(filter_slots)?;
        let shards = Box::new(core::array::from_fn::<Shard, SHARDS, _>(|i| Shard {
            lock: SpinLock::new(),
            len: UnsafeCell::new(0),
            // SAFETY: `i * per_shard` is within the mapping of SHARDS * per_shard entries.
            entries: unsafe { entries.add(i * per_shard) },
        }));
        Some(LiveTable {
            shards,
            cap_per_shard: per_shard,
            bits,
            counts,
            filter_mask: filter_slots - 1,
            dropped_full: AtomicU64::new(0),
            dropped_busy: AtomicU64::new(0),
            mapped: entry_bytes + filter_slots / 8 + filter_slots,
        })
    }

    pub(crate) fn capacity(&self) -> usize {
        self.cap_per_shard * SHARDS * 3 / 4
    }

    pub(crate) fn mapped_bytes(&self) -> usize {
        self.mapped
    }

    #[inline(always)]
    fn filter_slot(&self, addr: usize) -> usize {
        (addr >> 4) & self.filter_mask
    }

    #[inline(always)]
    fn bit_word(&self, slot: usize) -> &AtomicU64 {
        // SAFETY: `slot <= filter_mask`; the bitset mapping has
        // filter_mask + 1 bits and lives for the rest of the process.
        unsafe { &*self.bits.add(slot >> 6) }
    }

    /// A mask and one load: false means `addr` is certainly not a live
    /// sample.
    #[inline(always)]
    pub(crate) fn maybe_sampled(&self, addr: usize) -> bool {
        let slot = self.filter_slot(addr);
        self.bit_word(slot).load(Ordering::Acquire) & (1 << (slot & 63)) != 0
    }

    /// Counts a sample in its filter slot. Shard lock held.
    fn filter_add(&self, slot: usize) {
        // SAFETY: `slot` is in range; its count is only touched under the
        // shard lock the caller holds.
        let c = unsafe { &mut *self.counts.add(slot) };
        *c = c.saturating_add(1);
        self.bit_word(slot).fetch_or(1 << (slot & 63), Ordering::Release);
    }

    /// Uncounts a sample; clears the bit when none is left. Shard lock held.
    fn filter_sub(&self, slot: usize) {
        // SAFETY: as in `filter_add`.
        let c = unsafe { &mut *self.counts.add(slot) };
        if *c == u8::MAX {
            return; // saturated: no longer knows its count, stays set
        }
        *c = c.saturating_sub(1);
        if *c == 0 {
            self.bit_word(slot).fetch_and(!(1 << (slot & 63)), Ordering::Release);
        }
    }

    fn shard_of(&self, addr: usize) -> (&Shard, usize, u64) {
        let slot = self.filter_slot(addr);
        // Masked index into a fixed-size array: no bounds check, no panic.
        (&self.shards[shard_of_slot(slot)], slot, mix2(addr))
    }

    fn home(&self, h: u64) -> usize {
        (h as usize) & (self.cap_per_shard - 1)
    }

    /// Records a sample. Never waits long: if the shard stays busy or is
    /// full, the sample is dropped (and counted).
    pub(crate) fn insert(&self, e: Entry) -> bool {
        let (shard, slot, h) = self.shard_of(e.addr);
        let Some(_g) = shard.lock.try_lock_patiently() else {
            self.dropped_busy.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        // SAFETY: the shard lock is held; `entries` has `cap_per_shard` slots.
        unsafe {
            let len = &mut *shard.len.get();
            if *len + 1 > self.cap_per_shard * 3 / 4 {
                self.dropped_full.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            let mask = self.cap_per_shard - 1;
            let mut i = self.home(h);
            loop {
                let slot = &mut *shard.entries.add(i);
                if slot.addr == 0 {
                    *slot = e;
                    *len += 1;
                    break;
                }
                i = (i + 1) & mask;
            }
        }
        self.filter_add(slot);
        true
    }

    /// Removes and returns the sample at `addr`, if any. Called before the
    /// block is handed back to glibc, so the address cannot be reused (and
    /// re-sampled) meanwhile.
    pub(crate) fn remove(&self, addr: usize) -> Option<Entry> {
        let (shard, slot, h) = self.shard_of(addr);
        let _g = shard.lock.lock()?;
        let mask = self.cap_per_shard - 1;
        // SAFETY: the shard lock is held; all indices are masked.
        let found = unsafe {
            let mut i = self.home(h);
            let mut found = None;
            for _ in 0..self.cap_per_shard {
                let slot = &*shard.entries.add(i);
                if slot.addr == 0 {
                    break;
                }
                if slot.addr == addr {
                    found = Some((i, *slot));
                    break;
                }
                i = (i + 1) & mask;
            }
            let (mut hole, entry) = found?;
            // Backward-shift deletion.
            let mut j = hole;
            loop {
                j = (j + 1) & mask;
                let cand = *shard.entries.add(j);
                if cand.addr == 0 {
                    break;
                }
                let k = self.home(mix2(cand.addr));
                let stays = if hole <= j { hole < k && k <= j } else { hole < k || k <= j };
                if !stays {
                    *shard.entries.add(hole) = cand;
                    hole = j;
                }
            }
            (*shard.entries.add(hole)).addr = 0;
            *shard.len.get() -= 1;
            entry
        };
        self.filter_sub(slot);
        Some(found)
    }

    /// Copies every live sample into `out` (writer thread). With `bounded`
    /// (the exit path), a shard that stays busy is skipped instead of waited for.
    pub(crate) fn snapshot(&self, out: &mut Vec<Entry>, bounded: bool) {
        for shard in self.shards.iter() {
            let g = if bounded { shard.lock.try_lock_patiently() } else { shard.lock.lock() };
            let Some(_g) = g else { continue };
            // SAFETY: the shard lock is held.
            unsafe {
                for i in 0..self.cap_per_shard {
                    let e = *shard.entries.add(i);
                    if e.addr != 0 {
                        out.push(e);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(addr: usize, size: usize) -> Entry {
        Entry { addr, size, stack: 1, tick: 0 }
    }

    #[test]
    fn insert_remove_snapshot() {
        let t = LiveTable::new(4096).unwrap();
        for i in 1..=2000usize {
            assert!(t.insert(e(i * 48, i)));
        }
        for i in 1..=2000usize {
            assert!(t.maybe_sampled(i * 48));
        }
        for i in (1..=2000usize).step_by(2) {
            assert_eq!(t.remove(i * 48).map(|x| x.size), Some(i));
        }
        assert_eq!(t.remove(48), None);
        let mut v = Vec::new();
        t.snapshot(&mut v, false);
        assert_eq!(v.len(), 1000);
        assert!(v.iter().all(|x| (x.addr / 48) % 2 == 0));
        // every remaining one is still findable after the backward shifts
        for i in (2..=2000usize).step_by(2) {
            assert!(t.remove(i * 48).is_some(), "lost {i}");
        }
        v.clear();
        t.snapshot(&mut v, false);
        assert!(v.is_empty());
    }

    #[test]
    fn full_table_drops() {
        let t = LiveTable::new(64).unwrap();
        let mut ok = 0;
        for i in 1..=100_000usize {
            if t.insert(e(i * 16, 1)) {
                ok += 1;
            }
        }
        assert!(ok >= 64 && ok <= t.capacity() + SHARDS);
        assert!(t.dropped_full.load(Ordering::Relaxed) > 0);
    }
}
