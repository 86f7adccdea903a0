//! Small wrappers over system calls used outside the hooks (writer thread,
//! constructor, exit path). Nothing here is called from a malloc hook's fast
//! path; the few calls made from hook slow paths are raw syscalls that take no
//! lock and never allocate (`gettid`, `getpid`, `mincore`, `sched_yield`).

use core::ffi::c_void;

pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

pub(crate) fn getpid() -> i32 {
    // SAFETY: getpid takes no arguments and cannot fail (raw: glibc no longer caches it).
    unsafe { libc::syscall(libc::SYS_getpid) as i32 }
}

pub(crate) fn sched_yield() {
    // SAFETY: no arguments, no memory access.
    unsafe { libc::syscall(libc::SYS_sched_yield) };
}

/// Whether thread `tid` of process `pid` still exists (signal 0 only checks).
pub(crate) fn thread_alive(pid: i32, tid: i32) -> bool {
    // SAFETY: signal 0 performs the permission/existence check only.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, 0) };
    r == 0 || errno() != libc::ESRCH
}

pub(crate) fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

pub(crate) fn set_errno(v: i32) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = v }
}

fn clock_ms(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; clock_gettime is a vDSO call.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1000)
        .wrapping_add(ts.tv_nsec as u64 / 1_000_000)
}

pub(crate) fn unix_ms() -> u64 {
    clock_ms(libc::CLOCK_REALTIME)
}

pub(crate) fn monotonic_ms() -> u64 {
    clock_ms(libc::CLOCK_MONOTONIC)
}

pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

pub(crate) fn sleep_ms(ms: u64) {
    let mut ts = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    loop {
        let mut rem = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid in/out pointers.
        let r = unsafe { libc::nanosleep(&ts, &mut rem) };
        if r == 0 || errno() != libc::EINTR {
            return;
        }
        ts = rem;
    }
}

pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as usize } else { 4096 }
}

/// True when every page of `[lo, hi)` is mapped (any protection). Used once
/// per thread to validate the stack range the frame walker may read.
pub(crate) fn range_mapped(lo: usize, hi: usize) -> bool {
    let page = 4096usize;
    let mut start = lo & !(page - 1);
    let mut vec = [0u8; 512];
    while start < hi {
        let chunk = core::cmp::min(hi - start, vec.len() * page);
        // SAFETY: `vec` holds one byte per page of `chunk` (<= 512 pages);
        // mincore only writes into it and reports ENOMEM for unmapped pages.
        let r = unsafe { libc::mincore(start as *mut c_void, chunk, vec.as_mut_ptr()) };
        if r != 0 {
            return false;
        }
        start += chunk;
    }
    true
}

/// A file descriptor we opened, remembered with its identity so that we can
/// notice when the host closed it and reused the number (never write to, or
/// close, a descriptor that is no longer ours).
#[derive(Debug)]
pub(crate) struct OwnedFd {
    fd: i32,
    dev: u64,
    ino: u64,
}

/// What a freshly opened descriptor must be, so a number the host reused in
/// the meantime is recognised as not ours.
#[derive(Clone, Copy)]
pub(crate) enum Expect<'a> {
    /// The file at this path.
    File(&'a str),
    /// A socket.
    Socket,
}

/// Lowest descriptor number we move our descriptors to, out of the way of
/// hosts that manipulate low numbers (daemonizing, dup2 onto 3..): far above
/// what such loops usually reach, but within the soft descriptor limit.
fn high_fd_floor() -> i32 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur.min(i32::MAX as u64) as i32
    } else {
        1024
    };
    (soft / 2).clamp(500, 10_000)
}

impl OwnedFd {
    /// Takes ownership of `fd`, just returned by open/socket, moving it to a
    /// high, close-on-exec number. Another thread of the host may close or
    /// dup2 onto `fd` at any moment, so its identity is checked against
    /// `expect` before and after the move, and the low number is closed only
    /// while it still refers to what we opened: a number that turned into the
    /// host's is left alone.
    pub(crate) fn adopt(fd: i32, expect: Expect<'_>) -> Option<OwnedFd> {
        if fd < 0 {
            return None;
        }
        let (dev, ino) = identity_if(fd, expect)?;
        // SAFETY: fcntl on a descriptor that, just now, was ours.
        let hi = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, high_fd_floor()) };
        if hi < 0 {
            return Some(OwnedFd { fd, dev, ino });
        }
        if fd_identity(fd) == Some((dev, ino)) {
            // SAFETY: the low number still refers to what we opened.
            unsafe { libc::close(fd) };
        }
        if fd_identity(hi) != Some((dev, ino)) {
            // We duplicated a number the host had taken over: the copy is ours
            // to close, the original was never ours to touch.
            // SAFETY: `hi` is the duplicate F_DUPFD just made for us.
            unsafe { libc::close(hi) };
            return None;
        }
        Some(OwnedFd { fd: hi, dev, ino })
    }

    /// The descriptor, if it still refers to what we opened.
    pub(crate) fn get(&self) -> Option<i32> {
        match fd_identity(self.fd) {
            Some((d, i)) if d == self.dev && i == self.ino => Some(self.fd),
            _ => None,
        }
    }

    /// Closes the descriptor if it is still ours; forgets it otherwise.
    pub(crate) fn close(self) {
        if let Some(fd) = self.get() {
            // SAFETY: the descriptor still refers to our file/socket.
            unsafe { libc::close(fd) };
        }
    }
}

/// The identity of `fd` if it is what `expect` says.
fn identity_if(fd: i32, expect: Expect<'_>) -> Option<(u64, u64)> {
    // SAFETY: an all-zero `stat` is a valid value of the plain C struct.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    match expect {
        Expect::Socket => (st.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some((st.st_dev, st.st_ino)),
        Expect::File(path) => {
            let c = std::ffi::CString::new(path).ok()?;
            // SAFETY: an all-zero `stat` is a valid value of the plain C struct.
            let mut at_path: libc::stat = unsafe { core::mem::zeroed() };
            // SAFETY: `c` is NUL-terminated and `at_path` a valid out-pointer.
            if unsafe { libc::stat(c.as_ptr(), &mut at_path) } != 0 {
                return None;
            }
            (at_path.st_dev == st.st_dev && at_path.st_ino == st.st_ino).then_some((st.st_dev, st.st_ino))
        }
    }
}

fn fd_identity(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: an all-zero `stat` is a valid value of the plain C struct.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some((st.st_dev, st.st_ino))
}

/// Opens `path` (a Rust string) with `flags`; returns a raw descriptor or -1.
pub(crate) fn open(path: &str, flags: i32, mode: u32) -> i32 {
    let Ok(c) = std::ffi::CString::new(path) else {
        return -1;
    };
    // SAFETY: `c` is a valid NUL-terminated path.
    unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode) }
}

/// Writes all of `buf` to a regular file or pipe descriptor, retrying on
/// EINTR and short writes. Returns false on error.
pub(crate) fn write_all(fd: i32, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid readable slice.
        let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if r < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return false;
        }
        if r == 0 {
            return false;
        }
        buf = buf.get(r as usize..).unwrap_or(&[]);
    }
    true
}

/// Reads a whole (small, e.g. /proc) file.
pub(crate) fn read_file(path: &str) -> Option<Vec<u8>> {
    let fd = open(path, libc::O_RDONLY, 0);
    if fd < 0 {
        return None;
    }
    let mut out = Vec::with_capacity(4096);
    let mut buf = [0u8; 16384];
    loop {
        // SAFETY: `buf` is a valid writable buffer.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if r < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            break;
        }
        if r == 0 {
            break;
        }
        out.extend_from_slice(buf.get(..r as usize).unwrap_or(&[]));
    }
    // SAFETY: `fd` was opened above.
    unsafe { libc::close(fd) };
    Some(out)
}

/// Reads up to `buf.len()` bytes at `off` of file `fd`; returns bytes read.
pub(crate) fn pread(fd: i32, buf: &mut [u8], off: u64) -> usize {
    let mut done = 0usize;
    while done < buf.len() {
        let rest = buf.get_mut(done..).unwrap_or(&mut []);
        // SAFETY: `rest` is a valid writable slice.
        let r = unsafe {
            libc::pread(
                fd,
                rest.as_mut_ptr().cast(),
                rest.len(),
                (off + done as u64) as libc::off_t,
            )
        };
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        if r <= 0 {
            break;
        }
        done += r as usize;
    }
    done
}

/// Resident set size of this process in bytes (from /proc/self/statm).
pub(crate) fn rss_bytes() -> Option<u64> {
    let s = read_file("/proc/self/statm")?;
    let text = core::str::from_utf8(&s).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size() as u64)
}
