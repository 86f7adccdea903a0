//! The safe core behind the hooks: what happens on every allocation, free,
//! realloc and mapping. The fast paths touch only this thread's TLS and
//! counter block, glibc's `malloc_usable_size`, and one filter byte; anything
//! more is in `#[cold]` functions taken for sampled allocations (about one per
//! `mean_bytes` allocated) and for frees of maybe-sampled pointers.
//!
//! Bytes are counted as `malloc_usable_size`, on both sides, so totals are
//! exact and never drift (requested sizes are not recoverable at free time
//! without a per-block header, which would change the host's heap layout).

use core::ffi::c_void;
use core::sync::atomic::Ordering;

use crate::counters::bump;
use crate::live::Entry;
use crate::state::{self, ENABLED, OFF};
use crate::tables::{self, Tables};
use crate::tls::ThreadState;
use crate::{frame_walk, real, sampler, sys, tls};

/// After a successful allocation of `p` (any of the malloc family).
#[inline(always)]
pub(crate) fn alloc(p: *mut c_void, frame: *const usize) {
    if p.is_null() {
        return;
    }
    let st = state::state();
    if st >= OFF {
        return;
    }
    tls::with(|t| {
        if t.is_busy() {
            return;
        }
        // SAFETY: `p` was just returned by glibc's allocator and is live.
        let u = unsafe { real::usable_size(p) };
        let (c, shared) = t.counters();
        bump(&c.allocs, 1, shared);
        bump(&c.alloc_bytes, u as u64, shared);
        if st == ENABLED {
            let cd = t.countdown.get().wrapping_sub(u as i64);
            t.countdown.set(cd);
            if cd < 0 {
                sample(t, p, u, frame);
            }
        }
    })
}

/// Before `p` is handed back to glibc by `free`.
#[inline(always)]
pub(crate) fn free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    let st = state::state();
    if st >= OFF {
        return;
    }
    tls::with(|t| {
        if t.is_busy() {
            return;
        }
        // SAFETY: `p` is a live block the caller is about to free.
        let u = unsafe { real::usable_size(p) };
        let (c, shared) = t.counters();
        bump(&c.frees, 1, shared);
        bump(&c.free_bytes, u as u64, shared);
        if st == ENABLED {
            if let Some(tables) = tables::tables() {
                if tables.live.maybe_sampled(p as usize) {
                    let _ = unsample(t, tables, p as usize);
                }
            }
        }
    })
}

/// Before the old block of a `realloc` is handed to glibc. Returns the
/// usable size that was counted and the sample that was removed, so a
/// failed realloc can undo.
#[inline(always)]
pub(crate) fn release(p: *mut c_void) -> Option<(usize, Option<Entry>)> {
    if p.is_null() {
        return None;
    }
    let st = state::state();
    if st >= OFF {
        return None;
    }
    tls::with(|t| {
        if t.is_busy() {
            return None;
        }
        // SAFETY: `p` is a live block the caller is about to free.
        let u = unsafe { real::usable_size(p) };
        let (c, shared) = t.counters();
        bump(&c.frees, 1, shared);
        bump(&c.free_bytes, u as u64, shared);
        let mut removed = None;
        if st == ENABLED {
            if let Some(tables) = tables::tables() {
                if tables.live.maybe_sampled(p as usize) {
                    removed = unsample(t, tables, p as usize);
                }
            }
        }
        Some((u, removed))
    })
}

/// Undoes [`release`] when `realloc` failed and the old block stays live.
pub(crate) fn unrelease(p: *mut c_void, undo: Option<(usize, Option<Entry>)>) {
    let Some((u, removed)) = undo else { return };
    tls::with(|t| {
        let (c, shared) = t.counters();
        // Counters only grow: re-count the block as a fresh allocation.
        bump(&c.allocs, 1, shared);
        bump(&c.alloc_bytes, u as u64, shared);
        if let (Some(e), Some(tables)) = (removed, tables::tables()) {
            if let Some(_busy) = t.enter() {
                let _ = tables.live.insert(Entry { addr: p as usize, ..e });
            }
        }
    });
}

#[cold]
#[inline(never)]
fn unsample(t: &ThreadState, tables: &Tables, addr: usize) -> Option<Entry> {
    let _busy = t.enter()?;
    tables.live.remove(addr)
}

/// The fast route's way out when a freed block may be a sample (`fast.rs`).
#[cold]
#[inline(never)]
pub(crate) fn unsample_now(t: &ThreadState, tables: &Tables, addr: usize) {
    let _ = unsample(t, tables, addr);
}

/// The fast route's way out when the countdown runs out (`fast.rs`).
#[cold]
#[inline(never)]
pub(crate) fn sample_now(t: &ThreadState, p: *mut c_void, u: usize, frame: *const usize) {
    sample(t, p, u, frame);
}

#[cold]
#[inline(never)]
fn sample(t: &ThreadState, p: *mut c_void, u: usize, frame: *const usize) {
    let Some(tables) = tables::tables() else {
        return;
    };
    let Some(_busy) = t.enter() else { return };
    let mut rng = t.rng.get();
    if rng == 0 {
        // First sample decision on this thread: the countdown started at 0,
        // so draw a proper one and re-decide (keeps the estimator unbiased).
        rng = sampler::seed(sys::gettid(), p as u64 ^ sys::monotonic_ns());
        let d = sampler::draw(tables.mean_bytes, &mut rng);
        t.rng.set(rng);
        let cd = d.wrapping_sub(u as i64);
        t.countdown.set(cd);
        if cd >= 0 {
            return;
        }
    }
    t.countdown.set(sampler::draw(tables.mean_bytes, &mut rng));
    t.rng.set(rng);
    let mut ips = [0usize; frame_walk::MAX_DEPTH];
    let n = frame_walk::capture(t, frame, &mut ips, tables.max_depth);
    let id = tables.stacks.intern(ips.get(..n).unwrap_or(&[]));
    let _ =
        tables.live.insert(Entry { addr: p as usize, size: u, stack: id, tick: state::TICK.load(Ordering::Relaxed) });
}

fn page_round(len: usize) -> usize {
    len.saturating_add(4095) & !4095
}

/// Runs `f` with the mmap table locked and this thread marked busy, if
/// mapping tracking is on and this thread is not already inside the shim.
fn with_mmaps<R>(f: impl FnOnce(&mut crate::mmaps::Locked<'_>, &ThreadState, &Tables) -> R) -> Option<R> {
    if state::state() != ENABLED {
        return None;
    }
    let tables = tables::tables()?;
    let mmaps = tables.mmaps.as_ref()?;
    tls::with(|t| {
        let _busy = t.enter()?;
        let mut l = mmaps.lock()?;
        Some(f(&mut l, t, tables))
    })
}

fn capture_stack(t: &ThreadState, tables: &Tables, frame: *const usize) -> u32 {
    let mut ips = [0usize; frame_walk::MAX_DEPTH];
    let n = frame_walk::capture(t, frame, &mut ips, tables.max_depth);
    tables.stacks.intern(ips.get(..n).unwrap_or(&[]))
}

/// `mmap`: maps first; records anonymous, accessible mappings. A MAP_FIXED
/// mapping replaces whatever it overlaps, so the call is made under the
/// table lock (no other thread can map the range in between).
pub(crate) fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: i32,
    flags: i32,
    fd: i32,
    off: i64,
    frame: *const usize,
) -> *mut c_void {
    let fixed = flags & (libc::MAP_FIXED | libc::MAP_FIXED_NOREPLACE) != 0;
    let counted = flags & libc::MAP_ANONYMOUS != 0 && prot != libc::PROT_NONE;
    let call = || {
        // SAFETY: forwards the caller's arguments unchanged.
        unsafe { real::mmap(addr, len, prot, flags, fd, off) }
    };
    if !fixed && !counted {
        return call();
    }
    if fixed {
        let mut r = libc::MAP_FAILED;
        let done = with_mmaps(|l, t, tables| {
            r = call();
            if r != libc::MAP_FAILED {
                let (s, e) = (r as usize, r as usize + page_round(len));
                if counted {
                    let id = capture_stack(t, tables, frame);
                    l.insert(s, e, id);
                } else {
                    l.remove(s, e);
                }
            }
        });
        return if done.is_some() { r } else { call() };
    }
    let r = call();
    if r != libc::MAP_FAILED {
        with_mmaps(|l, t, tables| {
            let id = capture_stack(t, tables, frame);
            l.insert(r as usize, r as usize + page_round(len), id);
        });
    }
    r
}

/// `munmap`: stops tracking first (the range cannot be re-mapped by another
/// thread before we unmap it), then unmaps.
pub(crate) fn munmap(addr: *mut c_void, len: usize) -> i32 {
    with_mmaps(|l, _, _| {
        l.remove(addr as usize, (addr as usize).saturating_add(page_round(len)));
    });
    // SAFETY: forwards the caller's arguments unchanged.
    unsafe { real::munmap(addr, len) }
}

/// `mremap`: done under the table lock; a tracked mapping keeps its stack.
pub(crate) fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: i32,
    new_addr: *mut c_void,
) -> *mut c_void {
    let call = || {
        // SAFETY: forwards the caller's arguments unchanged.
        unsafe { real::mremap(old, old_len, new_len, flags, new_addr) }
    };
    let mut r = libc::MAP_FAILED;
    let done = with_mmaps(|l, _, _| {
        r = call();
        if r != libc::MAP_FAILED {
            let (os, oe) = (old as usize, old as usize + page_round(old_len));
            // MREMAP_DONTUNMAP leaves the old range mapped (and empty).
            let stack = if flags & 4 != 0 { None } else { l.remove(os, oe) };
            if let Some(id) = stack {
                l.insert(r as usize, r as usize + page_round(new_len), id);
            }
        }
    });
    if done.is_some() { r } else { call() }
}
