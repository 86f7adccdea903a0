//! Where records go: a collector's Unix socket, a file, or both.
//!
//! Only the agent's own thread writes. A collector that is absent, slow or gone costs the host
//! nothing: writes time out, the connection is dropped, and a reconnect is tried later with
//! backoff. Nothing is queued while disconnected: on reconnect the collector gets a fresh
//! `hello`, the recent status messages, every stack the next summary refers to, and the current
//! state — memory stays bounded however long the outage.

pub mod records;

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

enum Connection {
    Socket(UnixStream),
    File(File),
}

impl Connection {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Connection::Socket(s) => send_all(s, bytes),
            Connection::File(f) => f.write_all(bytes),
        }
    }
}

/// Writes to a socket without ever raising SIGPIPE in the host (a plain write to a socket whose
/// peer has gone kills a process that has not ignored SIGPIPE).
fn send_all(stream: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    while !bytes.is_empty() {
        // SAFETY: sends from a live buffer of `bytes.len()` bytes on a socket we own.
        let n = unsafe { libc::send(stream.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// Refuses a collector socket served by anyone but this process's user or root, as the kernel
/// reports the listener (`SO_PEERCRED`): another local user who binds the path first (a squatted
/// default socket) gets a connection and nothing else.
fn check_listener(stream: &UnixStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is that large.
    let rc = unsafe {
        libc::getsockopt(stream.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&raw mut cred).cast(), &mut len)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if cred.uid == me || cred.uid == 0 {
        return Ok(());
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        format!(
            "refusing it: it is served by uid {}, not by this process's user (uid {me}) or root, so nothing is sent to it",
            cred.uid
        ),
    ))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Socket,
    File,
}

/// Largest command line a collector may send; a longer one is dropped (and said so).
const MAX_COMMAND_BYTES: usize = 64 * 1024;

struct Destination {
    kind: Kind,
    /// Bytes received from the collector that do not yet make a whole line.
    inbox: Vec<u8>,
    path: PathBuf,
    connection: Option<Connection>,
    /// Stacks this connection has already been sent.
    sent_stacks: HashSet<u32>,
    retry_at: Instant,
    backoff: Duration,
    /// Set while an outage is ongoing, so it is logged once, not on every retry.
    outage: Option<String>,
    /// A new outage the pipeline has not yet told the collector about.
    unreported: Option<String>,
}

/// One batch of output: what a new connection must see first, and the payload.
pub struct Batch<'a> {
    pub hello: &'a str,
    pub statuses: &'a [String],
    /// Stacks the payload refers to.
    pub stacks: &'a [u32],
    pub payload: &'a str,
}

pub struct Sink {
    destinations: Vec<Destination>,
}

impl Sink {
    pub fn new(socket: Option<&Path>, file: Option<&Path>) -> Sink {
        let now = Instant::now();
        let destination = |kind, path: &Path| Destination {
            kind,
            path: path.to_path_buf(),
            connection: None,
            inbox: Vec::new(),
            sent_stacks: HashSet::new(),
            retry_at: now,
            backoff: FIRST_RETRY,
            outage: None,
            unreported: None,
        };
        let mut destinations = Vec::new();
        if let Some(p) = socket {
            destinations.push(destination(Kind::Socket, p));
        }
        if let Some(p) = file {
            destinations.push(destination(Kind::File, p));
        }
        Sink { destinations }
    }

    /// Writes the batch everywhere reachable. `stack_line` renders a stack record on demand.
    pub fn deliver(&mut self, batch: &Batch<'_>, stack_line: &mut dyn FnMut(u32) -> String) {
        for d in &mut self.destinations {
            d.deliver(batch, stack_line);
        }
    }

    /// Command lines the collector has sent since the last call (the socket link is two-way:
    /// `leakscope` can ask for a census or a detach). Never blocks.
    pub fn poll_commands(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        for d in &mut self.destinations {
            d.poll_commands(&mut lines);
        }
        lines
    }

    /// Whether a collector is connected: `None` without a socket destination.
    pub fn collector_connected(&self) -> Option<bool> {
        self.destinations.iter().find(|d| d.kind == Kind::Socket).map(|d| d.connection.is_some())
    }

    /// Outages that began since the last call, one sentence each: the pipeline sends them as
    /// `status` records, which reach whichever destination still works.
    pub fn take_new_problems(&mut self) -> Vec<String> {
        self.destinations.iter_mut().filter_map(|d| d.unreported.take()).collect()
    }

    /// Why output is not reaching anyone, if it is not.
    pub fn problem(&self) -> Option<String> {
        let down: Vec<&str> = self.destinations.iter().filter_map(|d| d.outage.as_deref()).collect();
        (!down.is_empty() && down.len() == self.destinations.len()).then(|| down.join("; "))
    }
}

impl Destination {
    fn deliver(&mut self, batch: &Batch<'_>, stack_line: &mut dyn FnMut(u32) -> String) {
        let mut buffer = String::new();
        if self.connection.is_none() {
            if Instant::now() < self.retry_at {
                return;
            }
            match self.open() {
                Ok(c) => {
                    if let Some(was) = self.outage.take() {
                        tracing::info!("output to {} restored (was: {was})", self.path.display());
                    }
                    self.connection = Some(c);
                    self.inbox.clear();
                    self.backoff = FIRST_RETRY;
                    self.sent_stacks.clear();
                    buffer.push_str(batch.hello);
                    for status in batch.statuses {
                        buffer.push_str(status);
                    }
                }
                Err(e) => {
                    self.fail(format!("cannot open {} {}: {e}", self.kind_name(), self.path.display()));
                    return;
                }
            }
        }
        for &id in batch.stacks {
            if self.sent_stacks.insert(id) {
                buffer.push_str(&stack_line(id));
            }
        }
        buffer.push_str(batch.payload);
        let result = self.connection.as_mut().map(|c| c.write_all(buffer.as_bytes()));
        if let Some(Err(e)) = result {
            self.connection = None;
            self.fail(format!("cannot write to {} {}: {e}", self.kind_name(), self.path.display()));
        }
    }

    fn poll_commands(&mut self, lines: &mut Vec<String>) {
        use std::os::fd::AsRawFd;
        let Some(Connection::Socket(stream)) = &self.connection else { return };
        let mut buf = [0u8; 4096];
        let mut closed = false;
        loop {
            // SAFETY: receives into a live buffer we own; MSG_DONTWAIT never blocks.
            let n = unsafe { libc::recv(stream.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n == 0 {
                closed = true; // the collector has gone; what it sent before is still read below
                break;
            }
            if n < 0 {
                break; // nothing more now (EAGAIN), or an error the next write will tell
            }
            self.inbox.extend_from_slice(&buf[..n as usize]);
        }
        while let Some(end) = self.inbox.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.inbox.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line).trim().to_string();
            if !text.is_empty() {
                lines.push(text);
            }
        }
        if self.inbox.len() > MAX_COMMAND_BYTES {
            tracing::warn!("dropping {} bytes from the collector that never formed a line", self.inbox.len());
            self.inbox.clear();
        }
        if closed {
            self.connection = None;
            self.fail(format!("the collector at {} closed the connection", self.path.display()));
        }
    }

    fn open(&self) -> std::io::Result<Connection> {
        match self.kind {
            Kind::Socket => {
                let stream = UnixStream::connect(&self.path)?;
                // Before a single byte (even `hello`) is written: whoever serves the path must
                // be this process's own user or root.
                check_listener(&stream)?;
                stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
                Ok(Connection::Socket(stream))
            }
            // Never follows a symlink, never blocks on a FIFO, only a private regular file.
            Kind::File => Ok(Connection::File(crate::files::open_append(&self.path)?)),
        }
    }

    fn fail(&mut self, message: String) {
        if self.outage.is_none() {
            tracing::warn!("{message}; retrying in the background, the application is unaffected");
            self.unreported = Some(message.clone());
        }
        self.outage = Some(message);
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_RETRY);
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Socket => "collector socket",
            Kind::File => "output file",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    fn batch<'a>(stacks: &'a [u32], payload: &'a str) -> Batch<'a> {
        Batch { hello: "hello\n", statuses: &[], stacks, payload }
    }

    #[test]
    fn file_gets_hello_once_and_each_stack_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let mut sink = Sink::new(None, Some(&path));
        let mut render = |id: u32| format!("stack {id}\n");
        sink.deliver(&batch(&[1, 2], "summary 1\n"), &mut render);
        sink.deliver(&batch(&[2, 3], "summary 2\n"), &mut render);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "hello\nstack 1\nstack 2\nsummary 1\nstack 3\nsummary 2\n");
        assert!(sink.problem().is_none());
    }

    #[test]
    fn absent_collector_is_a_reported_problem_and_a_later_one_gets_a_fresh_preamble() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let mut sink = Sink::new(Some(&path), None);
        let mut render = |id: u32| format!("stack {id}\n");
        sink.deliver(&batch(&[7], "summary 1\n"), &mut render);
        assert!(sink.problem().unwrap().contains("cannot open collector socket"));

        let listener = UnixListener::bind(&path).unwrap();
        sink.destinations[0].retry_at = Instant::now();
        sink.deliver(&batch(&[7], "summary 2\n"), &mut render);
        let (conn, _) = listener.accept().unwrap();
        drop(sink);
        let lines: Vec<String> = BufReader::new(conn).lines().map(Result::unwrap).collect();
        assert_eq!(lines, ["hello", "stack 7", "summary 2"]);
    }

    #[test]
    fn a_fifo_at_the_output_path_is_refused_at_once_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out.fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
        let mut sink = Sink::new(None, Some(&fifo));
        let started = Instant::now();
        sink.deliver(&batch(&[], "x\n"), &mut |_| String::new());
        assert!(started.elapsed() < Duration::from_secs(1), "opening the FIFO blocked");
        let problems = sink.take_new_problems();
        assert!(problems.len() == 1 && problems[0].contains("FIFO"), "{problems:?}");
        assert!(sink.take_new_problems().is_empty(), "reported once");
    }

    #[test]
    fn unwritable_file_is_reported_not_fatal() {
        let mut sink = Sink::new(None, Some(Path::new("/proc/definitely/not/writable.ndjson")));
        sink.deliver(&batch(&[], "x\n"), &mut |_| String::new());
        assert!(sink.problem().unwrap().contains("cannot open output file"));
    }
}
