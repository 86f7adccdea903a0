//! The common route of `malloc` and `free`: straight-line code with one global load, no
//! atomics and no calls, taken whenever the shim is fully on and the thread owns its counter
//! block. Everything else — the shim starting or off, a thread inside the shim, a thread on the
//! shared overflow block, an allocation drawn as a sample, a free of a tagged (sampled) block —
//! goes to the general route in `track.rs`, which is where the rules live; this file only skips
//! its checks when none of them can apply.
//!
//! `HOT.tls` is the thread-pointer offset of this module's `ThreadState` (`tls.rs`), set only
//! once every precondition holds together: shim enabled, preloaded (static TLS), glibc's chunk
//! header layout verified (`real.rs`). Leaving the enabled state clears it first. A hook that
//! read it just before it was cleared finishes on the fast route: it counts, or draws a sample
//! that the general route then makes or declines, which is harmless in every state the shim can
//! be in.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

use crate::tls::ThreadState;
use crate::{real, sampler, tag, track};

#[repr(C, align(64))]
struct Hot {
    tls: AtomicIsize,
    /// Exact totals: every call counted (`counters::exact`), read with `tls` from one line.
    exact: AtomicBool,
}

static HOT: Hot = Hot { tls: AtomicIsize::new(0), exact: AtomicBool::new(false) };

/// Opens the fast route (the shim has just become enabled), if its preconditions hold.
pub(crate) fn arm() {
    let Some(offset) = crate::tls::fast_offset() else { return };
    if !real::header_layout_verified() {
        return;
    }
    HOT.exact.store(crate::counters::exact(), Ordering::Release);
    HOT.tls.store(offset, Ordering::Release);
}

/// Whether the common route counts every call (exact totals).
#[inline(always)]
pub(crate) fn exact() -> bool {
    HOT.exact.load(Ordering::Relaxed)
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

/// This thread's state, when the common route is open for it (the shim fully on, the thread
/// not inside the shim and owning its counter block).
#[inline(always)]
pub(crate) fn route() -> Option<&'static ThreadState> {
    let offset = HOT.tls.load(Ordering::Relaxed);
    if offset == 0 {
        return None;
    }
    let t = thread_state(offset);
    t.owned_counters()?;
    Some(t)
}

/// Whether the allocation of `size` bytes about to be made is drawn as a sample: this thread's
/// countdown. A sample is then made by `track::sampled`, tagged.
#[inline(always)]
pub(crate) fn due(t: &ThreadState, size: usize) -> bool {
    let (left, due) = sampler::take(t.countdown.get(), size);
    t.countdown.set(left);
    due
}

/// After glibc returned `p` (or null) for an allocation that is not a sample: counts it, and
/// hands it on.
#[inline(always)]
pub(crate) fn counted(p: *mut c_void) -> *mut c_void {
    let offset = HOT.tls.load(Ordering::Relaxed);
    if offset == 0 || p.is_null() {
        return general_counted(p);
    }
    let t = thread_state(offset);
    let Some(c) = t.owned_counters() else { return general_counted(p) };
    c.count_alloc_owned(real::header_usable(p) as u64);
    p
}

/// Before a non-null `p` goes back to glibc in `free`: counts it on the common route. False
/// when the general route (`track::free`) must take it: the route is closed, or `p` is a
/// tagged (sampled) block, whose own block starts before `p`.
#[inline(always)]
pub(crate) fn free(p: *mut c_void) -> bool {
    let offset = HOT.tls.load(Ordering::Relaxed);
    if offset == 0 {
        return false;
    }
    if !exact() {
        // Nothing to count: only a tagged block needs more.
        // SAFETY: as below.
        return unsafe { tag::header(p) } & tag::MARK == 0;
    }
    let t = thread_state(offset);
    let Some(c) = t.owned_counters() else { return false };
    // SAFETY: `p` is a live block the host is freeing (free's contract); the route is open, so
    // glibc's header layout was verified and this word is its header or our tag.
    let header = unsafe { tag::header(p) };
    if header & tag::MARK != 0 {
        return false;
    }
    c.count_free_owned(real::usable_from_header(header) as u64);
    true
}

// The general route, out of line so that the common one needs no registers saved.
#[cold]
#[inline(never)]
fn general_counted(p: *mut c_void) -> *mut c_void {
    track::count_alloc(p);
    p
}
