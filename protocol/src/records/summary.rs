//! `summary` (managed survivors and GC counters, every interval) and `retained` (what survived a
//! full GC), from the agent.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::{Num, lenient};

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct GcStats {
    pub count: Vec<Num>,
    pub induced: Option<Num>,
    pub pause_ms_total: Option<Num>,
    pub pause_ms_max: Option<Num>,
    pub reasons: BTreeMap<String, Num>,
    /// The collections since the previous summary (at most 256).
    pub recent: Vec<GcEntry>,
}

/// One collection listed in `summary.gc.recent`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct GcEntry {
    pub n: Option<u64>,
    #[serde(rename = "gen")]
    pub generation: Option<u64>,
    pub reason: Option<String>,
    pub background: Option<bool>,
    pub pause_ms: Option<Num>,
    /// Generation sizes after it: gen0, gen1, gen2, LOH, POH.
    pub after: Vec<Num>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct HeapSizes {
    pub gen0: Option<Num>,
    pub gen1: Option<Num>,
    pub gen2: Option<Num>,
    pub loh: Option<Num>,
    pub poh: Option<Num>,
}

impl HeapSizes {
    pub fn total(&self) -> f64 {
        [self.gen0, self.gen1, self.gen2, self.loh, self.poh].iter().flatten().map(|n| n.0).sum()
    }
}

/// `summary.agent`: the agent's own health. The first fields are what every reader uses; the
/// rest are the agent's accounts of its costs and choices (absent from older agents).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct AgentHealth {
    pub tracked: Option<Num>,
    pub max_tracked: Option<Num>,
    pub dropped: Option<Num>,
    pub samples: Option<Num>,
    pub memory_bytes: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<Num>,
    /// `null`, or a sentence saying what the agent turned off and why.
    pub degraded: Option<String>,
    /// Tracked samples allocated since the latest GC (not yet in `sites`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub young: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_budget: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_queue: Option<Num>,
    /// Samples skipped by thinning, and the thinning now in force (1 = none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinned: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_one_in: Option<Num>,
    /// .NET 10: allocation sampling is on in one time window in `one_in`.
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub sampling_windows: Option<SamplingWindows>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle_failures: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_failures: Option<Num>,
    /// Synchronous profiling calls the runtime refused the agent thread
    /// (`CORPROF_E_UNSUPPORTED_CALL_SEQUENCE`, given once the runtime knows the thread): 0 unless
    /// names, lines or stack classification are failing for that reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_refused: Option<Num>,
    /// The runtime has a thread object for the agent thread, i.e. refuses its synchronous calls
    /// (`false` as long as all is well).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_known_to_runtime: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stacks: Option<Num>,
    /// The last survival check, on the agent's own thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep_ms: Option<Num>,
    /// CPU time the agent's own thread has used since it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_cpu_ms: Option<Num>,
    /// Mean time a followed sample costs the allocating thread (handle + stack), microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_us_per_sample: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_us_per_sample: Option<Num>,
    /// Runtime events skipped because their version or size was not the known layout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bad_events: Option<Num>,
    /// How stacks were captured, and what the agent thread has learnt about return addresses.
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub stack_capture: Option<StackCapture>,
    /// Exact mode (`LEAKSCOPE_EXACT`), when on.
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub exact: Option<Exact>,
}

/// `agent.sampling_windows` (.NET 10): thinning before delivery, and what switching it cost.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct SamplingWindows {
    pub one_in: u32,
    pub switches: u64,
    pub switch_ms: f64,
}

/// `agent.stack_capture`: by the frame walk, or by DoStackSnapshot when it could not be trusted.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct StackCapture {
    /// `frames`, `snapshot` or `check` (`LEAKSCOPE_STACK_CAPTURE`).
    pub mode: String,
    pub walked: u64,
    pub fell_back: u64,
    /// Mean DoStackSnapshot time per call, microseconds (fallbacks and checks).
    pub snapshot_us: f64,
    pub learnt: Learnt,
    /// Verdicts the walk's table could not hold (full): samples through them keep falling back.
    pub refused: u64,
    /// Modules unloaded meanwhile (their code addresses forgotten each time).
    pub unloads: u64,
    /// `check` mode: both captures of the same samples compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<StackCheck>,
}

/// Return addresses the agent thread has classified for the frame walk.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Learnt {
    pub managed: u64,
    pub runtime: u64,
    /// Native code outside the runtime, where walks end.
    pub foreign: u64,
    /// Code that cannot be walked through: samples through it use DoStackSnapshot.
    pub opaque: u64,
    /// Of the managed and runtime ones: frames without a frame pointer, with RBP saved as an
    /// ordinary register, and on-stack-replacement methods.
    pub frameless: u64,
    pub saved_rbp: u64,
    pub osr: u64,
    /// Dynamic methods found through the runtime's perf map (counted among `runtime` too).
    pub dynamic: u64,
}

/// `stack_capture.check`: samples compared, those whose call site agreed, those whose whole
/// stack did; per call site, the most compared first, at most 64.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct StackCheck {
    pub compared: u64,
    pub site_agreed: u64,
    pub stack_agreed: u64,
    pub by_site: Vec<StackCheckSite>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct StackCheckSite {
    pub site: String,
    pub compared: u64,
    pub agreed: u64,
}

/// `agent.exact`: the types whose every allocation is followed, and what that has cost.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Exact {
    pub aimed: Vec<String>,
    /// Allocations of aimed-at types seen, and skipped by exact mode's own thinning.
    pub allocations: u64,
    pub thinned: u64,
    pub keep_one_in: u32,
}

/// One (type, call site) with live tracked samples, in `summary.sites` and `retained.sites`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ManagedSite {
    pub type_name: String,
    pub site: String,
    /// The call site's `File:line`, when the agent knows it.
    pub location: Option<String>,
    pub stack: Option<u64>,
    pub samples: Option<Num>,
    pub objects: Option<Num>,
    pub bytes: Option<Num>,
    pub age_gcs: Option<Num>,
    pub gens: Vec<Num>,
    /// Samples of this pair the GC has collected since the agent started (cumulative).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collected: Option<Num>,
}

/// `summary`: managed survivors and GC counters, every interval.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Summary {
    pub seq: Option<u64>,
    pub t_ms: Option<Num>,
    pub unix_ms: Option<Num>,
    pub gc: Option<GcStats>,
    pub heap: Option<HeapSizes>,
    pub rss: Option<Num>,
    pub agent: Option<AgentHealth>,
    pub sites: Vec<ManagedSite>,
}

/// `retained`: sampled objects born before a full GC and alive after it, grouped like
/// `summary.sites`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Retained {
    pub gc: Option<u64>,
    pub t_ms: Option<Num>,
    pub unix_ms: Option<Num>,
    pub heap: Option<HeapSizes>,
    /// The process's resident set, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss: Option<Num>,
    pub sites: Vec<ManagedSite>,
}
