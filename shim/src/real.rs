//! The real allocator and the raw system calls the hooks forward to.
//!
//! glibc's allocator is bound at link time through its `__libc_*` aliases, so
//! no `dlsym` is ever needed for the malloc family (a `dlsym` may itself call
//! `calloc`, the classic interposition recursion). glibc-only by design; see
//! docs/SHIM.md for musl.

use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

unsafe extern "C" {
    #[link_name = "__libc_malloc"]
    pub(crate) fn malloc(size: usize) -> *mut c_void;
    #[link_name = "__libc_calloc"]
    pub(crate) fn calloc(n: usize, size: usize) -> *mut c_void;
    #[link_name = "__libc_realloc"]
    pub(crate) fn realloc(p: *mut c_void, size: usize) -> *mut c_void;
    #[link_name = "__libc_free"]
    pub(crate) fn free(p: *mut c_void);
    #[link_name = "__libc_memalign"]
    pub(crate) fn memalign(align: usize, size: usize) -> *mut c_void;
    #[link_name = "__libc_valloc"]
    pub(crate) fn valloc(size: usize) -> *mut c_void;
    #[link_name = "__libc_pvalloc"]
    pub(crate) fn pvalloc(size: usize) -> *mut c_void;
}

/// glibc's `aligned_alloc` when it has one (2.16+), resolved at start-up: null until then, and
/// where it is missing (`memalign` stands in).
static ALIGNED_ALLOC: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// glibc's `malloc_usable_size` (the shim exports its own, which knows sampled blocks' tags),
/// resolved at start-up: null until then.
static GLIBC_USABLE_SIZE: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// Resolves the optional real functions (constructor, guard set).
pub(crate) fn resolve_optional() {
    // SAFETY: dlsym with a valid name; RTLD_NEXT finds glibc's definition.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, c"aligned_alloc".as_ptr()) };
    ALIGNED_ALLOC.store(p, Ordering::Release);
    // SAFETY: as above.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, c"malloc_usable_size".as_ptr()) };
    GLIBC_USABLE_SIZE.store(p, Ordering::Release);
}

/// glibc's own `malloc_usable_size`; the chunk header's reading until it is resolved.
///
/// # Safety
/// `p` must be non-null and live (allocated by glibc, not yet freed), untagged.
unsafe fn glibc_usable_size(p: *mut c_void) -> usize {
    let f = GLIBC_USABLE_SIZE.load(Ordering::Acquire);
    if f.is_null() {
        return header_usable(p);
    }
    // SAFETY: `f` is glibc's malloc_usable_size, resolved by dlsym.
    let f: unsafe extern "C" fn(*mut c_void) -> usize = unsafe { core::mem::transmute(f) };
    // SAFETY: forwarded contract.
    unsafe { f(p) }
}

/// glibc's `aligned_alloc`, or its `memalign` before it was resolved (or where it is missing).
///
/// # Safety
/// As glibc's `aligned_alloc`.
pub(crate) unsafe fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    let f = ALIGNED_ALLOC.load(Ordering::Acquire);
    if f.is_null() {
        // SAFETY: forwards to glibc's memalign (what aligned_alloc is on glibc < 2.38).
        unsafe { memalign(align, size) }
    } else {
        // SAFETY: `f` is glibc's aligned_alloc, resolved by dlsym.
        let f: unsafe extern "C" fn(usize, usize) -> *mut c_void = unsafe { core::mem::transmute(f) };
        // SAFETY: forwards the caller's arguments.
        unsafe { f(align, size) }
    }
}

/// 0: not checked yet, 1: the chunk-header shortcut agrees with glibc, 2: it
/// does not (use `malloc_usable_size`).
static HEADER_MODE: AtomicU8 = AtomicU8::new(0);

/// Usable size of a live block from glibc's chunk header: the size word just
/// before the block (low bits are flags; bit 1 = mmapped chunk). This is
/// exactly what glibc's `malloc_usable_size` returns for an in-use chunk,
/// minus its check of the *next* chunk's in-use bit, which costs a second
/// cache miss on every free (measured: 40% of the shim's overhead). The
/// layout has not changed since glibc 2.x began, but it is verified against
/// `malloc_usable_size` once per process ([`check_header_layout`]); on any
/// mismatch the shim uses glibc's function.
#[inline(always)]
pub(crate) fn header_usable(p: *mut c_void) -> usize {
    // SAFETY: `p` is a live glibc block (caller's contract): the word before
    // it is its chunk's size field, readable for the block's lifetime.
    usable_from_header(unsafe { *(p as *const usize).sub(1) })
}

/// The usable size a chunk header (the word before a block) says.
#[inline(always)]
pub(crate) fn usable_from_header(size: usize) -> usize {
    // The chunk's size less its header: 8 bytes, 16 for an mmapped chunk (IS_MMAPPED, bit 1).
    // Branch-free: (size & 2) * 4 is 8 exactly when the chunk is mmapped.
    (size & !7).wrapping_sub(8).wrapping_sub((size & 2) << 2)
}

/// Usable size of `p`, a live block returned by glibc's allocator.
///
/// # Safety
/// `p` must be non-null and live (allocated by glibc, not yet freed).
#[inline(always)]
pub(crate) unsafe fn usable_size(p: *mut c_void) -> usize {
    match HEADER_MODE.load(Ordering::Relaxed) {
        1 => header_usable(p),
        0 => {
            if !GLIBC_USABLE_SIZE.load(Ordering::Relaxed).is_null() {
                check_header_layout();
            }
            // SAFETY: forwarded contract.
            unsafe { glibc_usable_size(p) }
        }
        // SAFETY: forwarded contract.
        _ => unsafe { glibc_usable_size(p) },
    }
}

/// Whether the chunk-header shortcut is known to agree with glibc (checking it now if not yet,
/// once glibc's own function is resolved). Sampled blocks are tagged only when it is: a tag is
/// told from a chunk header by a bit glibc's layout keeps clear.
pub(crate) fn header_layout_verified() -> bool {
    if HEADER_MODE.load(Ordering::Relaxed) == 0 && !GLIBC_USABLE_SIZE.load(Ordering::Relaxed).is_null() {
        check_header_layout();
    }
    HEADER_MODE.load(Ordering::Relaxed) == 1
}

/// Compares the header shortcut with `malloc_usable_size` on blocks of many
/// sizes (small, tcache, large, mmapped, aligned). Cold: once per process.
#[cold]
#[inline(never)]
fn check_header_layout() {
    let mut ok = true;
    for &n in &[0usize, 1, 8, 24, 25, 100, 1000, 1024, 4096, 70_000, 200_000, 1 << 20, 3 << 20] {
        // SAFETY: plain glibc calls on blocks we own and free right away.
        unsafe {
            let p = malloc(n);
            if p.is_null() {
                continue;
            }
            ok &= header_usable(p) == glibc_usable_size(p) && crate::tag::header(p) & crate::tag::MARK == 0;
            free(p);
            let q = memalign(256, n);
            if !q.is_null() {
                ok &= header_usable(q) == glibc_usable_size(q) && crate::tag::header(q) & crate::tag::MARK == 0;
                free(q);
            }
        }
    }
    HEADER_MODE.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
}

/// `mmap(2)` as a raw system call: never re-enters our own `mmap` export.
///
/// # Safety
/// Same contract as `mmap(2)`.
pub(crate) unsafe fn mmap(addr: *mut c_void, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut c_void {
    // SAFETY: the caller upholds mmap(2)'s contract; `syscall` sets errno and
    // returns -1 (== MAP_FAILED) on failure, like glibc's wrapper.
    unsafe {
        libc::syscall(libc::SYS_mmap, addr, len, prot as libc::c_long, flags as libc::c_long, fd as libc::c_long, off)
            as *mut c_void
    }
}

/// `munmap(2)` as a raw system call.
///
/// # Safety
/// Same contract as `munmap(2)`.
pub(crate) unsafe fn munmap(addr: *mut c_void, len: usize) -> i32 {
    // SAFETY: see the function contract.
    unsafe { libc::syscall(libc::SYS_munmap, addr, len) as i32 }
}

/// `mremap(2)` as a raw system call (`new_addr` is only read by the kernel
/// when `MREMAP_FIXED` is set).
///
/// # Safety
/// Same contract as `mremap(2)`.
pub(crate) unsafe fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: i32,
    new_addr: *mut c_void,
) -> *mut c_void {
    // SAFETY: see the function contract.
    unsafe { libc::syscall(libc::SYS_mremap, old, old_len, new_len, flags as libc::c_long, new_addr) as *mut c_void }
}

/// Like [`map_zeroed`], but backed by memory right away, for small tables
/// that the hooks touch at random: faulting them in lazily costs two faults
/// per page (a read maps the zero page, the first write copies it, with a
/// TLB shootdown across the process's CPUs), measured at ~10% of a short
/// malloc-heavy run.
pub(crate) fn map_populated(len: usize) -> Option<*mut u8> {
    let p = map_zeroed(len)?;
    const MADV_POPULATE_WRITE: i32 = 23; // Linux 5.14+
    // SAFETY: `p..p+len` is our fresh private mapping.
    let r = unsafe { libc::madvise(p.cast(), len, MADV_POPULATE_WRITE) };
    if r != 0 {
        let mut off = 0;
        while off < len {
            // SAFETY: within our mapping; a write of the value already there.
            unsafe { core::ptr::write_volatile(p.add(off), 0) };
            off += 4096;
        }
    }
    Some(p)
}

/// Anonymous private read-write memory for the shim's own tables: zero-filled
/// and backed lazily by the kernel, so untouched capacity costs no RSS.
pub(crate) fn map_zeroed(len: usize) -> Option<*mut u8> {
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choice
    // cannot alias anything.
    let p = unsafe {
        mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED || p.is_null() { None } else { Some(p.cast()) }
}
