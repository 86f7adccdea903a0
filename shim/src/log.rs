//! The shim's log: one line per message, formatted into a stack buffer and
//! written with a single `write(2)` to the file named by `LEAKSCOPE_LOG`
//! (opened `O_APPEND`, moved to a high close-on-exec descriptor). Never the
//! host's stdout or stderr: without a usable log file a message goes only to
//! the collector (as a `status`), when the output works.
//!
//! Safe to call from the constructor, the writer thread, the exit path and a
//! forked child (no allocation, no lock). Never called from a hook fast path.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicI32, AtomicU8, AtomicU64, Ordering};

use crate::sys;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[repr(u8)]
pub(crate) enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

static LOG_FD: AtomicI32 = AtomicI32::new(-1);
/// Identity (device, inode) of the log file, checked before each write: if
/// the host closed our descriptor and reused the number, we stop logging
/// rather than write into its file.
static LOG_DEV: AtomicU64 = AtomicU64::new(0);
static LOG_INO: AtomicU64 = AtomicU64::new(0);
static MIN_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Installs the log descriptor (already opened `O_APPEND`, close-on-exec).
pub(crate) fn set_fd(fd: i32, min: Level) {
    let Some((dev, ino)) = identity(fd) else {
        return;
    };
    MIN_LEVEL.store(min as u8, Ordering::Relaxed);
    LOG_DEV.store(dev, Ordering::Relaxed);
    LOG_INO.store(ino, Ordering::Relaxed);
    LOG_FD.store(fd, Ordering::Release);
}

fn identity(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: an all-zero `stat` is a valid value of the plain C struct.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some((st.st_dev, st.st_ino))
}

/// The log descriptor, if it still refers to our log file.
fn log_fd() -> Option<i32> {
    let fd = LOG_FD.load(Ordering::Acquire);
    if fd < 0 {
        return None;
    }
    if identity(fd) != Some((LOG_DEV.load(Ordering::Relaxed), LOG_INO.load(Ordering::Relaxed))) {
        LOG_FD.store(-1, Ordering::Release);
        return None;
    }
    Some(fd)
}

/// A fixed-size, truncating formatting buffer.
pub(crate) struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackBuf<N> {
    pub(crate) const fn new() -> Self {
        StackBuf { buf: [0; N], len: 0 }
    }
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
    pub(crate) fn push(&mut self, b: &[u8]) {
        for &c in b {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = c;
                self.len += 1;
            } else {
                return;
            }
        }
    }
}

impl<const N: usize> Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

fn format_line(level: Level, args: fmt::Arguments<'_>) -> StackBuf<1024> {
    let mut b = StackBuf::<1024>::new();
    let _ = write!(b, "leakscope-shim[{}:{}] {} ", sys::getpid(), sys::gettid(), level.name());
    let _ = b.write_fmt(args);
    if b.len >= 1023 {
        b.len = 1023;
    }
    b.push(b"\n");
    b
}

/// Writes one line to the log file, if one is configured.
pub(crate) fn log(level: Level, args: fmt::Arguments<'_>) {
    if (level as u8) < MIN_LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let Some(fd) = log_fd() else { return };
    let line = format_line(level, args);
    // One write(2) per line on an O_APPEND descriptor: lines never interleave
    // with the agent's, which may share the file.
    // SAFETY: valid buffer; `fd` is our log descriptor.
    unsafe { libc::write(fd, line.as_bytes().as_ptr().cast(), line.as_bytes().len()) };
}

macro_rules! log_at {
    ($lvl:expr, $($t:tt)*) => { $crate::log::log($lvl, format_args!($($t)*)) };
}
macro_rules! info { ($($t:tt)*) => { log_at!($crate::log::Level::Info, $($t)*) }; }
macro_rules! warn { ($($t:tt)*) => { log_at!($crate::log::Level::Warn, $($t)*) }; }
macro_rules! error { ($($t:tt)*) => { log_at!($crate::log::Level::Error, $($t)*) }; }
#[allow(unused_macros)]
macro_rules! debug { ($($t:tt)*) => { log_at!($crate::log::Level::Debug, $($t)*) }; }
