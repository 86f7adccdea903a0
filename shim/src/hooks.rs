//! Every symbol the shim exports, and nothing else: the ABI surface.
//!
//! Calling context for all hooks: any thread, at any time from the first
//! allocation the loader makes to the last free of the exiting process,
//! possibly re-entrantly (a signal handler, glibc calling back into malloc),
//! during TLS teardown, or in a forked child. They must not allocate through
//! the hooks, lock (except the shim's spin locks with the guard set), panic,
//! or log. Each one forwards to glibc first (or, for frees, right after
//! recording), so the host gets the allocator's exact behaviour and errno.
//!
//! On x86-64 the allocating entry points are naked trampolines: they push a
//! standard frame record (`push rbp; mov rbp, rsp`) and pass its address as
//! an extra argument to the Rust implementation, so the first captured frame
//! (whoever called malloc) is exact regardless of how this crate is compiled.

use core::ffi::{c_char, c_int, c_void};

use crate::track::Shape;
use crate::{fast, lifecycle, real, state, sys, track};

/// Declares `$name`, a naked trampoline on x86-64 that pushes a frame record and calls
/// `$imp(args.., frame)`; `$reg` is the register that carries the extra `frame` argument. The
/// record is the caller's: `[caller's rbp][return address]`.
macro_rules! framed {
    ($(#[$m:meta])* [$($vis:tt)*] fn $name:ident($($a:ident: $t:ty),*) -> $ret:ty = $imp:ident, $reg:literal) => {
        $(#[$m])*
        #[cfg(target_arch = "x86_64")]
        #[unsafe(naked)]
        $($vis)* unsafe extern "C" fn $name($($a: $t),*) -> $ret {
            core::arch::naked_asm!(
                "push rbp",
                "mov rbp, rsp",
                concat!("mov ", $reg, ", rbp"),
                "call {imp}",
                "pop rbp",
                "ret",
                imp = sym $imp,
            )
        }

        $(#[$m])*
        #[cfg(not(target_arch = "x86_64"))]
        $($vis)* unsafe extern "C" fn $name($($a: $t),*) -> $ret {
            // SAFETY: forwards the caller's arguments; no frame record.
            unsafe { $imp($($a,)* core::ptr::null()) }
        }
    };
}

/// Declares an exported allocation hook `$name` whose body is `$imp(args.., frame)`.
macro_rules! traced_hook {
    ($(#[$m:meta])* fn $name:ident($($a:ident: $t:ty),*) -> $ret:ty = $imp:ident, $reg:literal) => {
        framed! {
            $(#[$m])*
            ///
            /// # Safety
            /// The C library function's contract.
            #[cfg_attr(not(test), unsafe(no_mangle))]
            [pub] fn $name($($a: $t),*) -> $ret = $imp, $reg
        }
    };
}

/// Declares an internal entry `$name` that builds the same frame record as [`traced_hook`] and
/// calls `$imp(args.., frame)`. `malloc` and `calloc` jump to one with the stack as they were
/// entered (their common route has no frame of its own), so the record is the host's call.
macro_rules! framed_entry {
    ($(#[$m:meta])* fn $name:ident($($a:ident: $t:ty),*) -> $ret:ty = $imp:ident, $reg:literal) => {
        framed! { $(#[$m])* [] fn $name($($a: $t),*) -> $ret = $imp, $reg }
    };
}

framed_entry! {
    /// `malloc` when its common route is closed for this thread.
    fn malloc_general(size: usize) -> *mut c_void = malloc_general_impl, "rsi"
}
framed_entry! {
    /// `malloc` drawn as a sample.
    fn malloc_sampled(size: usize) -> *mut c_void = malloc_sampled_impl, "rsi"
}
framed_entry! {
    /// `calloc` when its common route is closed for this thread.
    fn calloc_general(n: usize, size: usize) -> *mut c_void = calloc_general_impl, "rdx"
}
framed_entry! {
    /// `calloc` drawn as a sample.
    fn calloc_sampled(n: usize, size: usize) -> *mut c_void = calloc_sampled_impl, "rdx"
}

/// `malloc(3)`. The common route has no frame of its own and leaves by tail jumps only: to
/// glibc, to counting, or to a [`framed_entry`] where a stack may be captured, which then sees
/// the host's return address on top of the stack exactly as a trampoline would.
///
/// # Safety
/// The C library function's contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    let Some(t) = fast::route() else {
        // SAFETY: the caller's arguments, forwarded.
        return unsafe { malloc_general(size) };
    };
    if fast::due(t, size) {
        // SAFETY: as above.
        return unsafe { malloc_sampled(size) };
    }
    if fast::exact() {
        return malloc_counted(size);
    }
    // SAFETY: forwards to glibc's allocator with the caller's arguments.
    unsafe { real::malloc(size) }
}

/// `calloc(3)`, shaped as `malloc`; glibc checks `n * size` for overflow (ENOMEM, NULL), and an
/// overflowing product is never drawn.
///
/// # Safety
/// The C library function's contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(t) = fast::route() else {
        // SAFETY: the caller's arguments, forwarded.
        return unsafe { calloc_general(n, size) };
    };
    if fast::due(t, n.checked_mul(size).unwrap_or(0)) {
        // SAFETY: as above.
        return unsafe { calloc_sampled(n, size) };
    }
    if fast::exact() {
        return calloc_counted(n, size);
    }
    // SAFETY: forwards to glibc's allocator with the caller's arguments.
    unsafe { real::calloc(n, size) }
}
traced_hook! {
    /// `realloc(3)`, including `realloc(NULL, n)` and glibc's `realloc(p, 0)` (frees p).
    fn realloc(p: *mut c_void, size: usize) -> *mut c_void = realloc_impl, "rdx"
}
traced_hook! {
    /// `reallocarray(3)`.
    fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void = reallocarray_impl, "rcx"
}
traced_hook! {
    /// `posix_memalign(3)`.
    fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int = posix_memalign_impl, "rcx"
}
traced_hook! {
    /// `aligned_alloc(3)` (C11).
    fn aligned_alloc(align: usize, size: usize) -> *mut c_void = aligned_alloc_impl, "rdx"
}
traced_hook! {
    /// `memalign(3)`.
    fn memalign(align: usize, size: usize) -> *mut c_void = memalign_impl, "rdx"
}
traced_hook! {
    /// `valloc(3)`.
    fn valloc(size: usize) -> *mut c_void = valloc_impl, "rsi"
}
traced_hook! {
    /// `pvalloc(3)`.
    fn pvalloc(size: usize) -> *mut c_void = pvalloc_impl, "rsi"
}

extern "C" fn malloc_general_impl(size: usize, frame: *const usize) -> *mut c_void {
    // SAFETY: forwards to glibc's allocator with the caller's arguments.
    track::alloc(Shape::Plain, size, frame, move || unsafe { real::malloc(size) })
}

extern "C" fn malloc_sampled_impl(size: usize, frame: *const usize) -> *mut c_void {
    track::sampled(Shape::Plain, size, frame)
}

#[inline(never)]
extern "C" fn malloc_counted(size: usize) -> *mut c_void {
    // SAFETY: forwards to glibc's allocator with the caller's arguments.
    fast::counted(unsafe { real::malloc(size) })
}

extern "C" fn calloc_general_impl(n: usize, size: usize, frame: *const usize) -> *mut c_void {
    let total = n.checked_mul(size).unwrap_or(0);
    // SAFETY: forwards to glibc's allocator with the caller's arguments.
    track::alloc(Shape::Zeroed, total, frame, move || unsafe { real::calloc(n, size) })
}

extern "C" fn calloc_sampled_impl(n: usize, size: usize, frame: *const usize) -> *mut c_void {
    // Drawn only when n * size did not overflow.
    track::sampled(Shape::Zeroed, n.saturating_mul(size), frame)
}

#[inline(never)]
extern "C" fn calloc_counted(n: usize, size: usize) -> *mut c_void {
    // SAFETY: forwards to glibc's allocator with the caller's arguments.
    fast::counted(unsafe { real::calloc(n, size) })
}

unsafe extern "C" fn realloc_impl(p: *mut c_void, size: usize, frame: *const usize) -> *mut c_void {
    track::realloc(p, size, frame)
}

unsafe extern "C" fn reallocarray_impl(p: *mut c_void, n: usize, size: usize, frame: *const usize) -> *mut c_void {
    // Implemented here (not forwarded) so that glibc's reallocarray cannot
    // call our realloc and count the block twice.
    match n.checked_mul(size) {
        Some(total) => track::realloc(p, total, frame),
        None => {
            sys::set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

/// An aligned allocation: drawn as a sample only for a power-of-two alignment (what glibc
/// makes of any other is left to glibc), else made by `make` and counted.
fn aligned(align: usize, size: usize, frame: *const usize, make: impl FnOnce() -> *mut c_void) -> *mut c_void {
    if !align.is_power_of_two() {
        let p = make();
        track::count_alloc(p);
        return p;
    }
    track::alloc(Shape::Aligned(align), size, frame, make)
}

unsafe extern "C" fn posix_memalign_impl(
    out: *mut *mut c_void,
    align: usize,
    size: usize,
    frame: *const usize,
) -> c_int {
    // glibc's checks, in glibc's order.
    if align % core::mem::size_of::<usize>() != 0 || !(align / core::mem::size_of::<usize>()).is_power_of_two() {
        return libc::EINVAL;
    }
    // SAFETY: valid power-of-two alignment; forwards to glibc.
    let p = aligned(align, size, frame, || unsafe { real::memalign(align, size) });
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller passes a valid out-pointer (posix_memalign contract).
    unsafe { *out = p };
    0
}

/// glibc's own `aligned_alloc` (resolved after start-up: newer glibc
/// rejects alignments memalign accepts); `__libc_memalign` until then.
unsafe extern "C" fn aligned_alloc_impl(align: usize, size: usize, frame: *const usize) -> *mut c_void {
    // SAFETY: forwards the caller's arguments to glibc.
    aligned(align, size, frame, || unsafe { real::aligned_alloc(align, size) })
}

unsafe extern "C" fn memalign_impl(align: usize, size: usize, frame: *const usize) -> *mut c_void {
    // SAFETY: forwards to glibc's allocator with the caller's arguments.
    aligned(align, size, frame, || unsafe { real::memalign(align, size) })
}

unsafe extern "C" fn valloc_impl(size: usize, frame: *const usize) -> *mut c_void {
    // SAFETY: forwards to glibc's allocator with the caller's arguments.
    aligned(sys::page_size(), size, frame, || unsafe { real::valloc(size) })
}

unsafe extern "C" fn pvalloc_impl(size: usize, frame: *const usize) -> *mut c_void {
    // pvalloc rounds the size up to whole pages (one page for 0); an overflow is glibc's ENOMEM.
    let page = sys::page_size();
    match size.max(1).checked_next_multiple_of(page) {
        // SAFETY: forwards to glibc's allocator with the caller's arguments.
        Some(rounded) => aligned(page, rounded, frame, || unsafe { real::pvalloc(size) }),
        None => {
            // SAFETY: as above.
            let p = unsafe { real::pvalloc(size) };
            track::count_alloc(p);
            p
        }
    }
}

/// `free(3)`: the release is recorded before the block goes back to glibc,
/// so its address cannot be reused (and re-sampled) in between. A sampled
/// block goes back from its own start, before its tag.
///
/// # Safety
/// The C library function's contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if p.is_null() || !fast::free(p) {
        return free_general(p);
    }
    // SAFETY: the caller's pointer, counted and passed through unchanged.
    unsafe { real::free(p) }
}

/// `free` on the general route (also `free(NULL)`).
#[cold]
#[inline(never)]
extern "C" fn free_general(p: *mut c_void) {
    let block = track::free(p);
    // SAFETY: `block` is the caller's pointer, or the start of the block glibc gave us for it.
    unsafe { real::free(block) }
}

/// `malloc_usable_size(3)`: glibc's answer, or for a sampled block the room after its tag.
///
/// # Safety
/// The C library function's contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    track::usable_size(p)
}

/// `mmap(2)` / `mmap64`: six register arguments, so the frame record goes
/// on the stack as the seventh.
///
/// # Safety
/// The C library function's contract.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    core::arch::naked_asm!(
        "push rbp",
        "mov rbp, rsp",
        "sub rsp, 8",
        "push rbp",
        "call {imp}",
        "leave",
        "ret",
        imp = sym mmap_impl,
    )
}

#[cfg(not(target_arch = "x86_64"))]
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    // SAFETY: forwards the caller's arguments.
    unsafe { mmap_impl(addr, len, prot, flags, fd, off, core::ptr::null()) }
}

/// `mmap64` is the same function on 64-bit glibc (same trampoline, so the
/// first frame is the caller's, not ours).
///
/// # Safety
/// The C library function's contract.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    core::arch::naked_asm!(
        "push rbp",
        "mov rbp, rsp",
        "sub rsp, 8",
        "push rbp",
        "call {imp}",
        "leave",
        "ret",
        imp = sym mmap_impl,
    )
}

/// `mmap64` is the same function on 64-bit glibc.
///
/// # Safety
/// The C library function's contract.
#[cfg(not(target_arch = "x86_64"))]
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    // SAFETY: forwards the caller's arguments.
    unsafe { mmap_impl(addr, len, prot, flags, fd, off, core::ptr::null()) }
}

unsafe extern "C" fn mmap_impl(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
    frame: *const usize,
) -> *mut c_void {
    track::mmap(addr, len, prot, flags, fd, off, frame)
}

/// `munmap(2)`.
///
/// # Safety
/// The C library function's contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    track::munmap(addr, len)
}

/// `mremap(2)` (variadic in C; the fifth argument is read only with
/// MREMAP_FIXED, as the kernel does).
///
/// # Safety
/// The C library function's contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    track::mremap(old, old_len, new_len, flags, new_addr)
}

/// `_exit(2)`: flushes a final report (bounded wait) and exits. Normal
/// `exit(3)` reaches the ELF destructor instead (glibc calls its internal
/// `_exit`, not this one).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn _exit(status: c_int) -> ! {
    lifecycle::shutdown("_exit");
    loop {
        // SAFETY: exit_group never returns.
        unsafe { libc::syscall(libc::SYS_exit_group, status as libc::c_long) };
    }
}

/// `_Exit(3)`: same as `_exit`.
#[allow(non_snake_case)]
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn _Exit(status: c_int) -> ! {
    lifecycle::shutdown("_exit");
    loop {
        // SAFETY: exit_group never returns.
        unsafe { libc::syscall(libc::SYS_exit_group, status as libc::c_long) };
    }
}

/// Detection API (docs/SHIM.md): 1 when the shim is loaded, first in the
/// lookup order and tracking; 0 when loaded but off (see
/// `leakscope_shim_status`). Resolve it with `dlsym(RTLD_DEFAULT, ...)`; a
/// null result means the shim is not loaded at all.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn leakscope_shim_active() -> c_int {
    c_int::from(state::state() == state::ENABLED)
}

/// Writes a NUL-terminated sentence saying why native tracking is on or off
/// into `buf` (truncated to `len`), returns the sentence's full length.
/// Not async-signal-safe (takes a mutex); call it from ordinary code.
///
/// # Safety
/// `buf` must be null or valid for `len` bytes.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn leakscope_shim_status(buf: *mut c_char, len: usize) -> usize {
    let r = match state::state() {
        state::BOOT | state::INIT => "initialising".to_string(),
        state::CHILD => "off in this forked child".to_string(),
        state::STOPPED => "stopped (process exiting)".to_string(),
        _ => state::reason(),
    };
    if !buf.is_null() && len > 0 {
        let n = r.len().min(len - 1);
        // SAFETY: `buf` is valid for `len` bytes (contract); we write n+1 <= len.
        unsafe {
            core::ptr::copy_nonoverlapping(r.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
    }
    r.len()
}

/// The shim's version, a static NUL-terminated string.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn leakscope_shim_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// ELF constructor: glibc passes (argc, argv, envp) to `.init_array`
/// functions. Runs after libc is initialised, before the program's own
/// constructors and `main`.
extern "C" fn constructor(_argc: c_int, _argv: *const *const c_char, envp: *const *const c_char) {
    // SAFETY: `envp` is the loader-provided environment array.
    unsafe { lifecycle::init(envp) };
}

/// ELF destructor: runs from `exit(3)` after the program's atexit handlers
/// and destructors (the preloaded library is finalised late).
extern "C" fn destructor() {
    lifecycle::shutdown("exit");
}

#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = constructor;

#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".fini_array")]
static DESTRUCTOR: extern "C" fn() = destructor;
