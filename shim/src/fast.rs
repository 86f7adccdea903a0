//! The common route of `malloc` and `free`: straight-line code with one global load, no
//! atomics and no calls, taken whenever the shim is fully on and the thread owns its counter
//! block. Everything else — the shim starting or off, a thread inside the shim, a thread on the
//! shared overflow block, a sampled allocation, a free of a maybe-sampled block — goes to the
//! general route in `track.rs`, which is where the rules live; this file only skips its checks
//! when none of them can apply.
//!
//! `HOT.tls` is the thread-pointer offset of this module's `ThreadState` (`tls.rs`), set only
//! once every precondition holds together: shim enabled, preloaded (static TLS), glibc's chunk
//! header layout verified (`real.rs`). Leaving the enabled state clears it first. A hook that
//! read it just before it was cleared finishes on the fast route: it counts, or records a sample
//! into tables that are never freed, which is harmless in every state the shim can be in.

use core::ffi::c_void;
use core::sync::atomic::{AtomicIsize, AtomicPtr, Ordering};

use crate::state::Tables;
use crate::tls::ThreadState;
use crate::{real, track};

#[repr(C, align(64))]
struct Hot {
    tls: AtomicIsize,
    tables: AtomicPtr<Tables>,
}

static HOT: Hot = Hot { tls: AtomicIsize::new(0), tables: AtomicPtr::new(core::ptr::null_mut()) };

/// Opens the fast route (the shim has just become enabled), if its preconditions hold.
pub(crate) fn arm(tables: &'static Tables) {
    let Some(offset) = crate::tls::fast_offset() else { return };
    if !real::header_layout_verified() {
        return;
    }
    HOT.tables.store(tables as *const Tables as *mut Tables, Ordering::Release);
    HOT.tls.store(offset, Ordering::Release);
}

/// Closes it (the shim is leaving the enabled state).
pub(crate) fn disarm() {
    HOT.tls.store(0, Ordering::Release);
}

#[inline(always)]
fn thread_state(offset: isize) -> &'static ThreadState {
    // SAFETY: `offset` is this module's static TLS offset (`tls::fast_offset`), so the address
    // is the calling thread's own `ThreadState`, valid for the thread's whole life and only used
    // by this thread.
    unsafe { &*(crate::tls::thread_pointer().wrapping_add(offset as usize) as *const ThreadState) }
}

/// After a successful (or failed: `p` null) `malloc`/`calloc`/aligned allocation.
#[inline(always)]
pub(crate) fn alloc(p: *mut c_void, frame: *const usize) {
    let offset = HOT.tls.load(Ordering::Relaxed);
    if offset == 0 || p.is_null() {
        return general_alloc(p, frame);
    }
    let t = thread_state(offset);
    let Some(c) = t.owned_counters() else { return general_alloc(p, frame) };
    let u = real::header_usable(p);
    c.count_alloc_owned(u as u64);
    let countdown = t.countdown.get().wrapping_sub(u as i64);
    t.countdown.set(countdown);
    if countdown < 0 {
        track::sample_now(t, p, u, frame);
    }
}

/// Before `p` goes back to glibc in `free`.
#[inline(always)]
pub(crate) fn free(p: *mut c_void) {
    let offset = HOT.tls.load(Ordering::Relaxed);
    if offset == 0 || p.is_null() {
        return general_free(p);
    }
    let t = thread_state(offset);
    let Some(c) = t.owned_counters() else { return general_free(p) };
    c.count_free_owned(real::header_usable(p) as u64);
    // SAFETY: set with `tls` from a leaked `Tables` that is never freed.
    let tables = unsafe { &*HOT.tables.load(Ordering::Relaxed) };
    if tables.live.maybe_sampled(p as usize) {
        track::unsample_now(t, tables, p as usize);
    }
}

// The general route, out of line so that the common one needs no registers saved.
#[cold]
#[inline(never)]
fn general_alloc(p: *mut c_void, frame: *const usize) {
    track::alloc(p, frame);
}

#[cold]
#[inline(never)]
fn general_free(p: *mut c_void) {
    track::free(p);
}
