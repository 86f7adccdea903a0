//! The records of the wire protocol (docs/PROTOCOL.md) that the agent writes.

use serde::Serialize;

pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Serialize)]
pub struct Envelope<'a, T: Serialize> {
    pub v: u32,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub source: &'static str,
    pub pid: u32,
    #[serde(flatten)]
    pub body: &'a T,
}

pub fn line<T: Serialize>(kind: &'static str, body: &T) -> String {
    let envelope = Envelope { v: PROTOCOL_VERSION, kind, source: "agent", pid: std::process::id(), body };
    let mut s = serde_json::to_string(&envelope).unwrap_or_else(|e| {
        format!(r#"{{"v":1,"type":"status","source":"agent","level":"error","message":"cannot encode {kind}: {e}"}}"#)
    });
    s.push('\n');
    s
}

#[derive(Serialize)]
pub struct Hello {
    pub version: &'static str,
    pub cmdline: String,
    pub start_unix_ms: u64,
    pub interval_ms: u64,
    pub runtime: String,
    pub sampling: &'static str,
    pub mode: &'static str,
    /// Loaded into the running process with `leakscope attach` (not at startup).
    pub attached: bool,
    pub config: HelloConfig,
}

#[derive(Serialize)]
pub struct HelloConfig {
    pub max_tracked: usize,
    pub memory_limit_bytes: usize,
    pub stack_depth: usize,
    pub log: String,
}

#[derive(Serialize)]
pub struct Stack<'a> {
    pub id: u32,
    pub frames: &'a [std::sync::Arc<str>],
    /// `File.cs:line` per frame, or null where unknown.
    pub lines: &'a [Option<std::sync::Arc<str>>],
}

#[derive(Serialize)]
pub struct Summary {
    pub seq: u64,
    pub t_ms: u64,
    pub unix_ms: u64,
    pub gc: GcRecord,
    pub heap: HeapRecord,
    pub rss: u64,
    pub agent: AgentRecord,
    pub sites: Vec<SiteRecord>,
}

#[derive(Serialize)]
pub struct GcRecord {
    pub count: [u64; 3],
    pub induced: u64,
    pub pause_ms_total: f64,
    pub pause_ms_max: f64,
    pub reasons: std::collections::BTreeMap<&'static str, u64>,
    /// The collections since the previous summary.
    pub recent: Vec<crate::pipeline::gc_stats::GcEntry>,
}

#[derive(Serialize)]
pub struct HeapRecord {
    pub gen0: u64,
    pub gen1: u64,
    pub gen2: u64,
    pub loh: u64,
    pub poh: u64,
}

#[derive(Serialize)]
pub struct AgentRecord {
    pub tracked: usize,
    /// Tracked samples allocated since the latest GC (not yet in `sites`).
    pub young: usize,
    pub max_tracked: usize,
    pub samples: u64,
    pub dropped: u64,
    pub dropped_budget: u64,
    pub dropped_queue: u64,
    /// Samples skipped by thinning, and the thinning now in force (1 = none).
    pub thinned: u64,
    pub keep_one_in: u32,
    pub handle_failures: u64,
    pub stack_failures: u64,
    pub stacks: usize,
    pub memory_bytes: usize,
    pub memory_limit_bytes: usize,
    pub sweep_ms: f64,
    /// Mean time a followed sample costs the allocating thread (handle + stack walk), microseconds.
    pub capture_us_per_sample: f64,
    pub stack_us_per_sample: f64,
    pub degraded: Option<String>,
}

#[derive(Serialize)]
pub struct SiteRecord {
    pub type_name: std::sync::Arc<str>,
    pub site: std::sync::Arc<str>,
    /// `File.cs:line` of the call site, when the assembly's PDB is available.
    pub location: Option<std::sync::Arc<str>>,
    pub stack: u32,
    pub samples: u64,
    pub objects: u64,
    pub bytes: u64,
    pub age_gcs: f64,
    pub gens: [u64; 5],
}

/// What survived a full GC: sampled objects born before it and alive after it.
#[derive(Serialize)]
pub struct Retained {
    /// The full GC's number.
    pub gc: u32,
    pub t_ms: u64,
    pub unix_ms: u64,
    pub heap: HeapRecord,
    pub sites: Vec<SiteRecord>,
}

/// Exact live objects by type, counted on the whole heap right after a full GC.
#[derive(Serialize)]
pub struct CensusRecord {
    pub gc: u32,
    pub t_ms: u64,
    pub unix_ms: u64,
    /// How long the heap walk paused the application.
    pub pause_ms: f64,
    pub objects: u64,
    pub bytes: u64,
    pub unreadable: u64,
    pub heap: HeapRecord,
    /// Largest types first.
    pub types: Vec<CensusType>,
    pub other: CensusOther,
}

#[derive(Serialize)]
pub struct CensusType {
    pub type_name: std::sync::Arc<str>,
    pub count: u64,
    pub bytes: u64,
}

#[derive(Serialize)]
pub struct CensusOther {
    pub types: usize,
    pub count: u64,
    pub bytes: u64,
}

#[derive(Serialize)]
pub struct Status<'a> {
    pub level: &'static str,
    pub message: &'a str,
}

#[derive(Serialize)]
pub struct Bye<'a> {
    pub t_ms: u64,
    pub reason: &'a str,
}
