//! Live sampled allocations, keyed by address, kept until freed.
//!
//! Only frees of tagged blocks (`tag.rs`) come here: a free tells a sampled block by its own
//! header word, so the common route never looks anything up. 64 shards, each a linear-probing
//! table behind a [`SpinLock`], hold the samples; an address's hash picks its shard and its
//! home slot. Removal uses backward-shift deletion (no tombstones), so the tables never
//! degrade. The writer copies one shard at a time.

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
    pub(crate) dropped_full: AtomicU64,
    pub(crate) dropped_busy: AtomicU64,
    mapped: usize,
}

// SAFETY: shard contents are only accessed with the shard's lock held; the
// mapping lives for the rest of the process.
unsafe impl Sync for LiveTable {}
// SAFETY: as above.
unsafe impl Send for LiveTable {}

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
        let entry_bytes = per_shard.checked_mul(SHARDS)?.checked_mul(core::mem::size_of::<Entry>())?;
        let entries = crate::real::map_populated(entry_bytes)?.cast::<Entry>();
        let shards = Box::new(core::array::from_fn::<Shard, SHARDS, _>(|i| Shard {
            lock: SpinLock::new(),
            len: UnsafeCell::new(0),
            // SAFETY: `i * per_shard` is within the mapping of SHARDS * per_shard entries.
            entries: unsafe { entries.add(i * per_shard) },
        }));
        Some(LiveTable {
            shards,
            cap_per_shard: per_shard,
            dropped_full: AtomicU64::new(0),
            dropped_busy: AtomicU64::new(0),
            mapped: entry_bytes,
        })
    }

    pub(crate) fn capacity(&self) -> usize {
        self.cap_per_shard * SHARDS * 3 / 4
    }

    pub(crate) fn mapped_bytes(&self) -> usize {
        self.mapped
    }

    fn shard_of(&self, addr: usize) -> (&Shard, u64) {
        let h = mix2(addr);
        // The hash's top bits pick the shard, its low bits the home slot. Masked index into a
        // fixed-size array: no bounds check, no panic.
        (&self.shards[(h >> 58) as usize & (SHARDS - 1)], h)
    }

    fn home(&self, h: u64) -> usize {
        (h as usize) & (self.cap_per_shard - 1)
    }

    /// Records a sample. Never waits long: if the shard stays busy or is
    /// full, the sample is dropped (and counted).
    pub(crate) fn insert(&self, e: Entry) -> bool {
        let (shard, h) = self.shard_of(e.addr);
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
        true
    }

    /// Removes and returns the sample at `addr`, if any. Called before the
    /// block is handed back to glibc, so the address cannot be reused (and
    /// re-sampled) meanwhile.
    pub(crate) fn remove(&self, addr: usize) -> Option<Entry> {
        let (shard, h) = self.shard_of(addr);
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
