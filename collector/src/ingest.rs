//! Getting lines in: from producer connections on a Unix socket, or from an NDJSON file that
//! may still be growing; and writing every received line, verbatim, to the recording.
//!
//! Reader threads do no parsing: they split bytes into lines (bounded by the protocol's 4 MiB
//! limit) and hand them to the session's single consumer over a channel bounded in lines and
//! in bytes, so a flood from a producer slows that producer's socket, never grows the
//! collector's memory.

use crate::owner_only::Allowed;
use crate::protocol::MAX_LINE_BYTES;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;
use std::time::Duration;

/// Lines in flight between readers and the session.
const CHANNEL_CAPACITY: usize = 8192;
/// Bytes of lines in flight between readers and the session, all connections together.
pub const MAX_BYTES_IN_FLIGHT: usize = 64 << 20;
/// Simultaneous connections: 64 workers with an agent and a shim each; more are refused.
/// (Each may hold one unfinished line of up to 4 MiB, outside the bytes in flight.)
pub const MAX_CONNECTIONS: usize = 128;
const READ_CHUNK: usize = 64 * 1024;

pub type ConnId = u64;

#[derive(Debug)]
pub enum Event {
    Connected(ConnId),
    Line(ConnId, Line),
    /// A line over the size limit was discarded.
    Oversize(ConnId),
    /// The connection or file ended; `partial` bytes of an unfinished line were dropped.
    Closed {
        conn: ConnId,
        partial: usize,
    },
    /// Something the user should know about the input (truncation, rotation).
    Notice(String),
    /// A peer that may not report here was turned away (said once per uid).
    Refused(String),
}

/// One line read, not yet handled. Its bytes count against [`MAX_BYTES_IN_FLIGHT`] until it
/// is dropped.
#[derive(Debug)]
pub struct Line {
    bytes: Vec<u8>,
    _permit: Option<Permit>,
}

impl Line {
    /// A line read synchronously (a file), which nothing waits on.
    pub fn unmetered(bytes: Vec<u8>) -> Line {
        Line { bytes, _permit: None }
    }
}

impl std::ops::Deref for Line {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Bytes of lines in flight; readers wait while it is over the limit.
#[derive(Debug, Default)]
struct InFlight {
    bytes: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

#[derive(Debug)]
struct Permit {
    pool: Arc<InFlight>,
    bytes: usize,
}

impl InFlight {
    /// A line of `bytes` to send: waits until it fits (one line always fits when nothing else
    /// is in flight, so a single long line never deadlocks).
    fn metered(self: &Arc<Self>, bytes: Vec<u8>) -> Line {
        let n = bytes.len();
        let mut held = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        while *held > 0 && *held + n > MAX_BYTES_IN_FLIGHT {
            held = self.freed.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        *held += n;
        Line { bytes, _permit: Some(Permit { pool: Arc::clone(self), bytes: n }) }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut held = self.pool.bytes.lock().unwrap_or_else(|e| e.into_inner());
        *held -= self.bytes;
        self.pool.freed.notify_all();
    }
}

/// Splits a byte stream into lines without ever holding more than one line (≤ the limit).
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    discarding: bool,
}

pub enum Split {
    Line(Vec<u8>),
    Oversize,
}

impl LineSplitter {
    pub fn new() -> Self {
        LineSplitter::default()
    }

    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(Split)) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    let (head, rest) = data.split_at(nl);
                    data = &rest[1..];
                    if self.discarding {
                        self.discarding = false;
                        continue;
                    }
                    if self.buf.len() + head.len() > MAX_LINE_BYTES {
                        self.buf.clear();
                        emit(Split::Oversize);
                        continue;
                    }
                    let mut line = std::mem::take(&mut self.buf);
                    line.extend_from_slice(head);
                    emit(Split::Line(line));
                }
                None => {
                    if !self.discarding {
                        if self.buf.len() + data.len() > MAX_LINE_BYTES {
                            self.buf = Vec::new();
                            self.discarding = true;
                            emit(Split::Oversize);
                        } else {
                            self.buf.extend_from_slice(data);
                        }
                    }
                    data = &[];
                }
            }
        }
    }

    /// Bytes of an unfinished line, dropped.
    pub fn take_partial(&mut self) -> usize {
        let n = self.buf.len();
        self.buf = Vec::new();
        self.discarding = false;
        n
    }
}

pub fn channel() -> (SyncSender<Event>, Receiver<Event>) {
    sync_channel(CHANNEL_CAPACITY)
}

/// The write side of every open producer connection, so the collector can talk back (agents
/// accept `{"cmd":"census"}` and `{"cmd":"detach"}`).
#[derive(Clone, Default)]
pub struct Replies {
    streams: Arc<std::sync::Mutex<std::collections::HashMap<ConnId, UnixStream>>>,
}

impl Replies {
    /// Sends one line to every open connection; returns how many took it. A producer that does
    /// not read (the shim) or has gone is skipped; writes time out rather than block.
    pub fn broadcast(&self, line: &str) -> usize {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let mut sent = 0;
        streams.retain(|_, s| {
            let ok = s.write_all(line.as_bytes()).and_then(|_| s.write_all(b"\n")).is_ok();
            sent += ok as usize;
            ok
        });
        sent
    }

    /// Sends one line to one connection (one worker's agent); false if it is gone or does not
    /// take it (the write times out rather than blocks).
    pub fn send_to(&self, id: ConnId, line: &str) -> bool {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = streams.get_mut(&id) else { return false };
        let ok = s.write_all(line.as_bytes()).and_then(|_| s.write_all(b"\n")).is_ok();
        if !ok {
            streams.remove(&id);
        }
        ok
    }

    fn add(&self, id: ConnId, stream: &UnixStream) {
        if let Ok(writer) = stream.try_clone() {
            let _ = writer.set_write_timeout(Some(Duration::from_secs(2)));
            self.streams.lock().unwrap_or_else(|e| e.into_inner()).insert(id, writer);
        }
    }

    fn remove(&self, id: ConnId) {
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}

/// Accepts producers of this user and root forever on a background thread, one reader thread
/// per connection.
pub fn serve(listener: UnixListener, tx: SyncSender<Event>) -> Replies {
    serve_allowing(listener, tx, Allowed::owner_and_root())
}

/// Like [`serve`], admitting only peers whose uid (as the kernel reports it) `allowed` admits;
/// anyone else is disconnected before a byte is read, and the session is told once per uid.
pub fn serve_allowing(listener: UnixListener, tx: SyncSender<Event>, allowed: Allowed) -> Replies {
    let replies = Replies::default();
    let conn_replies = replies.clone();
    let open = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(InFlight::default());
    thread::Builder::new()
        .name("accept".into())
        .spawn(move || {
            let mut next_id: ConnId = 1;
            let mut refused_uids = std::collections::HashSet::new();
            for stream in listener.incoming() {
                let stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        if tx.send(Event::Notice(format!("accept failed: {e}"))).is_err() {
                            return;
                        }
                        thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                match crate::owner_only::peer(&stream) {
                    Ok(peer) if allowed.admits(peer.uid) => {}
                    Ok(peer) => {
                        if refused_uids.insert(peer.uid) {
                            let _ = tx.send(Event::Refused(allowed.refusal(&peer)));
                        }
                        continue;
                    }
                    Err(e) => {
                        let _ = tx.send(Event::Refused(format!(
                            "refused a producer connection: cannot tell who it is ({e})"
                        )));
                        continue;
                    }
                }
                if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    let _ = tx
                        .send(Event::Notice(format!("refused a producer: already {MAX_CONNECTIONS} connections open")));
                    continue;
                }
                let id = next_id;
                next_id += 1;
                open.fetch_add(1, Ordering::Relaxed);
                let conn_tx = tx.clone();
                let open = Arc::clone(&open);
                let in_flight = Arc::clone(&in_flight);
                let replies = conn_replies.clone();
                replies.add(id, &stream);
                let spawned = thread::Builder::new().name(format!("conn-{id}")).spawn(move || {
                    read_connection(id, stream, &conn_tx, &in_flight);
                    replies.remove(id);
                    open.fetch_sub(1, Ordering::Relaxed);
                });
                if spawned.is_err() {
                    let _ = tx.send(Event::Notice("could not start a reader thread".into()));
                }
            }
        })
        .ok();
    replies
}

fn read_connection(id: ConnId, mut stream: UnixStream, tx: &SyncSender<Event>, in_flight: &Arc<InFlight>) {
    if tx.send(Event::Connected(id)).is_err() {
        return;
    }
    let mut splitter = LineSplitter::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut receiver_gone = false;
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        splitter.push(&chunk[..n], |split| {
            if receiver_gone {
                return;
            }
            let ev = match split {
                Split::Line(l) => Event::Line(id, in_flight.metered(l)),
                Split::Oversize => Event::Oversize(id),
            };
            receiver_gone = tx.send(ev).is_err();
        });
        if receiver_gone {
            return;
        }
    }
    let _ = tx.send(Event::Closed { conn: id, partial: splitter.take_partial() });
}

/// Reads a whole file as lines (each at most [`MAX_LINE_BYTES`]: longer ones are discarded and
/// counted, whatever the file holds); the unfinished last line, if any, is reported as
/// truncated. Open it with [`crate::files::open_regular`], so a FIFO never blocks.
pub fn read_file_lines(mut file: File, mut on_event: impl FnMut(Event)) -> io::Result<()> {
    let mut splitter = LineSplitter::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let n = match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        splitter.push(&chunk[..n], |split| {
            on_event(match split {
                Split::Line(l) => Event::Line(0, Line::unmetered(l)),
                Split::Oversize => Event::Oversize(0),
            })
        });
    }
    on_event(Event::Closed { conn: 0, partial: splitter.take_partial() });
    Ok(())
}

/// Follows a file as it grows (polling), like `tail -F`: starts at the beginning, reopens it
/// if it is replaced (rotation), and starts over if it shrinks (truncation).
pub fn follow_file(path: PathBuf, tx: SyncSender<Event>, poll: Duration) {
    thread::Builder::new()
        .name("follow".into())
        .spawn(move || {
            let in_flight = Arc::new(InFlight::default());
            let mut splitter = LineSplitter::new();
            let mut chunk = vec![0u8; READ_CHUNK];
            let mut file: Option<(File, u64)> = None; // (file, inode)
            let mut offset: u64 = 0;
            let mut waiting_reported = false;
            loop {
                if file.is_none() {
                    // A regular file only: a FIFO or device put at the path is refused (and
                    // waited out like a missing file), never read from or blocked on.
                    let opened = crate::files::open_regular(&path).map_err(|e| e.problem_text());
                    match opened.and_then(|f| f.metadata().map(|m| (f, m.ino())).map_err(|e| e.to_string())) {
                        Ok(opened) => {
                            file = Some(opened);
                            offset = 0;
                        }
                        Err(e) => {
                            if !waiting_reported {
                                waiting_reported = true;
                                let msg = format!("waiting for {}: {e}", path.display());
                                if tx.send(Event::Notice(msg)).is_err() {
                                    return;
                                }
                            }
                            thread::sleep(poll);
                            continue;
                        }
                    }
                }
                let Some((f, ino)) = file.as_mut() else {
                    continue;
                };
                // Truncated or replaced?
                if let Ok(meta) = std::fs::metadata(&path) {
                    if meta.ino() != *ino {
                        let _ =
                            tx.send(Event::Notice(format!("{} was replaced; reading the new file", path.display())));
                        splitter.take_partial();
                        file = None;
                        continue;
                    }
                    if meta.len() < offset {
                        let _ =
                            tx.send(Event::Notice(format!("{} was truncated; reading from the start", path.display())));
                        splitter.take_partial();
                        offset = 0;
                        if f.seek(SeekFrom::Start(0)).is_err() {
                            file = None;
                            continue;
                        }
                    }
                }
                let mut read_any = false;
                loop {
                    match f.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => {
                            read_any = true;
                            offset += n as u64;
                            let mut gone = false;
                            splitter.push(&chunk[..n], |split| {
                                if !gone {
                                    gone = tx
                                        .send(match split {
                                            Split::Line(l) => Event::Line(0, in_flight.metered(l)),
                                            Split::Oversize => Event::Oversize(0),
                                        })
                                        .is_err();
                                }
                            });
                            if gone {
                                return;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            file = None;
                            break;
                        }
                    }
                }
                if !read_any {
                    thread::sleep(poll);
                }
            }
        })
        .ok();
}

/// `recording.ndjson`: every received line, verbatim, one per line, in arrival order.
///
/// Lines are buffered and written in batches. When a write fails (a full disk) recording
/// stops, the file is cut back to the last whole line written, and the reason is kept for the
/// report: the file is never left ending in half a line.
pub struct Recorder {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    buffered_lines: u64,
    /// Lines and bytes on disk.
    pub lines: u64,
    pub bytes: u64,
    failed: Option<String>,
}

/// Bytes buffered before a write.
const RECORD_BUFFER: usize = 64 * 1024;

impl Recorder {
    /// Records into `file` (created by the caller, see [`crate::files::Dir::create_file`]).
    pub fn new(file: File, path: PathBuf) -> Recorder {
        Recorder {
            path,
            file,
            buf: Vec::with_capacity(RECORD_BUFFER),
            buffered_lines: 0,
            lines: 0,
            bytes: 0,
            failed: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a line. A write failure (disk full) stops recording but not the session; the
    /// error is kept for the report.
    pub fn record(&mut self, line: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        self.buffered_lines += 1;
        if self.buf.len() >= RECORD_BUFFER {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if self.failed.is_some() || self.buf.is_empty() {
            return;
        }
        match self.file.write_all(&self.buf) {
            Ok(()) => {
                self.bytes += self.buf.len() as u64;
                self.lines += self.buffered_lines;
                self.buf.clear();
                self.buffered_lines = 0;
            }
            Err(e) => {
                // Part of the batch may be on disk: cut back to the last whole line.
                let cut = self.file.set_len(self.bytes).is_ok();
                self.failed = Some(format!(
                    "recording to {} stopped after {} lines: {e}{}",
                    self.path.display(),
                    self.lines,
                    if cut { "; the file holds those whole lines only" } else { "; its last line may be cut short" }
                ));
                self.buf = Vec::new();
                self.buffered_lines = 0;
            }
        }
    }

    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> (Vec<String>, usize, usize) {
        let mut s = LineSplitter::new();
        let mut lines = Vec::new();
        let mut oversize = 0;
        for c in chunks {
            s.push(c, |sp| match sp {
                Split::Line(l) => lines.push(String::from_utf8_lossy(&l).into_owned()),
                Split::Oversize => oversize += 1,
            });
        }
        (lines, oversize, s.take_partial())
    }

    #[test]
    fn lines_are_reassembled_across_chunks_and_partials_reported() {
        let (lines, oversize, partial) = split_all(&[b"ab", b"c\nde", b"f\n\ng", b"hi"]);
        assert_eq!(lines, ["abc", "def", ""]);
        assert_eq!(oversize, 0);
        assert_eq!(partial, 3, "`ghi` was never finished");
    }

    #[test]
    fn oversize_lines_are_dropped_and_the_next_line_survives() {
        let big = vec![b'x'; MAX_LINE_BYTES / 2 + 1];
        let (lines, oversize, partial) = split_all(&[&big, &big, &big, b"\nok\n"]);
        assert_eq!(lines, ["ok"]);
        assert_eq!(oversize, 1);
        assert_eq!(partial, 0);
        // Oversize detected at the newline too.
        let (lines, oversize, _) = split_all(&[&big, &[&big[..], b"\nnext\n"].concat()]);
        assert_eq!((lines, oversize), (vec!["next".to_string()], 1));
    }

    #[test]
    fn a_socket_producer_that_dies_mid_line_yields_its_complete_lines() {
        let dir = std::env::temp_dir().join(format!("leakscope-ingest-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let sock = dir.join("t.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).unwrap();
        let (tx, rx) = channel();
        serve(listener, tx);
        {
            let mut c = UnixStream::connect(&sock).unwrap();
            c.write_all(b"{\"a\":1}\n{\"b\":").unwrap();
        }
        let mut got = Vec::new();
        while let Ok(ev) = rx.recv_timeout(Duration::from_secs(5)) {
            let done = matches!(ev, Event::Closed { .. });
            got.push(ev);
            if done {
                break;
            }
        }
        assert!(matches!(got[0], Event::Connected(1)));
        assert!(matches!(&got[1], Event::Line(1, l) if &l[..] == b"{\"a\":1}"));
        assert!(matches!(got[2], Event::Closed { conn: 1, partial: 5 }));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
