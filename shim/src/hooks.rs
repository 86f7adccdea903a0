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

use crate::{fast, lifecycle, real, state, sys, track};

/// Declares an exported allocation hook `$name` whose body is `$imp(args.., frame)`.
/// `$reg` is the register that carries the extra `frame` argument.
macro_rules! traced_hook {
    ($(#[$m:meta])* fn $name:ident($($a:ident: $t:ty),*) -> $ret:ty = $imp:ident, $reg:literal) => {
        $(#[$m])*
        ///
        /// # Safety
        /// The C library function's contract.
        #[cfg(target_arch = "x86_64")]
        #[unsafe(naked)]
        #[cfg_attr(not(test), unsafe(no_mangle))]
        pub unsafe extern "C" fn $name($($a: $t),*) -> $ret {
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
        ///
        /// # Safety
        /// The C library function's contract.
        #[cfg(not(target_arch = "x86_64"))]
        #[cfg_attr(not(test), unsafe(no_mangle))]
        pub unsafe extern "C" fn $name($($a: $t),*) -> $ret {
            // SAFETY: forwards the caller's arguments; no frame record.
            unsafe { $imp($($a,)* core::ptr::null()) }
        }
    };
}

traced_hook! {
    /// `malloc(3)`.
    fn malloc(size: usize) -> *mut c_void = malloc_impl, "rsi"
}
traced_hook! {
    /// `calloc(3)`; glibc checks `n * size` for overflow (ENOMEM, NULL).
    fn calloc(n: usize, size: usize) -> *mut c_void = calloc_impl, "rdx"
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

unsafe extern "C" fn malloc_impl(size: usize, frame: *const usize) -> *mut c_void {
    // SAFETY: forwards to glibc's allocator with the caller's arguments.
    let p = unsafe { real::malloc(size) };
    fast::alloc(p, frame);
    p
}

unsafe extern "C" fn calloc_impl(n: usize, size: usize, frame: *const usize) -> *mut c_void {
    // SAFETY: forwards to glibc's allocator with the caller's arguments.
    let p = unsafe { real::calloc(n, size) };
    fast::alloc(p, frame);
    p
}

/// Shared by realloc and reallocarray: the old block is released (and its
/// sample removed) before glibc may hand its address to another thread.
fn realloc_common(p: *mut c_void, size: usize, frame: *const usize) -> *mut c_void {
    if p.is_null() {
        // SAFETY: realloc(NULL, n) is malloc(n).
        let r = unsafe { real::realloc(p, size) };
        track::alloc(r, frame);
        return r;
    }
    let undo = track::release(p);
    // SAFETY: `p` is the caller's live block, passed through unchanged.
    let r = unsafe { real::realloc(p, size) };
    if r.is_null() {
        // glibc frees `p` for realloc(p, 0); otherwise it failed and `p` lives on.
        if size != 0 {
            track::unrelease(p, undo);
        }
        return r;
    }
    track::alloc(r, frame);
    r
}

unsafe extern "C" fn realloc_impl(p: *mut c_void, size: usize, frame: *const usize) -> *mut c_void {
    realloc_common(p, size, frame)
}

unsafe extern "C" fn reallocarray_impl(p: *mut c_void, n: usize, size: usize, frame: *const usize) -> *mut c_void {
    // Implemented here (not forwarded) so that glibc's reallocarray cannot
    // call our realloc and count the block twice.
    match n.checked_mul(size) {
        Some(total) => realloc_common(p, total, frame),
        None => {
            sys::set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
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
    let p = unsafe { real::memalign(align, size) };
    if p.is_null() {
        return libc::ENOMEM;
    }
    track::alloc(p, frame);
    // SAFETY: the caller passes a valid out-pointer (posix_memalign contract).
    unsafe { *out = p };
    0
}

/// glibc's own `aligned_alloc` (resolved after start-up: newer glibc
/// rejects alignments memalign accepts); `__libc_memalign` until then.
unsafe extern "C" fn aligned_alloc_impl(align: usize, size: usize, frame: *const usize) -> *mut c_void {
    // SAFETY: forwards the caller's arguments to glibc.
    let p = unsafe { real::aligned_alloc(align, size) };
    track::alloc(p, frame);
    p
}

unsafe extern "C" fn memalign_impl(align: usize, size: usize, frame: *const usize) -> *mut c_void {
    // SAFETY: forwards to glibc's allocator with the caller's arguments.
    let p = unsafe { real::memalign(align, size) };
    track::alloc(p, frame);
    p
}

unsafe extern "C" fn valloc_impl(size: usize, frame: *const usize) -> *mut c_void {
    // SAFETY: forwards to glibc's allocator with the caller's arguments.
    let p = unsafe { real::valloc(size) };
    track::alloc(p, frame);
    p
}

unsafe extern "C" fn pvalloc_impl(size: usize, frame: *const usize) -> *mut c_void {
    // SAFETY: forwards to glibc's allocator with the caller's arguments.
    let p = unsafe { real::pvalloc(size) };
    track::alloc(p, frame);
    p
}

/// `free(3)`: the release is recorded before the block goes back to glibc,
/// so its address cannot be reused (and re-sampled) in between.
///
/// # Safety
/// The C library function's contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn free(p: *mut c_void) {
    fast::free(p);
    // SAFETY: `p` is the caller's pointer, passed through unchanged.
    unsafe { real::free(p) }
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
