//! The small records: `stack`, `status` (a producer tells the user something changed) and
//! `bye` (the last line of a clean shutdown).

use serde::{Deserialize, Serialize};

use super::Num;

/// `stack`: a call stack, sent once per connection before the first record that names it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StackRecord {
    pub id: u64,
    #[serde(default)]
    pub frames: Vec<String>,
    /// `File:line` per frame where known (optional).
    #[serde(default)]
    pub lines: Vec<Option<String>>,
}

/// `status`: a producer tells the user something changed (degraded, reconnected, recovered).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Status {
    pub level: Option<String>,
    pub message: String,
    /// The shim's statuses carry it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t_ms: Option<Num>,
    /// A refused pausing command (`census`, `retention`, `peek`), and when to send it again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<Num>,
}

/// `bye`: the last line when a producer shuts down cleanly, with why.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Bye {
    pub t_ms: Option<Num>,
    pub reason: Option<String>,
}
