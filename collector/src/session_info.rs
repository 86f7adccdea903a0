//! The run's own facts, kept beside a recording in `session.json` (schema
//! `leakscope.session/1`): the mode, the command, how it ended, the notes, and for a soak what
//! the user asked for. The soak verdicts and the reports read it; `report::files` writes it.

use crate::launch::ExitInfo;
use crate::store::Note;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub const SESSION_SCHEMA: &str = "leakscope.session/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NativeTracking {
    pub enabled: bool,
    pub reason: Option<String>,
}

/// What the collector knows about the session beyond the producers' lines: `session.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionInfo {
    pub schema: String,
    /// `run`, `demo`, `listen`, `tail` or `report`.
    pub mode: String,
    pub command: Option<Vec<String>>,
    pub started_unix_ms: Option<u64>,
    pub ended_unix_ms: Option<u64>,
    pub exit: Option<ExitInfo>,
    /// Why leakscope stopped the target, if it did (`--duration elapsed`, `SIGINT (Ctrl-C)`).
    pub stopped_by: Option<String>,
    pub interval_ms: Option<u64>,
    pub native_tracking: Option<NativeTracking>,
    pub notes: Vec<Note>,
    /// `soak` sessions: what the user asked for (duration, warm-up, rules, baseline).
    #[serde(default)]
    pub soak: Option<SoakSettings>,
}

impl SessionInfo {
    pub fn new(mode: &str) -> Self {
        SessionInfo {
            schema: SESSION_SCHEMA.to_string(),
            mode: mode.to_string(),
            command: None,
            started_unix_ms: None,
            ended_unix_ms: None,
            exit: None,
            stopped_by: None,
            interval_ms: None,
            native_tracking: None,
            notes: Vec::new(),
            soak: None,
        }
    }

    pub fn note(&mut self, level: &str, message: impl Into<String>) {
        self.notes.push(Note { level: level.to_string(), message: message.into() });
    }
}

/// What the user asked for; saved in session.json so `leakscope report` re-renders the same.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SoakSettings {
    pub duration_ms: u64,
    /// `--warmup`, when given.
    pub warmup_ms: Option<u64>,
    pub gc_every_ms: u64,
    /// `--gc-every` was not given: the period was chosen from the duration.
    #[serde(default)]
    pub gc_every_chosen: bool,
    /// `--allow-short`: started although the settings could not give enough points.
    #[serde(default)]
    pub allow_short: bool,
    /// `--fail-on` rules as written; empty means the default rules.
    pub fail_on: Vec<String>,
    pub baseline: Option<PathBuf>,
    /// `--strict`: inconclusive gated subjects fail too.
    #[serde(default)]
    pub strict: bool,
}
