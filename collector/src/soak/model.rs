//! The soak verdict's schema: the `soak` section of report.json ([`SoakReport`] and its parts),
//! with the defaults and the rules' texts they use.
//! Types only; judging is in `judge`/`evaluate`, the words in `evidence`/`render`.

use crate::analysis::{SoakVerdict, Trend, TrendSettings};
use serde::Serialize;
use std::time::Duration;

/// Version of the `soak` section of report.json (documented in docs/CLI.md).
pub const SOAK_SCHEMA: &str = "leakscope.soak/1";
/// The gate when no `--fail-on` is given: the motivating leak (100 MB a week ≈ 600 kB/h) is
/// well above it; runtime caches that add a few objects after warm-up are well below it.
pub const DEFAULT_RULE: &str = "growth > 100kB/h";
/// The default rule on the census total (live managed data). Its threshold is the rate RSS, the
/// heap and live data are judged against in the memory comparison
/// ([`MEMORY_THRESHOLD_PER_HOUR`]), so "live managed data grows (leaking)" and this
/// rule always agree: 1 MB/h is ten types each just under the per-subject 100 kB/h, or a
/// hundred at a tenth of it — 24 MB a day that no single type explains.
pub const DEFAULT_MANAGED_RULE: &str = "managed growth > 1MB/h";
/// The longest induced full GC period leakscope chooses by itself (without `--gc-every`, the
/// period is chosen from the duration: `plan::choose_gc_every`). A comparable point every
/// 30 s costs one blocking GC (and a heap walk) per 30 s, and gives 12 points after the warm-up
/// of a soak of about 8 minutes; shorter soaks get a shorter period.
pub const DEFAULT_GC_EVERY: Duration = Duration::from_secs(30);
/// Default warm-up: this fraction of the soak (of `--duration`, or of the data when the soak
/// ended early).
pub const DEFAULT_WARMUP_FRACTION: f64 = 0.2;
/// RSS, heap and live totals are judged against this rate for the memory comparison.
pub const MEMORY_THRESHOLD_PER_HOUR: f64 = 1e6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A managed type (census: exact).
    Type,
    /// A (type, call site) pair (retained: sampled).
    Site,
    /// The shim's native live bytes (exact).
    Native,
    /// A native call site (sampled).
    NativeSite,
    /// Live managed data (census total), only when a rule asks for it.
    Managed,
    /// The GC's heap size, only when a rule asks for it.
    Heap,
    /// The resident set, only when a rule asks for it.
    Rss,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Type => "type",
            SubjectKind::Site => "site",
            SubjectKind::Native => "native",
            SubjectKind::NativeSite => "native_site",
            SubjectKind::Managed => "managed",
            SubjectKind::Heap => "heap",
            SubjectKind::Rss => "rss",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    /// The soak could not be judged (no agent, no comparable points, too short, worker died).
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Error => "error",
        }
    }
}

/// A sampled call site named under a type verdict.
#[derive(Debug, Clone, Serialize)]
pub struct SiteRef {
    pub site: String,
    pub location: Option<String>,
    pub verdict: SoakVerdict,
    pub bytes_per_hour: f64,
    pub live_bytes: f64,
    pub samples: f64,
}

/// One verdict subject.
#[derive(Debug, Clone, Serialize)]
pub struct Subject {
    pub kind: SubjectKind,
    /// Stable across runs (no pid): `type:T`, `site:T @ S`, `native`, `native:S`, `managed`,
    /// `heap`, `rss`. Baselines match on it.
    pub id: String,
    /// How the report names it: `T`, `T @ S (File.cs:12)`, `native memory`, …
    pub label: String,
    pub pid: u32,
    pub type_name: Option<String>,
    pub site: Option<String>,
    pub location: Option<String>,
    pub frames: Vec<String>,
    pub frame_lines: Vec<Option<String>>,
    /// `census` (exact), `retained` (sampled), `retained_by_type` (sampled; no census on this
    /// runtime), `native` (exact), `native_sampled`, `summary`.
    pub source: &'static str,
    pub exact: bool,
    pub verdict: SoakVerdict,
    /// A `--fail-on` rule (or the default) covers this subject.
    pub gated: bool,
    /// The rule whose threshold the verdict was judged against.
    pub rule: Option<String>,
    /// Rules this subject breaks (a leaking verdict at the rule's threshold, or a live size).
    pub failed_rules: Vec<String>,
    /// Its failures were already in the baseline at a comparable rate: reported, not failed.
    pub known_in_baseline: bool,
    /// Its peak is at least what its growth threshold allows over the judged window: enough
    /// memory for a verdict to matter (`gate::material`).
    pub material: bool,
    /// Gated, material, and too few comparable points: it keeps the soak from passing.
    pub blocking: bool,
    pub growth: Trend,
    pub live_bytes: f64,
    /// Objects (managed) or allocations (native) at the end.
    pub live_count: f64,
    pub peak_bytes: f64,
    /// Type (and native) verdicts: the sampled call sites of this type (of native memory),
    /// leaking first, then largest (empty: none sampled).
    pub sites: Vec<SiteRef>,
    /// Producer time (ms since the process started) from which this verdict held to the end.
    pub verdict_since_ms: Option<f64>,
    /// Type verdicts: the retention path whose instances kept rising (the owner to fix, even
    /// with no call site sampled), and the main path of the latest retention record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_to_fix: Option<crate::path_growth::GrowingPath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_alive_by: Option<String>,
    /// One paragraph: what was measured and why this verdict.
    pub evidence: String,
}

impl Subject {
    pub fn failing(&self) -> bool {
        !self.failed_rules.is_empty() && !self.known_in_baseline
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleReport {
    pub rule: String,
    /// The default rule (no `--fail-on` given).
    pub default: bool,
    pub subjects: usize,
    /// Subject ids breaking it (including ones known in the baseline).
    pub violations: Vec<String>,
    pub known_in_baseline: Vec<String>,
    /// Subjects it covers that carry material memory but are not decided: too few points for a
    /// verdict, or grown over the window with a recent part that cannot tell yet.
    pub unjudged: usize,
    /// `fail`, `pass`, or `inconclusive` (the soak lacked the evidence to check it).
    pub result: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// The agent said it induces full GCs (soak mode).
    pub announced: bool,
    pub announcement: Option<String>,
    pub induced_gcs: u64,
    pub census_records: u64,
    pub retained_records: u64,
    pub census_pause_ms_max: f64,
    pub census_pause_ms_mean: f64,
    /// The agent's reason when the census is unavailable (type verdicts then use samples).
    pub census_unavailable: Option<String>,
    /// Producer time of the last point, ms.
    pub data_ms: f64,
    pub warmup_ms: f64,
    /// Comparable points (censuses, else retained reports) after warm-up.
    pub points_after_warmup: usize,
    /// Approximate memory the collector held for soak series at the end.
    pub series_bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryLine {
    pub latest_bytes: f64,
    pub growth: Trend,
}

/// RSS, the GC's heap and live data side by side, per process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessMemory {
    pub pid: u32,
    pub rss: Option<MemoryLine>,
    /// The GC's heap: the sum of its generation sizes after the latest GC (what it holds,
    /// including fragmentation and free space it keeps for reuse).
    pub heap: Option<MemoryLine>,
    /// Live managed data: the census total after each induced full GC.
    pub live: Option<MemoryLine>,
    /// Native live bytes (shim).
    pub native: Option<MemoryLine>,
    /// RSS (or the heap) grew while live data did not: memory kept by the GC or the allocator.
    pub kept_not_leaked: bool,
    pub interpretation: Vec<String>,
    /// The fastest steadily growing types (census), whatever their verdict: where live data goes.
    pub growing_types: Vec<GrowingType>,
    /// Set when RSS, the heap, live data or native memory leaks while no rule breaks: what
    /// grows and what it means (also in `warnings`).
    pub warning: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Counts {
    pub leaking: usize,
    pub plateaued: usize,
    pub stable: usize,
    pub inconclusive: usize,
    /// Gated subjects left without a verdict (too few points) whose memory is too small to
    /// matter (`gate::material`): they do not keep the soak from passing.
    pub too_small_to_matter: usize,
    /// Subjects judged in all.
    pub judged: usize,
    /// Stable and inconclusive subjects judged but not listed in `subjects`.
    pub unlisted: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SettingsReport {
    pub duration_ms: u64,
    pub warmup_ms: f64,
    /// `--warmup` was not given: the default fraction of the soak was used.
    pub warmup_default: bool,
    pub gc_every_ms: u64,
    /// `--gc-every` was not given: chosen from `--duration` and `--warmup`.
    pub gc_every_chosen: bool,
    pub allow_short: bool,
    pub fail_on: Vec<String>,
    pub default_rule: bool,
    pub strict: bool,
    pub baseline: Option<String>,
    pub trend: TrendSettings,
    pub memory_threshold_bytes_per_hour: f64,
}

/// The `soak` section of report.json (schema `leakscope.soak/1`).
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub schema: &'static str,
    pub outcome: Outcome,
    /// 0 pass, 1 leak (or regression), 2 usage or infrastructure error.
    pub exit_code: i32,
    /// One line: the verdict in words.
    pub headline: String,
    /// Why the soak could not be judged (outcome `error`), or what weakens it.
    pub problems: Vec<String>,
    /// Whether it had the evidence a verdict needs; what was missing and what would suffice.
    pub sufficiency: Sufficiency,
    pub warnings: Vec<String>,
    pub settings: SettingsReport,
    pub measurement: Measurement,
    pub rules: Vec<RuleReport>,
    pub counts: Counts,
    /// Failing first, then leaking, inconclusive, plateaued, stable.
    pub subjects: Vec<Subject>,
    pub memory: Vec<ProcessMemory>,
    pub baseline: Option<Comparison>,
    /// Producer time from which the outcome held to the end (time to verdict).
    pub decided_after_ms: Option<f64>,
    /// The subject that settled it: the first to leak for good (fail), or the last to stop
    /// looking like a leak (pass).
    pub decided_by: Option<String>,
}

/// Whether the soak had the evidence a verdict needs (`soak.sufficiency` in report.json).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Sufficiency {
    /// Every gated subject with material memory had a verdict: the soak may pass.
    pub enough: bool,
    /// Comparable points (censuses, else retained reports) after the warm-up, and how many a
    /// verdict needs.
    pub points_after_warmup: usize,
    pub points_needed: usize,
    /// Gated subjects with material memory and too few points: they keep the soak from passing.
    pub blocking: usize,
    /// Gated subjects that grew faster than their rule over the window, with confidence, but
    /// whose recent part is unclear (`recent_unclear`): they keep the soak from passing too.
    pub unsettled: usize,
    /// Gated subjects with too few points and too little memory to matter: counted, not blocking.
    pub too_small_to_matter: usize,
    /// Sampled subjects with too few points whose exact total was judged: not blocking.
    pub covered_by_exact: usize,
    /// The largest blocking subjects, e.g. `SoakApp.AuditRecord (1 point)`.
    pub examples: Vec<String>,
    /// What was missing: "1 comparable point after the 12s warm-up, 8 needed".
    pub missing: Option<String>,
    /// What would suffice: "use --duration 6m00s or more, or --gc-every 5s".
    pub suffice: Option<String>,
    pub suggested_duration_ms: Option<u64>,
    pub suggested_gc_every_ms: Option<u64>,
}

impl Sufficiency {
    /// "INCONCLUSIVE: 1 comparable point after the 12s warm-up, 8 needed: use --duration 6m00s or more, or --gc-every 5s".
    pub fn headline(&self) -> Option<String> {
        let missing = self.missing.as_ref()?;
        Some(match &self.suffice {
            Some(s) => format!("INCONCLUSIVE: {missing}: {s}"),
            None => format!("INCONCLUSIVE: {missing}"),
        })
    }
}

/// A type growing while the census total grows.
#[derive(Debug, Clone, Serialize)]
pub struct GrowingType {
    pub id: String,
    pub label: String,
    pub bytes_per_hour: f64,
    pub verdict: SoakVerdict,
}

#[derive(Debug, Clone, Serialize)]
pub struct Regression {
    pub subject: String,
    /// `new_leak` (not leaking in the baseline), `growth_up` (leaking faster, beyond both
    /// intervals) or `new_violation` (a size rule newly broken).
    pub kind: &'static str,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub file: String,
    pub baseline_outcome: String,
    /// Subjects of this run found in the baseline.
    pub matched: usize,
    pub regressions: Vec<Regression>,
    /// Failing here, but already in the baseline at a comparable rate.
    pub known: Vec<String>,
    /// Leaking in the baseline, no longer leaking here.
    pub fixed: Vec<String>,
}
