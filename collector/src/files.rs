//! Files and directories the collector writes or reads where others may write too: `--out`
//! directories, the current directory, the cache, `/tmp`, files a user names. Nothing is ever
//! written through a symbolic link, no open blocks on a FIFO or touches a device, and what
//! leakscope creates is owner-only: files 0600 and directories 0700, whatever the umask.
//!
//! A directory is held open ([`Dir`]) once its own path was checked, and the files in it are
//! created, replaced and read relative to that descriptor, so swapping the directory or a file
//! in it for a link later changes nothing. Whole files are written to a fresh temporary name
//! and renamed into place: a full disk leaves the old file or none, never half of one.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of every file leakscope creates.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory leakscope creates.
pub const DIR_MODE: u32 = 0o700;

/// Why a path could not be used.
#[derive(Debug)]
pub struct FileError {
    pub path: PathBuf,
    pub problem: Problem,
}

#[derive(Debug)]
pub enum Problem {
    /// Something other than a regular file is there ("a symbolic link", "a FIFO", …).
    NotRegular(&'static str),
    /// Something other than a directory is there, or the directory is a symbolic link.
    NotDirectory(&'static str),
    /// A directory that must be private is not (another owner, writable by others).
    NotPrivate(String),
    /// Larger than the limit for this kind of file.
    TooLarge(u64),
    Io(io::Error),
}

impl FileError {
    fn io(path: &Path, err: io::Error) -> FileError {
        FileError { path: path.to_path_buf(), problem: Problem::Io(err) }
    }

    /// Refused for what is at the path (a link, a FIFO, someone else's directory), as opposed
    /// to an I/O error such as a full disk.
    pub fn is_refusal(&self) -> bool {
        !matches!(self.problem, Problem::Io(_))
    }

    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match &self.problem {
            Problem::Io(e) => Some(e.kind()),
            _ => None,
        }
    }

    /// What is wrong, without the path.
    pub fn problem_text(&self) -> String {
        let full = self.to_string();
        let prefix = format!("{}: ", self.path.display());
        full.strip_prefix(&prefix).map(str::to_string).unwrap_or(full)
    }

    /// For a [`crate::error::CliError`]: `what` is e.g. "cannot write".
    pub fn to_cli(&self, what: &str) -> crate::error::CliError {
        let e = crate::error::CliError::new(format!("{what} {self}"));
        match &self.problem {
            Problem::NotRegular("a symbolic link") | Problem::NotDirectory("a symbolic link") => {
                e.hint("give the real path (the one the link points to), or another one")
            }
            Problem::Io(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                e.hint("check the permissions of the path, or choose another with --out")
            }
            _ => e,
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.problem {
            Problem::NotRegular(kind) => write!(
                f,
                "{p}: it is {kind}, not a regular file (leakscope never follows links or opens FIFOs and devices there)"
            ),
            Problem::NotDirectory("a symbolic link") => {
                write!(f, "{p}: it is a symbolic link, which leakscope never writes through")
            }
            Problem::NotDirectory(kind) => write!(f, "{p}: it is {kind}, not a directory"),
            Problem::NotPrivate(why) => write!(f, "{p}: {why}"),
            Problem::TooLarge(max) => {
                write!(f, "{p}: larger than {} (refused)", crate::units::format_bytes(*max as f64))
            }
            Problem::Io(e) => write!(f, "{p}: {e}"),
        }
    }
}

/// What kind of file a `st_mode` is, for messages.
pub fn kind_of(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFSOCK => "a socket",
        _ => "an unknown kind of file",
    }
}

fn is_regular(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn c_name(name: &str) -> io::Result<CString> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not a plain file name")));
    }
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

fn fstat(fd: libc::c_int) -> io::Result<libc::stat> {
    // SAFETY: `st` is plain data that fstat fills in; fstat does not keep the pointer.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        check(libc::fstat(fd, &mut st))?;
        Ok(st)
    }
}

/// `fstatat` without following a link; `None` when nothing is there.
fn lstat_at(dirfd: libc::c_int, name: &CString) -> io::Result<Option<libc::stat>> {
    // SAFETY: `name` is NUL-terminated and `st` plain data filled in by fstatat.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        match check(libc::fstatat(dirfd, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW)) {
            Ok(_) => Ok(Some(st)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn lstat_path(path: &Path) -> io::Result<Option<libc::stat>> {
    lstat_at(libc::AT_FDCWD, &c_path(path)?)
}

/// `open`/`openat`, returning an owned descriptor.
fn open_at(dirfd: libc::c_int, name: &CString, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated; the descriptor returned is new and ours alone.
    unsafe {
        let fd = check(libc::openat(dirfd, name.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn fchmod(fd: libc::c_int, mode: u32) -> io::Result<()> {
    // SAFETY: fchmod on a descriptor we hold; no memory is involved.
    check(unsafe { libc::fchmod(fd, mode as libc::mode_t) }).map(|_| ())
}

fn unlink_at(dirfd: libc::c_int, name: &CString) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated; unlinkat never follows a link in the last component.
    check(unsafe { libc::unlinkat(dirfd, name.as_ptr(), 0) }).map(|_| ())
}

fn uid() -> libc::uid_t {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Temporary names are unique per process and call; a name someone planted is skipped.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory held open: files in it are created and read relative to it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// An existing directory. Refused when the path itself is a symbolic link (its parents may
    /// be links: the user named them) or something other than a directory.
    pub fn open(path: &Path) -> Result<Dir, FileError> {
        let c = c_path(path).map_err(|e| FileError::io(path, e))?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        match open_at(libc::AT_FDCWD, &c, flags, 0) {
            Ok(fd) => Ok(Dir { fd, path: absolute(path) }),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                let kind = match lstat_path(path) {
                    Ok(Some(st)) => kind_of(st.st_mode),
                    _ => "not a directory",
                };
                Err(FileError { path: path.to_path_buf(), problem: Problem::NotDirectory(kind) })
            }
            Err(e) => Err(FileError::io(path, e)),
        }
    }

    /// Opens `path`, or creates it (and its missing parents) with mode 0700. Returns whether
    /// it was created.
    pub fn open_or_create(path: &Path) -> Result<(Dir, bool), FileError> {
        match Dir::open(path) {
            Ok(d) => Ok((d, false)),
            Err(FileError { problem: Problem::Io(e), .. }) if e.kind() == io::ErrorKind::NotFound => {
                create_parents(path)?;
                match Dir::create_new(path) {
                    Ok(d) => Ok((d, true)),
                    // Created by someone else meanwhile: check it like any existing one.
                    Err(e) if e.io_kind() == Some(io::ErrorKind::AlreadyExists) => Dir::open(path).map(|d| (d, false)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Creates a new directory (mode 0700); fails if anything is already at `path`.
    pub fn create_new(path: &Path) -> Result<Dir, FileError> {
        let c = c_path(path).map_err(|e| FileError::io(path, e))?;
        // SAFETY: `c` is NUL-terminated; mkdir does not follow a link in the last component.
        check(unsafe { libc::mkdir(c.as_ptr(), DIR_MODE as libc::mode_t) }).map_err(|e| FileError::io(path, e))?;
        let dir = Dir::open(path)?;
        // The umask may have taken bits away; the mode is exact either way.
        fchmod(dir.fd.as_raw_fd(), DIR_MODE).map_err(|e| FileError::io(path, e))?;
        Ok(dir)
    }

    /// A directory only this user may write: created 0700 if missing, refused when it is a
    /// link, someone else's, or writable by group or others (a cache in a shared `/tmp`).
    pub fn private(path: &Path) -> Result<Dir, FileError> {
        let (dir, _) = Dir::open_or_create(path)?;
        dir.check_private()?;
        Ok(dir)
    }

    fn check_private(&self) -> Result<(), FileError> {
        let st = fstat(self.fd.as_raw_fd()).map_err(|e| FileError::io(&self.path, e))?;
        let why = if st.st_uid != uid() {
            Some(format!("owned by uid {}, not by this user ({}): refused", st.st_uid, uid()))
        } else if st.st_mode & 0o022 != 0 {
            Some(format!(
                "writable by other users (mode {:03o}): refused; `chmod go-w` it or remove it",
                st.st_mode & 0o777
            ))
        } else {
            None
        };
        match why {
            Some(why) => Err(FileError { path: self.path.clone(), problem: Problem::NotPrivate(why) }),
            None => Ok(()),
        }
    }

    /// A private subdirectory (see [`Dir::private`]), created if missing.
    pub fn private_subdir(&self, name: &str) -> Result<Dir, FileError> {
        let path = self.join(name);
        let c = c_name(name).map_err(|e| FileError::io(&path, e))?;
        // SAFETY: `c` is NUL-terminated and relative to a directory descriptor we hold.
        let created = match check(unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), DIR_MODE as libc::mode_t) }) {
            Ok(_) => true,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => false,
            Err(e) => return Err(FileError::io(&path, e)),
        };
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        let fd = open_at(self.fd.as_raw_fd(), &c, flags, 0).map_err(|e| {
            if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) {
                FileError { path: path.clone(), problem: Problem::NotDirectory("not a directory") }
            } else {
                FileError::io(&path, e)
            }
        })?;
        let dir = Dir { fd, path };
        if created {
            fchmod(dir.fd.as_raw_fd(), DIR_MODE).map_err(|e| FileError::io(&dir.path, e))?;
        }
        dir.check_private()?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// A new, empty file `name` (mode 0600) to write to. A regular file already there is
    /// replaced (a new file, so a hard link to it is left alone); anything else — a link, a
    /// FIFO, a device, a directory — is refused.
    pub fn create_file(&self, name: &str) -> Result<File, FileError> {
        let path = self.join(name);
        let c = c_name(name).map_err(|e| FileError::io(&path, e))?;
        let dirfd = self.fd.as_raw_fd();
        match lstat_at(dirfd, &c).map_err(|e| FileError::io(&path, e))? {
            Some(st) if is_regular(&st) => match unlink_at(dirfd, &c) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(FileError::io(&path, e)),
            },
            Some(st) => {
                return Err(FileError { path, problem: Problem::NotRegular(kind_of(st.st_mode)) });
            }
            None => {}
        }
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        let fd = open_at(dirfd, &c, flags, FILE_MODE).map_err(|e| {
            // Planted between the check and the open: describe what is there now.
            match lstat_at(dirfd, &c) {
                Ok(Some(st)) if !is_regular(&st) => {
                    FileError { path: path.clone(), problem: Problem::NotRegular(kind_of(st.st_mode)) }
                }
                _ => FileError::io(&path, e),
            }
        })?;
        fchmod(fd.as_raw_fd(), FILE_MODE).map_err(|e| FileError::io(&path, e))?;
        Ok(File::from(fd))
    }

    /// Writes the whole of `name` (mode 0600) or nothing: a temporary file in the same
    /// directory, synced, then renamed over `name`. On any error the temporary file is
    /// removed and `name` is as it was. A link, FIFO or device at `name` is refused.
    pub fn write_file(&self, name: &str, data: &[u8]) -> Result<PathBuf, FileError> {
        let path = self.join(name);
        let c = c_name(name).map_err(|e| FileError::io(&path, e))?;
        let dirfd = self.fd.as_raw_fd();
        if let Some(st) = lstat_at(dirfd, &c).map_err(|e| FileError::io(&path, e))? {
            if !is_regular(&st) {
                return Err(FileError { path, problem: Problem::NotRegular(kind_of(st.st_mode)) });
            }
        }
        let (tmp, mut file) = self.create_temp(name).map_err(|e| FileError::io(&path, e))?;
        let written = file.write_all(data).and_then(|_| file.sync_data()).and_then(|_| {
            // SAFETY: both names are NUL-terminated and relative to our directory; renameat
            // replaces the entry `name` itself, never what a link there points to.
            check(unsafe { libc::renameat(dirfd, tmp.as_ptr(), dirfd, c.as_ptr()) })
        });
        drop(file);
        match written {
            Ok(_) => Ok(path),
            Err(e) => {
                let _ = unlink_at(dirfd, &tmp);
                Err(FileError::io(&path, e))
            }
        }
    }

    fn create_temp(&self, name: &str) -> io::Result<(CString, File)> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
        for _ in 0..16 {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = c_name(&format!(".{name}.{}-{n}.tmp", std::process::id()))?;
            match open_at(self.fd.as_raw_fd(), &tmp, flags, FILE_MODE) {
                Ok(fd) => {
                    fchmod(fd.as_raw_fd(), FILE_MODE)?;
                    return Ok((tmp, File::from(fd)));
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Opens `name` for reading: a regular file, not through a link, never blocking.
    pub fn open_file(&self, name: &str) -> Result<File, FileError> {
        let path = self.join(name);
        let c = c_name(name).map_err(|e| FileError::io(&path, e))?;
        open_regular_at(self.fd.as_raw_fd(), &c, &path, false)
    }

    /// Reads `name` whole, refusing more than `max` bytes.
    pub fn read_file(&self, name: &str, max: u64) -> Result<Vec<u8>, FileError> {
        let file = self.open_file(name)?;
        read_limited(file, max, &self.join(name))
    }

    /// Whether `name` is a regular file (not a link to one).
    pub fn has_file(&self, name: &str) -> bool {
        c_name(name)
            .ok()
            .and_then(|c| lstat_at(self.fd.as_raw_fd(), &c).ok().flatten())
            .is_some_and(|st| is_regular(&st))
    }

    /// Removes `name` if it is a regular file.
    pub fn remove_file(&self, name: &str) {
        if self.has_file(name) {
            if let Ok(c) = c_name(name) {
                let _ = unlink_at(self.fd.as_raw_fd(), &c);
            }
        }
    }
}

/// Makes the missing parents of `path`, each 0700.
fn create_parents(path: &Path) -> Result<(), FileError> {
    let mut missing = Vec::new();
    let mut cur = path.parent();
    while let Some(p) = cur.filter(|p| !p.as_os_str().is_empty()) {
        match lstat_path(p) {
            Ok(Some(_)) => break,
            Ok(None) => missing.push(p.to_path_buf()),
            Err(e) => return Err(FileError::io(p, e)),
        }
        cur = p.parent();
    }
    for p in missing.iter().rev() {
        match Dir::create_new(p) {
            Ok(_) => {}
            Err(e) if e.io_kind() == Some(io::ErrorKind::AlreadyExists) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
    }
}

fn open_regular_at(dirfd: libc::c_int, name: &CString, path: &Path, follow_links: bool) -> Result<File, FileError> {
    // Look first, so a FIFO or device is never opened at all…
    let st = if follow_links {
        // SAFETY: `name` is NUL-terminated and `st` plain data filled in by fstatat.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            check(libc::fstatat(dirfd, name.as_ptr(), &mut st, 0))
                .map(|_| Some(st))
                .map_err(|e| FileError::io(path, e))?
        }
    } else {
        lstat_at(dirfd, name).map_err(|e| FileError::io(path, e))?
    };
    let Some(st) = st else {
        return Err(FileError::io(path, io::Error::from(io::ErrorKind::NotFound)));
    };
    if !is_regular(&st) {
        return Err(FileError { path: path.to_path_buf(), problem: Problem::NotRegular(kind_of(st.st_mode)) });
    }
    // …then open without blocking and check again what was opened (it may have been swapped).
    let mut flags = libc::O_RDONLY | libc::O_NONBLOCK;
    if !follow_links {
        flags |= libc::O_NOFOLLOW;
    }
    let fd = open_at(dirfd, name, flags, 0).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            FileError { path: path.to_path_buf(), problem: Problem::NotRegular("a symbolic link") }
        } else {
            FileError::io(path, e)
        }
    })?;
    let st = fstat(fd.as_raw_fd()).map_err(|e| FileError::io(path, e))?;
    if !is_regular(&st) {
        return Err(FileError { path: path.to_path_buf(), problem: Problem::NotRegular(kind_of(st.st_mode)) });
    }
    Ok(File::from(fd))
}

/// Opens a file a user named (following links: the user chose the path) for reading: it must
/// be a regular file, and the open never blocks (a FIFO is refused, not waited on).
pub fn open_regular(path: &Path) -> Result<File, FileError> {
    let c = c_path(path).map_err(|e| FileError::io(path, e))?;
    open_regular_at(libc::AT_FDCWD, &c, path, true)
}

/// Opens a regular file for reading, refusing a link as its last component (files leakscope
/// itself wrote, read back by path).
pub fn open_regular_nofollow(path: &Path) -> Result<File, FileError> {
    let c = c_path(path).map_err(|e| FileError::io(path, e))?;
    open_regular_at(libc::AT_FDCWD, &c, path, false)
}

/// Reads a file leakscope wrote (see [`open_regular_nofollow`]), refusing more than `max` bytes.
pub fn read_regular_nofollow(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    let file = open_regular_nofollow(path)?;
    read_limited(file, max, path)
}

/// Reads a file a user named (see [`open_regular`]), refusing more than `max` bytes.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    let file = open_regular(path)?;
    read_limited(file, max, path)
}

fn read_limited(file: File, max: u64, path: &Path) -> Result<Vec<u8>, FileError> {
    let mut buf = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut buf).map_err(|e| FileError::io(path, e))?;
    if buf.len() as u64 > max {
        return Err(FileError { path: path.to_path_buf(), problem: Problem::TooLarge(max) });
    }
    Ok(buf)
}

/// A new file at a path a user named (`snapshot -o FILE`): its directory is created 0700 if
/// missing; the file itself as [`Dir::create_file`] makes it.
pub fn create_named_file(path: &Path) -> Result<(File, PathBuf), FileError> {
    let (dir, name) = named_dir(path)?;
    let file = dir.create_file(name)?;
    Ok((file, dir.join(name)))
}

/// The whole of `data` at a path a user named (`--pprof FILE`), or nothing: its directory is
/// created 0700 if missing; the file is written as [`Dir::write_file`] writes it.
pub fn write_named_file(path: &Path, data: &[u8]) -> Result<PathBuf, FileError> {
    let (dir, name) = named_dir(path)?;
    dir.write_file(name, data)
}

/// The directory of a user-named path (opened, created if missing) and the file's name in it.
fn named_dir(path: &Path) -> Result<(Dir, &str), FileError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| FileError::io(path, io::Error::new(io::ErrorKind::InvalidInput, "not a UTF-8 file name")))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (dir, _) = Dir::open_or_create(&parent)?;
    Ok((dir, name))
}

/// Copies a regular file (read as [`open_regular`] does, at most `max` bytes) into `dir`.
pub fn copy_into(src: &Path, dir: &Dir, name: &str, max: u64) -> Result<PathBuf, FileError> {
    let data = read_regular(src, max)?;
    dir.write_file(name, &data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn mkfifo(p: &Path) {
        let c = c_path(p).unwrap();
        // SAFETY: NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn created_files_and_directories_are_owner_only_and_whole() {
        let t = tempfile::tempdir().unwrap();
        let (dir, created) = Dir::open_or_create(&t.path().join("a/b/out")).unwrap();
        assert!(created);
        assert_eq!(mode(&t.path().join("a")), 0o700);
        assert_eq!(mode(&t.path().join("a/b/out")), 0o700);
        let p = dir.write_file("report.json", b"{}\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{}\n");
        assert_eq!(mode(&p), 0o600);
        let mut f = dir.create_file("recording.ndjson").unwrap();
        f.write_all(b"x\n").unwrap();
        assert_eq!(mode(&dir.join("recording.ndjson")), 0o600);
        // Replacing a regular file makes a new one: a hard link to the old one is untouched.
        std::fs::hard_link(dir.join("recording.ndjson"), t.path().join("other")).unwrap();
        dir.create_file("recording.ndjson").unwrap();
        assert_eq!(std::fs::read(t.path().join("other")).unwrap(), b"x\n");
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn links_fifos_and_devices_are_refused_and_never_written_through() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let (dir, _) = Dir::open_or_create(&t.path().join("out")).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("report.json")).unwrap();
        mkfifo(&dir.join("recording.ndjson"));
        std::os::unix::fs::symlink("/dev/null", dir.join("junit.xml")).unwrap();

        let e = dir.write_file("report.json", b"x").unwrap_err();
        assert!(e.to_string().contains("a symbolic link"), "{e}");
        let e = dir.create_file("report.json").unwrap_err();
        assert!(e.is_refusal(), "{e}");
        let e = dir.create_file("recording.ndjson").unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        assert!(dir.open_file("recording.ndjson").is_err());
        assert!(dir.write_file("junit.xml", b"x").is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");

        // The directory itself as a link, or a FIFO, is refused.
        let link = t.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        let e = Dir::open_or_create(&link).unwrap_err();
        assert!(matches!(e.problem, Problem::NotDirectory("a symbolic link")), "{e}");
        mkfifo(&t.path().join("fifo"));
        assert!(Dir::open_or_create(&t.path().join("fifo")).unwrap_err().is_refusal());
        // Reading a FIFO a user names is refused at once, not waited on.
        let e = open_regular(&t.path().join("fifo")).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        assert!(open_regular(Path::new("/dev/zero")).is_err());
    }

    #[test]
    fn reads_are_capped() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("big");
        std::fs::write(&p, vec![b'x'; 100]).unwrap();
        assert_eq!(read_regular(&p, 100).unwrap().len(), 100);
        assert!(matches!(read_regular(&p, 99).unwrap_err().problem, Problem::TooLarge(99)));
    }

    #[test]
    fn private_directories_must_be_ours_and_closed_to_others() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("cache");
        let d = Dir::private(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().uid(), uid());
        let sub = d.private_subdir("demo").unwrap();
        assert_eq!(mode(sub.path()), 0o700);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = Dir::private(&p).unwrap_err();
        assert!(e.to_string().contains("writable by other users"), "{e}");
    }
}
