//! The run report's schema: `report.json` (schema `leakscope.report/1`, documented in
//! docs/CLI.md) as Rust types. Built by `build`, rendered by `text`, written by `files`.

use crate::analysis::{FullGcCheck, Growth, LiveVerdict, Thresholds};
use crate::launch::ExitInfo;
use crate::protocol::{AgentHealth, GcStats, HeapSizes};
use crate::retention_view::KeptAliveBy;
use crate::session_info::NativeTracking;
use crate::store::InputStats;
use serde::Serialize;

pub const REPORT_SCHEMA: &str = "leakscope.report/1";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub generator: Generator,
    pub generated_unix_ms: u64,
    pub session: SessionSection,
    pub thresholds: Thresholds,
    pub input: InputStats,
    pub processes: Vec<ProcessReport>,
    /// Leak suspects: sites whose rise is significant, material and, for managed sites, confirmed
    /// by a full GC.
    pub findings: Vec<Finding>,
    /// Managed sites that rise like a leak but that no full GC has confirmed yet: they could
    /// still be garbage waiting for one. Not leak suspects, and listed apart.
    pub rising: Vec<Finding>,
    /// Whether the sites had the points for a verdict (null when no producer connected).
    pub sufficiency: Option<DataSufficiency>,
    pub messages: Vec<Message>,
    /// `soak` sessions: verdicts, rules, baseline (schema `leakscope.soak/1`); null otherwise.
    pub soak: Option<crate::soak::SoakReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Generator {
    pub name: &'static str,
    pub version: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionSection {
    pub mode: String,
    pub command: Option<Vec<String>>,
    pub started_unix_ms: Option<u64>,
    pub ended_unix_ms: Option<u64>,
    pub duration_ms: u64,
    pub exit: Option<ExitInfo>,
    pub exit_code: Option<i32>,
    pub stopped_by: Option<String>,
    pub interval_ms: Option<u64>,
    pub native_tracking: Option<NativeTracking>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessReport {
    pub pid: u32,
    pub cmdline: Option<String>,
    pub agent: Option<ProducerReport>,
    pub shim: Option<ProducerReport>,
    pub rss_bytes: Option<u64>,
    pub gc: Option<GcStats>,
    pub heap: Option<HeapSizes>,
    pub heap_total_bytes: Option<u64>,
    pub agent_health: Option<AgentHealth>,
    /// What the retention requests (`kept alive by`) cost the application.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_cost: Option<RetentionCost>,
    pub native_totals: Option<NativeTotalsReport>,
    pub managed_sites_total: usize,
    pub managed_sites: Vec<SiteReport>,
    pub native_sites_total: usize,
    pub native_sites: Vec<SiteReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProducerReport {
    pub version: Option<String>,
    pub runtime: Option<String>,
    pub sampling: Option<String>,
    pub mode: Option<String>,
    pub mean_bytes: Option<u64>,
    pub interval_ms: Option<u64>,
    pub start_unix_ms: Option<u64>,
    pub config: Option<serde_json::Value>,
    /// `summary` or `native` records received.
    pub reports: u64,
    pub first_t_ms: Option<u64>,
    pub last_t_ms: Option<u64>,
    pub duration_ms: u64,
    /// `bye`, `lost` (connection closed without bye) or `open`.
    pub ended: &'static str,
    pub bye_reason: Option<String>,
    pub degraded: Vec<String>,
    pub status_messages: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NativeTotalsReport {
    /// `exact` (every call counted) or `sampled` (live bytes and allocations estimated from
    /// the shim's samples, its default).
    pub totals: &'static str,
    pub live_bytes: Option<u64>,
    /// The standard error of a sampled `live_bytes` (absent when exact).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_bytes_se: Option<u64>,
    pub live_allocs: Option<u64>,
    pub total_allocs: Option<u64>,
    pub total_frees: Option<u64>,
    pub mmap_bytes: Option<u64>,
    pub sampling_mean_bytes: Option<u64>,
    pub dropped: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteReport {
    /// Managed type; null for native sites.
    pub type_name: Option<String>,
    pub site: String,
    /// The call site's `File:line`, when the producer knows it.
    pub location: Option<String>,
    /// Full stack, innermost first; empty when the producer never sent it.
    pub frames: Vec<String>,
    /// `File:line` per frame (same length as `frames`), null where unknown.
    pub frame_lines: Vec<Option<String>>,
    pub live_bytes: u64,
    /// Estimated live objects (managed) or allocations (native).
    pub live_count: u64,
    pub samples: u64,
    pub age_gcs: Option<f64>,
    pub gens: Vec<u64>,
    pub peak_bytes: u64,
    /// Listed in the producer's latest record.
    pub present: bool,
    pub growth: Growth,
    /// Managed sites: full (gen2) GCs inside the analysed window (null for native sites).
    pub full_gcs_in_window: Option<u64>,
    /// Managed sites that rose: what the full GCs said about the rise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_gc_check: Option<FullGcCheck>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `managed` or `native`.
    pub kind: &'static str,
    /// `growing` (a leak suspect) or `rising` (a managed rise no full GC has confirmed yet).
    pub verdict: LiveVerdict,
    pub pid: u32,
    pub type_name: Option<String>,
    pub site: String,
    pub location: Option<String>,
    pub frames: Vec<String>,
    pub frame_lines: Vec<Option<String>>,
    pub bytes_per_min: f64,
    pub ci95_bytes_per_min: Option<[f64; 2]>,
    pub p_value: f64,
    pub live_bytes: u64,
    pub live_count: u64,
    pub window_ms: f64,
    /// Managed: full (gen2) GCs in the window.
    pub full_gcs_in_window: Option<u64>,
    /// Managed: whether the rise survived a full GC; `unconfirmed` means it could still be
    /// garbage waiting for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_gc_check: Option<FullGcCheck>,
    /// Managed: what keeps the type alive (reference paths from roots), when the agent was asked
    /// before the end (`retention` record), most instances first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_alive_by: Vec<KeptAliveBy>,
    /// Managed: the path whose instances kept rising over successive retention records: the
    /// owner to fix, even with no call site sampled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_to_fix: Option<crate::path_growth::GrowingPath>,
    /// One line, as printed at the end of a run.
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RetentionCost {
    pub requests: usize,
    /// All their pauses together, and the longest single one (a walk, or the roots' GC).
    pub pause_ms: f64,
    pub max_pause_ms: f64,
    /// Requests that asked the GC for its roots, where from, and the longest such pause.
    pub roots_requests: usize,
    pub roots_source: Option<String>,
    pub roots_max_pause_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub level: String,
    /// `agent`, `shim` or `collector`.
    pub source: String,
    pub pid: Option<u32>,
    pub message: String,
}

/// `sufficiency` in report.json (run, listen, tail, report; the soak has its own).
#[derive(Debug, Clone, Serialize)]
pub struct DataSufficiency {
    /// Every site that could become a finding has a verdict.
    pub enough: bool,
    /// Sites with a verdict (growing, plateaued, steady).
    pub sites_judged: usize,
    /// Sites without one that hold enough to grow by the material minimum
    /// ([`crate::analysis::Thresholds::min_growth_bytes`]), and what they hold.
    pub sites_waiting: usize,
    pub bytes_waiting: u64,
    /// Points after the warm-up in the longest site series, and how many a verdict needs.
    pub points_after_warmup: usize,
    pub points_needed: usize,
    /// Full (gen2) GCs the agents reported.
    pub full_gcs: u64,
    /// Roughly how much longer would give the waiting sites their points.
    pub more_points: usize,
    pub more_ms: u64,
    /// A `--duration` that would (a round figure).
    pub suggested_duration_ms: u64,
}

/// Exit code of a report: the soak's, or 0 for other sessions.
pub fn exit_code_of(r: &Report) -> i32 {
    r.soak.as_ref().map(|s| s.exit_code).unwrap_or(0)
}
