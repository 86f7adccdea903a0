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
    /// `LEAKSCOPE_SERVICE`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub config: HelloConfig,
}

#[derive(Serialize)]
pub struct HelloConfig {
    pub max_tracked: usize,
    pub memory_limit_bytes: usize,
    pub stack_depth: usize,
    /// `frames`, `snapshot` or `check` (`LEAKSCOPE_STACK_CAPTURE`).
    pub stack_capture: &'static str,
    pub log: String,
    /// Soak mode: the induced full GC's period (null when off).
    pub induce_full_gc_ms: Option<u64>,
    /// With soak mode: a census after each induced GC.
    pub census: bool,
    /// `off`, `auto`, or the type names of `LEAKSCOPE_EXACT`.
    pub exact: String,
    /// `LEAKSCOPE_RETENTION`'s types (retention after each soak census).
    pub retention: Vec<String>,
    /// Which roots retention paths can start from in this mode, and which they cannot name.
    pub retention_roots: RetentionRootKinds,
}

#[derive(Serialize)]
pub struct RetentionRootKinds {
    pub named: Vec<&'static str>,
    pub not_named: Vec<&'static str>,
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
    pub recent: Vec<GcEntry>,
}

/// One collection, as reported in the next summary.
#[derive(Clone, Debug, Serialize)]
pub struct GcEntry {
    pub n: u32,
    #[serde(rename = "gen")]
    pub generation: u32,
    pub reason: &'static str,
    pub background: bool,
    pub pause_ms: f64,
    /// Generation sizes after this GC: gen0, gen1, gen2, LOH, POH.
    pub after: [u64; 5],
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
    /// .NET 10: allocation sampling is on in one time window in `one_in` (thinning at the source,
    /// before `keep_one_in`); `switches` and `switch_ms`: how often it was switched, and the time
    /// that took on the agent's thread.
    pub sampling_windows: SamplingWindowsRecord,
    pub handle_failures: u64,
    pub stack_failures: u64,
    pub stacks: usize,
    pub memory_bytes: usize,
    pub memory_limit_bytes: usize,
    pub sweep_ms: f64,
    /// CPU time the agent's own thread has used since it started, milliseconds.
    pub thread_cpu_ms: f64,
    /// Mean time a followed sample costs the allocating thread (handle + stack walk), microseconds.
    pub capture_us_per_sample: f64,
    pub stack_us_per_sample: f64,
    /// Runtime events skipped because their version or size was not the known layout.
    pub bad_events: u64,
    /// How stacks were captured: by the frame walk, or by DoStackSnapshot when it could not be
    /// trusted; and what the agent thread has learnt about return addresses.
    pub stack_capture: StackCaptureRecord,
    pub degraded: Option<String>,
    /// Exact mode (`LEAKSCOPE_EXACT`), when on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<ExactRecord>,
}

#[derive(Serialize)]
pub struct SamplingWindowsRecord {
    pub one_in: u32,
    pub switches: u64,
    pub switch_ms: f64,
}

#[derive(Serialize)]
pub struct StackCaptureRecord {
    /// `frames`, `snapshot` or `check` (`LEAKSCOPE_STACK_CAPTURE`).
    pub mode: &'static str,
    pub walked: u64,
    pub fell_back: u64,
    /// Mean DoStackSnapshot time per call, microseconds (fallbacks and checks).
    pub snapshot_us: f64,
    /// Return addresses classified, and how their frames are laid out.
    pub learnt: LearntRecord,
    /// Verdicts the walk's table could not hold (full): samples through them keep falling back.
    pub refused: u64,
    /// Modules unloaded meanwhile (their code addresses forgotten each time).
    pub unloads: u64,
    /// `check` mode: samples compared, those whose call site agreed, those whose whole stack did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<StackCheckRecord>,
}

/// Return addresses the agent thread has classified for the frame walk.
#[derive(Serialize, Clone, Copy, Default, Debug)]
pub struct LearntRecord {
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
    /// Dynamic methods (compiled expression trees, invoke stubs) found through the runtime's
    /// perf map: walked through like runtime code (counted among `runtime` too).
    pub dynamic: u64,
}

#[derive(Serialize, Clone, Default)]
pub struct StackCheckRecord {
    pub compared: u64,
    pub site_agreed: u64,
    pub stack_agreed: u64,
    /// Per call site (DoStackSnapshot's): samples compared and those whose site agreed; the
    /// most compared sites first, at most 64.
    pub by_site: Vec<StackCheckSite>,
}

#[derive(Serialize, Clone)]
pub struct StackCheckSite {
    pub site: std::sync::Arc<str>,
    pub compared: u64,
    pub agreed: u64,
}

/// Exact mode: the types whose every allocation is followed, and what that has cost.
#[derive(Serialize)]
pub struct ExactRecord {
    pub aimed: Vec<std::sync::Arc<str>>,
    /// Allocations of aimed-at types seen, and skipped by exact mode's own thinning.
    pub allocations: u64,
    pub thinned: u64,
    pub keep_one_in: u32,
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
    /// Samples of this pair the GC has collected since the agent started (cumulative).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collected: Option<u64>,
}

/// What survived a full GC: sampled objects born before it and alive after it.
#[derive(Serialize)]
pub struct Retained {
    /// The full GC's number.
    pub gc: u32,
    pub t_ms: u64,
    pub unix_ms: u64,
    pub heap: HeapRecord,
    /// The process's resident set, bytes.
    pub rss: u64,
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
    /// How long the induced full GC before it took (a pause of its own, right before the walk).
    pub gc_ms: f64,
    /// The process's resident set right after, bytes: native memory at the same comparable point.
    pub rss: u64,
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

/// A `status` refusing a pausing command, with when to retry.
#[derive(Serialize)]
pub struct Refusal<'a> {
    pub level: &'static str,
    pub message: &'a str,
    /// The command refused (`census`, `retention`, `peek`).
    pub refused: &'a str,
    pub retry_after_ms: u64,
}

#[derive(Serialize)]
pub struct Bye<'a> {
    pub t_ms: u64,
    pub reason: &'a str,
}

/// Type-level paths from GC roots to the instances of requested types (`{"cmd":"retention"}`).
#[derive(Serialize)]
pub struct RetentionRecord {
    /// The full GC the heap was walked after.
    pub gc: u32,
    pub t_ms: u64,
    pub unix_ms: u64,
    /// The whole request, from the induced GC to the record.
    pub elapsed_ms: f64,
    /// How long the heap walks paused the application, all together.
    pub pause_ms: f64,
    /// The longest single pause (one walk, or the heap dump for roots).
    pub max_pause_ms: f64,
    /// Each heap walk of the search (the census first, when one was taken for it).
    pub walks: Vec<RetentionWalk>,
    /// Objects on the heap (the last complete walk), and objects the search followed.
    pub objects: u64,
    pub followed: u64,
    /// Instances of the requested types sampled, all types together.
    pub samples: u64,
    /// Most bytes the agent held above its usual heap for this.
    pub memory_bytes: usize,
    pub memory_budget_bytes: usize,
    pub time_budget_ms: u64,
    /// A budget stopped the search before every sampled instance was traced: the paths whose
    /// root is `unknown` were not followed to their end.
    pub truncated: bool,
    /// Which budgets: `memory`, `time`, `walks`, `shutdown`.
    pub truncated_by: Vec<&'static str>,
    /// When truncated: how far it got, and what budget would have been needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut_short: Option<String>,
    pub statics: RetentionStatics,
    /// Whether the GC reported its roots (root kinds `stack`, `handle`, `finalizer`).
    pub roots: RetentionRoots,
    /// Set when the walk could not happen at all; `types` is then empty.
    pub error: Option<String>,
    pub types: Vec<RetentionType>,
}

#[derive(Serialize, Clone, Copy)]
pub struct RetentionWalk {
    pub pause_ms: f64,
    pub objects: u64,
    /// Objects followed after this walk.
    pub followed: u64,
    /// Sampled instances not yet traced to a root after this walk.
    pub unsettled: u64,
}

#[derive(Serialize)]
pub struct RetentionStatics {
    /// Static reference fields of initialised classes located.
    pub fields: usize,
    /// Of those, holding an object (in the last walk that could read them).
    pub with_value: usize,
    /// A GC moved objects between locating the fields and every walk: statics are not named.
    pub stale: bool,
}

#[derive(Serialize)]
pub struct RetentionRoots {
    pub reported: bool,
    /// Roots the GC reported (weak ones left out).
    pub count: usize,
    /// Where they came from: `gc-callbacks` (RootReferences2, background GC off) or
    /// `heap-dump` (the runtime's EventPipe heap dump, any GC mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    /// The pause of the GC that reported them (the heap dump lists the whole heap too).
    pub pause_ms: f64,
    /// Why they were not reported, or were incomplete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

#[derive(Serialize)]
pub struct RetentionType {
    /// As requested.
    pub type_name: String,
    /// The runtime's names that matched (generic instantiations can be several).
    pub matched: Vec<std::sync::Arc<str>>,
    /// All of them on the heap (exact, from the census).
    pub instances: u64,
    /// Their own (shallow) size.
    pub bytes: u64,
    /// Instances the search's first walk met (after the census, with the application running
    /// in between): the population the samples are drawn from and the paths' estimates scale to.
    pub walked: u64,
    /// Instances followed up to a root (all of them when there are few; else a spread-out
    /// sample, and the paths' counts are estimates: samples on the path times `walked` per
    /// sample taken).
    pub sampled: u64,
    /// Estimated instances whose path the search could not finish (root `unknown`).
    pub unknown: u64,
    /// Estimated instances collected while the search ran (garbage at the census, or freed
    /// since): on no path.
    pub collected: u64,
    /// Sampled instances the path assignment did not reach (its deadline passed).
    pub unreached: u64,
    /// Most instances first, at most `max_paths`.
    pub paths: Vec<RetentionPath>,
    /// The instances on the paths not listed.
    pub other: RetentionOther,
}

#[derive(Serialize)]
pub struct RetentionPath {
    pub root: RetentionRoot,
    /// From the object the root holds down to an instance of the type.
    pub steps: Vec<RetentionStep>,
    /// Estimated instances on this path (exact when every instance was sampled).
    pub instances: u64,
    /// Their estimated shallow bytes.
    pub bytes: u64,
    /// Sampled instances on it.
    pub sampled: u64,
    /// What the path's first object of the application's own keeps alive by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained: Option<RetainedSize>,
}

/// Retained size: the bytes that would be freed with an object (those it dominates).
#[derive(Serialize, Clone, Debug)]
pub struct RetainedSize {
    /// The step whose object it is (index into `steps`; -1: the root's object).
    pub step: i32,
    pub type_name: std::sync::Arc<str>,
    /// Per instance of that step, on average over the ones measured.
    pub bytes_per_instance: u64,
    /// Over all the path's instances of that step (estimated).
    pub bytes: u64,
    /// Instances measured.
    pub measured: u64,
    /// A budget stopped the measure: the bytes are a lower bound.
    pub lower_bound: bool,
}

#[derive(Serialize, Clone, Debug)]
pub struct RetentionRoot {
    /// `static`; `stack`, `handle`, `finalizer`, `dependent` when the GC reported its roots;
    /// `other` (an object nothing references, or a cycle only such objects reach); `unknown`
    /// (the search stopped before the path's end).
    pub kind: &'static str,
    /// The static field (`Namespace.Type.Field`; absent for the runtime's statics storage
    /// reached through a field not identified), or the method of a stack frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<std::sync::Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<std::sync::Arc<str>>,
}

#[derive(Serialize)]
pub struct RetentionStep {
    pub type_name: std::sync::Arc<str>,
    /// The field of the previous step's object holding this one (`[]` for an array element);
    /// absent for the first step and where unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<std::sync::Arc<str>>,
    /// Further steps of this same type were folded into this one (lists, trees).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
}

#[derive(Serialize, Default)]
pub struct RetentionOther {
    pub paths: usize,
    pub instances: u64,
    pub bytes: u64,
}

/// A few instances of requested types with their fields' values (`{"cmd":"peek"}`).
#[derive(Serialize)]
pub struct PeekRecord {
    /// The full GC the heap was walked after.
    pub gc: u32,
    pub t_ms: u64,
    pub unix_ms: u64,
    /// How long the heap walk paused the application.
    pub pause_ms: f64,
    /// String contents were asked for (`"strings":true`) and allowed.
    pub strings: bool,
    /// Set when they were asked for but the worker's owner has not allowed them: why, and how
    /// to allow them (`LEAKSCOPE_PEEK_STRINGS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strings_withheld: Option<&'static str>,
    /// Set when the walk could not happen at all; `types` is then empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub types: Vec<PeekType>,
}

#[derive(Serialize)]
pub struct PeekType {
    /// As requested.
    pub type_name: String,
    /// The runtime's names that matched.
    pub matched: Vec<std::sync::Arc<str>>,
    /// Instances found on the heap.
    pub instances: u64,
    /// Spread over the heap walk (first, …, last found), at most `count`.
    pub samples: Vec<PeekInstance>,
}

#[derive(Serialize)]
pub struct PeekInstance {
    pub type_name: std::sync::Arc<str>,
    pub size: u64,
    /// Base classes' fields first, each class's in declaration order; at most 64.
    pub fields: Vec<PeekField>,
}

#[derive(Serialize)]
pub struct PeekField {
    pub name: std::sync::Arc<str>,
    /// `int64`, `string`, `ref`, `struct`, …
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub value: serde_json::Value,
}
