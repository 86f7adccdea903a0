//! Files the agent writes in places other users may reach: `LEAKSCOPE_OUTPUT`, `LEAKSCOPE_LOG`
//! and the default log `$TMPDIR/leakscope-agent.<pid>.log` in a world-writable `/tmp`.
//!
//! Whoever can write to that directory may have put something at the path first: a symlink to
//! one of our files (we would append to it), a FIFO (`open` would block the host's start-up),
//! a device, a hard link, or a file of their own (they would read what we write). So the path
//! is never followed, never opened in a way that can block, and what is opened is used only if
//! it is a regular file with one link, owned by our effective uid (or root). A new file is
//! created with `O_EXCL` and mode 0600, so it is ours from the first byte. A file the agent only
//! reads (an assembly's PDB) is read only if it is a regular file, and never in a way that blocks.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Opens `path` for appending, as described above. A refusal is an error whose message says
/// what was found at the path.
pub fn open_append(path: &Path) -> io::Result<File> {
    let base = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    let created = std::fs::OpenOptions::new().append(true).create_new(true).mode(0o600).custom_flags(base).open(path);
    let file = match created {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Look before opening, so a FIFO or device is never opened at all (opening some
            // devices has effects); the checks on the open descriptor below are what count.
            let found = std::fs::symlink_metadata(path)?;
            check(path, &found)?;
            std::fs::OpenOptions::new().append(true).custom_flags(base).open(path).map_err(|e| refused_open(path, e))?
        }
        Err(e) => return Err(refused_open(path, e)),
    };
    check(path, &file.metadata()?)?;
    Ok(file)
}

/// Reads a file the agent only reads (an assembly's PDB, next to the application): followed if
/// a symlink, but only a regular file of at most `max` bytes, and never blocking (a FIFO there
/// would otherwise hold the agent thread forever).
pub fn read_regular(path: &Path, max: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK).open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > max {
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// ELOOP from `O_NOFOLLOW` means a symlink; say so rather than "too many levels of links".
fn refused_open(path: &Path, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        return refusal(path, "is a symbolic link");
    }
    e
}

/// What the agent accepts at a path: a regular file with a single link, ours or root's.
fn check(path: &Path, found: &std::fs::Metadata) -> io::Result<()> {
    let kind = found.file_type();
    if kind.is_symlink() {
        return Err(refusal(path, "is a symbolic link"));
    }
    if !kind.is_file() {
        return Err(refusal(path, &format!("is not a regular file ({})", describe(found.mode()))));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if found.uid() != me && found.uid() != 0 {
        return Err(refusal(path, &format!("belongs to uid {}, not to this process's uid {me}", found.uid())));
    }
    if found.nlink() > 1 {
        return Err(refusal(path, &format!("has {} hard links", found.nlink())));
    }
    Ok(())
}

fn refusal(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("refusing {}: it {what}; leakscope writes only to a regular file of its own", path.display()),
    )
}

fn describe(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFIFO => "a FIFO",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFSOCK => "a socket",
        libc::S_IFDIR => "a directory",
        _ => "not a file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
    }

    #[test]
    fn a_new_file_is_created_private_and_an_own_file_is_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        // SAFETY: umask only changes this process's file creation mask; restored below.
        let old = unsafe { libc::umask(0) };
        let created = open_append(&path);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        created.unwrap().write_all(b"one\n").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        open_append(&path).unwrap().write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
    }

    #[test]
    fn symlinks_fifos_devices_and_hard_links_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = open_append(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");

        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(open_append(&dangling).unwrap_err().to_string().contains("symbolic link"));
        assert!(!dir.path().join("nowhere").exists(), "a dangling link must not be followed to create its target");

        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let e = open_append(&fifo).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");

        let e = open_append(Path::new("/dev/null")).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");

        let hard = dir.path().join("hard");
        std::fs::hard_link(&victim, &hard).unwrap();
        let e = open_append(&hard).unwrap_err();
        assert!(e.to_string().contains("hard links"), "{e}");

        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    }

    #[test]
    fn reads_take_regular_files_only_and_never_block() {
        let dir = tempfile::tempdir().unwrap();
        let pdb = dir.path().join("app.pdb");
        std::fs::write(&pdb, b"BSJB").unwrap();
        assert_eq!(read_regular(&pdb, 100).as_deref(), Some(&b"BSJB"[..]));
        assert_eq!(read_regular(&pdb, 3), None, "over the size limit");
        let fifo = dir.path().join("fifo.pdb");
        mkfifo(&fifo);
        assert_eq!(read_regular(&fifo, 100), None);
        assert_eq!(read_regular(Path::new("/dev/zero"), 100), None);
    }

    /// Needs root (as CI runs): the file must belong to someone else.
    #[test]
    fn another_users_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs.log");
        std::fs::write(&theirs, "").unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534))
            .expect("chown to nobody needs root: run the tests as root (CI does)");
        let e = open_append(&theirs).unwrap_err();
        assert!(e.to_string().contains("belongs to uid 65534"), "{e}");
        assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "");
    }
}
