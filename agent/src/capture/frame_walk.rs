//! Capture cheap: the allocating thread's managed return addresses, read from the chain of
//! frame records, without asking the runtime.
//!
//! The walk starts at the frame record that the callback's entry trampoline pushed
//! (`com/trampoline.rs`), so its first return address is in the runtime code that called us.
//! From there, each return address is looked up in [`Verdicts`]:
//! - runtime code (allocator, EventPipe) is walked through and not recorded;
//! - managed code is recorded;
//! - a framed function's caller is found through the record RBP points at; a frameless one's
//!   return address sits a known number of words above the stack pointer it called with;
//! - native code outside the runtime ends the walk: complete when the runtime led there (the
//!   thread's base), incomplete when managed code did (a reverse P/Invoke: managed frames may
//!   lie beyond);
//! - an address the agent thread has not classified yet, or code that cannot be walked
//!   through, makes the walk incomplete.
//!
//! An incomplete walk is never used: the sample falls back to `DoStackSnapshot`, and the
//! unknown addresses go to the agent thread so the next sample through the same code takes the
//! fast path. Every read is of this thread's own stack, between the current stack pointer and
//! the stack's top (from `pthread_getattr_np`, once per thread), 8-byte aligned, with records
//! strictly rising: a broken chain ends the walk, it never faults.

use std::cell::Cell;

use super::verdicts::{Shape, Verdict, Verdicts};

/// Return addresses examined per walk, runtime frames included.
const MAX_STEPS: usize = 512;
/// Words of a Tier0 frame searched for its record under an OSR method.
const MAX_OSR_SCAN: usize = 4096;
/// Unknown addresses handed to the agent thread per sample.
pub const MAX_UNKNOWN: usize = 16;
/// Managed frames recorded at most (`LEAKSCOPE_STACK_DEPTH` is capped to this on this path).
pub const MAX_FRAMES: usize = 256;

/// What one walk found.
pub struct Walk {
    /// Managed return addresses, innermost first.
    pub returns: [usize; MAX_FRAMES],
    pub len: usize,
    /// Every return address on the way was known and the chain ended where a thread's managed
    /// code ends (or at the depth limit).
    pub complete: bool,
    pub unknown: [usize; MAX_UNKNOWN],
    pub unknown_len: usize,
}

impl Walk {
    pub fn new() -> Self {
        Walk { returns: [0; MAX_FRAMES], len: 0, complete: false, unknown: [0; MAX_UNKNOWN], unknown_len: 0 }
    }

    pub fn returns(&self) -> &[usize] {
        &self.returns[..self.len]
    }

    pub fn unknown(&self) -> &[usize] {
        &self.unknown[..self.unknown_len]
    }

    fn note_unknown(&mut self, address: usize) {
        self.complete = false;
        if self.unknown_len < MAX_UNKNOWN && !self.unknown().contains(&address) {
            self.unknown[self.unknown_len] = address;
            self.unknown_len += 1;
        }
    }
}

impl Default for Walk {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    // Const-initialised and free of destructors: safe on any thread at any time.
    static STACK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// The top (highest address) of the calling thread's stack, if `sp` lies on it.
fn stack_top(sp: usize) -> Option<usize> {
    let (lo, hi) = STACK.with(Cell::get);
    if lo <= sp && sp < hi {
        return Some(hi);
    }
    let (lo, hi) = current_thread_stack()?;
    if !(lo <= sp && sp < hi) {
        return None;
    }
    STACK.with(|s| s.set((lo, hi)));
    Some(hi)
}

fn current_thread_stack() -> Option<(usize, usize)> {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    let mut base: *mut libc::c_void = std::ptr::null_mut();
    let mut size: libc::size_t = 0;
    // SAFETY: pthread_getattr_np initialises `attr` for the calling thread when it returns 0;
    // it is read by pthread_attr_getstack and destroyed once.
    unsafe {
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return None;
        }
        let rc = libc::pthread_attr_getstack(attr.as_ptr(), &mut base, &mut size);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        if rc != 0 {
            return None;
        }
    }
    let lo = base as usize;
    Some((lo, lo.checked_add(size)?))
}

/// Walks from the frame record at `record` (the entry trampoline's), recording at most `limit`
/// managed return addresses into `out`.
#[inline(never)]
pub fn walk(verdicts: &Verdicts, record: usize, limit: usize, out: &mut Walk) {
    out.len = 0;
    out.unknown_len = 0;
    out.complete = false;
    let limit = limit.min(MAX_FRAMES);
    let marker = 0u8;
    let sp = &marker as *const u8 as usize;
    let Some(top) = stack_top(sp) else { return };
    // A word at `a` may be read: on this thread's stack, above where we are now.
    let readable = |a: usize| a >= sp && a & 7 == 0 && a.checked_add(8).is_some_and(|end| end <= top);
    let read = |a: usize| {
        // SAFETY: callers check `readable(a)`: `a` is an aligned word of this thread's stack
        // between the current stack pointer and the stack's top, which is mapped; it is only read.
        unsafe { std::ptr::read_volatile(a as *const usize) }
    };
    if !readable(record) || !readable(record + 8) {
        return;
    }
    let mut ret = read(record + 8);
    let mut rbp = read(record);
    // The stack pointer just above `ret`'s slot: what the code holding `ret` had when it called.
    let mut after = record + 16;
    // Whether the last code walked through was the runtime's (our trampoline's caller is).
    let mut from_runtime = true;
    let mut complete = true;
    let table = verdicts.table();
    for _ in 0..MAX_STEPS {
        let shape = match table.get(ret) {
            None => {
                out.note_unknown(ret);
                complete = false;
                // Guess it is framed, to collect what lies beyond for the agent thread too.
                Shape::Framed
            }
            Some(Verdict::Managed(shape)) => {
                out.returns[out.len] = ret;
                out.len += 1;
                from_runtime = false;
                if out.len >= limit {
                    out.complete = complete;
                    return;
                }
                shape
            }
            Some(Verdict::Runtime(shape)) => {
                from_runtime = true;
                shape
            }
            Some(Verdict::Foreign) => {
                // A sample always comes from managed code: a walk that found none is not trusted.
                out.complete = complete && from_runtime && out.len > 0;
                return;
            }
            Some(Verdict::Opaque) => return,
        };
        match shape {
            Shape::Framed => {
                if rbp < after || !readable(rbp) || !readable(rbp + 8) {
                    // The chain ends. That is the thread's base only if runtime code had it.
                    out.complete = complete && from_runtime && rbp == 0 && out.len > 0;
                    return;
                }
                ret = read(rbp + 8);
                after = rbp + 16;
                rbp = read(rbp);
            }
            Shape::Frameless { words } => {
                let slot = after + words as usize * 8;
                if !readable(slot) {
                    return;
                }
                ret = read(slot);
                after = slot + 8;
            }
            Shape::SavedRbp { words } => {
                let slot = after + words as usize * 8;
                if words == 0 || !readable(slot) {
                    return;
                }
                ret = read(slot);
                rbp = read(slot - 8);
                after = slot + 8;
            }
            Shape::Osr => {
                // RBP points at the OSR method's record, which holds the caller's RBP; the
                // Tier0 frame below the caller's record ends with the record that holds the
                // return address: the highest word below the caller's record equal to its address.
                if rbp < after || !readable(rbp) {
                    return;
                }
                let caller = read(rbp);
                if caller <= rbp || !readable(caller) {
                    return;
                }
                let Some(tier0) = (rbp + 16..caller).step_by(8).rev().take(MAX_OSR_SCAN).find(|&t| read(t) == caller)
                else {
                    return;
                };
                ret = read(tier0 + 8);
                after = tier0 + 16;
                rbp = caller;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a fake stack (on this thread's stack, so the walk may read it) and walks it.
    fn walk_fake(verdicts: &Verdicts, build: impl FnOnce(&mut [usize], usize) -> usize) -> Walk {
        let mut stack = [0usize; 64];
        let base = stack.as_ptr() as usize;
        let record = build(&mut stack, base);
        let mut out = Walk::new();
        walk(verdicts, record, 32, &mut out);
        out
    }

    const RT1: usize = 0x1000_0000_1000;
    const RT2: usize = 0x1000_0000_2000;
    const M1: usize = 0x2000_0000_1000;
    const M2: usize = 0x2000_0000_2000;
    const M3: usize = 0x2000_0000_3000;
    const LIBC: usize = 0x3000_0000_1000;

    fn table() -> Verdicts {
        let v = Verdicts::new(8);
        v.insert(RT1, Verdict::Runtime(Shape::Framed));
        v.insert(RT2, Verdict::Runtime(Shape::Framed));
        v.insert(M1, Verdict::Managed(Shape::Framed));
        v.insert(M2, Verdict::Managed(Shape::Frameless { words: 3 }));
        v.insert(M3, Verdict::Managed(Shape::Framed));
        v.insert(LIBC, Verdict::Foreign);
        v
    }

    /// record layout helper: writes [saved rbp, return] at word index `i`.
    fn rec(s: &mut [usize], base: usize, i: usize, next: Option<usize>, ret: usize) -> usize {
        s[i] = next.map_or(0, |j| base + j * 8);
        s[i + 1] = ret;
        base + i * 8
    }

    #[test]
    fn walks_through_runtime_records_and_frameless_code_to_the_thread_base() {
        let v = table();
        let w = walk_fake(&v, |s, b| {
            // trampoline → RT1's code → M1 (framed) → M2 (frameless, 3 words) → M3 → RT2 → libc
            rec(s, b, 40, None, LIBC); // RT2's record: its caller is libc
            rec(s, b, 30, Some(40), RT2); // M3's record
            // M2 is frameless: M1's record (at 10) sits just below M2's frame; the return
            // address into M3 is 3 words above the stack pointer M2 called with (12).
            s[15] = M3;
            rec(s, b, 10, Some(30), M2); // M1's record: saved rbp is M3's (M2 kept it)
            rec(s, b, 4, Some(10), M1); // RT1-code's record
            rec(s, b, 0, Some(4), RT1) // the trampoline's record
        });
        assert_eq!(w.returns(), &[M1, M2, M3]);
        assert!(w.complete);
    }

    #[test]
    fn unknown_addresses_make_the_walk_incomplete_and_are_reported() {
        let v = table();
        let unknown = 0x2000_0000_9000;
        let w = walk_fake(&v, |s, b| {
            rec(s, b, 10, Some(20), unknown);
            rec(s, b, 20, None, LIBC);
            rec(s, b, 4, Some(10), M1);
            rec(s, b, 0, Some(4), RT1)
        });
        assert!(!w.complete);
        assert_eq!(w.unknown(), &[unknown]);
    }

    #[test]
    fn managed_code_called_from_foreign_code_is_incomplete() {
        let v = table();
        let w = walk_fake(&v, |s, b| {
            rec(s, b, 10, None, LIBC); // M1 called from libc (reverse P/Invoke)
            rec(s, b, 4, Some(10), M1);
            rec(s, b, 0, Some(4), RT1)
        });
        assert!(!w.complete);
    }

    #[test]
    fn a_chain_that_breaks_in_managed_code_is_incomplete() {
        let v = table();
        let w = walk_fake(&v, |s, b| {
            s[10] = 12345; // garbage saved rbp
            s[11] = M3;
            rec(s, b, 4, Some(10), M1);
            rec(s, b, 0, Some(4), RT1)
        });
        assert_eq!(w.returns(), &[M1, M3]);
        assert!(!w.complete);
    }

    #[test]
    fn records_outside_the_stack_are_never_read() {
        let v = table();
        let mut out = Walk::new();
        walk(&v, 0x10, 32, &mut out);
        assert!(!out.complete && out.len == 0);
    }
}
