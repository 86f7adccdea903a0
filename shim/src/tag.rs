//! Sampled blocks carry their own mark, so that `free` tells them apart by the word it reads
//! anyway — glibc's chunk header, just before the block — without a table or filter lookup
//! on the common route and without touching another cache line.
//!
//! A sampled allocation is made [`PLAIN_OFFSET`] bytes larger than asked (the alignment, for an
//! aligned one); the host gets `base + offset`, and the word just before that holds the tag.
//! glibc's chunk sizes are multiples of 16 on 64-bit targets, so bit 3 of a real chunk header
//! is always clear (checked at start-up with the rest of the layout, `real.rs`); a tag sets it,
//! with a magic in the high half so that a corrupt header is never taken for ours. Every entry
//! point that takes a block from the host (`free`, `realloc`, `malloc_usable_size`) looks for
//! the tag whenever tags can exist, in every state the shim can be in: a block tagged while
//! tracking was on may be freed at any time after.
//!
//! A tag means "this block starts `offset` bytes before the host's pointer", not "this block is
//! a live sample": a tagged block whose `realloc` was not drawn as a sample stays tagged, with
//! no entry in the live table.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, Ordering};

/// The bit that a glibc chunk header never has set.
pub(crate) const MARK: usize = 8;
/// The high half of every tag.
const MAGIC: usize = 0x1EA5_C0BE << 32;
/// Bits 4..31 hold the offset (a multiple of 16).
const OFFSET_BITS: usize = 0xFFFF_FFF0;
/// The room in front of a plain sampled block: keeps glibc's 16-byte alignment.
pub(crate) const PLAIN_OFFSET: usize = 16;
/// The largest alignment a sampled block is made with (a larger one is not sampled).
pub(crate) const MAX_OFFSET: usize = 1 << 20;

/// Set when the first tag is written: until then no block can carry one, and the general
/// route does not read headers.
static IN_USE: AtomicBool = AtomicBool::new(false);

/// The offset a header word announces, if it is a tag.
#[inline(always)]
pub(crate) fn offset_in(header: usize) -> Option<usize> {
    if header & MARK == 0 || header & !0xFFFF_FFFF != MAGIC {
        return None;
    }
    Some(header & OFFSET_BITS)
}

/// The word just before `p`: glibc's chunk header, or a tag.
///
/// # Safety
/// `p` must be a live block returned by the malloc family (through the shim or glibc).
#[inline(always)]
pub(crate) unsafe fn header(p: *mut c_void) -> usize {
    // SAFETY: the caller's contract: the word before a live block is its header (or our tag,
    // inside a block we allocated).
    unsafe { *(p as *const usize).sub(1) }
}

/// The offset of `p`'s tag, if it carries one.
///
/// # Safety
/// As [`header`].
#[inline(always)]
pub(crate) unsafe fn of(p: *mut c_void) -> Option<usize> {
    if !IN_USE.load(Ordering::Relaxed) || p.is_null() {
        return None;
    }
    // SAFETY: forwarded contract.
    offset_in(unsafe { header(p) })
}

/// The offset a sampled block needs for `align` (0: malloc's own alignment), or None when it
/// cannot be sampled with that alignment (not a power of two, or over [`MAX_OFFSET`]).
pub(crate) fn offset_for(align: usize) -> Option<usize> {
    if align == 0 {
        return Some(PLAIN_OFFSET);
    }
    if !align.is_power_of_two() || align > MAX_OFFSET {
        return None;
    }
    Some(align.max(PLAIN_OFFSET))
}

/// Writes the tag into the block at `base` and returns the host's pointer.
///
/// # Safety
/// `base` must be a live block of at least `offset` bytes (plus the host's size), and
/// `offset` a value from [`offset_for`].
pub(crate) unsafe fn place(base: *mut c_void, offset: usize) -> *mut c_void {
    IN_USE.store(true, Ordering::Relaxed);
    let p = (base as *mut u8).wrapping_add(offset);
    // SAFETY: `p - 8` is inside the block (offset >= 16), aligned to 8.
    unsafe { *(p as *mut usize).sub(1) = MAGIC | offset | MARK };
    p.cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_round_trips_and_a_chunk_header_is_never_one() {
        for off in [16usize, 32, 64, 4096, MAX_OFFSET] {
            assert_eq!(offset_in(MAGIC | off | MARK), Some(off));
        }
        // Real chunk headers: sizes that are multiples of 16, with any of the three flag bits.
        for size in [32usize, 48, 1 << 20, (1 << 40) + 16] {
            for flags in 0..8 {
                assert_eq!(offset_in(size | flags), None, "{size:#x} | {flags}");
            }
        }
        // Bit 3 set without the magic (a corrupt header) is not ours either.
        assert_eq!(offset_in(0x1234_0000_0000_0018), None);
    }

    #[test]
    fn offsets_keep_the_alignment_asked_for() {
        assert_eq!(offset_for(0), Some(16));
        assert_eq!(offset_for(8), Some(16));
        assert_eq!(offset_for(64), Some(64));
        assert_eq!(offset_for(4096), Some(4096));
        assert_eq!(offset_for(48), None);
        assert_eq!(offset_for(MAX_OFFSET * 2), None);
    }
}
