//! leakscope LD_PRELOAD shim: tracks live unmanaged memory by native call site.
//!
//! Walk of one allocation (see docs/SHIM.md for the full design):
//! `hooks.rs` (exported `malloc`, naked trampoline) → `real.rs` (glibc's
//! `__libc_malloc`) → `track.rs` (count usable bytes in this thread's block,
//! `counters.rs`; Poisson countdown, `sampler.rs`) → for a sampled block,
//! `frame_walk.rs` (frame-pointer walk), `stack_table.rs` (lock-free stack interning)
//! and `live.rs` (live-sample table and free filter) → `writer/` (own
//! thread: aggregate, symbolize late with `symbols/`, stream NDJSON).
//!
//! The shim never prints to stdout, never panics across the C ABI, never
//! waits in a hook, and degrades to pass-through (saying why, once) when
//! anything goes wrong.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, dead_code))]

#[macro_use]
mod log;

mod config;
mod counters;
mod fast;
mod frame_walk;
pub mod hooks;
mod json;
mod lifecycle;
mod live;
mod mmaps;
mod real;
mod sampler;
mod spin;
mod stack_table;
mod state;
mod symbols;
mod sys;
mod tables;
mod tag;
mod tls;
mod track;
mod writer;

use core::alloc::{GlobalAlloc, Layout};

/// The shim's own Rust allocations go straight to glibc (`__libc_*`), never
/// through the exported hooks: they are neither counted nor sampled.
struct LibcAllocator;

/// glibc's malloc alignment on 64-bit targets.
const MALLOC_ALIGN: usize = 16;

// SAFETY: forwards to glibc's allocator, honouring alignment with memalign
// when the layout needs more than malloc guarantees.
unsafe impl GlobalAlloc for LibcAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN && layout.align() <= layout.size() {
            // SAFETY: plain glibc malloc.
            unsafe { real::malloc(layout.size()) as *mut u8 }
        } else {
            // SAFETY: power-of-two alignment from a valid Layout.
            unsafe { real::memalign(layout.align(), layout.size()) as *mut u8 }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN && layout.align() <= layout.size() {
            // SAFETY: plain glibc calloc.
            unsafe { real::calloc(1, layout.size()) as *mut u8 }
        } else {
            // SAFETY: as in `alloc`.
            let p = unsafe { self.alloc(layout) };
            if !p.is_null() {
                // SAFETY: `p` is valid for `layout.size()` bytes.
                unsafe { core::ptr::write_bytes(p, 0, layout.size()) };
            }
            p
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from glibc through this allocator.
        unsafe { real::free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN && layout.align() <= new_size {
            // SAFETY: `ptr` came from glibc through this allocator.
            unsafe { real::realloc(ptr.cast(), new_size) as *mut u8 }
        } else {
            // SAFETY: a valid layout for the new size (GlobalAlloc contract).
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            // SAFETY: as in `alloc`.
            let p = unsafe { self.alloc(new_layout) };
            if !p.is_null() {
                // SAFETY: both blocks are valid for the copied length.
                unsafe {
                    core::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
            }
            p
        }
    }
}

#[global_allocator]
static GLOBAL: LibcAllocator = LibcAllocator;
