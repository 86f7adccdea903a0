//! A target process's files, reached from here through `/proc/PID/root` and resolved *inside*
//! that root, the way the target itself resolves them: `..` stops at its root, and symlinks,
//! absolute or relative, are followed within it (`openat2` with `RESOLVE_IN_ROOT`). A path taken
//! from the target — its `TMPDIR` — can therefore never lead to a file outside the target's root
//! (`TMPDIR=/../../..` is the container's `/`, not the host's), and what leakscope creates there
//! is created relative to a directory descriptor it holds, never through a path that could be
//! swapped for a symlink in between. Kernels without openat2 (before 5.6) get the same
//! resolution done one component at a time ([`walk_in_root`]).
//!
//! A [`Dir`] is such a descriptor. Its [`Dir::path`] (`/proc/self/fd/N`) lets ordinary file APIs
//! (read a directory, bind a socket) work on exactly that directory while the `Dir` lives.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn cstring(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

/// A single name inside a directory: no `/`, not `.` or `..`, not empty.
fn plain_name(name: &str) -> io::Result<CString> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("not a plain file name: {name:?}")));
    }
    cstring(name.as_bytes())
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

/// Most symlinks followed in one resolution (as the kernel's limit).
const MAX_SYMLINKS: usize = 40;

/// `RESOLVE_IN_ROOT` by hand, for kernels without openat2: each component is opened relative to
/// the directory before it without following it (`O_PATH|O_NOFOLLOW`); a symlink's target is
/// read and resolved again from `root` (absolute) or from where it sits (relative); `..` goes
/// back along the directories held, never above `root`. Returns an `O_PATH` descriptor.
fn walk_in_root(root: &OwnedFd, path: &str, want_dir: bool) -> io::Result<OwnedFd> {
    let mut held: Vec<OwnedFd> = vec![root.try_clone()?];
    let mut pending: std::collections::VecDeque<String> = path.split('/').map(str::to_string).collect();
    let mut followed = 0;
    while let Some(part) = pending.pop_front() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                if held.len() > 1 {
                    held.pop();
                }
                continue;
            }
            _ => {}
        }
        let c = cstring(part.as_bytes())?;
        let here = held.last().expect("the root is always held").as_raw_fd();
        // SAFETY: openat with a descriptor we hold and a NUL-terminated name.
        let fd = check(unsafe { libc::openat(here, c.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) })?;
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let file = File::from(fd);
        if file.metadata()?.file_type().is_symlink() {
            followed += 1;
            if followed > MAX_SYMLINKS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let mut target = vec![0u8; libc::PATH_MAX as usize];
            let empty = cstring(b"")?;
            // SAFETY: readlinkat on the symlink's own O_PATH descriptor (empty name) into a
            // buffer of the length given.
            let n =
                unsafe { libc::readlinkat(file.as_raw_fd(), empty.as_ptr(), target.as_mut_ptr().cast(), target.len()) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let target = String::from_utf8_lossy(&target[..n as usize]).into_owned();
            if target.starts_with('/') {
                held.truncate(1);
            }
            for (i, p) in target.split('/').enumerate() {
                pending.insert(i, p.to_string());
            }
            continue;
        }
        held.push(OwnedFd::from(file));
    }
    let last = held.pop().expect("the root is always held");
    if want_dir && !File::from(last.try_clone()?).metadata()?.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    Ok(last)
}

/// How `path`, resolved inside `root`, is shown in messages: `..` never climbs above `root`
/// (symlinks are shown as they are named, not followed).
fn shown_inside(root: &Path, path: &str) -> PathBuf {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    parts.iter().fold(root.to_path_buf(), |p, name| p.join(name))
}

/// A directory held open (`O_PATH`), with the path it is shown as in messages.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    shown: PathBuf,
}

impl Dir {
    /// A directory of this process's own filesystem view (no resolution inside anything).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let c = cstring(path.as_os_str().as_bytes())?;
        // SAFETY: a NUL-terminated path; the descriptor returned is ours to own.
        let fd = check(unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
        // SAFETY: `fd` was just opened and is owned by nobody else.
        Ok(Dir { fd: unsafe { OwnedFd::from_raw_fd(fd) }, shown: path.to_path_buf() })
    }

    /// The root directory of process `pid` (its container's `/`, or ours).
    pub fn root_of(pid: u32) -> io::Result<Dir> {
        Dir::open(Path::new(&format!("/proc/{pid}/root")))
    }

    /// Resolves `path` (absolute or not, as the process whose root this is would see it)
    /// inside this directory, never leaving it, and opens it with `flags` (plus `O_CLOEXEC`).
    fn resolve_fd(&self, path: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
        let c = cstring(path.as_bytes())?;
        let how = OpenHow {
            flags: (flags | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: openat2 reads `how` (of the size given) and the NUL-terminated path; the
        // descriptor returned is ours to own.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOSYS) {
                // Before Linux 5.6: the same resolution, one component at a time.
                return walk_in_root(&self.fd, path, flags & libc::O_DIRECTORY != 0);
            }
            return Err(e);
        }
        // SAFETY: `rc` is a descriptor openat2 just returned.
        Ok(unsafe { OwnedFd::from_raw_fd(rc as libc::c_int) })
    }

    /// The directory `path` names, resolved inside this one as its root.
    pub fn resolve_dir(&self, path: &str) -> io::Result<Dir> {
        let fd = self.resolve_fd(path, libc::O_PATH | libc::O_DIRECTORY)?;
        Ok(Dir { fd, shown: shown_inside(&self.shown, path) })
    }

    /// What `path` names, resolved inside this directory as its root.
    pub fn resolve_metadata(&self, path: &str) -> io::Result<std::fs::Metadata> {
        File::from(self.resolve_fd(path, libc::O_PATH)?).metadata()
    }

    /// `/proc/self/fd/N`: this very directory, for path-based APIs, while `self` lives.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// An entry of this directory, by path (see [`Dir::path`]). Only the last component is
    /// looked up by name; callers that must not follow a symlink there use `lstat`/`O_NOFOLLOW`.
    pub fn entry(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// How the directory is shown to the user: `/proc/PID/root/tmp/…`.
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        std::fs::metadata(self.path())
    }

    /// `lstat` of an entry: a symlink is reported as one, not followed.
    pub fn entry_metadata(&self, name: &str) -> io::Result<std::fs::Metadata> {
        plain_name(name)?;
        std::fs::symlink_metadata(self.entry(name))
    }

    pub fn names(&self) -> io::Result<Vec<String>> {
        Ok(std::fs::read_dir(self.path())?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
    }

    /// Creates a subdirectory with exactly `mode` (whatever the umask) and opens it, refusing
    /// to follow a symlink put there meanwhile.
    pub fn create_dir(&self, name: &str, mode: u32) -> io::Result<Dir> {
        let c = plain_name(name)?;
        // SAFETY: mkdirat with our directory descriptor and a NUL-terminated name.
        check(unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o700) })?;
        let dir = self.open_dir(name)?;
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        Ok(dir)
    }

    /// Opens a subdirectory, never through a symlink.
    pub fn open_dir(&self, name: &str) -> io::Result<Dir> {
        let c = plain_name(name)?;
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: openat with our directory descriptor and a NUL-terminated name.
        let fd = check(unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags) })?;
        // SAFETY: `fd` was just opened and is owned by nobody else.
        Ok(Dir { fd: unsafe { OwnedFd::from_raw_fd(fd) }, shown: self.shown.join(name) })
    }

    /// Creates a new file (never an existing one, never through a symlink).
    pub fn create_file(&self, name: &str, mode: u32) -> io::Result<File> {
        let c = plain_name(name)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: openat with our directory descriptor and a NUL-terminated name.
        let fd = check(unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags, mode as libc::c_uint) })?;
        // SAFETY: `fd` was just opened and is owned by nobody else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Opens a regular file for reading: not through a symlink, and not blocking on a FIFO.
    pub fn open_file(&self, name: &str) -> io::Result<File> {
        let c = plain_name(name)?;
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
        // SAFETY: openat with our directory descriptor and a NUL-terminated name.
        let fd = check(unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags) })?;
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name} is not a regular file")));
        }
        Ok(file)
    }

    /// Gives this directory to `uid`/`gid`.
    pub fn chown(&self, uid: u32, gid: u32) -> io::Result<()> {
        let empty = cstring(b"")?;
        // SAFETY: fchownat on our own descriptor (AT_EMPTY_PATH: the directory itself).
        check(unsafe { libc::fchownat(self.fd.as_raw_fd(), empty.as_ptr(), uid, gid, libc::AT_EMPTY_PATH) })?;
        Ok(())
    }

    /// Gives an entry to `uid`/`gid`; a symlink there is changed itself, never what it points to.
    pub fn chown_entry(&self, name: &str, uid: u32, gid: u32) -> io::Result<()> {
        let c = plain_name(name)?;
        // SAFETY: fchownat with our directory descriptor and a NUL-terminated name.
        check(unsafe { libc::fchownat(self.fd.as_raw_fd(), c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })?;
        Ok(())
    }

    /// Removes an entry that is not a directory (a symlink is removed, not followed).
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        let c = plain_name(name)?;
        // SAFETY: unlinkat with our directory descriptor and a NUL-terminated name.
        check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) })?;
        Ok(())
    }

    /// Removes a subdirectory and everything in it (a symlink in its place is only unlinked).
    pub fn remove_tree(&self, name: &str) -> io::Result<()> {
        plain_name(name)?;
        std::fs::remove_dir_all(self.entry(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// A stand-in for a container's root: `..` and absolute symlinks stay inside it.
    #[test]
    fn paths_resolve_inside_the_root_and_never_leave_it() {
        let host = tempfile::tempdir().unwrap();
        let root = host.path().join("a/b/container");
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::create_dir_all(root.join("var/tmp")).unwrap();
        std::os::unix::fs::symlink("/var/tmp", root.join("tmp/link")).unwrap();
        std::os::unix::fs::symlink(host.path(), root.join("tmp/out")).unwrap();
        let inside = Dir::open(&root).unwrap();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();

        let top = inside.resolve_dir("/../../..").unwrap();
        assert_eq!(top.metadata().unwrap().ino(), ino(&root), "`..` went above the root");
        assert_eq!(top.shown(), root.as_path());
        assert_eq!(inside.resolve_dir("/tmp/../var/./tmp").unwrap().shown(), root.join("var/tmp"));
        let linked = inside.resolve_dir("/tmp/link").unwrap();
        assert_eq!(linked.metadata().unwrap().ino(), ino(&root.join("var/tmp")), "an absolute symlink left the root");
        // A symlink to a host path names that path inside the root, where it does not exist.
        assert!(inside.resolve_dir("/tmp/out").is_err());

        let made = linked.create_dir("private", 0o700).unwrap();
        assert!(root.join("var/tmp/private").is_dir());
        assert_eq!(made.metadata().unwrap().permissions().mode() & 0o7777, 0o700);
        made.create_file("f", 0o600).unwrap();
        assert!(made.create_file("f", 0o600).is_err(), "an existing file is never reused");
        std::os::unix::fs::symlink(host.path().join("victim"), root.join("var/tmp/private/evil")).unwrap();
        std::fs::write(host.path().join("victim"), b"secret").unwrap();
        assert!(made.open_file("evil").is_err(), "read through a symlink");
        assert!(made.create_file("evil", 0o600).is_err(), "wrote through a symlink");
        linked.remove_tree("private").unwrap();
        assert!(!root.join("var/tmp/private").exists());
        assert_eq!(std::fs::read(host.path().join("victim")).unwrap(), b"secret");
        assert!(linked.create_dir("../x", 0o700).is_err());
    }

    /// The by-hand resolution (kernels without openat2) agrees with openat2's.
    #[test]
    fn the_walk_for_old_kernels_stays_inside_the_root_too() {
        let host = tempfile::tempdir().unwrap();
        let root = host.path().join("a/b/container");
        std::fs::create_dir_all(root.join("tmp/deep")).unwrap();
        std::fs::create_dir_all(root.join("var/tmp")).unwrap();
        std::os::unix::fs::symlink("/var/tmp", root.join("tmp/link")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root.join("tmp/deep/up")).unwrap();
        std::os::unix::fs::symlink(host.path(), root.join("tmp/out")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("tmp/loop")).unwrap();
        let inside = Dir::open(&root).unwrap();
        let ino = |fd: OwnedFd| File::from(fd).metadata().unwrap().ino();
        let ino_of = |p: &Path| std::fs::metadata(p).unwrap().ino();
        for (path, expected) in [
            ("/../../..", root.clone()),
            ("/tmp/link", root.join("var/tmp")),
            ("tmp/link/../../tmp", root.join("tmp")),
            ("/tmp/deep/up", root.clone()),
        ] {
            let walked = walk_in_root(&inside.fd, path, true).unwrap();
            assert_eq!(ino(walked), ino_of(&expected), "{path}");
            let kernel = inside.resolve_fd(path, libc::O_PATH | libc::O_DIRECTORY).unwrap();
            assert_eq!(ino(kernel), ino_of(&expected), "{path} (openat2)");
        }
        assert!(walk_in_root(&inside.fd, "/tmp/out", true).is_err(), "a host path named by a symlink");
        assert_eq!(walk_in_root(&inside.fd, "/tmp/loop", true).unwrap_err().raw_os_error(), Some(libc::ELOOP));
    }
}
