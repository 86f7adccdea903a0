//! The agent's own heap: counted, so it can be reported and kept under its budget, and taken
//! straight from glibc (`__libc_malloc` and friends) rather than through `malloc`, so that
//! leakscope's own native-memory shim, interposing `malloc` in the same process, never mistakes
//! the agent's bookkeeping for the application's memory.
//!
//! When glibc refuses an allocation, Rust would abort the whole process (the host included). So
//! the failing request is served instead from an emergency reserve (a static block, untouched
//! and costing nothing until then), the agent's callbacks are switched off on the spot, and the
//! agent thread, seeing [`failure`], stops the agent and says why. Reserve memory is handed out
//! once and never reused (freeing it does nothing); a request larger than what is left of it
//! still fails, which is why the big allocations of heap walks use `try_reserve` and stop for
//! memory instead.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct CountingAllocator;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

/// Enough for the agent to stop cleanly: a last summary, `bye`, and releasing its handles.
const RESERVE_BYTES: usize = 8 << 20;

#[repr(C, align(4096))]
struct Reserve(UnsafeCell<[u8; RESERVE_BYTES]>);

// SAFETY: the bytes are handed out in disjoint ranges by an atomic bump pointer; each range is
// then owned by the allocation it was given to.
unsafe impl Sync for Reserve {}

static RESERVE: Reserve = Reserve(UnsafeCell::new([0; RESERVE_BYTES]));
/// Bytes of the reserve handed out so far.
static RESERVE_USED: AtomicUsize = AtomicUsize::new(0);
/// Size of the first allocation glibc refused (0: none yet).
static FAILED_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The size of the first allocation the system refused the agent, if one was.
pub fn failure() -> Option<usize> {
    match FAILED_SIZE.load(Ordering::Acquire) {
        0 => None,
        size => Some(size),
    }
}

fn reserve_base() -> usize {
    RESERVE.0.get() as usize
}

fn in_reserve(ptr: *mut u8) -> bool {
    let p = ptr as usize;
    p >= reserve_base() && p < reserve_base() + RESERVE_BYTES
}

/// glibc refused `layout`: switch the agent off (an atomic store: nothing here may allocate or
/// lock) and serve the request from the reserve, or fail if it does not fit.
fn refused(layout: Layout) -> *mut u8 {
    let _ = FAILED_SIZE.compare_exchange(0, layout.size().max(1), Ordering::AcqRel, Ordering::Acquire);
    crate::switch::deactivate();
    let base = reserve_base();
    let mut used = RESERVE_USED.load(Ordering::Relaxed);
    loop {
        let start = (base + used).next_multiple_of(layout.align()) - base;
        let Some(end) = start.checked_add(layout.size()).filter(|&end| end <= RESERVE_BYTES) else {
            return std::ptr::null_mut();
        };
        match RESERVE_USED.compare_exchange_weak(used, end, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => {
                ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
                // Fresh reserve bytes have never been handed out, so they are still zero
                // (which `alloc_zeroed` relies on).
                return (base + start) as *mut u8;
            }
            Err(now) => used = now,
        }
    }
}

/// Bytes the agent's Rust code has allocated and not yet freed.
pub fn allocated_bytes() -> usize {
    ALLOCATED.load(Ordering::Relaxed)
}

unsafe extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_calloc(count: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
    fn __libc_free(ptr: *mut c_void);
}

/// glibc's malloc returns memory aligned to 16 bytes on x86-64 and aarch64.
const MALLOC_ALIGN: usize = 16;

// SAFETY: every method hands the caller's request to glibc's allocator, honouring the layout's
// alignment (memalign beyond malloc's own), and only adds bookkeeping on an atomic counter.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain glibc allocation calls with a non-zero size (GlobalAlloc's contract).
        let p = unsafe {
            if layout.align() <= MALLOC_ALIGN {
                __libc_malloc(layout.size())
            } else {
                __libc_memalign(layout.align(), layout.size())
            }
        };
        if p.is_null() {
            return refused(layout);
        }
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        p.cast()
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() > MALLOC_ALIGN {
            // SAFETY: same contract as the caller's.
            let p = unsafe { self.alloc(layout) };
            if !p.is_null() {
                // SAFETY: `p` holds `layout.size()` freshly allocated bytes.
                unsafe { std::ptr::write_bytes(p, 0, layout.size()) };
            }
            return p;
        }
        // SAFETY: plain glibc allocation call.
        let p = unsafe { __libc_calloc(1, layout.size()) };
        if p.is_null() {
            return refused(layout);
        }
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        p.cast()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !in_reserve(ptr) {
            // SAFETY: `ptr` came from this allocator and not from the reserve, hence from glibc.
            unsafe { __libc_free(ptr.cast()) };
        }
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() > MALLOC_ALIGN || in_reserve(ptr) {
            // glibc has no aligned realloc (and reserve blocks are not glibc's): allocate, copy,
            // free (each counted on its own).
            // SAFETY: same contract as the caller's; `ptr` holds `layout.size()` bytes.
            unsafe {
                let p = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
                if !p.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                return p;
            }
        }
        // SAFETY: `ptr` came from glibc's malloc; realloc keeps malloc's alignment.
        let p: *mut u8 = unsafe { __libc_realloc(ptr.cast(), new_size) }.cast();
        if p.is_null() {
            // glibc left the old block as it was: move it into the reserve.
            // SAFETY: a valid layout for the new size (GlobalAlloc's contract).
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            let moved = refused(new_layout);
            if !moved.is_null() {
                // SAFETY: both blocks are valid for the copied length and do not overlap; `ptr`
                // is a glibc block this allocator owns.
                unsafe {
                    std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
            }
            return moved;
        }
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child process (so the limit stays there) whose data segment is capped right above
    /// what it uses: glibc then refuses a 1 MiB block, which must come from the reserve, stay
    /// usable, and be reported, instead of aborting the process. The reserve logic itself is
    /// also exercised for realloc out of the reserve and for a request too big for it.
    #[test]
    fn a_refused_allocation_is_served_from_the_reserve_and_switches_the_agent_off() {
        // SAFETY: fork in a test; the child only allocates, checks and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // The test harness captures panic messages in memory, lost with this child: each
            // check exits with its own code instead.
            let code = (|| {
                // RLIMIT_DATA (not RLIMIT_AS): it also stops glibc from growing a thread's arena
                // inside address space it reserved earlier (mprotect to writable is charged).
                let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
                let data_kb: u64 = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmData:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    .unwrap_or(0);
                let limit = data_kb * 1024 + (256 << 10);
                let rl = libc::rlimit { rlim_cur: limit, rlim_max: libc::RLIM_INFINITY };
                // SAFETY: setrlimit on this (child) process only.
                unsafe { libc::setrlimit(libc::RLIMIT_DATA, &rl) };
                if failure().is_some() {
                    return 10;
                }
                let mut block: Vec<u8> = Vec::with_capacity(1 << 20);
                block.resize(1 << 20, 7);
                if !in_reserve(block.as_mut_ptr()) {
                    return 11; // glibc was expected to refuse 1 MiB under the limit
                }
                if failure() != Some(1 << 20) {
                    return 12;
                }
                if crate::switch::is_active() {
                    return 13; // the agent's callbacks must be off
                }
                block.reserve_exact(1 << 20); // realloc out of a reserve block
                if !block.iter().take(1 << 20).all(|&b| b == 7) {
                    return 14;
                }
                drop(block);
                let mut too_big: Vec<u8> = Vec::new();
                if too_big.try_reserve_exact(RESERVE_BYTES * 2).is_ok() {
                    return 15; // a request larger than the reserve fails (fallibly here)
                }
                0
            })();
            // SAFETY: leave the child without running the test harness's exit path.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "the child died ({status:#x}): SIGABRT means the refused allocation aborted");
        assert_eq!(libc::WEXITSTATUS(status), 0, "the child's check number that failed");
    }

    /// Other tests allocate concurrently through the same counter, so this works with blocks
    /// far larger than their noise and bounds the counter loosely.
    #[test]
    fn counts_what_is_live_across_alloc_realloc_and_free() {
        const BIG: usize = 64 << 20;
        const NOISE: usize = 8 << 20;
        let before = allocated_bytes();
        let mut v: Vec<u8> = Vec::with_capacity(BIG);
        v.push(1);
        assert!(allocated_bytes() + NOISE >= before + BIG);
        v.reserve_exact(2 * BIG); // realloc
        assert!(allocated_bytes() + NOISE >= before + 2 * BIG);
        drop(v);
        assert!(allocated_bytes() < before + NOISE);

        #[repr(align(64))]
        struct Wide([u8; 64]);
        let wide = Box::new(Wide([7; 64]));
        assert_eq!((&*wide as *const Wide as usize % 64, wide.0[63]), (0, 7));
        let mut aligned: Vec<Wide> = Vec::with_capacity(1);
        aligned.push(Wide([1; 64]));
        aligned.reserve(1000); // the allocate-copy-free path for over-aligned blocks
        assert_eq!((aligned.as_ptr() as usize % 64, aligned[0].0[0]), (0, 1));
    }
}
