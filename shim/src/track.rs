//! The safe core behind the hooks: what happens on every allocation, free,
//! realloc and mapping. The common route (`fast.rs`) touches only this thread's
//! TLS and counter block and the word before the block; anything more is here,
//! in `#[cold]` functions taken for allocations drawn as samples (about one per
//! `mean_bytes` allocated), for frees of tagged blocks, and whenever the common
//! route is closed.
//!
//! Bytes are counted as usable bytes (`malloc_usable_size`), on both sides, so
//! totals are exact and never drift (requested sizes are not recoverable at free
//! time). A sample is decided before the allocation is made, so that it can be
//! made with room for its tag (`tag.rs`): only sampled blocks change size, by 16
//! bytes (their alignment, for aligned ones), and the host sees exactly the usable
//! size it asked for.

use core::ffi::c_void;
use core::sync::atomic::Ordering;

use crate::counters::{self, bump};
use crate::live::Entry;
use crate::state::{self, ENABLED, OFF};
use crate::tables::{self, Tables};
use crate::tls::ThreadState;
use crate::{frame_walk, real, sampler, sys, tag, tls};

/// How a block is to be made: what glibc function, for a sample made with room for its tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `malloc`, `realloc`.
    Plain,
    /// `calloc`: zero-filled.
    Zeroed,
    /// `memalign` & co., with this power-of-two alignment.
    Aligned(usize),
}

impl Shape {
    /// A block of `size` bytes of this shape, from glibc.
    fn make(self, size: usize) -> *mut c_void {
        // SAFETY: glibc's allocator with a size and (for Aligned) a power-of-two alignment.
        unsafe {
            match self {
                Shape::Plain => real::malloc(size),
                Shape::Zeroed => real::calloc(1, size),
                Shape::Aligned(a) => real::memalign(a, size),
            }
        }
    }
}

/// Whether the allocation of `size` bytes about to be made is drawn as a sample (general
/// route). Never in a state where tags cannot be made.
#[inline(always)]
pub(crate) fn due(size: usize) -> bool {
    if state::state() != ENABLED || !real::header_layout_verified() {
        return false;
    }
    tls::with(|t| {
        if t.is_busy() {
            return false;
        }
        // A thread opens its common route by claiming its counter block, even when the
        // totals are sampled and the block is never counted into.
        let _ = t.counters();
        let (left, due) = sampler::take(t.countdown.get(), size);
        t.countdown.set(left);
        due
    })
}

/// The general route of an allocation by `make` of `size` bytes in `shape` (the common route
/// is closed for this thread): drawn, and made as a sample or as asked.
#[cold]
#[inline(never)]
pub(crate) fn alloc(shape: Shape, size: usize, frame: *const usize, make: impl FnOnce() -> *mut c_void) -> *mut c_void {
    if due(size) {
        return sampled(shape, size, frame);
    }
    let p = make();
    count_alloc(p);
    p
}

/// Whether calls are counted now: exact totals, and a state that counts.
#[inline(always)]
fn counting() -> bool {
    counters::exact() && state::state() < OFF
}

/// After glibc returned `p` (or null) for an allocation that is not a sample: counts it.
#[inline(always)]
pub(crate) fn count_alloc(p: *mut c_void) {
    if p.is_null() || !counting() {
        return;
    }
    // SAFETY: `p` was just returned by glibc's allocator and is live.
    count_alloc_usable(unsafe { real::usable_size(p) });
}

/// Counts a free of `u` usable bytes, when counting is on and this thread is not inside the shim.
fn count_free(u: usize) {
    if !counting() {
        return;
    }
    tls::with(|t| {
        if t.is_busy() {
            return;
        }
        let (c, shared) = t.counters();
        bump(&c.frees, 1, shared);
        bump(&c.free_bytes, u as u64, shared);
    })
}

/// Before `p` is handed back to glibc by `free`: counts it, takes a sample out of the live
/// table, and returns the block glibc must get (a tagged block starts before `p`).
pub(crate) fn free(p: *mut c_void) -> *mut c_void {
    // SAFETY: `p` is null or a live block the host is freeing (free's contract).
    if let Some(offset) = unsafe { tag::of(p) } {
        let base = (p as *mut u8).wrapping_sub(offset).cast::<c_void>();
        count_free(real::header_usable(base).wrapping_sub(offset));
        let _ = unsample(p);
        return base;
    }
    if !p.is_null() && counting() {
        // SAFETY: `p` is a live block the caller is about to free.
        count_free(unsafe { real::usable_size(p) });
    }
    p
}

/// Takes the sample at `p` out of the live table, if there is one and the table can be
/// reached from here. Called before the block goes back to glibc, so its address cannot be
/// reused (and sampled again) meanwhile.
#[cold]
#[inline(never)]
fn unsample(p: *mut c_void) -> Option<Entry> {
    if state::state() != ENABLED {
        return None;
    }
    let tables = tables::tables()?;
    tls::with(|t| {
        let _busy = t.enter()?;
        tables.live.remove(p as usize)
    })
}

/// Makes an allocation of `size` bytes that [`due`] drew as a sample: with room for its tag,
/// counted, its stack recorded. It may still turn out not to be a sample (a thread's first
/// draw, the tables out of reach, an alignment too large): then it is made and counted as
/// any other.
#[cold]
#[inline(never)]
pub(crate) fn sampled(shape: Shape, size: usize, frame: *const usize) -> *mut c_void {
    let offset = tag::offset_for(match shape {
        Shape::Aligned(a) => a,
        _ => 0,
    });
    let room = offset.and_then(|o| size.checked_add(o).map(|total| (o, total)));
    let made = tls::with(|t| {
        let tables = tables::tables()?;
        let (offset, total) = room?;
        let _busy = t.enter()?;
        if !confirm(t, tables, size) {
            return None;
        }
        let base = shape.make(total);
        if base.is_null() {
            return Some(base);
        }
        // SAFETY: `base` is a fresh block of `total = size + offset` bytes.
        let p = unsafe { tag::place(base, offset) };
        let u = real::header_usable(base).wrapping_sub(offset);
        if counters::exact() {
            let (c, shared) = t.counters();
            bump(&c.allocs, 1, shared);
            bump(&c.alloc_bytes, u as u64, shared);
        }
        record(t, tables, p, u, frame);
        Some(p)
    });
    if let Some(p) = made {
        return p;
    }
    // Not a sample after all: made as the host asked.
    let p = shape.make(size);
    count_alloc(p);
    p
}

/// The draw said "sample": confirms it and draws the next countdown. A thread's countdown
/// starts at 0, so its first allocation always comes here: that draw is made properly now
/// and decides again (keeps the estimator unbiased).
fn confirm(t: &ThreadState, tables: &Tables, size: usize) -> bool {
    let mut rng = t.rng.get();
    if rng == 0 {
        rng = sampler::seed(sys::gettid(), size as u64 ^ sys::monotonic_ns());
        let (left, due) = sampler::take(sampler::draw(tables.mean_bytes, &mut rng), size);
        t.rng.set(rng);
        t.countdown.set(left);
        if !due {
            return false;
        }
    }
    t.countdown.set(sampler::draw(tables.mean_bytes, &mut rng));
    t.rng.set(rng);
    true
}

/// Records a live sample of `u` usable bytes at `p` with the caller's stack. Busy guard held.
fn record(t: &ThreadState, tables: &Tables, p: *mut c_void, u: usize, frame: *const usize) {
    let id = capture_stack(t, tables, frame);
    let _ =
        tables.live.insert(Entry { addr: p as usize, size: u, stack: id, tick: state::TICK.load(Ordering::Relaxed) });
}

/// `realloc(p, size)` and `reallocarray`, with glibc's behaviour: `realloc(NULL, n)` is
/// `malloc(n)`, `realloc(p, 0)` frees `p` and returns NULL, a failure leaves `p` alive.
///
/// A tagged block is reallocated from its own start, so its tag moves with its contents and
/// glibc can still grow it in place (or `mremap` it); it stays a sample only if this realloc
/// is drawn as one. An untagged block drawn as a sample is copied into a new, tagged block:
/// the one case that costs a copy glibc might have avoided, once per block.
pub(crate) fn realloc(p: *mut c_void, size: usize, frame: *const usize) -> *mut c_void {
    if p.is_null() {
        if due(size) {
            return sampled(Shape::Plain, size, frame);
        }
        // SAFETY: realloc(NULL, n) is malloc(n).
        let r = unsafe { real::realloc(p, size) };
        count_alloc(r);
        return r;
    }
    // SAFETY: `p` is the caller's live block (realloc's contract).
    if let Some(offset) = unsafe { tag::of(p) } {
        return realloc_tagged(p, offset, size, frame);
    }
    if size != 0 && due(size) {
        let r = sampled(Shape::Plain, size, frame);
        if r.is_null() {
            return r;
        }
        // SAFETY: `p` is live and untagged; `r` is a fresh block of at least `size` bytes.
        unsafe {
            let old = real::usable_size(p);
            core::ptr::copy_nonoverlapping(p as *const u8, r as *mut u8, old.min(size));
            real::free(free(p));
        }
        return r;
    }
    // SAFETY: `p` is live and untagged.
    let old = if counting() { unsafe { real::usable_size(p) } } else { 0 };
    count_free(old);
    // SAFETY: `p` is the caller's live block, passed through unchanged.
    let r = unsafe { real::realloc(p, size) };
    if r.is_null() {
        // glibc frees `p` for realloc(p, 0); otherwise it failed and `p` lives on: counters
        // only grow, so it is counted again as an allocation.
        if size != 0 {
            count_alloc_usable(old);
        }
        return r;
    }
    count_alloc(r);
    r
}

#[cold]
#[inline(never)]
fn realloc_tagged(p: *mut c_void, offset: usize, size: usize, frame: *const usize) -> *mut c_void {
    let base = (p as *mut u8).wrapping_sub(offset).cast::<c_void>();
    if size == 0 {
        // SAFETY: glibc's realloc(p, 0) frees the block and returns NULL.
        unsafe { real::free(free(p)) };
        return core::ptr::null_mut();
    }
    let Some(total) = size.checked_add(offset) else {
        sys::set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    };
    let drawn = due(size);
    let old_usable = real::header_usable(base).wrapping_sub(offset);
    count_free(old_usable);
    // Out of the table before glibc may hand the address to another thread.
    let old_sample = unsample(p);
    // SAFETY: `base` is the live block glibc gave us for `p`.
    let r = unsafe { real::realloc(base, total) };
    if r.is_null() {
        // Failed: `p` lives on, still tagged; counted again, its sample put back.
        count_alloc_usable(old_usable);
        if let (Some(e), Some(tables)) = (old_sample, tables::tables()) {
            tls::with(|t| {
                if let Some(_busy) = t.enter() {
                    let _ = tables.live.insert(e);
                }
            });
        }
        return r;
    }
    // glibc copied the block from its start, tag included.
    let q = (r as *mut u8).wrapping_add(offset).cast::<c_void>();
    let u = real::header_usable(r).wrapping_sub(offset);
    count_alloc_usable(u);
    if drawn {
        if let Some(tables) = tables::tables() {
            tls::with(|t| {
                if let Some(_busy) = t.enter() {
                    if confirm(t, tables, size) {
                        record(t, tables, q, u, frame);
                    }
                }
            });
        }
    }
    q
}

/// Counts an allocation of `u` usable bytes (general route).
fn count_alloc_usable(u: usize) {
    if !counting() {
        return;
    }
    tls::with(|t| {
        if t.is_busy() {
            return;
        }
        let (c, shared) = t.counters();
        bump(&c.allocs, 1, shared);
        bump(&c.alloc_bytes, u as u64, shared);
    })
}

/// `malloc_usable_size(p)`: a tagged block's room after its tag; glibc's answer otherwise.
pub(crate) fn usable_size(p: *mut c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    // SAFETY: `p` is a live block (malloc_usable_size's contract).
    match unsafe { tag::of(p) } {
        Some(offset) => real::header_usable((p as *mut u8).wrapping_sub(offset).cast()).wrapping_sub(offset),
        // SAFETY: as above, untagged.
        None => unsafe { real::usable_size(p) },
    }
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
