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
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; clock_gettime is a vDSO call.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1000).wrapping_add(ts.tv_nsec as u64 / 1_000_000)
}

pub(crate) fn unix_ms() -> u64 {
    clock_ms(libc::CLOCK_REALTIME)
}

pub(crate) fn monotonic_ms() -> u64 {
    clock_ms(libc::CLOCK_MONOTONIC)
}

pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}

pub(crate) fn sleep_ms(ms: u64) {
    let mut ts =
        libc::timespec { tv_sec: (ms / 1000) as libc::time_t, tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long };
    loop {
        let mut rem = libc::timespec { tv_sec: 0, tv_nsec: 0 };
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
            // lstat: the path itself, never what a symlink put there since points to.
            // SAFETY: `c` is NUL-terminated and `at_path` a valid out-pointer.
            if unsafe { libc::lstat(c.as_ptr(), &mut at_path) } != 0 {
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

/// Opens a file the shim writes in a place other users may reach (`LEAKSCOPE_OUTPUT`,
/// `LEAKSCOPE_LOG`) for appending: never through a symlink (`O_NOFOLLOW`), never blocking on a
/// FIFO (`O_NONBLOCK`), created with `O_EXCL` and mode 0600, and used only if it is a regular
/// file with one link owned by our effective uid (or root). `what` names the setting in
/// messages. The descriptor is adopted high and close-on-exec ([`OwnedFd::adopt`]).
pub(crate) fn open_private_append(what: &str, path: &str) -> Result<OwnedFd, String> {
    let base = libc::O_WRONLY | libc::O_APPEND | libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let mut fd = open(path, base | libc::O_CREAT | libc::O_EXCL, 0o600);
    if fd < 0 && errno() == libc::EEXIST {
        // Look before opening, so a FIFO or device is never opened at all; the check of the
        // open descriptor below is the one that counts.
        let found = lstat(path).ok_or_else(|| format!("cannot open {what}={path}: {}", os_error()))?;
        acceptable(&found).map_err(|why| refusal(what, path, &why))?;
        fd = open(path, base, 0);
    }
    if fd < 0 {
        let e = errno();
        return Err(if e == libc::ELOOP {
            refusal(what, path, "it is a symbolic link")
        } else {
            format!("cannot open {what}={path}: {}", std::io::Error::from_raw_os_error(e))
        });
    }
    let checked = fstat(fd).ok_or_else(os_error).and_then(|st| acceptable(&st));
    if let Err(why) = checked {
        // SAFETY: `fd` was opened just above and is not shared yet.
        unsafe { libc::close(fd) };
        return Err(refusal(what, path, &why));
    }
    OwnedFd::adopt(fd, Expect::File(path))
        .ok_or_else(|| format!("{what}={path}: the descriptor was taken over by the host while opening"))
}

/// Opens a file the shim only reads (the perf map, ELF objects) without blocking: a regular
/// file, else nothing. With `nofollow` the path may not be a symlink and the file must be ours
/// or root's (for files in shared directories, like `/tmp/perf-PID.map`).
pub(crate) fn open_regular_readonly(path: &str, nofollow: bool) -> Option<i32> {
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | if nofollow { libc::O_NOFOLLOW } else { 0 };
    let fd = open(path, flags, 0);
    if fd < 0 {
        return None;
    }
    let ok = fstat(fd)
        .is_some_and(|st| if nofollow { acceptable(&st).is_ok() } else { st.st_mode & libc::S_IFMT == libc::S_IFREG });
    if !ok {
        // SAFETY: `fd` was opened just above.
        unsafe { libc::close(fd) };
        return None;
    }
    Some(fd)
}

/// Regular, a single link, ours or root's: else why not.
fn acceptable(st: &libc::stat) -> Result<(), String> {
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => None,
        libc::S_IFLNK => Some("a symbolic link"),
        libc::S_IFIFO => Some("a FIFO"),
        libc::S_IFCHR => Some("a character device"),
        libc::S_IFBLK => Some("a block device"),
        libc::S_IFSOCK => Some("a socket"),
        libc::S_IFDIR => Some("a directory"),
        _ => Some("not a regular file"),
    };
    if let Some(kind) = kind {
        return Err(format!("it is {kind}"));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if st.st_uid != me && st.st_uid != 0 {
        return Err(format!("it belongs to uid {}, not to this process's uid {me}", st.st_uid));
    }
    if st.st_nlink > 1 {
        return Err(format!("it has {} hard links", st.st_nlink));
    }
    Ok(())
}

fn refusal(what: &str, path: &str, why: &str) -> String {
    format!("refusing {what}={path}: {why}; leakscope writes only to a regular file of its own")
}

fn os_error() -> String {
    std::io::Error::from_raw_os_error(errno()).to_string()
}

fn fstat(fd: i32) -> Option<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of the plain C struct.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st)
}

fn lstat(path: &str) -> Option<libc::stat> {
    let c = std::ffi::CString::new(path).ok()?;
    // SAFETY: an all-zero `stat` is a valid value of the plain C struct.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` a valid out-pointer.
    (unsafe { libc::lstat(c.as_ptr(), &mut st) } == 0).then_some(st)
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
        let r = unsafe { libc::pread(fd, rest.as_mut_ptr().cast(), rest.len(), (off + done as u64) as libc::off_t) };
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

/// Path of the object that contains `addr` (dladdr).
pub(crate) fn object_of(addr: *const core::ffi::c_void) -> Option<String> {
    // SAFETY: an all-zero Dl_info is a valid value of the plain C struct.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: `info` is a valid out-pointer; dladdr only reads loader state.
    if unsafe { libc::dladdr(addr, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    Some(unsafe { core::ffi::CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned())
}

/// This library's own path (looked up once: `dladdr` takes the loader lock).
pub(crate) fn own_path() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        object_of(own_path as *const core::ffi::c_void).unwrap_or_else(|| "libleakscope_shim.so".to_string())
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &str) {
        let c = std::ffi::CString::new(path).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
    }

    #[test]
    fn private_files_are_created_0600_and_reopened_only_if_regular_and_ours() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
        let victim = at("victim");
        std::fs::write(&victim, "precious\n").unwrap();

        // SAFETY: umask only changes this process's file creation mask; restored below.
        let old = unsafe { libc::umask(0) };
        let fresh = open_private_append("LEAKSCOPE_OUTPUT", &at("out"));
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let fresh = fresh.unwrap();
        assert!(write_all(fresh.get().unwrap(), b"one\n"));
        fresh.close();
        let mode = std::fs::metadata(at("out")).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
        assert_eq!(mode.unwrap() & 0o777, 0o600);
        let again = open_private_append("LEAKSCOPE_OUTPUT", &at("out")).unwrap();
        assert!(write_all(again.get().unwrap(), b"two\n"));
        again.close();
        assert_eq!(std::fs::read_to_string(at("out")).unwrap(), "one\ntwo\n");

        std::os::unix::fs::symlink(&victim, at("link")).unwrap();
        let e = open_private_append("LEAKSCOPE_LOG", &at("link")).unwrap_err();
        assert!(e.contains("refusing LEAKSCOPE_LOG=") && e.contains("symbolic link"), "{e}");
        std::os::unix::fs::symlink(at("nowhere"), at("dangling")).unwrap();
        assert!(open_private_append("LEAKSCOPE_LOG", &at("dangling")).unwrap_err().contains("symbolic link"));
        assert!(!dir.path().join("nowhere").exists());
        mkfifo(&at("fifo"));
        assert!(open_private_append("LEAKSCOPE_OUTPUT", &at("fifo")).unwrap_err().contains("FIFO"));
        assert!(open_private_append("LEAKSCOPE_OUTPUT", "/dev/null").unwrap_err().contains("character device"));
        std::fs::hard_link(&victim, at("hard")).unwrap();
        assert!(open_private_append("LEAKSCOPE_OUTPUT", &at("hard")).unwrap_err().contains("hard links"));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");

        // Someone else's file (needs root to make, as CI runs).
        std::fs::write(at("theirs"), "").unwrap();
        std::os::unix::fs::chown(at("theirs"), Some(65534), Some(65534))
            .expect("chown to nobody needs root (CI runs as root)");
        assert!(open_private_append("LEAKSCOPE_OUTPUT", &at("theirs")).unwrap_err().contains("belongs to uid 65534"));
    }

    #[test]
    fn read_only_opens_take_regular_files_only_and_never_block() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
        std::fs::write(at("map"), "1 2 x\n").unwrap();
        let fd = open_regular_readonly(&at("map"), true).unwrap();
        // SAFETY: opened above.
        unsafe { libc::close(fd) };
        mkfifo(&at("fifo"));
        assert!(open_regular_readonly(&at("fifo"), true).is_none());
        assert!(open_regular_readonly(&at("fifo"), false).is_none());
        std::os::unix::fs::symlink(at("map"), at("link")).unwrap();
        assert!(open_regular_readonly(&at("link"), true).is_none());
        let fd = open_regular_readonly(&at("link"), false).expect("a symlink is fine where following is allowed");
        // SAFETY: opened above.
        unsafe { libc::close(fd) };
    }
}
