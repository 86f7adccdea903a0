//! One collection session: events in, store and recording updated, live view refreshed, and at
//! the end the reports written. Shared by `run`, `demo`, `listen` and `tail`.

use crate::analysis::Thresholds;
use crate::files::Dir;
use crate::ingest::{ConnId, Event, Recorder};
use crate::live::{FrameInfo, LiveView, ViewMode};
use crate::protocol::ProducerKey;
use crate::report::{self, Report, Written};
use crate::session_info::SessionInfo;
use crate::store::Store;
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Events handled per pump before the caller gets control back (to redraw, check the child).
const MAX_EVENTS_PER_PUMP: usize = 20_000;

pub struct Session {
    pub store: Store,
    rx: Option<Receiver<Event>>,
    pub recorder: Option<Recorder>,
    conn_keys: HashMap<ConnId, BTreeSet<ProducerKey>>,
    pub open_connections: usize,
    pub connections_seen: u64,
    pub view: LiveView,
    pub started: Instant,
    pub info: SessionInfo,
    flushed_at: Instant,
    /// `soak` sessions: rules and baseline, for the verdicts in the report.
    pub soak: Option<crate::soak::Context>,
    /// Sees every producer line the store accepted, with its producer (capture rules keep a
    /// worker's census and paths for its snapshot file).
    pub tap: Option<LineTap>,
}

/// A watcher of accepted producer lines.
pub type LineTap = Box<dyn FnMut(&ProducerKey, &[u8])>;

impl Session {
    pub fn new(
        rx: Option<Receiver<Event>>,
        recorder: Option<Recorder>,
        mode: ViewMode,
        mut info: SessionInfo,
    ) -> Session {
        info.started_unix_ms = Some(crate::units::unix_ms_now());
        Session {
            store: Store::new(),
            rx,
            recorder,
            conn_keys: HashMap::new(),
            open_connections: 0,
            connections_seen: 0,
            view: LiveView::new(mode),
            started: Instant::now(),
            info,
            flushed_at: Instant::now(),
            soak: None,
            tap: None,
        }
    }

    /// Handles queued events, waiting up to `wait` for the first one.
    pub fn pump(&mut self, wait: Duration) {
        let Some(rx) = self.rx.take() else {
            std::thread::sleep(wait);
            return;
        };
        let deadline = Instant::now() + wait;
        let mut handled = 0;
        loop {
            let timeout = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(timeout) {
                Ok(ev) => {
                    self.handle(ev);
                    handled += 1;
                    if handled >= MAX_EVENTS_PER_PUMP {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(timeout);
                    break;
                }
            }
        }
        self.rx = Some(rx);
        if self.flushed_at.elapsed() >= FLUSH_EVERY {
            if let Some(r) = self.recorder.as_mut() {
                r.flush();
            }
            self.flushed_at = Instant::now();
        }
    }

    pub fn handle(&mut self, ev: Event) {
        match ev {
            Event::Connected(id) => {
                self.open_connections += 1;
                self.connections_seen += 1;
                self.conn_keys.insert(id, BTreeSet::new());
            }
            Event::Line(id, line) => {
                if let Some(r) = self.recorder.as_mut() {
                    r.record(&line);
                }
                if let Some(key) = self.store.ingest_line(&line) {
                    if let Some(keys) = self.conn_keys.get_mut(&id) {
                        keys.insert(key);
                    }
                    if let Some(tap) = self.tap.as_mut() {
                        tap(&key, &line);
                    }
                }
            }
            Event::Oversize(_) => self.store.count_oversize(),
            Event::Closed { conn, partial } => {
                let socket_conn = self.conn_keys.contains_key(&conn);
                if partial > 0 {
                    let whose = if socket_conn { "a producer connection" } else { "the file" };
                    self.store.count_truncated(partial, whose);
                }
                if let Some(keys) = self.conn_keys.remove(&conn) {
                    self.open_connections = self.open_connections.saturating_sub(1);
                    for key in keys {
                        self.store.producer_disconnected(key);
                    }
                }
            }
            Event::Notice(text) => self.store.note("info", text),
            Event::Refused(text) => self.store.note("warn", text),
        }
    }

    /// The producer connections open now.
    pub fn connections(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.conn_keys.keys().copied()
    }

    /// The open connection a producer's lines arrive on (to talk to that worker alone).
    pub fn connection_of(&self, key: &ProducerKey) -> Option<ConnId> {
        self.conn_keys.iter().find(|(_, keys)| keys.contains(key)).map(|(id, _)| *id)
    }

    /// Leaves the live view, flushes the recording and stamps the end time.
    pub fn finish(&mut self) {
        self.view.finish();
        if let Some(r) = self.recorder.as_mut() {
            r.flush();
            if let Some(f) = r.failure() {
                let f = f.to_string();
                self.info.note("error", f);
            }
        }
        self.info.ended_unix_ms = Some(crate::units::unix_ms_now());
    }

    pub fn build_report(&self) -> Report {
        report::build_with_soak(&self.store, &self.info, &Thresholds::default(), self.soak.as_ref())
    }

    /// Writes report.txt, report.json and session.json (and for soaks junit.xml and
    /// report.html) into `dir`: each whole or not at all, each failure named in the result.
    pub fn write_outputs(&self, dir: &Dir) -> (Report, Written) {
        let r = self.build_report();
        let mut written = Written::default();
        report::write_session(dir, &self.info, &mut written);
        report::write_files(dir, &r, &mut written);
        report::write_soak_files(dir, &r, &self.store, &mut written);
        (r, written)
    }

    pub fn frame_base(&self, title: String, interval: Duration) -> FrameInfo {
        FrameInfo { title, elapsed: self.started.elapsed(), interval, ..FrameInfo::default() }
    }
}

/// The last `n` non-empty lines of a (log) file, reading at most its last 8 KiB.
pub fn tail_lines(path: &Path, n: usize) -> Vec<String> {
    const WINDOW: u64 = 8 * 1024;
    // Our own logs, but in a directory others may reach: never through a link, never a FIFO.
    let Ok(mut f) = crate::files::open_regular_nofollow(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > WINDOW && f.seek(SeekFrom::Start(len - WINDOW)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if f.take(WINDOW).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| l.chars().filter(|c| !c.is_control() || *c == '\t').collect::<String>())
        .filter(|l| !l.trim().is_empty())
        .collect();
    let keep = lines.len().saturating_sub(n);
    lines.drain(..keep);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn tail_lines_strips_control_characters_and_keeps_the_last() {
        let p = std::env::temp_dir().join(format!("leakscope-tail-{}.log", std::process::id()));
        std::fs::write(&p, "one\n\x1b[31mtwo\x1b[0m\n\nthree\n").unwrap();
        assert_eq!(tail_lines(&p, 2), ["[31mtwo[0m", "three"]);
        let _ = std::fs::remove_file(&p);
        assert!(tail_lines(&PathBuf::from("/nonexistent"), 2).is_empty());
    }
}
