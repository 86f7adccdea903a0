//! Exact totals: allocations, frees and their usable bytes.
//!
//! Every thread owns a cache-line-sized block of a static pool. The owner
//! bumps its counters with a single non-locked `add` instruction: a signal
//! handler on the same thread cannot split it, and no other thread writes the
//! block, so no `lock` prefix (and no cache-line bouncing) is needed. The
//! writer thread sums all blocks with plain loads (8-byte aligned loads are
//! atomic on x86-64). When a thread has exited (`tgkill(pid, tid, 0)` says
//! ESRCH) the writer folds its block into `RETIRED` and recycles it. If the
//! pool runs out, late threads share `OVERFLOW` with atomic adds.

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

/// Whether every call is counted (`LEAKSCOPE_NATIVE_TOTALS=exact`). On from the first
/// allocation, so that exact totals cover the start-up; the constructor turns it off for the
/// default, sampled totals (the counters are then never reported).
static EXACT: AtomicBool = AtomicBool::new(true);

#[inline(always)]
pub(crate) fn exact() -> bool {
    EXACT.load(Ordering::Relaxed)
}

/// Set once by the constructor, before the common route opens.
pub(crate) fn set_exact(on: bool) {
    EXACT.store(on, Ordering::Relaxed);
}

use crate::sys;

#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct ThreadCounters {
    owner: AtomicI32,
    pub(crate) allocs: AtomicU64,
    pub(crate) frees: AtomicU64,
    pub(crate) alloc_bytes: AtomicU64,
    pub(crate) free_bytes: AtomicU64,
}

impl ThreadCounters {
    const fn new() -> Self {
        ThreadCounters {
            owner: AtomicI32::new(0),
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            alloc_bytes: AtomicU64::new(0),
            free_bytes: AtomicU64::new(0),
        }
    }
}

impl ThreadCounters {
    /// Counts one allocation of `bytes` in the calling thread's own block (the common route).
    #[inline(always)]
    pub(crate) fn count_alloc_owned(&self, bytes: u64) {
        self.add_pair_owned::<{ core::mem::offset_of!(ThreadCounters, allocs) }, { core::mem::offset_of!(ThreadCounters, alloc_bytes) }>(bytes);
    }

    /// Counts one free of `bytes` in the calling thread's own block (the common route).
    #[inline(always)]
    pub(crate) fn count_free_owned(&self, bytes: u64) {
        self.add_pair_owned::<{ core::mem::offset_of!(ThreadCounters, frees) }, { core::mem::offset_of!(ThreadCounters, free_bytes) }>(bytes);
    }

    /// One to the counter at `COUNT`, `bytes` to the one at `BYTES`: two `add`s straight into
    /// the block (no address computed into a register first, no constant loaded).
    #[inline(always)]
    fn add_pair_owned<const COUNT: usize, const BYTES: usize>(&self, bytes: u64) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `self` is a valid, aligned block owned (for writing) by this thread only, and
        // COUNT and BYTES are offsets of two of its u64 counters. Each `add m64` cannot be split
        // by a signal handler on this thread; other threads only read the values.
        unsafe {
            core::arch::asm!(
                "add qword ptr [{b} + {count}], 1",
                "add qword ptr [{b} + {bytes}], {v}",
                b = in(reg) self as *const ThreadCounters,
                v = in(reg) bytes,
                count = const COUNT,
                bytes = const BYTES,
                options(nostack),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let cell = |offset: usize| {
                // SAFETY: `offset` is that of one of this block's AtomicU64 fields.
                unsafe { &*((self as *const ThreadCounters as *const u8).add(offset) as *const AtomicU64) }
            };
            bump(cell(COUNT), 1, false);
            bump(cell(BYTES), bytes, false);
        }
    }
}

const POOL_SIZE: usize = 4096;
static POOL: [ThreadCounters; POOL_SIZE] = [const { ThreadCounters::new() }; POOL_SIZE];
static OVERFLOW: ThreadCounters = ThreadCounters::new();
/// One past the highest pool index ever claimed (bounds the writer's scan).
static HIGH_WATER: AtomicU64 = AtomicU64::new(0);

static RETIRED_ALLOCS: AtomicU64 = AtomicU64::new(0);
static RETIRED_FREES: AtomicU64 = AtomicU64::new(0);
static RETIRED_ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);
static RETIRED_FREE_BYTES: AtomicU64 = AtomicU64::new(0);

/// Claims a block for the calling thread. Cold: once per thread.
pub(crate) fn claim() -> (&'static ThreadCounters, bool) {
    let tid = sys::gettid();
    let start = (tid as u32 as usize).wrapping_mul(0x9E37_79B9) % POOL_SIZE;
    for i in 0..POOL_SIZE {
        let idx = (start + i) % POOL_SIZE;
        let Some(block) = POOL.get(idx) else { continue };
        if block.owner.load(Ordering::Relaxed) == 0
            && block.owner.compare_exchange(0, tid, Ordering::Acquire, Ordering::Relaxed).is_ok()
        {
            HIGH_WATER.fetch_max(idx as u64 + 1, Ordering::Relaxed);
            return (block, false);
        }
    }
    (&OVERFLOW, true)
}

/// Adds `v` to a counter owned by the calling thread.
#[inline(always)]
pub(crate) fn bump(cell: &AtomicU64, v: u64, shared: bool) {
    if shared {
        cell.fetch_add(v, Ordering::Relaxed);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `cell` is a valid, aligned u64 owned (for writing) by this
    // thread only. One `add m64, r64` cannot be split by a signal handler on
    // this thread; other threads only read the value.
    unsafe {
        core::arch::asm!("add qword ptr [{0}], {1}", in(reg) cell.as_ptr(), in(reg) v, options(nostack));
    }
    #[cfg(not(target_arch = "x86_64"))]
    cell.fetch_add(v, Ordering::Relaxed);
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) allocs: u64,
    pub(crate) frees: u64,
    pub(crate) alloc_bytes: u64,
    pub(crate) free_bytes: u64,
}

impl Totals {
    pub(crate) fn live_bytes(&self) -> i64 {
        self.alloc_bytes.wrapping_sub(self.free_bytes) as i64
    }
    pub(crate) fn live_allocs(&self) -> i64 {
        self.allocs.wrapping_sub(self.frees) as i64
    }
    fn add(&mut self, c: &ThreadCounters) {
        self.allocs = self.allocs.wrapping_add(c.allocs.load(Ordering::Relaxed));
        self.frees = self.frees.wrapping_add(c.frees.load(Ordering::Relaxed));
        self.alloc_bytes = self.alloc_bytes.wrapping_add(c.alloc_bytes.load(Ordering::Relaxed));
        self.free_bytes = self.free_bytes.wrapping_add(c.free_bytes.load(Ordering::Relaxed));
    }
}

/// Sums every block. Called by the writer (or the exit flush holding the
/// writer lock), never concurrently with [`recycle_dead`].
pub(crate) fn totals() -> Totals {
    let mut t = Totals {
        allocs: RETIRED_ALLOCS.load(Ordering::Relaxed),
        frees: RETIRED_FREES.load(Ordering::Relaxed),
        alloc_bytes: RETIRED_ALLOC_BYTES.load(Ordering::Relaxed),
        free_bytes: RETIRED_FREE_BYTES.load(Ordering::Relaxed),
    };
    let hw = HIGH_WATER.load(Ordering::Relaxed) as usize;
    for block in POOL.iter().take(hw) {
        t.add(block);
    }
    t.add(&OVERFLOW);
    t
}

/// Folds the blocks of exited threads into the retired totals and frees them
/// for reuse. Returns how many live threads own a block.
pub(crate) fn recycle_dead(pid: i32) -> usize {
    let hw = HIGH_WATER.load(Ordering::Relaxed) as usize;
    let mut live = 0;
    for block in POOL.iter().take(hw) {
        let owner = block.owner.load(Ordering::Acquire);
        if owner == 0 {
            continue;
        }
        if sys::thread_alive(pid, owner) {
            live += 1;
            continue;
        }
        // The owner has exited: nobody writes this block any more.
        let a = block.allocs.swap(0, Ordering::Relaxed);
        let f = block.frees.swap(0, Ordering::Relaxed);
        let ab = block.alloc_bytes.swap(0, Ordering::Relaxed);
        let fb = block.free_bytes.swap(0, Ordering::Relaxed);
        RETIRED_ALLOCS.fetch_add(a, Ordering::Relaxed);
        RETIRED_FREES.fetch_add(f, Ordering::Relaxed);
        RETIRED_ALLOC_BYTES.fetch_add(ab, Ordering::Relaxed);
        RETIRED_FREE_BYTES.fetch_add(fb, Ordering::Relaxed);
        block.owner.store(0, Ordering::Release);
    }
    live
}
