//! The agent's own heap: counted, so it can be reported and kept under its budget, and taken
//! straight from glibc (`__libc_malloc` and friends) rather than through `malloc`, so that
//! leakscope's own native-memory shim, interposing `malloc` in the same process, never mistakes
//! the agent's bookkeeping for the application's memory.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct CountingAllocator;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

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
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
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
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p.cast()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, hence from glibc.
        unsafe { __libc_free(ptr.cast()) };
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() > MALLOC_ALIGN {
            // glibc has no aligned realloc: allocate, copy, free (each counted on its own).
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
        if !p.is_null() {
            ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
            ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
