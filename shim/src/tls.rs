//! Per-thread state: const-initialised, `!needs_drop`, so touching it never
//! registers a TLS destructor (no `__cxa_thread_atexit_impl`, hence no calloc
//! recursion) and it stays readable while the thread runs its TLS destructors
//! and exits (frees made then are still counted).

use core::cell::Cell;

use crate::counters::ThreadCounters;

#[derive(Debug)]
pub(crate) struct ThreadState {
    /// `BUSY`: set while this thread runs shim code that may call back into
    /// the allocator (sampling slow path, table locks, the writer thread for
    /// its whole life, the constructor); a hook that finds it set passes
    /// through. `SHARED`: `counters` is the shared overflow block (atomic
    /// adds). `UNCLAIMED`: no block yet. One byte, so that the common route
    /// tests all three at once.
    flags: Cell<u8>,
    /// This thread's counter block (null until the first allocation).
    counters: Cell<*const ThreadCounters>,
    /// Bytes left until the next sampled byte (Poisson process).
    pub(crate) countdown: Cell<u64>,
    /// xorshift state; 0 means not yet seeded.
    pub(crate) rng: Cell<u64>,
    /// Validated readable stack range for the frame walker.
    pub(crate) stack_lo: Cell<usize>,
    pub(crate) stack_hi: Cell<usize>,
}

const _: () = assert!(!core::mem::needs_drop::<ThreadState>());

/// `ThreadState::flags`: inside the shim.
const BUSY: u8 = 1;
/// `ThreadState::flags`: counting into the shared overflow block.
const SHARED: u8 = 2;
/// `ThreadState::flags`: no counter block claimed yet (`counters` is null).
const UNCLAIMED: u8 = 4;

thread_local! {
    static STATE: ThreadState = const {
        ThreadState {
            flags: Cell::new(UNCLAIMED),
            counters: Cell::new(core::ptr::null()),
            countdown: Cell::new(0),
            rng: Cell::new(0),
            stack_lo: Cell::new(0),
            stack_hi: Cell::new(0),
        }
    };
}

/// Offset of this thread's `STATE` from the thread pointer (`fs:0`), valid
/// for every thread once set (0 = not known: use the generic TLS access).
///
/// A module loaded at start-up (LD_PRELOAD) has its TLS block in the static
/// TLS area, at the same offset from the thread pointer in every thread (the
/// ELF TLS ABI's initial-exec model). Rust cannot ask for that model on a
/// stable toolchain, so a `thread_local!` in a cdylib costs a call to
/// `__tls_get_addr` on every hook (measured: ~10% of a malloc/free pair).
/// [`enable_fast_path`] records the offset once the constructor has
/// confirmed the shim was preloaded (never for a dlopen'ed copy, whose TLS
/// may be dynamic).
#[cfg(target_arch = "x86_64")]
static FAST_OFFSET: core::sync::atomic::AtomicIsize = core::sync::atomic::AtomicIsize::new(0);

#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: on x86-64 glibc, fs:0 holds the TCB's self pointer.
    unsafe {
        core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags, pure))
    };
    tp
}

/// Switches hooks to the static-TLS fast path. Called by the constructor
/// after verifying that the shim is preloaded (first in the lookup order).
pub(crate) fn enable_fast_path() {
    #[cfg(target_arch = "x86_64")]
    {
        let addr = STATE.with(|t| t as *const ThreadState as usize);
        let off = addr.wrapping_sub(thread_pointer()) as isize;
        if off != 0 {
            FAST_OFFSET.store(off, core::sync::atomic::Ordering::Release);
        }
    }
}

/// The static TLS offset of `STATE`, once the fast path is enabled (x86-64 only).
pub(crate) fn fast_offset() -> Option<isize> {
    #[cfg(target_arch = "x86_64")]
    {
        let off = FAST_OFFSET.load(core::sync::atomic::Ordering::Acquire);
        if off != 0 {
            return Some(off);
        }
    }
    None
}

/// Checks, on the calling thread, that the fast path finds the same slot as
/// the generic access (the writer thread runs this once at start).
pub(crate) fn fast_path_consistent() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let off = FAST_OFFSET.load(core::sync::atomic::Ordering::Acquire);
        if off == 0 {
            return true;
        }
        let addr = STATE.with(|t| t as *const ThreadState as usize);
        if thread_pointer().wrapping_add(off as usize) != addr {
            FAST_OFFSET.store(0, core::sync::atomic::Ordering::Release);
            return false;
        }
    }
    true
}

/// Runs `f` with this thread's state. Infallible: the slot has no
/// destructor, so it is never "destroyed", even during thread teardown.
#[inline(always)]
pub(crate) fn with<R>(f: impl FnOnce(&ThreadState) -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        let off = FAST_OFFSET.load(core::sync::atomic::Ordering::Relaxed);
        if off != 0 {
            let p = thread_pointer().wrapping_add(off as usize) as *const ThreadState;
            // SAFETY: `off` is this module's static TLS offset (see
            // FAST_OFFSET): `p` is this thread's `STATE`, valid for the
            // thread's whole life and only used by this thread.
            return f(unsafe { &*p });
        }
    }
    STATE.with(f)
}

/// RAII reentrancy guard: clears `busy` on drop.
pub(crate) struct Busy<'a> {
    ts: &'a ThreadState,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.ts.flags.set(self.ts.flags.get() & !BUSY);
    }
}

impl ThreadState {
    #[inline(always)]
    pub(crate) fn is_busy(&self) -> bool {
        self.flags.get() & BUSY != 0
    }

    /// Enters shim code; `None` if this thread is already inside it.
    #[inline(always)]
    pub(crate) fn enter(&self) -> Option<Busy<'_>> {
        if self.is_busy() {
            return None;
        }
        self.flags.set(self.flags.get() | BUSY);
        Some(Busy { ts: self })
    }

    /// Marks this thread as a shim thread for good (writer thread).
    pub(crate) fn set_busy_forever(&self) {
        self.flags.set(self.flags.get() | BUSY);
    }

    /// This thread's own counter block, when the common route may use it: not inside the shim,
    /// a block claimed, and not the shared overflow block.
    #[inline(always)]
    pub(crate) fn owned_counters(&self) -> Option<&'static ThreadCounters> {
        let p = self.counters.get();
        // Zero flags: not busy, not shared, and a block claimed (`p` is not null).
        if self.flags.get() != 0 {
            return None;
        }
        // SAFETY: `p` came from `counters::claim`, which hands out blocks of a static pool that
        // is never freed.
        Some(unsafe { &*p })
    }

    #[inline(always)]
    pub(crate) fn counters(&self) -> (&'static ThreadCounters, bool) {
        let p = self.counters.get();
        if p.is_null() {
            return self.claim_counters();
        }
        // SAFETY: `p` came from `counters::claim`, which hands out blocks of a
        // static pool that is never freed.
        (unsafe { &*p }, self.flags.get() & SHARED != 0)
    }

    #[cold]
    #[inline(never)]
    fn claim_counters(&self) -> (&'static ThreadCounters, bool) {
        let (c, shared) = crate::counters::claim();
        self.counters.set(c);
        let flags = self.flags.get() & !UNCLAIMED;
        self.flags.set(if shared { flags | SHARED } else { flags & !SHARED });
        (c, shared)
    }
}
