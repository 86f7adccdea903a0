//! Cheap native stack capture: frame-pointer walking that cannot fault.
//!
//! The hook trampolines (hooks.rs) push a standard frame record
//! `[saved rbp][return address]` and hand us its address, so the first frame
//! (the code that called malloc) is always exact, whatever our own code
//! generation does. From there we follow the saved-rbp chain while it looks
//! like one: 8-byte aligned, strictly increasing, and inside this thread's
//! stack range `[sp, hi)`, which is known to be mapped:
//!
//! * glibc threads: the thread pointer (`fs:0`, the TCB) sits at the top of
//!   the thread's stack block, so `hi = fs:0` when `sp < fs:0`;
//! * the main thread: `hi = __libc_stack_end`.
//!
//! The candidate range is validated once per thread with `mincore(2)` (every
//! page mapped) and cached in TLS; when `sp` drops below the validated floor
//! only the new part is checked. Anything else (sigaltstack, coroutine
//! stacks): only the first frame is recorded. Code without frame pointers
//! yields a short or partly wrong chain; the writer truncates stacks at the
//! first address outside executable mappings.

use crate::tls::ThreadState;

pub(crate) const MAX_DEPTH: usize = 32;

/// Largest stack range we are prepared to validate and walk.
const MAX_STACK: usize = 256 << 20;

unsafe extern "C" {
    /// Exported by ld.so: the initial stack pointer of the main thread.
    static __libc_stack_end: *const core::ffi::c_void;
}

#[inline(always)]
fn current_sp() -> usize {
    let marker = 0u8;
    core::ptr::addr_of!(marker) as usize
}

#[cfg(target_arch = "x86_64")]
fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: on x86-64 glibc, fs:0 holds the TCB's self pointer; reading it
    // has no side effects.
    unsafe { core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags)) };
    tp
}

#[cfg(not(target_arch = "x86_64"))]
fn thread_pointer() -> usize {
    0
}

/// Returns the validated readable range containing `sp`, if any.
fn stack_range(ts: &ThreadState, sp: usize) -> Option<(usize, usize)> {
    let (lo, hi) = (ts.stack_lo.get(), ts.stack_hi.get());
    if hi != 0 && lo <= sp && sp < hi {
        return Some((sp, hi));
    }
    let tp = thread_pointer();
    let main_end = {
        // SAFETY: reading an exported, initialised ld.so variable.
        unsafe { __libc_stack_end as usize }
    };
    let cand_hi = if tp > sp && tp - sp <= MAX_STACK {
        tp
    } else if main_end > sp && main_end - sp <= MAX_STACK {
        main_end
    } else {
        return None;
    };
    let floor = sp & !4095;
    // Same stack as before, only deeper: validate just the new pages.
    let ok = if cand_hi == hi && lo != 0 && floor < lo {
        crate::sys::range_mapped(floor, lo)
    } else {
        crate::sys::range_mapped(floor, cand_hi)
    };
    if !ok {
        return None;
    }
    ts.stack_lo.set(floor);
    ts.stack_hi.set(cand_hi);
    Some((sp, cand_hi))
}

/// Fills `out` with return addresses, innermost first; returns how many.
///
/// `frame` is the trampoline's frame record (its `rbp`), or null.
#[inline(never)]
pub(crate) fn capture(ts: &ThreadState, frame: *const usize, out: &mut [usize; MAX_DEPTH], depth: usize) -> usize {
    let depth = depth.min(MAX_DEPTH);
    if frame.is_null() || depth == 0 {
        return 0;
    }
    let sp = current_sp();
    let mut n = 0usize;
    let mut fp = frame as usize;
    // The trampoline's own record is on our current stack, just pushed: the
    // first frame is always readable, even when no range is known.
    // SAFETY: `frame` points at the two words the trampoline pushed.
    let (first_next, first_ret) = unsafe { (*(fp as *const usize), *((fp + 8) as *const usize)) };
    if let Some(slot) = out.get_mut(0) {
        *slot = first_ret;
        n = 1;
    }
    let Some((lo, hi)) = stack_range(ts, sp) else {
        return n;
    };
    if fp < lo || fp >= hi {
        return n;
    }
    let mut next = first_next;
    while n < depth {
        if next <= fp || next & 7 != 0 || next < lo || next.saturating_add(16) > hi {
            break;
        }
        fp = next;
        // SAFETY: `fp .. fp+16` lies inside `[lo, hi)`, a range of this
        // thread's stack validated as mapped; it is only read.
        let (n2, ret) = unsafe {
            (core::ptr::read_volatile(fp as *const usize), core::ptr::read_volatile((fp + 8) as *const usize))
        };
        if ret < 4096 {
            break;
        }
        if let Some(slot) = out.get_mut(n) {
            *slot = ret;
        }
        n += 1;
        next = n2;
    }
    n
}
