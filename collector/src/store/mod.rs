//! Collector state: one [`Producer`] per (source, pid), each with its stacks, latest counters
//! and a bounded time series per site.
//!
//! Memory stays bounded on long runs and against hostile producers: series are compacted
//! (older points merged pairwise) past [`MAX_SERIES_POINTS`], sites and stacks per producer are
//! capped, status messages are kept as the most recent few plus a count, at most
//! [`MAX_PRODUCERS`] producers are kept per session, and everything kept is charged to one
//! memory budget for the session ([`crate::budget`]). What a cap drops is counted and reported.
//!
//! * [`caps`] — how much is kept, and what a series costs;
//! * [`series`] — one site's series, its stacks and compaction;
//! * [`soak_series`] — the series soak verdicts are judged on;
//! * [`producer`] — one producer's state; [`records`] — how each record changes it;
//! * this file — the [`Store`] of all producers, the input counters and the caps.

pub mod caps;
pub mod producer;
pub mod records;
pub mod series;
pub mod soak_series;

pub use caps::{MAX_PRODUCERS, MAX_SERIES_PER_PRODUCER, MAX_STACKS_PER_PRODUCER};
pub use producer::{Connection, NativeTotals, Producer, StatusEntry};
pub use series::{MAX_SERIES_POINTS, SeriesPoint, SiteLatest, SiteSeries, Stack, site_label};

use crate::budget::Budget;
use crate::protocol::{Envelope, ProducerKey, Record, Skip, Source};
use crate::units::format_bytes;
use caps::{
    MAX_CONFIG_ENTRIES, MAX_DEGRADED_KEPT, MAX_FULL_GCS_KEPT, MAX_NOTES, MAX_RECENT_GCS, MAX_SKIP_EXAMPLES,
    MAX_STATUS_KEPT,
};
use producer::RETENTION_HISTORY;
use soak_series::SOAK_SERIES_BYTES;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
/// What a producer holds beyond its series, stacks and latest records (which are charged to the
/// budget): its latest counters, the fixed soak series, status messages and `agent.degraded`
/// sentences at their caps. Bounded by this times [`MAX_PRODUCERS`] (about 30 MiB).
pub const PRODUCER_BYTES: usize = std::mem::size_of::<Producer>()
    + 10 * SOAK_SERIES_BYTES
    + (MAX_STATUS_KEPT + MAX_DEGRADED_KEPT) * (crate::untrusted::MAX_TEXT_BYTES + 64)
    + MAX_FULL_GCS_KEPT * 8
    + MAX_RECENT_GCS * 96;

/// Counters over every line read, so the report can say what was skipped and why.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct InputStats {
    pub lines: u64,
    pub records: u64,
    pub empty: u64,
    pub not_json: u64,
    pub malformed: u64,
    pub unknown_version: u64,
    pub unknown_type: u64,
    pub unknown_source: u64,
    /// Longer than the protocol's 4 MiB limit: discarded.
    pub oversize: u64,
    /// Incomplete last line of a connection that closed, or of a file at its end.
    pub truncated: u64,
    /// The first few skipped lines, described.
    pub examples: Vec<String>,
}

impl InputStats {
    pub fn skipped(&self) -> u64 {
        self.not_json
            + self.malformed
            + self.unknown_version
            + self.unknown_type
            + self.unknown_source
            + self.oversize
            + self.truncated
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Note {
    pub level: String,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Store {
    producers: BTreeMap<ProducerKey, Producer>,
    pub input: InputStats,
    /// The collector's own observations (disconnects, truncations), most recent last.
    pub notes: VecDeque<Note>,
    /// Bumped whenever series change, so views recompute analysis only when needed.
    pub data_version: u64,
    /// The session's memory budget for what producers send.
    pub budget: Budget,
    /// Records of producers beyond [`MAX_PRODUCERS`], dropped.
    pub refused: Refused,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Refused {
    /// Records dropped.
    pub records: u64,
    /// Producers refused (each counted once while there are few; then records tell).
    pub pids: Vec<u32>,
    /// Why the first one was refused.
    pub reason: Option<String>,
}

/// An agent and a shim of the same process, side by side.
#[derive(Debug, Clone, Copy)]
pub struct ProcessView<'a> {
    pub pid: u32,
    pub agent: Option<&'a Producer>,
    pub shim: Option<&'a Producer>,
}

impl ProcessView<'_> {
    pub fn cmdline(&self) -> Option<&str> {
        self.agent.and_then(|p| p.cmdline()).or_else(|| self.shim.and_then(|p| p.cmdline()))
    }

    pub fn rss(&self) -> Option<u64> {
        let agent = self.agent.and_then(|p| p.rss.map(|r| (p.last_t_ms, r)));
        let shim = self.shim.and_then(|p| p.rss.map(|r| (p.last_t_ms, r)));
        match (agent, shim) {
            (Some(a), Some(s)) => Some(if s.0 > a.0 { s.1 } else { a.1 }),
            (a, s) => a.or(s).map(|x| x.1),
        }
    }
}

impl Store {
    pub fn new() -> Self {
        Store::default()
    }

    /// A store with a memory budget other than the default (tests, small machines).
    pub fn with_budget(limit: usize) -> Self {
        Store { budget: Budget::new(limit), ..Store::default() }
    }

    /// Parses and applies one line. Returns the producer it came from, if it was a record.
    pub fn ingest_line(&mut self, line: &[u8]) -> Option<ProducerKey> {
        self.input.lines += 1;
        match crate::protocol::parse_line(line) {
            Ok(env) => {
                self.input.records += 1;
                let key = env.key;
                self.apply(env);
                Some(key)
            }
            Err(skip) => {
                self.count_skip(&skip);
                None
            }
        }
    }

    fn count_skip(&mut self, skip: &Skip) {
        let i = &mut self.input;
        match skip {
            Skip::Empty => {
                i.empty += 1;
                return;
            }
            // Ours (a `capture` line in a recording): nothing the producers got wrong.
            Skip::Collector => return,
            Skip::NotJson(_) => i.not_json += 1,
            Skip::Malformed(_) => i.malformed += 1,
            Skip::UnknownVersion(_) => i.unknown_version += 1,
            Skip::UnknownType(_) => i.unknown_type += 1,
            Skip::UnknownSource(_) => i.unknown_source += 1,
        }
        if i.examples.len() < MAX_SKIP_EXAMPLES {
            i.examples.push(format!("line {}: {skip}", i.lines));
        }
    }

    pub fn count_oversize(&mut self) {
        self.input.lines += 1;
        self.input.oversize += 1;
        if self.input.examples.len() < MAX_SKIP_EXAMPLES {
            self.input.examples.push(format!("line {}: longer than 4 MiB, discarded", self.input.lines));
        }
    }

    pub fn count_truncated(&mut self, bytes: usize, whose: &str) {
        self.input.truncated += 1;
        self.note("warn", format!("{whose} ended in the middle of a line ({bytes} bytes dropped)"));
    }

    pub fn note(&mut self, level: &str, message: impl Into<String>) {
        if self.notes.len() >= MAX_NOTES {
            self.notes.pop_front();
        }
        self.notes.push_back(Note { level: level.to_string(), message: message.into() });
    }

    pub fn apply(&mut self, env: Envelope) {
        let Envelope { key, record, approx_bytes } = env;
        if !self.producers.contains_key(&key) {
            // A producer's own state is bounded (PRODUCER_BYTES); their number is capped here,
            // outside the budget, so a flood of data never locks out the session's processes.
            if self.producers.len() >= MAX_PRODUCERS {
                let r = &mut self.refused;
                r.records += 1;
                if r.pids.len() < 5 && !r.pids.contains(&key.pid) {
                    r.pids.push(key.pid);
                }
                r.reason.get_or_insert_with(|| format!("at most {MAX_PRODUCERS} producers are kept per session"));
                return;
            }
            self.producers.insert(key, Producer::new(key));
        }
        let budget = self.budget.clone();
        let Some(producer) = self.producers.get_mut(&key) else {
            return;
        };
        match record {
            Record::Hello(mut h) => {
                // Only a few settings are ever read; a stranger's hello may carry thousands.
                match h.config.as_mut() {
                    Some(serde_json::Value::Object(map)) if map.len() > MAX_CONFIG_ENTRIES => {
                        *map = std::mem::take(map).into_iter().take(MAX_CONFIG_ENTRIES).collect();
                    }
                    Some(serde_json::Value::Object(_)) | None => {}
                    Some(_) => h.config = None,
                }
                // A new connection or file segment: stack ids are re-sent and may be reused.
                producer.stacks.clear();
                producer.hellos += 1;
                producer.connection = Connection::Open;
                producer.bye = None;
                // Soak mode said in the hello's settings (agents since hello carried them), not
                // only in a status line.
                let period = h.config.as_ref().and_then(|c| c.get("induce_full_gc_ms")).and_then(|v| v.as_u64());
                if let (Some(ms), None) = (period, &producer.soak.announced) {
                    producer.soak.announced = Some(format!("soak mode: inducing a full blocking GC every {ms} ms"));
                }
                match budget.charge(approx_bytes) {
                    Some(c) => {
                        producer.hello_charge = c;
                        producer.hello = Some(*h);
                    }
                    None => producer.budget_dropped += 1,
                }
            }
            Record::Stack(s) => {
                if producer.stacks.len() < MAX_STACKS_PER_PRODUCER || producer.stacks.contains_key(&s.id) {
                    match budget.charge(approx_bytes) {
                        Some(charge) => {
                            producer.stacks.insert(s.id, Arc::new(Stack { frames: s.frames, lines: s.lines, charge }));
                        }
                        None => {
                            producer.stacks_dropped += 1;
                            producer.budget_dropped += 1;
                        }
                    }
                } else {
                    producer.stacks_dropped += 1;
                }
            }
            Record::Summary(s) => {
                producer.apply_summary(*s, &budget);
                self.data_version += 1;
            }
            Record::Native(n) => {
                producer.apply_native(*n, &budget);
                self.data_version += 1;
            }
            Record::Retained(r) => {
                producer.apply_retained(*r, &budget);
                self.data_version += 1;
            }
            Record::Census(c) => {
                producer.apply_census(*c, &budget);
                self.data_version += 1;
            }
            Record::Retention(r) => match budget.charge(approx_bytes) {
                Some(c) => {
                    // The history (which path grows) holds a copy, charged on its own.
                    if producer.retention_history.len() >= RETENTION_HISTORY {
                        producer.retention_history.pop_front();
                        producer.retention_history_charges.pop_front();
                    }
                    match budget.charge(approx_bytes) {
                        Some(kept) => {
                            producer.retention_history.push_back(r.clone());
                            producer.retention_history_charges.push_back(kept);
                        }
                        None => producer.budget_dropped += 1,
                    }
                    producer.retention_charge = c;
                    producer.retention = Some(r);
                    self.data_version += 1;
                }
                None => producer.budget_dropped += 1,
            },
            Record::Peek(p) => match budget.charge(approx_bytes) {
                Some(c) => {
                    producer.peek_charge = c;
                    producer.peek = Some(p);
                    self.data_version += 1;
                }
                None => producer.budget_dropped += 1,
            },
            Record::Status(s) => {
                producer.soak.note_status(&s);
                producer.status_total += 1;
                if producer.statuses.len() >= MAX_STATUS_KEPT {
                    producer.statuses.pop_front();
                }
                producer.statuses.push_back(StatusEntry {
                    level: s.level.unwrap_or_else(|| "info".to_string()),
                    message: s.message,
                    t_ms: s.t_ms.map(|n| n.u64()).or(producer.last_t_ms),
                    unavailable: s.unavailable,
                });
            }
            Record::Bye(b) => {
                producer.connection = Connection::SaidBye;
                producer.bye = Some(b);
            }
        }
    }

    /// The connection that carried this producer closed. Without a `bye` first, the producer
    /// was lost (crash, SIGKILL, or the process ended before the agent could say goodbye).
    pub fn producer_disconnected(&mut self, key: ProducerKey) {
        let mut lost = false;
        if let Some(p) = self.producers.get_mut(&key) {
            if p.connection == Connection::Open {
                p.connection = Connection::Lost;
                lost = true;
            }
        }
        if lost {
            self.note("warn", format!("{} of pid {} disconnected without saying bye", key.source.as_str(), key.pid));
        }
    }

    pub fn producers(&self) -> impl Iterator<Item = &Producer> {
        self.producers.values()
    }

    pub fn producer(&self, key: &ProducerKey) -> Option<&Producer> {
        self.producers.get(key)
    }

    pub fn has_source(&self, source: Source) -> bool {
        self.producers.keys().any(|k| k.source == source)
    }

    /// Producers grouped by process, in pid order.
    pub fn processes(&self) -> Vec<ProcessView<'_>> {
        let mut by_pid: BTreeMap<u32, ProcessView<'_>> = BTreeMap::new();
        for p in self.producers.values() {
            let view = by_pid.entry(p.key.pid).or_insert(ProcessView { pid: p.key.pid, agent: None, shim: None });
            match p.key.source {
                Source::Agent => view.agent = Some(p),
                Source::Shim => view.shim = Some(p),
            }
        }
        by_pid.into_values().collect()
    }

    /// What the collector's bounds dropped (producers beyond the cap, data over the memory
    /// budget, stacks over their cap), so no report looks complete when it is not.
    pub fn bounds_messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        let r = &self.refused;
        if r.records > 0 {
            let pids: Vec<String> = r.pids.iter().map(u32::to_string).collect();
            out.push(format!(
                "{} record(s) of producers the session did not keep were dropped ({}); pid(s) {}{}",
                r.records,
                r.reason.as_deref().unwrap_or("over the limit"),
                pids.join(", "),
                if r.pids.len() >= 5 { ", …" } else { "" }
            ));
        }
        for p in self.producers() {
            if p.budget_dropped > 0 {
                out.push(format!(
                    "{} pid {}: {} series, stacks or records dropped: the collector's memory budget ({}) was full",
                    p.key.source.as_str(),
                    p.key.pid,
                    p.budget_dropped,
                    format_bytes(self.budget.limit() as f64)
                ));
            } else if p.stacks_dropped > 0 {
                out.push(format!(
                    "{} pid {}: {} stacks dropped (more than {} distinct): some sites show no frames",
                    p.key.source.as_str(),
                    p.key.pid,
                    p.stacks_dropped,
                    MAX_STACKS_PER_PRODUCER
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
