//! When to ask the agent what keeps the growing managed types alive (`{"cmd":"retention"}`),
//! so that every way a session ends shows the path: once as soon as a type is confirmed growing
//! (a worker that exits by itself, a `listen` session, are then covered), again at the end
//! when the worker can still answer (`--duration`, Ctrl-C), and, in a soak, every few minutes,
//! so that successive records say which path grows ([`crate::path_growth`]).
//!
//! Requests are rate-limited here (the agent pauses the application for each: a full GC and a
//! few heap walks) and never waited for while the session runs; the answers land in the store
//! whenever they come.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::analysis::Thresholds;
use crate::ingest::Replies;
use crate::session::Session;

/// Least time between two requests.
const MIN_SPACING: Duration = Duration::from_secs(30);
/// In a soak: a type already asked about is asked about again after this long (successive
/// records tell which path grows: four at least).
const SOAK_REASK: Duration = Duration::from_secs(30);
/// Types per request.
const MAX_TYPES: usize = 3;

#[derive(Default)]
pub struct PathAsker {
    asked: HashMap<(u32, String), Instant>,
    last: Option<Instant>,
    /// Re-ask periodically (soak), not only for types newly growing.
    pub periodic: bool,
}

impl PathAsker {
    pub fn new(periodic: bool) -> PathAsker {
        PathAsker { periodic, ..Default::default() }
    }

    /// Whether a request could go now (the last one is far enough back).
    pub fn ready(&self) -> bool {
        self.last.is_none_or(|t| t.elapsed() >= MIN_SPACING)
    }

    /// Asks about types newly confirmed growing (sampled sites growing, and `leaking`: types a
    /// soak's census says leak) — or, periodically, again — if the last request is far enough
    /// back. Returns whether it asked.
    pub fn tick(&mut self, session: &mut Session, replies: &Replies, leaking: &[(u32, String)]) -> bool {
        if !self.ready() {
            return false;
        }
        let mut growing = crate::report::growing_managed_types(&session.store, &Thresholds::default());
        for key in leaking {
            if !growing.contains(key) {
                growing.push(key.clone());
            }
        }
        let due = |asked: &HashMap<(u32, String), Instant>, key: &(u32, String)| match asked.get(key) {
            None => true,
            Some(t) => self.periodic && t.elapsed() >= SOAK_REASK,
        };
        if !growing.iter().any(|k| due(&self.asked, k)) {
            return false;
        }
        // The due ones first, then the other growing ones, so one request covers them.
        let mut order: Vec<&(u32, String)> = growing.iter().filter(|k| due(&self.asked, k)).collect();
        order.extend(growing.iter().filter(|k| !due(&self.asked, k)));
        let mut names: Vec<String> = Vec::new();
        for (_, name) in order {
            if !names.contains(name) && names.len() < MAX_TYPES {
                names.push(name.clone());
            }
        }
        if !self.send(replies, &names) {
            return false;
        }
        for key in growing.iter().filter(|(_, n)| names.contains(n)) {
            self.asked.insert(key.clone(), Instant::now());
        }
        let first = self.asked.len() <= names.len();
        if first {
            session
                .info
                .note("info", format!("asked the agent what keeps {} alive (confirmed growing)", names.join(", ")));
        }
        true
    }

    /// Asks about every growing type now and waits (pumping the session) for the answer, up
    /// to `wait`, or until `interrupted` says to give up (a second Ctrl-C).
    pub fn ask_and_wait(
        &mut self,
        session: &mut Session,
        replies: &Replies,
        leaking: &[(u32, String)],
        wait: Duration,
        interrupted: &dyn Fn() -> bool,
    ) {
        let mut growing = crate::report::growing_managed_types(&session.store, &Thresholds::default());
        for key in leaking {
            if !growing.contains(key) {
                growing.push(key.clone());
            }
        }
        let mut names: Vec<String> = Vec::new();
        for (_, t) in &growing {
            if !names.contains(t) && names.len() < MAX_TYPES {
                names.push(t.clone());
            }
        }
        if names.is_empty() {
            return;
        }
        let answered = |s: &Session| s.store.producers().map(|p| p.retention_history.len()).sum::<usize>();
        let before = answered(session);
        if !self.send(replies, &names) {
            return;
        }
        session.info.note("info", format!("asked the agent what keeps {} alive before stopping", names.join(", ")));
        let until = Instant::now() + wait;
        while Instant::now() < until && answered(session) == before && !interrupted() {
            session.pump(Duration::from_millis(100));
        }
    }

    fn send(&mut self, replies: &Replies, names: &[String]) -> bool {
        if names.is_empty() {
            return false;
        }
        let command = serde_json::json!({"cmd": "retention", "types": names}).to_string();
        if replies.broadcast(&command) == 0 {
            return false;
        }
        self.last = Some(Instant::now());
        true
    }
}
