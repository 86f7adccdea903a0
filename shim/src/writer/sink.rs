//! Where the writer's lines go: an `O_APPEND` file (one write(2) per line) or a Unix stream
//! socket it connects to (refusing a listener of another user), reconnecting when it goes away,
//! each send bounded by a deadline.

use crate::config::Config;
use crate::sys::{self, OwnedFd};

enum Target {
    File(String),
    Socket(String),
}

/// Where lines go: an O_APPEND file (one write(2) per line) or a Unix stream
/// socket we connect to, reconnecting when it goes away.
pub(crate) struct Sink {
    target: Target,
    pub(super) fd: Option<OwnedFd>,
    session: Session,
    /// After a listener of another user was refused: no new attempt before this (monotonic ms).
    refused_until_ms: u64,
    refusal_backoff_ms: u64,
}

/// What the writer needs from where its lines go: the OS (`Sink`: a file or a socket), or, in the
/// writer's tests, lines kept in memory.
pub(crate) trait Output {
    /// Makes sure lines can be sent, connecting or reopening; `Err` says why they cannot.
    fn ensure(&mut self) -> Result<(), String>;
    /// Writes one line (ending in '\n') by `deadline` (monotonic ms); false when it was lost.
    fn send(&mut self, line: &[u8], deadline: u64) -> bool;
    /// The bookkeeping of connections the writer reads and updates.
    fn session(&mut self) -> &mut Session;
}

/// Connections (or file segments) as the writer sees them.
pub(crate) struct Session {
    /// A new file segment or connection: the next line must be a hello.
    pub(crate) fresh: bool,
    /// Connections (or segments) made so far.
    pub(crate) connects: u32,
    /// Why the output was last unavailable (logged once per distinct reason).
    pub(crate) last_error: Option<String>,
}

impl Output for Sink {
    fn ensure(&mut self) -> Result<(), String> {
        Sink::ensure(self).map(|_| ())
    }

    fn send(&mut self, line: &[u8], deadline: u64) -> bool {
        Sink::send(self, line, deadline)
    }

    fn session(&mut self) -> &mut Session {
        &mut self.session
    }
}

/// Backoff after a refused listener: doubling from 1 s up to a minute.
const FIRST_REFUSAL_BACKOFF_MS: u64 = 1000;
const MAX_REFUSAL_BACKOFF_MS: u64 = 60_000;

fn os_err() -> String {
    std::io::Error::from_raw_os_error(sys::errno()).to_string()
}

fn open_append(path: &str) -> Result<OwnedFd, String> {
    sys::open_private_append("LEAKSCOPE_OUTPUT", path)
}

/// Why a connection could not be made.
enum ConnectError {
    /// The path could not be reached (nobody listening yet, …): try again next tick.
    Failed(String),
    /// Someone is listening, but not this process's user or root: never send them anything;
    /// try again with backoff (the rightful collector may take the path back).
    Refused(String),
}

/// The listener's uid is this process's or root's (`SO_PEERCRED`), so it may hear what we send.
fn check_listener(fd: i32, path: &str) -> Result<(), String> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = core::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is that large.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, (&raw mut cred).cast(), &mut len) };
    if rc != 0 {
        return Err(format!("refusing LEAKSCOPE_SOCKET={path}: cannot tell who serves it ({})", os_err()));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if cred.uid == me || cred.uid == 0 {
        return Ok(());
    }
    Err(format!(
        "refusing LEAKSCOPE_SOCKET={path}: it is served by uid {}, not by this process's user (uid {me}) or root, so nothing is sent to it",
        cred.uid
    ))
}

fn connect_unix(path: &str) -> Result<OwnedFd, ConnectError> {
    connect_unix_any(path).map_err(ConnectError::Failed).and_then(|fd| {
        let raw = fd.get().ok_or_else(|| ConnectError::Failed("descriptor vanished".to_string()))?;
        match check_listener(raw, path) {
            Ok(()) => Ok(fd),
            Err(why) => {
                fd.close();
                Err(ConnectError::Refused(why))
            }
        }
    })
}

fn connect_unix_any(path: &str) -> Result<OwnedFd, String> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", os_err()));
    }
    // SAFETY: all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { core::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        // SAFETY: `fd` was just created.
        unsafe { libc::close(fd) };
        return Err(format!("LEAKSCOPE_SOCKET path is longer than {} bytes", addr.sun_path.len() - 1));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: `addr` is a valid sockaddr_un of the given size.
    let r = unsafe { libc::connect(fd, (&raw const addr).cast(), core::mem::size_of::<libc::sockaddr_un>() as u32) };
    if r != 0 {
        let e = os_err();
        // SAFETY: `fd` was just created.
        unsafe { libc::close(fd) };
        return Err(format!("cannot connect to LEAKSCOPE_SOCKET={path}: {e}"));
    }
    OwnedFd::adopt(fd, sys::Expect::Socket)
        .ok_or_else(|| "the socket descriptor was taken over by the host while connecting".to_string())
}

/// Sends all of `buf` on a non-blocking socket, waiting at most until
/// `deadline` (monotonic ms). Never raises SIGPIPE.
fn send_all(fd: i32, mut buf: &[u8], deadline: u64) -> bool {
    while !buf.is_empty() {
        // SAFETY: valid slice; MSG_NOSIGNAL: a vanished peer is EPIPE, not SIGPIPE.
        let r = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
        if r > 0 {
            buf = buf.get(r as usize..).unwrap_or(&[]);
            continue;
        }
        let e = sys::errno();
        if r < 0 && e == libc::EINTR {
            continue;
        }
        if r < 0 && (e == libc::EAGAIN || e == libc::EWOULDBLOCK) {
            let now = sys::monotonic_ms();
            if now >= deadline {
                return false;
            }
            let mut p = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, (deadline - now).min(1000) as i32) };
            continue;
        }
        return false;
    }
    true
}

impl Sink {
    /// Opens a file output right away (so an unwritable path is reported at
    /// start); a socket is connected by the writer thread.
    pub(crate) fn open(cfg: &Config) -> Result<Sink, String> {
        if let Some(path) = &cfg.socket {
            return Ok(Sink {
                target: Target::Socket(path.clone()),
                fd: None,
                session: Session { fresh: true, connects: 0, last_error: None },
                refused_until_ms: 0,
                refusal_backoff_ms: FIRST_REFUSAL_BACKOFF_MS,
            });
        }
        let Some(path) = &cfg.output else {
            return Err("no output configured".to_string());
        };
        let fd = open_append(path)?;
        Ok(Sink {
            target: Target::File(path.clone()),
            fd: Some(fd),
            session: Session { fresh: true, connects: 1, last_error: None },
            refused_until_ms: 0,
            refusal_backoff_ms: FIRST_REFUSAL_BACKOFF_MS,
        })
    }

    pub(super) fn is_socket(&self) -> bool {
        matches!(self.target, Target::Socket(_))
    }

    /// Makes sure there is a descriptor; `Err` says why there is none.
    pub(super) fn ensure(&mut self) -> Result<i32, String> {
        if let Some(fd) = self.fd.as_ref().and_then(OwnedFd::get) {
            return Ok(fd);
        }
        if self.fd.take().is_some() {
            // Our descriptor was closed or replaced by the host: never touch
            // the number again, open our own anew (a new segment).
            warn!("output descriptor was closed or replaced by the host; reopening");
        }
        let fd = match &self.target {
            Target::File(p) => open_append(p),
            Target::Socket(p) => {
                let now = sys::monotonic_ms();
                if now < self.refused_until_ms {
                    return Err(self.session.last_error.clone().unwrap_or_default());
                }
                match connect_unix(p) {
                    Ok(fd) => {
                        self.refusal_backoff_ms = FIRST_REFUSAL_BACKOFF_MS;
                        Ok(fd)
                    }
                    Err(ConnectError::Failed(e)) => Err(e),
                    Err(ConnectError::Refused(e)) => {
                        self.refused_until_ms = now + self.refusal_backoff_ms;
                        self.refusal_backoff_ms = (self.refusal_backoff_ms * 2).min(MAX_REFUSAL_BACKOFF_MS);
                        Err(e)
                    }
                }
            }
        }?;
        let raw = fd.get().ok_or("descriptor vanished")?;
        self.fd = Some(fd);
        self.session.fresh = true;
        self.session.connects += 1;
        Ok(raw)
    }

    pub(super) fn drop_connection(&mut self, why: &str) {
        if let Some(fd) = self.fd.take() {
            warn!("output lost ({why}); will reconnect");
            fd.close();
        }
    }

    /// Writes one line (which must end with '\n').
    pub(super) fn send(&mut self, line: &[u8], deadline: u64) -> bool {
        let Some(fd) = self.fd.as_ref().and_then(OwnedFd::get) else {
            return false;
        };
        let ok = if self.is_socket() { send_all(fd, line, deadline) } else { sys::write_all(fd, line) };
        if !ok {
            let e = os_err();
            self.drop_connection(&e);
        }
        ok
    }
}
