//! Owner-only places and peers. leakscope's sockets carry a worker's command line, type names
//! and (when allowed) string contents, and accept commands that pause the worker, so:
//!
//! - default sockets live in a directory only this user may enter (`$XDG_RUNTIME_DIR/leakscope`
//!   or `$TMPDIR/leakscope-$UID`, created 0700); one that exists but is a symlink, someone
//!   else's, or open to others is refused, never used;
//! - sockets are bound 0600 whatever the umask;
//! - whoever connects is identified by the kernel (`SO_PEERCRED`), not by what it says: only
//!   this user's processes and root's (and, for `attach`, the target's user) are let in.

use crate::error::CliError;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// The user leakscope runs as (effective: what the kernel checks and `SO_PEERCRED` reports).
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// `$XDG_RUNTIME_DIR`, when it is an absolute directory of this user (under `sudo` it may still
/// name the invoking user's: that one is not ours to use).
pub fn runtime_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)?;
    let meta = std::fs::metadata(&dir).ok()?;
    (dir.is_absolute() && meta.is_dir() && meta.uid() == euid()).then_some(dir)
}

/// Where default sockets live: `$XDG_RUNTIME_DIR/leakscope`, else `$TMPDIR/leakscope-$UID`
/// (`/tmp/leakscope-$UID` without `TMPDIR`).
pub fn default_socket_dir() -> PathBuf {
    match runtime_dir() {
        Some(dir) => dir.join("leakscope"),
        None => std::env::temp_dir().join(format!("leakscope-{}", euid())),
    }
}

/// `listen`'s and `env`'s default socket, inside [`default_socket_dir`].
pub fn default_socket() -> PathBuf {
    default_socket_dir().join("leakscope.sock")
}

/// Creates `dir` (mode 0700) if it does not exist, and checks that it is a real directory of
/// this user that nobody else may enter. Anything else is refused with a message saying what
/// is wrong: another user may have put it there to receive what workers send.
pub fn ensure_private_dir(dir: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        // The umask may have taken bits away (even the owner's): set exactly 0700.
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| CliError::io(format!("cannot set the mode of {}", dir.display()), e))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(CliError::io(format!("cannot create the socket directory {}", dir.display()), e)),
    }
    let meta =
        std::fs::symlink_metadata(dir).map_err(|e| CliError::io(format!("cannot inspect {}", dir.display()), e))?;
    let problem = private_dir_problem(&meta, euid());
    match problem {
        None => Ok(()),
        Some(why) => Err(CliError::usage(format!(
            "refusing the socket directory {}: {why}; leakscope's sockets live only in a directory that is yours alone (mode 0700)",
            dir.display()
        ))
        .hint(format!(
            "if you did not make it, another user may have put it there to receive what your workers send: look at it (`ls -ld {}`), remove it, and run again",
            crate::shell::shell_quote(&dir.display().to_string())
        ))
        .hint("or choose a socket in a directory of your own with --socket PATH")),
    }
}

/// What makes `meta` (from `lstat`) unfit as an owner-only directory of `uid`, if anything.
pub fn private_dir_problem(meta: &std::fs::Metadata, uid: u32) -> Option<String> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Some("it is a symbolic link".to_string());
    }
    if !kind.is_dir() {
        return Some("it is not a directory".to_string());
    }
    if meta.uid() != uid {
        return Some(format!("it belongs to uid {} ({}), not to you (uid {uid})", meta.uid(), user_name(meta.uid())));
    }
    let mode = meta.mode() & 0o7777;
    if mode != 0o700 {
        return Some(format!("its mode is {mode:04o}, not 0700"));
    }
    None
}

/// A user's name from /etc/passwd, for messages ("?" when unknown).
pub fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
        .unwrap_or_else(|| "?".to_string())
}

/// Binds a Unix socket that only its owner may connect to (0600), whatever the umask: the umask
/// is tightened around `bind` (so the socket never exists with wider permissions), then the
/// mode is set explicitly.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    // SAFETY: umask only swaps the process's file-creation mask; it cannot fail.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Who is at the other end of a connected Unix socket, as the kernel knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// 0 when the peer is in a pid namespace this process cannot see into.
    pub pid: u32,
    pub uid: u32,
}

pub fn peer(socket: &impl AsRawFd) -> std::io::Result<Peer> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is that large.
    let rc = unsafe {
        libc::getsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&raw mut cred).cast(), &mut len)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Peer { pid: cred.pid.max(0) as u32, uid: cred.uid })
}

/// Which peers may report to a collector: this user, root, and any uid added (the target's,
/// when root attaches to another user's process).
#[derive(Clone, Debug)]
pub struct Allowed {
    uids: Vec<u32>,
}

impl Allowed {
    pub fn owner_and_root() -> Allowed {
        Allowed { uids: vec![euid(), 0] }
    }

    pub fn and(mut self, uid: u32) -> Allowed {
        if !self.uids.contains(&uid) {
            self.uids.push(uid);
        }
        self
    }

    pub fn admits(&self, uid: u32) -> bool {
        self.uids.contains(&uid)
    }

    /// The sentence the collector says when it turns a peer away.
    pub fn refusal(&self, peer: &Peer) -> String {
        let allowed: Vec<String> = self.uids.iter().map(|u| format!("{u} ({})", user_name(*u))).collect();
        format!(
            "refused a producer connection from uid {} ({}), pid {}: only processes of uid {} may report here",
            peer.uid,
            user_name(peer.uid),
            peer.pid,
            allowed.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_are_created_0700_and_foreign_or_open_ones_refused() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("leakscope-test");
        ensure_private_dir(&dir).unwrap();
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o700);
        ensure_private_dir(&dir).unwrap(); // existing and fine: accepted

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = ensure_private_dir(&dir).unwrap_err();
        assert!(err.message.contains("mode is 0755"), "{}", err.message);

        let link = base.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = ensure_private_dir(&link).unwrap_err();
        assert!(err.message.contains("symbolic link"), "{}", err.message);
        assert!(err.hints.iter().any(|h| h.contains("another user")), "{:?}", err.hints);

        let meta = std::fs::symlink_metadata(base.path()).unwrap();
        let stranger = meta.uid() + 1;
        assert!(private_dir_problem(&meta, stranger).unwrap().contains("belongs to uid"));
    }

    #[test]
    fn sockets_are_0600_whatever_the_umask_and_peers_are_known() {
        let base = tempfile::tempdir().unwrap();
        let path = base.path().join("s.sock");
        // SAFETY: umask swaps the mask; restored below.
        let old = unsafe { libc::umask(0) };
        let listener = bind(&path);
        // SAFETY: restoring the mask.
        unsafe { libc::umask(old) };
        let listener = listener.unwrap();
        assert_eq!(std::fs::symlink_metadata(&path).unwrap().mode() & 0o777, 0o600);
        let client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let (server, _) = listener.accept().unwrap();
        let me = Peer { pid: std::process::id(), uid: euid() };
        assert_eq!(peer(&client).unwrap(), me);
        assert_eq!(peer(&server).unwrap(), me);
        let allowed = Allowed::owner_and_root();
        assert!(allowed.admits(euid()) && allowed.admits(0));
        assert!(!allowed.admits(4_000_000_000));
        assert!(allowed.clone().and(4_000_000_000).admits(4_000_000_000));
        assert!(allowed.refusal(&Peer { pid: 7, uid: 4_000_000_000 }).contains("uid 4000000000"));
    }
}
