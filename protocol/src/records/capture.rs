//! `capture`: a collection rule fired. Written by the collector (`run`/`listen --on RULE
//! --capture DIR`) into its recording, never by a producer.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One snapshot written: what a metrics counter, a recording or any other watcher needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Capture {
    /// The worker's.
    pub pid: u32,
    /// The worker's command line, as its agent said.
    pub cmdline: Option<String>,
    /// When the rule was found broken and the agent asked, and when the file was written.
    pub asked_unix_ms: u64,
    pub unix_ms: u64,
    /// Rules broken (as written), and by what, with the evidence.
    pub rules: Vec<String>,
    pub breaches: Vec<Breach>,
    /// The snapshot file (NDJSON, for `leakscope diff`) and its text rendering.
    pub file: PathBuf,
    pub text_file: Option<PathBuf>,
    /// Whether the census and the paths came back; what is missing and why.
    pub census: bool,
    pub paths_for: Vec<String>,
    pub paths: bool,
    pub missing: Vec<String>,
}

/// A rule found broken: by which subject (`type:T`, `site:T @ S`, `native`, `heap`, `rss`…),
/// with the evidence.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Breach {
    pub rule: String,
    pub subject: String,
    pub evidence: String,
}
