//! What the frame walk knows about return addresses: a lock-free table, written only by the
//! agent thread and read by every allocating thread.
//!
//! Each slot is one `u64`: the return address in the low 48 bits (user-space addresses on
//! x86-64 fit) and its [`Verdict`] in the high 16. One atomic load answers a lookup, so a reader
//! can never pair an address with another address's verdict, even while the agent thread clears
//! the table. An address that is not there is unknown: the walk falls back to `DoStackSnapshot`
//! for that sample and hands the address to the agent thread, which classifies it
//! (`pipeline/ip_resolve.rs`) and inserts it here. The table only grows, up to three quarters
//! full of its largest size; it is rebuilt when a module unloads, since that module's code
//! addresses may then be reused.

use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

const ADDRESS_BITS: u32 = 48;
const ADDRESS_MASK: u64 = (1 << ADDRESS_BITS) - 1;
/// Slots looked at before a lookup gives up (and an insert reports the table full).
const MAX_PROBES: usize = 32;

/// How the code holding a return address sets up its frame, which is how the walk finds the
/// next return address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `push rbp` and RBP pointing at the saved RBP: the caller's return address is in the
    /// frame record RBP points at.
    Framed,
    /// RBP untouched (the caller's): the return address into the caller sits `words` words above
    /// the stack pointer this code had when it made the call.
    Frameless { words: u16 },
    /// RBP pushed first but not pointed at (used as an ordinary register): the frame record
    /// (saved RBP, then the return address) ends `words` words above the call's stack pointer.
    SavedRbp { words: u16 },
    /// An on-stack-replacement method: its frame sits on top of the Tier0 frame it replaced, and
    /// its record holds the caller's RBP but not the return address, which is in the Tier0
    /// frame's own record, found below the caller's record.
    Osr,
}

/// What a return address is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// JIT-compiled or ReadyToRun code: a managed frame to record.
    Managed(Shape),
    /// The runtime's own native code (allocator, EventPipe, call-in helpers): walked through,
    /// not recorded.
    Runtime(Shape),
    /// Native code outside the runtime (libc's thread start, a native library): the walk ends.
    Foreign,
    /// Code whose frame cannot be followed (stubs, unusual prologues): the sample falls back.
    Opaque,
}

/// Largest frame (in words) the encoding holds; larger ones are `Opaque`.
pub const MAX_FRAME_WORDS: u16 = (1 << 11) - 1;

impl Verdict {
    /// Bits 0–2: kind; 3–4: shape; 5–15: frame words.
    fn encode(self) -> u16 {
        let (kind, shape) = match self {
            Verdict::Managed(shape) => (1, Some(shape)),
            Verdict::Runtime(shape) => (2, Some(shape)),
            Verdict::Foreign => (3, None),
            Verdict::Opaque => (4, None),
        };
        let (form, words) = match shape {
            None | Some(Shape::Framed) => (0, 0),
            Some(Shape::Frameless { words }) => (1, words),
            Some(Shape::SavedRbp { words }) => (2, words),
            Some(Shape::Osr) => (3, 0),
        };
        kind | form << 3 | words.min(MAX_FRAME_WORDS) << 5
    }

    fn decode(bits: u16) -> Option<Verdict> {
        let words = bits >> 5;
        let shape = match (bits >> 3) & 3 {
            0 => Shape::Framed,
            1 => Shape::Frameless { words },
            2 => Shape::SavedRbp { words },
            _ => Shape::Osr,
        };
        Some(match bits & 7 {
            1 => Verdict::Managed(shape),
            2 => Verdict::Runtime(shape),
            3 => Verdict::Foreign,
            4 => Verdict::Opaque,
            _ => return None,
        })
    }
}

/// One open-addressing table of slots.
pub struct Table {
    slots: Box<[AtomicU64]>,
    mask: usize,
}

impl Table {
    fn new(bits: u32) -> Self {
        let n = 1usize << bits;
        Table { slots: (0..n).map(|_| AtomicU64::new(0)).collect(), mask: n - 1 }
    }

    #[inline(always)]
    fn home(&self, address: usize) -> usize {
        ((address as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize & self.mask
    }

    /// The verdict on `address`, if the agent thread has given one. Any thread, lock-free.
    #[inline]
    pub fn get(&self, address: usize) -> Option<Verdict> {
        let key = address as u64;
        if key == 0 || key > ADDRESS_MASK {
            return Some(Verdict::Opaque);
        }
        let mut i = self.home(address);
        for _ in 0..MAX_PROBES {
            let slot = self.slots[i].load(Ordering::Acquire);
            if slot == 0 {
                return None;
            }
            if slot & ADDRESS_MASK == key {
                return Verdict::decode((slot >> ADDRESS_BITS) as u16);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Stores `value` for `key`; false when no slot is free within the probe limit. Returns
    /// whether a new slot was taken through `added`.
    fn put(&self, key: u64, value: u64, added: &mut bool) -> bool {
        let mut i = self.home(key as usize);
        for _ in 0..MAX_PROBES {
            let slot = self.slots[i].load(Ordering::Relaxed);
            if slot == 0 || slot & ADDRESS_MASK == key {
                *added = slot == 0;
                self.slots[i].store(value, Ordering::Release);
                return true;
            }
            i = (i + 1) & self.mask;
        }
        false
    }
}

/// The table the walk reads, grown by the agent thread as addresses are learnt: it starts small
/// (32 KiB, so that a walk's lookups stay in cache) and is replaced by one four times larger
/// when three quarters full, up to `max_bits`. Replaced tables are kept, never freed: a walk on
/// another thread may still be reading one.
pub struct Verdicts {
    current: AtomicPtr<Table>,
    // Boxed: a reader's `&Table` must stay valid when the vector reallocates.
    #[allow(clippy::vec_box)]
    retired: Mutex<Vec<Box<Table>>>,
    bits: AtomicUsize,
    max_bits: u32,
    len: AtomicUsize,
}

/// The first table's size.
const INITIAL_BITS: u32 = 12;

impl Verdicts {
    /// A table that may grow to `2^max_bits` slots.
    pub fn new(max_bits: u32) -> Self {
        let bits = INITIAL_BITS.min(max_bits);
        Verdicts {
            current: AtomicPtr::new(Box::into_raw(Box::new(Table::new(bits)))),
            retired: Mutex::new(Vec::new()),
            bits: AtomicUsize::new(bits as usize),
            max_bits,
            len: AtomicUsize::new(0),
        }
    }

    /// The table in use now: a walk looks every address up in the same one.
    #[inline]
    pub fn table(&self) -> &Table {
        // SAFETY: `current` always holds a table from `Box::into_raw` that is never freed while
        // `self` lives (replaced ones move to `retired`; `Drop` frees them all).
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    /// The verdict on `address`, if any (any thread).
    pub fn get(&self, address: usize) -> Option<Verdict> {
        self.table().get(address)
    }

    /// Records a verdict (agent thread only). False when the table is full at its largest.
    pub fn insert(&self, address: usize, verdict: Verdict) -> bool {
        let key = address as u64;
        if key == 0 || key > ADDRESS_MASK {
            return false;
        }
        if self.len.load(Ordering::Relaxed) >= self.capacity_now() && !self.grow() {
            return false;
        }
        let value = key | ((verdict.encode() as u64) << ADDRESS_BITS);
        let mut added = false;
        if !self.table().put(key, value, &mut added) {
            return false;
        }
        if added {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Replaces the table with one four times larger holding the same entries.
    fn grow(&self) -> bool {
        let bits = self.bits.load(Ordering::Relaxed) as u32;
        if bits >= self.max_bits {
            return false;
        }
        let bits = (bits + 2).min(self.max_bits);
        let bigger = Table::new(bits);
        let old = self.table();
        for slot in old.slots.iter() {
            let value = slot.load(Ordering::Relaxed);
            if value != 0 {
                let mut added = false;
                bigger.put(value & ADDRESS_MASK, value, &mut added);
            }
        }
        let old = self.current.swap(Box::into_raw(Box::new(bigger)), Ordering::AcqRel);
        // SAFETY: `old` came from `Box::into_raw` and is no longer current; it is kept alive in
        // `retired` because other threads may still be reading it.
        self.retired.lock().push(unsafe { Box::from_raw(old) });
        self.bits.store(bits as usize, Ordering::Relaxed);
        true
    }

    /// Forgets everything (agent thread only).
    pub fn clear(&self) {
        for slot in self.table().slots.iter() {
            slot.store(0, Ordering::Release);
        }
        self.len.store(0, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn capacity_now(&self) -> usize {
        (1usize << self.bits.load(Ordering::Relaxed)) * 3 / 4
    }

    /// Most entries the table holds at its largest.
    pub fn capacity(&self) -> usize {
        (1usize << self.max_bits) * 3 / 4
    }
}

impl Drop for Verdicts {
    fn drop(&mut self) {
        // SAFETY: the current table came from `Box::into_raw`; nothing can read it once `self`
        // is being dropped.
        drop(unsafe { Box::from_raw(self.current.load(Ordering::Acquire)) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_round_trip_and_unknown_addresses_are_none() {
        let t = Verdicts::new(10);
        let all = [
            Verdict::Managed(Shape::Framed),
            Verdict::Managed(Shape::Frameless { words: 5 }),
            Verdict::Runtime(Shape::Framed),
            Verdict::Runtime(Shape::Frameless { words: MAX_FRAME_WORDS }),
            Verdict::Runtime(Shape::SavedRbp { words: 13 }),
            Verdict::Managed(Shape::Osr),
            Verdict::Foreign,
            Verdict::Opaque,
        ];
        for (i, v) in all.iter().enumerate() {
            assert!(t.insert(0x7f00_0000_1000 + i * 16, *v));
        }
        for (i, v) in all.iter().enumerate() {
            assert_eq!(t.get(0x7f00_0000_1000 + i * 16), Some(*v));
        }
        assert_eq!(t.get(0x7f00_0000_2000), None);
        assert_eq!(t.get(0), Some(Verdict::Opaque));
        t.clear();
        assert_eq!(t.get(0x7f00_0000_1000), None);
        assert!(t.is_empty());
    }

    #[test]
    fn the_table_grows_keeping_what_it_knew_then_refuses_when_full() {
        let t = Verdicts::new(16);
        let accepted = (1..100_000usize).take_while(|i| t.insert(i * 4096, Verdict::Foreign)).count();
        assert_eq!(accepted, t.capacity());
        assert!((1..=accepted).all(|i| t.get(i * 4096) == Some(Verdict::Foreign)));
        assert_eq!(t.get(4096 * 99_999), None);
    }
}
