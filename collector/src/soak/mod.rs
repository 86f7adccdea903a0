//! Soak verdicts: `leakscope soak` runs a worker with the agent inducing full GCs at fixed
//! points, then gives every managed type, call site and native subject a verdict — leaking,
//! plateaued, stable or inconclusive — with its growth rate (bytes per hour), a confidence
//! interval and the evidence, and turns the `--fail-on` rules into an exit code.
//!
//! Where the numbers come from (docs/PROTOCOL.md):
//!
//! * **types** — `census` records: exact live bytes per type right after each induced full GC.
//!   Low noise, no sampling, so even a drip of a few hundred bytes per second shows up in
//!   minutes. On runtimes without the census (.NET 8) the sampled `retained` rows are summed
//!   by type instead, and the report says so.
//! * **call sites** — `retained` records: sampled survivors of each full GC by (type, site).
//!   Sampling (about one object per 100 KiB allocated) makes them noisy and blind to slow
//!   drips, so a type verdict names the site when samples exist and says so when not.
//! * **native** — the shim's exact live bytes, and its sampled native sites.
//! * **memory totals** — RSS, the GC's heap size and live managed data side by side, to tell
//!   "the GC (or the allocator) kept memory" from "the application keeps objects".
//!
//! The statistics are in [`crate::analysis::assess_trend`]; this module picks the series,
//! applies the rules, compares with a baseline and writes the verdicts into report.json.

pub mod baseline;
pub mod data;
pub mod gate;
pub mod html;
pub mod junit;
pub mod plan;
pub mod rules;

use crate::analysis::{Point, SoakVerdict, Trend, TrendReason, TrendSettings, assess_trend, sen_fit};
use crate::error::{CliError, EXIT_FAILURE, EXIT_USAGE};
use crate::protocol::Source;
use crate::report::SessionInfo;
use crate::store::{Producer, SeriesPoint, Stack, Store};
use crate::units::{format_bytes, format_count, format_duration};
use rules::{Quantity, Rule, Scope, Target};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Version of the `soak` section of report.json (documented in docs/CLI.md).
pub const SOAK_SCHEMA: &str = "leakscope.soak/1";
/// The gate when no `--fail-on` is given: the motivating leak (100 MB a week ≈ 600 kB/h) is
/// well above it; runtime caches that add a few objects after warm-up are well below it.
pub const DEFAULT_RULE: &str = "growth > 100kB/h";
/// The longest induced full GC period leakscope chooses by itself (without `--gc-every`, the
/// period is chosen from the duration: [`plan::choose_gc_every`]). A comparable point every
/// 30 s costs one blocking GC (and a heap walk) per 30 s, and gives 12 points after the warm-up
/// of a soak of about 8 minutes; shorter soaks get a shorter period.
pub const DEFAULT_GC_EVERY: Duration = Duration::from_secs(30);
/// Default warm-up: this fraction of the soak (of `--duration`, or of the data when the soak
/// ended early).
pub const DEFAULT_WARMUP_FRACTION: f64 = 0.2;
/// RSS, heap and live totals are judged against this rate for the memory comparison.
pub const MEMORY_THRESHOLD_PER_HOUR: f64 = 1e6;
/// Stable subjects listed in report.json (largest first); the rest are counted.
const MAX_STABLE_LISTED: usize = 100;
/// Inconclusive subjects listed (largest growth first); the rest are counted.
const MAX_INCONCLUSIVE_LISTED: usize = 200;
/// Sampled sites named under a type verdict.
const SITES_PER_TYPE: usize = 3;
/// Prefixes of the data re-judged to find when each verdict was reached.
const VERDICT_CUTS: usize = 40;

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

/// Settings with the rules parsed and the baseline loaded.
#[derive(Debug, Clone)]
pub struct Context {
    pub settings: SoakSettings,
    pub rules: Vec<Rule>,
    /// No `--fail-on` was given: [`DEFAULT_RULE`] and [`gate::DEFAULT_MANAGED_RULE`] apply.
    pub default_rule: bool,
    pub baseline: Option<baseline::Baseline>,
    pub trend: TrendSettings,
}

impl Context {
    /// Parses the rules and loads the baseline; both are usage errors (exit 2) when bad.
    pub fn new(settings: SoakSettings) -> Result<Context, CliError> {
        let mut rules = Vec::new();
        for text in &settings.fail_on {
            let rule = rules::parse_rule(text).map_err(|e| CliError::usage(e.render()).hint(rules::RULE_EXAMPLES))?;
            rules.push(rule);
        }
        let default_rule = rules.is_empty();
        if default_rule {
            for text in [DEFAULT_RULE, gate::DEFAULT_MANAGED_RULE] {
                rules.push(rules::parse_rule(text).expect("the default rules parse"));
            }
        }
        let baseline = match &settings.baseline {
            Some(path) => Some(baseline::load(path).map_err(|e| {
                CliError::usage(e).hint("--baseline takes the report.json of an earlier `leakscope soak`")
            })?),
            None => None,
        };
        Ok(Context { settings, rules, default_rule, baseline, trend: TrendSettings::default() })
    }

    /// The threshold used for subjects no growth rule covers (shown, not gated).
    fn info_threshold(&self) -> f64 {
        rules::parse_rule(DEFAULT_RULE).map(|r| r.value).unwrap_or(1e5)
    }
}

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
    /// memory for a verdict to matter ([`gate::material`]).
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
    /// Subjects it covers that carry material memory but had too few points for a verdict.
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
    pub growing_types: Vec<gate::GrowingType>,
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
    /// matter ([`gate::material`]): they do not keep the soak from passing.
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
    pub sufficiency: gate::Sufficiency,
    pub warnings: Vec<String>,
    pub settings: SettingsReport,
    pub measurement: Measurement,
    pub rules: Vec<RuleReport>,
    pub counts: Counts,
    /// Failing first, then leaking, inconclusive, plateaued, stable.
    pub subjects: Vec<Subject>,
    pub memory: Vec<ProcessMemory>,
    pub baseline: Option<baseline::Comparison>,
    /// Producer time from which the outcome held to the end (time to verdict).
    pub decided_after_ms: Option<f64>,
    /// The subject that settled it: the first to leak for good (fail), or the last to stop
    /// looking like a leak (pass).
    pub decided_by: Option<String>,
}

/// A series to judge, before judging.
struct Candidate {
    kind: SubjectKind,
    pid: u32,
    type_name: Option<String>,
    site: Option<String>,
    location: Option<String>,
    frames: Option<Arc<Stack>>,
    source: &'static str,
    exact: bool,
    points: Vec<Point>,
    live_bytes: f64,
    live_count: f64,
    peak_bytes: f64,
    /// Sampled subjects: live samples behind the latest point (for the sampling error).
    samples: Option<f64>,
}

impl Candidate {
    fn target(&self) -> Target<'_> {
        let t = self.type_name.as_deref().unwrap_or("");
        let s = self.site.as_deref().unwrap_or("");
        match self.kind {
            SubjectKind::Type => Target::Type(t),
            SubjectKind::Site => Target::Site(t, s),
            SubjectKind::Native => Target::Native,
            SubjectKind::NativeSite => Target::NativeSite(s),
            SubjectKind::Managed => Target::Managed,
            SubjectKind::Heap => Target::Heap,
            SubjectKind::Rss => Target::Rss,
        }
    }

    fn id(&self) -> String {
        let t = self.type_name.as_deref().unwrap_or("");
        let s = self.site.as_deref().unwrap_or("");
        match self.kind {
            SubjectKind::Type => format!("type:{t}"),
            SubjectKind::Site => format!("site:{t} @ {s}"),
            SubjectKind::Native => "native".to_string(),
            SubjectKind::NativeSite => format!("native:{s}"),
            SubjectKind::Managed => "managed".to_string(),
            SubjectKind::Heap => "heap".to_string(),
            SubjectKind::Rss => "rss".to_string(),
        }
    }

    fn label(&self) -> String {
        let t = self.type_name.as_deref().unwrap_or("");
        let s = self.site.as_deref().unwrap_or("");
        let mut l = match self.kind {
            SubjectKind::Type => t.to_string(),
            SubjectKind::Site => format!("{t} @ {s}"),
            SubjectKind::Native => "native memory".to_string(),
            SubjectKind::NativeSite => format!("native @ {s}"),
            SubjectKind::Managed => "live managed data".to_string(),
            SubjectKind::Heap => "managed heap".to_string(),
            SubjectKind::Rss => "RSS".to_string(),
        };
        if let Some(loc) = &self.location {
            let _ = write!(l, " ({loc})");
        }
        l
    }
}

fn to_points(points: &[SeriesPoint]) -> Vec<Point> {
    points.iter().map(|p| Point { t_ms: p.t_ms, bytes: p.bytes }).collect()
}

/// The latest producer time of any agent or shim, ms.
fn data_span_ms(store: &Store) -> f64 {
    store.producers().filter_map(|p| p.last_t_ms).max().unwrap_or(0) as f64
}

/// Where the warm-up ends, in producer time.
pub fn warmup_end_ms(settings: &SoakSettings, data_ms: f64) -> f64 {
    match settings.warmup_ms {
        Some(w) => w as f64,
        None => DEFAULT_WARMUP_FRACTION * (settings.duration_ms as f64).min(data_ms.max(0.0)),
    }
}

fn candidates(store: &Store, ctx: &Context) -> Vec<Candidate> {
    let mut out = Vec::new();
    let wants = |scope: fn(&Scope) -> bool| ctx.rules.iter().any(|r| scope(&r.scope));
    for p in store.producers() {
        let pid = p.key.pid;
        match p.key.source {
            Source::Agent => agent_candidates(p, &mut out),
            Source::Shim => shim_candidates(store, p, &mut out),
        }
        let soak = &p.soak;
        let totals: [(SubjectKind, &data::Series, bool, bool); 3] = [
            (SubjectKind::Managed, &soak.live, wants(|s| *s == Scope::Managed), true),
            (SubjectKind::Heap, &soak.heap, wants(|s| *s == Scope::Heap), false),
            (SubjectKind::Rss, &soak.rss, wants(|s| *s == Scope::Rss), false),
        ];
        for (kind, series, wanted, exact) in totals {
            // RSS comes from the agent's summaries when there is an agent, else from the shim.
            let duplicate = kind == SubjectKind::Rss
                && p.key.source == Source::Shim
                && store.producers().any(|a| a.key.pid == pid && a.key.source == Source::Agent);
            if wanted && !series.is_empty() && !duplicate {
                out.push(total_candidate(kind, pid, series, exact));
            }
        }
    }
    out
}

fn total_candidate(kind: SubjectKind, pid: u32, series: &data::Series, exact: bool) -> Candidate {
    let last = series.last().copied().unwrap_or(SeriesPoint { t_ms: 0.0, bytes: 0.0, count: 0.0, collected: f64::NAN });
    Candidate {
        kind,
        pid,
        type_name: None,
        site: None,
        location: None,
        frames: None,
        source: if kind == SubjectKind::Managed { "census" } else { "summary" },
        exact,
        points: to_points(series.points()),
        live_bytes: last.bytes,
        live_count: last.count,
        peak_bytes: series.peak_bytes(),
        samples: None,
    }
}

fn agent_candidates(p: &Producer, out: &mut Vec<Candidate>) {
    let pid = p.key.pid;
    let soak = &p.soak;
    if soak.census_records > 0 {
        for (name, ts) in &soak.types {
            let last = ts.series.last().copied();
            out.push(Candidate {
                kind: SubjectKind::Type,
                pid,
                type_name: Some(name.clone()),
                site: None,
                location: None,
                frames: None,
                source: "census",
                exact: true,
                points: to_points(&data::SoakData::with_leading_zeros(&ts.series, &soak.live, soak.censuses_complete)),
                live_bytes: last.map(|l| l.bytes).unwrap_or(0.0),
                live_count: last.map(|l| l.count).unwrap_or(0.0),
                peak_bytes: ts.series.peak_bytes(),
                samples: None,
            });
        }
    } else if soak.retained_records > 0 {
        // No census on this runtime: sum the sampled sites by type, point by point.
        let mut by_type: HashMap<&str, Vec<&data::RetainedSite>> = HashMap::new();
        for s in soak.retained.values() {
            by_type.entry(s.type_name.as_str()).or_default().push(s);
        }
        for (name, sites) in by_type {
            let mut sums: std::collections::BTreeMap<u64, (f64, f64)> = Default::default();
            for s in &sites {
                for pt in s.series.points() {
                    let e = sums.entry(pt.t_ms.to_bits()).or_insert((0.0, 0.0));
                    e.0 += pt.bytes;
                    e.1 += pt.count;
                }
            }
            let mut points: Vec<(f64, f64, f64)> =
                sums.into_iter().map(|(t, (b, c))| (f64::from_bits(t), b, c)).collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let last = points.last().copied().unwrap_or((0.0, 0.0, 0.0));
            out.push(Candidate {
                kind: SubjectKind::Type,
                pid,
                type_name: Some(name.to_string()),
                site: None,
                location: None,
                frames: None,
                source: "retained_by_type",
                exact: false,
                peak_bytes: points.iter().map(|p| p.1).fold(0.0, f64::max),
                points: points.iter().map(|&(t_ms, bytes, _)| Point { t_ms, bytes }).collect(),
                live_bytes: last.1,
                live_count: last.2,
                samples: Some(sites.iter().map(|s| s.samples).sum()),
            });
        }
    }
    for s in soak.retained.values() {
        let last = s.series.last().copied();
        out.push(Candidate {
            kind: SubjectKind::Site,
            pid,
            type_name: Some(s.type_name.clone()),
            site: Some(s.site.clone()),
            location: s.location.clone(),
            frames: s.frames.clone().or_else(|| s.stack_id.and_then(|id| p.stack(id).cloned())),
            source: "retained",
            exact: false,
            points: to_points(&data::SoakData::with_leading_zeros(&s.series, &soak.retained_times, true)),
            live_bytes: last.map(|l| l.bytes).unwrap_or(0.0),
            live_count: last.map(|l| l.count).unwrap_or(0.0),
            peak_bytes: s.series.peak_bytes(),
            samples: Some(s.samples),
        });
    }
}

fn shim_candidates(_store: &Store, p: &Producer, out: &mut Vec<Candidate>) {
    let pid = p.key.pid;
    let soak = &p.soak;
    if !soak.native_live.is_empty() {
        let last = soak.native_live.last().copied();
        out.push(Candidate {
            kind: SubjectKind::Native,
            pid,
            type_name: None,
            site: None,
            location: None,
            frames: None,
            source: "native",
            exact: true,
            points: to_points(soak.native_live.points()),
            live_bytes: last.map(|l| l.bytes).unwrap_or(0.0),
            live_count: last.map(|l| l.count).unwrap_or(0.0),
            peak_bytes: soak.native_live.peak_bytes(),
            samples: None,
        });
    }
    for s in p.sites() {
        out.push(Candidate {
            kind: SubjectKind::NativeSite,
            pid,
            type_name: None,
            site: Some(s.site.clone()),
            location: s.location.clone(),
            frames: p.frames_of(s),
            source: "native_sampled",
            exact: false,
            points: s.analysis_points(),
            live_bytes: s.latest.bytes,
            live_count: s.latest.count,
            peak_bytes: s.peak_bytes,
            samples: Some(s.latest.samples),
        });
    }
}

/// Judges every subject, applies the rules and the baseline, and writes the soak section.
pub fn evaluate(store: &Store, session: &SessionInfo, ctx: &Context) -> SoakReport {
    let data_ms = data_span_ms(store);
    let warmup = warmup_end_ms(&ctx.settings, data_ms);
    let info_tau = ctx.info_threshold();
    let mut subjects: Vec<Subject> =
        candidates(store, ctx).into_iter().map(|c| judge(c, ctx, warmup, info_tau)).collect();
    corroborate_sites(store, ctx, &mut subjects, warmup);
    attach_sites(&mut subjects);
    attach_paths(store, &mut subjects);
    if ctx.default_rule {
        gate::release_explained_total(&mut subjects);
    }
    let comparison = ctx.baseline.as_ref().map(|b| baseline::compare(b, &mut subjects));
    let growing = gate::largest_growing_types(&subjects, ctx.trend.plateau_alpha);
    for s in subjects.iter_mut() {
        s.evidence = evidence(s);
        gate::annotate_total(s, growing.get(&s.pid));
    }

    let measurement = measurement(store, warmup, data_ms);
    let sufficiency =
        gate::assess(&mut subjects, ctx, measurement.points_after_warmup, warmup, data_ms, session.interval_ms);
    let mut problems = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let agents: Vec<&Producer> = store.producers().filter(|p| p.key.source == Source::Agent).collect();
    if agents.is_empty() {
        problems.push(
            "no agent connected, so nothing was measured: check that the command starts a .NET \
             process and that the CORECLR_* variables reach it"
                .to_string(),
        );
    } else if !agents.iter().any(|p| p.soak.has_comparable_points()) {
        problems.push(
            "the agent sent no comparable points (no `census` or `retained` record after a full \
             GC): is it a leakscope agent with soak mode (LEAKSCOPE_INDUCE_FULL_GC)? Was the soak \
             shorter than --gc-every?"
                .to_string(),
        );
    }
    for r in ctx.rules.iter().filter(|_| !ctx.default_rule) {
        if !subjects.iter().any(|s| rule_target_matches(r, s)) && !subjects.is_empty() {
            warnings.push(format!("rule `{}` matched no subject", r.text));
        }
    }
    if let (None, Some(exit)) = (&session.stopped_by, &session.exit) {
        let ended_early = (data_ms as u64) < ctx.settings.duration_ms.saturating_sub(1000);
        if exit.code != Some(0) {
            problems.push(format!("the worker ended by itself with {} before the soak was over", exit.describe()));
        } else if ended_early {
            warnings.push(format!(
                "the worker exited (code 0) after {} of the {} soak",
                format_duration(Duration::from_millis(data_ms as u64)),
                format_duration(Duration::from_millis(ctx.settings.duration_ms))
            ));
        }
    }
    let types_leak: Vec<u32> = subjects
        .iter()
        .filter(|s| s.kind == SubjectKind::Type && s.verdict == SoakVerdict::Leaking)
        .map(|s| s.pid)
        .collect();
    let mut memory = memory_report(store, warmup, &ctx.trend, &types_leak);
    for m in memory.iter_mut() {
        m.growing_types = growing.get(&m.pid).cloned().unwrap_or_default();
    }
    let native_tracked = session.native_tracking.as_ref().is_none_or(|n| n.enabled);
    let signals = gate::process_signals(&memory, &subjects, &growing, native_tracked, ctx.settings.duration_ms);
    for sig in &signals {
        warnings.push(sig.full.clone());
        if let Some(m) = memory.iter_mut().find(|m| m.pid == sig.pid) {
            m.warning = Some(sig.full.clone());
        }
    }
    // Too little evidence is a problem of its own, after the ones that explain it.
    let mut inconclusive: Option<String> = None;
    if problems.is_empty() && !sufficiency.enough {
        problems.push(insufficiency_problem(&sufficiency, measurement.points_after_warmup));
        inconclusive = sufficiency.headline().map(|mut h| {
            for sig in &signals {
                let _ = write!(h, "; meanwhile {}", sig.short);
            }
            h
        });
    }
    if let Some(by) = &session.stopped_by {
        if by != "--duration elapsed" {
            warnings.push(format!(
                "the soak was ended early ({by}) after {}: the verdicts use the data so far",
                format_duration(Duration::from_millis(data_ms as u64))
            ));
        }
    }
    if ctx.settings.allow_short {
        warnings
            .push("started with --allow-short: the settings could not promise the points a verdict needs".to_string());
    }
    for p in &agents {
        if p.soak.has_comparable_points() && p.soak.announced.is_none() && p.soak.census_records == 0 {
            warnings.push(format!(
                "pid {}: the agent did not announce soak mode; the comparable points come from the \
                 application's own full GCs",
                p.key.pid
            ));
        }
        if p.soak.census_records == 0 && p.soak.retained_records > 0 && p.soak.census_unavailable.is_none() {
            warnings.push(format!(
                "pid {}: no census records (LEAKSCOPE_CENSUS=0?): type verdicts are sampled estimates, and slow drips may go unseen",
                p.key.pid
            ));
        }
        if let Some(msg) = &p.soak.census_unavailable {
            warnings.push(format!(
                "pid {}: {msg} — type verdicts are sampled estimates, and slow drips may go unseen",
                p.key.pid
            ));
        }
        if p.soak.census_unreadable > 0 {
            warnings.push(format!("pid {}: the census could not read {} objects", p.key.pid, p.soak.census_unreadable));
        }
    }

    let failing = failing_subjects(&subjects);
    let regressions = comparison.as_ref().map(|c| c.regressions.len()).unwrap_or(0);
    let outcome = if failing > 0 {
        Outcome::Fail
    } else if !problems.is_empty() {
        Outcome::Error
    } else {
        Outcome::Pass
    };
    let exit_code = match outcome {
        Outcome::Pass => 0,
        Outcome::Fail => EXIT_FAILURE,
        Outcome::Error => EXIT_USAGE,
    };
    let rules_report = rule_reports(ctx, &subjects, &sufficiency);
    let (decided_after_ms, decided_by) = decided_after(store, ctx, &subjects, warmup, outcome);

    let mut counts =
        Counts { judged: subjects.len(), too_small_to_matter: sufficiency.too_small_to_matter, ..Counts::default() };
    for s in &subjects {
        match s.verdict {
            SoakVerdict::Leaking => counts.leaking += 1,
            SoakVerdict::Plateaued => counts.plateaued += 1,
            SoakVerdict::Stable => counts.stable += 1,
            SoakVerdict::Inconclusive => counts.inconclusive += 1,
        }
    }
    let mut listed = list_subjects(subjects);
    counts.unlisted = counts.judged - listed.len();
    set_verdict_times(store, ctx, &mut listed, warmup);
    let headline = headline(&Verdicts {
        outcome,
        subjects: &listed,
        problems: &problems,
        failing,
        regressions,
        counts: &counts,
        inconclusive,
        signals: &signals,
    });
    SoakReport {
        schema: SOAK_SCHEMA,
        outcome,
        exit_code,
        headline,
        problems,
        sufficiency,
        warnings,
        settings: SettingsReport {
            duration_ms: ctx.settings.duration_ms,
            warmup_ms: warmup,
            warmup_default: ctx.settings.warmup_ms.is_none(),
            gc_every_ms: ctx.settings.gc_every_ms,
            gc_every_chosen: ctx.settings.gc_every_chosen,
            allow_short: ctx.settings.allow_short,
            fail_on: ctx.rules.iter().map(|r| r.text.clone()).collect(),
            default_rule: ctx.default_rule,
            strict: ctx.settings.strict,
            baseline: ctx.baseline.as_ref().map(|b| b.file.display().to_string()),
            trend: ctx.trend.clone(),
            memory_threshold_bytes_per_hour: MEMORY_THRESHOLD_PER_HOUR,
        },
        measurement,
        rules: rules_report,
        counts,
        subjects: listed,
        memory,
        baseline: comparison,
        decided_after_ms,
        decided_by,
    }
}

fn failing_subjects(subjects: &[Subject]) -> usize {
    subjects.iter().filter(|s| s.failing()).count()
}

/// The problem a soak without enough evidence reports: it keeps the words "too short" when the
/// whole soak lacked points.
fn insufficiency_problem(s: &gate::Sufficiency, points: usize) -> String {
    let suffice = s.suffice.clone().unwrap_or_default();
    if points < s.points_needed {
        format!("the soak was too short to judge: only {}; {suffice}", s.missing.clone().unwrap_or_default())
    } else {
        format!("not every subject could be judged: {}; {suffice}", s.missing.clone().unwrap_or_default())
    }
}

fn judge(c: Candidate, ctx: &Context, warmup: f64, info_tau: f64) -> Subject {
    let target = c.target();
    let growth_rules: Vec<&Rule> =
        ctx.rules.iter().filter(|r| r.quantity == Quantity::Growth && r.applies_to(target)).collect();
    let live_rules: Vec<&Rule> =
        ctx.rules.iter().filter(|r| r.quantity == Quantity::Live && r.applies_to(target)).collect();
    let strictest = growth_rules.iter().min_by(|a, b| a.value.total_cmp(&b.value)).copied();
    let tau = strictest.map(|r| r.value).unwrap_or(info_tau);
    let judge_at = |tau: f64| {
        let mut g = assess_trend(&c.points, warmup, tau, &ctx.trend);
        if let Some(samples) = c.samples {
            widen_for_sampling(&mut g, samples, c.live_bytes);
        }
        g
    };
    let growth = judge_at(tau);
    let mut failed_rules = Vec::new();
    for r in &growth_rules {
        let verdict = if r.value == tau { growth.verdict } else { judge_at(r.value).verdict };
        if verdict == SoakVerdict::Leaking {
            failed_rules.push(r.text.clone());
        }
    }
    for r in &live_rules {
        if r.exceeded_by(c.live_bytes) {
            failed_rules.push(r.text.clone());
        }
    }
    let gated = !growth_rules.is_empty() || !live_rules.is_empty();
    if ctx.settings.strict && gated && growth.verdict == SoakVerdict::Inconclusive && !growth_rules.is_empty() {
        failed_rules.push("--strict (inconclusive)".to_string());
    }
    let (frames, frame_lines) = match &c.frames {
        Some(st) => (st.frames.clone(), (0..st.frames.len()).map(|i| st.line(i).map(str::to_string)).collect()),
        None => (Vec::new(), Vec::new()),
    };
    Subject {
        kind: c.kind,
        id: c.id(),
        label: c.label(),
        pid: c.pid,
        type_name: c.type_name.clone(),
        site: c.site.clone(),
        location: c.location.clone(),
        frames,
        frame_lines,
        source: c.source,
        exact: c.exact,
        verdict: growth.verdict,
        gated,
        rule: strictest.map(|r| r.text.clone()),
        failed_rules,
        known_in_baseline: false,
        material: false,
        blocking: false,
        growth,
        live_bytes: c.live_bytes,
        live_count: c.live_count,
        peak_bytes: c.peak_bytes,
        sites: Vec::new(),
        verdict_since_ms: None,
        owner_to_fix: None,
        kept_alive_by: None,
        evidence: String::new(),
    }
}

/// A sampled site is called leaking only when the exact census of its type agrees at the
/// site's threshold: samples of a cache's entries stay alive together for the entries'
/// lifetime, so their sum drifts like a random walk that a trend test over a short window can
/// mistake for growth. Without a census (.NET 8) the sampled verdict stands.
fn corroborate_sites(store: &Store, ctx: &Context, subjects: &mut [Subject], warmup: f64) {
    // The exact subject that must agree: a site's type (census), a native site's native total.
    let exact: HashMap<(u32, SubjectKind, String), usize> = subjects
        .iter()
        .enumerate()
        .filter(|(_, s)| s.exact && matches!(s.kind, SubjectKind::Type | SubjectKind::Native))
        .map(|(i, s)| ((s.pid, s.kind, s.type_name.clone().unwrap_or_default()), i))
        .collect();
    let mut vetoed = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        if s.verdict != SoakVerdict::Leaking {
            continue;
        }
        let key = match s.kind {
            SubjectKind::Site => (s.pid, SubjectKind::Type, s.type_name.clone().unwrap_or_default()),
            SubjectKind::NativeSite => (s.pid, SubjectKind::Native, String::new()),
            _ => continue,
        };
        let Some(&ei) = exact.get(&key) else {
            continue;
        };
        let ex = &subjects[ei];
        let tau = s.growth.threshold_bytes_per_hour;
        let agrees = if ex.growth.threshold_bytes_per_hour == tau {
            ex.verdict == SoakVerdict::Leaking
        } else {
            let points = subject_points(store, ex);
            assess_trend(&points, warmup, tau, &ctx.trend).verdict == SoakVerdict::Leaking
        };
        if !agrees {
            vetoed.push(i);
        }
    }
    for i in vetoed {
        let s = &mut subjects[i];
        s.verdict = SoakVerdict::Inconclusive;
        s.growth.verdict = SoakVerdict::Inconclusive;
        s.growth.reason = TrendReason::NotCorroborated;
        s.failed_rules.retain(|r| !ctx.rules.iter().any(|x| &x.text == r && x.quantity == Quantity::Growth));
    }
}

/// A sampled series that grows is a counting process: each new sample adds one weight, so the
/// growth over the window is known to about ±1.96/√k with k samples gained — wider than Sen's
/// interval, which treats the points' scatter as independent. The reported interval is the
/// hull of both.
pub(crate) fn widen_for_sampling(g: &mut Trend, samples: f64, live_bytes: f64) {
    let (Some([lo, hi]), true) = (g.ci_bytes_per_hour, samples > 0.0 && live_bytes > 0.0) else {
        return;
    };
    let bytes_per_sample = live_bytes / samples;
    let gained = ((g.end_bytes - g.start_bytes) / bytes_per_sample).abs();
    if gained < 1.0 {
        return;
    }
    let rel = 1.96 / gained.sqrt();
    let slope = g.bytes_per_hour;
    let (plo, phi) = (slope - rel * slope.abs(), slope + rel * slope.abs());
    g.ci_bytes_per_hour = Some([lo.min(plo), hi.max(phi)]);
    g.samples_gained = Some(gained);
    // A leak call needs the wider interval above the threshold too.
    if g.verdict == SoakVerdict::Leaking && lo.min(plo) <= g.threshold_bytes_per_hour {
        g.verdict = SoakVerdict::Inconclusive;
        g.reason = TrendReason::Straddles;
    }
}

/// Names the sampled call sites of each type verdict.
fn attach_sites(subjects: &mut [Subject]) {
    // Keyed by (pid, type); native sites under the native total's empty type.
    let mut by_type: HashMap<(u32, String), Vec<SiteRef>> = HashMap::new();
    for s in subjects.iter().filter(|s| matches!(s.kind, SubjectKind::Site | SubjectKind::NativeSite)) {
        let t = s.type_name.clone().unwrap_or_default();
        let Some(site) = &s.site else {
            continue;
        };
        if s.peak_bytes <= 0.0 {
            continue;
        }
        by_type.entry((s.pid, t.clone())).or_default().push(SiteRef {
            site: site.clone(),
            location: s.location.clone(),
            verdict: s.verdict,
            bytes_per_hour: s.growth.bytes_per_hour,
            live_bytes: s.live_bytes,
            samples: s.growth.points as f64,
        });
    }
    for refs in by_type.values_mut() {
        refs.sort_by(|a, b| {
            let rank = |r: &SiteRef| (r.verdict == SoakVerdict::Leaking) as u8;
            rank(b)
                .cmp(&rank(a))
                .then(b.live_bytes.total_cmp(&a.live_bytes))
                .then(b.bytes_per_hour.total_cmp(&a.bytes_per_hour))
        });
        refs.truncate(SITES_PER_TYPE);
    }
    for s in subjects.iter_mut().filter(|s| matches!(s.kind, SubjectKind::Type | SubjectKind::Native)) {
        let t = s.type_name.clone().unwrap_or_default();
        if let Some(refs) = by_type.get(&(s.pid, t)) {
            s.sites = refs.clone();
        }
    }
}

/// The managed types whose census already says leaking (during the run, after the planned
/// warm-up): what to ask the agent about, call site sampled or not.
pub fn leaking_types(store: &Store, ctx: &Context) -> Vec<(u32, String)> {
    let warmup = warmup_end_ms(&ctx.settings, ctx.settings.duration_ms as f64);
    let info_tau = ctx.info_threshold();
    candidates(store, ctx)
        .into_iter()
        .map(|c| judge(c, ctx, warmup, info_tau))
        .filter(|s| s.kind == SubjectKind::Type && s.verdict == SoakVerdict::Leaking)
        .filter_map(|s| Some((s.pid, s.type_name?)))
        .collect()
}

/// Type verdicts: what keeps the type alive, from the agent's retention records.
fn attach_paths(store: &Store, subjects: &mut [Subject]) {
    for s in subjects.iter_mut().filter(|s| s.kind == SubjectKind::Type) {
        let Some(type_name) = s.type_name.clone() else { continue };
        s.owner_to_fix = crate::report::owner_to_fix(store, s.pid, Some(&type_name));
        let latest = crate::report::latest_retention(store, s.pid, &type_name);
        s.kept_alive_by = latest.and_then(|r| {
            crate::report::kept_alive_lines(&crate::report::KeptAliveBy::of_type(r, &type_name, 3)).into_iter().next()
        });
    }
}

pub fn rate(bytes_per_hour: f64) -> String {
    if bytes_per_hour.abs() < 0.5 {
        return "0 B/h".to_string();
    }
    let sign = if bytes_per_hour > 0.0 { "+" } else { "" };
    format!("{sign}{}/h", format_bytes(bytes_per_hour))
}

pub fn ci_text(ci: Option<[f64; 2]>) -> String {
    match ci {
        Some([lo, hi]) => format!("95% CI {} to {}", rate(lo), rate(hi)),
        None => "no interval".to_string(),
    }
}

fn span_text(ms: f64) -> String {
    format_duration(Duration::from_millis(ms.max(0.0) as u64))
}

fn clock(ms: f64) -> String {
    crate::units::format_clock(Duration::from_millis(ms.max(0.0) as u64))
}

/// The evidence paragraph of a subject.
fn evidence(s: &Subject) -> String {
    let g = &s.growth;
    let mut e = String::new();
    let what = match (s.kind, s.exact) {
        (SubjectKind::Type, true) => "exact census after each induced full GC",
        (SubjectKind::Type, false) => "sampled survivors of each full GC, summed by type (no census on this runtime)",
        (SubjectKind::Site, _) => "sampled survivors of each full GC",
        (SubjectKind::Native, _) => "the shim's exact native live bytes",
        (SubjectKind::NativeSite, _) => "sampled native allocations still live",
        (SubjectKind::Managed, _) => "census totals after each induced full GC",
        (SubjectKind::Heap, _) => "the GC's generation sizes",
        (SubjectKind::Rss, _) => "resident set size",
    };
    let threshold = rate(g.threshold_bytes_per_hour);
    match g.reason {
        TrendReason::TooFewPoints => {
            let _ = write!(
                e,
                "only {} comparable point{} after warm-up (at least {} needed): soak longer or induce full GCs more often",
                g.points,
                if g.points == 1 { "" } else { "s" },
                TrendSettings::default().min_points
            );
        }
        TrendReason::GrowsThroughout => {
            let _ = write!(
                e,
                "grows at {} ({}, trend p {}) over {} after warm-up — above the {threshold} threshold — and still at {} over the last {} points (trend p {})",
                rate(g.bytes_per_hour),
                ci_text(g.ci_bytes_per_hour),
                p_text(g.p_value),
                span_text(g.window_ms),
                rate(g.recent_bytes_per_hour.unwrap_or(0.0)),
                g.recent_points,
                p_text(g.recent_p_value.unwrap_or(1.0))
            );
        }
        TrendReason::Slowing => {
            let _ = write!(
                e,
                "grew at {} early in the window but only {} over the last {} points: it is slowing down and may level off — soak longer to tell",
                rate(g.early_bytes_per_hour.unwrap_or(0.0)),
                rate(g.recent_bytes_per_hour.unwrap_or(0.0)),
                g.recent_points
            );
        }
        TrendReason::LevelledOff => {
            let recent_hi = g.recent_ci_bytes_per_hour.map(|c| c[1]).unwrap_or(0.0);
            let _ = write!(
                e,
                "rose from {} to {}, then levelled off{}: the last {} points grow at {} ({}){}",
                format_bytes(g.start_bytes),
                format_bytes(g.end_bytes),
                g.flat_since_ms.map(|t| format!(" at about {}", clock(t))).unwrap_or_default(),
                g.recent_points,
                rate(g.recent_bytes_per_hour.unwrap_or(0.0)),
                ci_text(g.recent_ci_bytes_per_hour),
                if recent_hi <= g.threshold_bytes_per_hour {
                    format!(", within the {threshold} threshold")
                } else {
                    format!(
                        ", far below the early {} — a residual growth of up to {} cannot be ruled out yet",
                        rate(g.early_bytes_per_hour.unwrap_or(0.0)),
                        rate(recent_hi)
                    )
                }
            );
        }
        TrendReason::NoGrowth => {
            let _ = write!(
                e,
                "no growth beyond {threshold}: {} ({}) over {} after warm-up",
                rate(g.bytes_per_hour),
                ci_text(g.ci_bytes_per_hour),
                span_text(g.window_ms)
            );
        }
        TrendReason::WeakTrend => {
            let _ = write!(
                e,
                "{} over {} ({}), above the {threshold} threshold, but the trend test reaches only p {} where a leak call needs p < {}: soak longer to tell",
                rate(g.bytes_per_hour),
                span_text(g.window_ms),
                ci_text(g.ci_bytes_per_hour),
                p_text(g.p_value),
                TrendSettings::default().alpha
            );
        }
        TrendReason::NotCorroborated => {
            let _ = write!(
                e,
                "its sampled survivors grow at {} ({}) over {}, but {} does not: sampling noise (samples of long-lived objects rise and fall together), not counted as a leak",
                rate(g.bytes_per_hour),
                ci_text(g.ci_bytes_per_hour),
                span_text(g.window_ms),
                match &s.type_name {
                    Some(t) => format!("the exact census of {t}"),
                    None => "the exact native total".to_string(),
                }
            );
        }
        TrendReason::Straddles | TrendReason::RecentUnclear => {
            let _ = write!(
                e,
                "{} over {}, but the {} straddles the {threshold} threshold{}",
                rate(g.bytes_per_hour),
                span_text(g.window_ms),
                if g.reason == TrendReason::RecentUnclear {
                    format!("recent part's interval ({})", ci_text(g.recent_ci_bytes_per_hour))
                } else {
                    format!("interval ({})", ci_text(g.ci_bytes_per_hour))
                },
                g.more_ms.map(|m| format!(": roughly {} more would decide", span_text(m))).unwrap_or_default()
            );
        }
    }
    if let Some(k) = g.samples_gained.filter(|k| *k >= 1.0) {
        let _ = write!(
            e,
            " (the interval includes the sampling error of the ~{k:.0} samples gained, ±{:.0}%)",
            196.0 / k.sqrt()
        );
    }
    let count_word = match s.kind {
        SubjectKind::Native | SubjectKind::NativeSite => "allocations",
        _ => "objects",
    };
    if matches!(s.kind, SubjectKind::Type | SubjectKind::Site | SubjectKind::Native | SubjectKind::NativeSite) {
        let _ =
            write!(e, "; {} live in {} {count_word} ({what})", format_bytes(s.live_bytes), format_count(s.live_count));
    } else {
        let _ = write!(e, "; {} at the end ({what})", format_bytes(s.live_bytes));
    }
    if matches!(s.kind, SubjectKind::Type | SubjectKind::Native) {
        if s.sites.is_empty() {
            if s.verdict == SoakVerdict::Leaking || !s.failed_rules.is_empty() {
                e.push_str(
                    "; no sampled call site yet: it allocates too slowly for the sampler (about one sample per 100 KiB allocated) — soak longer to name the site",
                );
            }
        } else {
            let sites: Vec<String> = s
                .sites
                .iter()
                .map(|r| {
                    let at = match &r.location {
                        Some(l) => format!("{} ({l})", r.site),
                        None => r.site.clone(),
                    };
                    format!("{at}: {} sampled, {}", format_bytes(r.live_bytes), r.verdict.as_str())
                })
                .collect();
            let _ = write!(e, "; allocated at {}", sites.join("; "));
        }
    }
    if let Some(owner) = &s.owner_to_fix {
        let _ = write!(e, "; owner to fix: {}", owner.text());
    } else if let Some(kept) = &s.kept_alive_by {
        let _ = write!(e, "; {kept}");
    }
    if !s.failed_rules.is_empty() {
        let _ = write!(e, "; breaks `{}`", s.failed_rules.join("`, `"));
        if s.known_in_baseline {
            e.push_str(" (known in the baseline at a comparable rate: not failed)");
        }
    }
    e
}

fn p_text(p: f64) -> String {
    if p < 0.001 { "< 0.001".to_string() } else { format!("= {p:.3}") }
}

fn measurement(store: &Store, warmup: f64, data_ms: f64) -> Measurement {
    let mut m = Measurement {
        announced: false,
        announcement: None,
        induced_gcs: 0,
        census_records: 0,
        retained_records: 0,
        census_pause_ms_max: 0.0,
        census_pause_ms_mean: 0.0,
        census_unavailable: None,
        data_ms,
        warmup_ms: warmup,
        points_after_warmup: 0,
        series_bytes: 0,
    };
    let mut pause_total = 0.0;
    for p in store.producers() {
        let s = &p.soak;
        m.series_bytes += s.approx_bytes();
        if p.key.source != Source::Agent {
            continue;
        }
        if let Some(a) = &s.announced {
            m.announced = true;
            m.announcement.get_or_insert_with(|| a.clone());
        }
        m.induced_gcs += s.induced_gcs;
        m.census_records += s.census_records;
        m.retained_records += s.retained_records;
        pause_total += s.census_pause_ms_total;
        m.census_pause_ms_max = m.census_pause_ms_max.max(s.census_pause_ms_max);
        if m.census_unavailable.is_none() {
            m.census_unavailable = s.census_unavailable.clone();
        }
        let after = if s.census_records > 0 {
            s.live.points().iter().filter(|p| p.t_ms >= warmup).count()
        } else {
            s.retained
                .values()
                .map(|r| r.series.points().iter().filter(|p| p.t_ms >= warmup).count())
                .max()
                .unwrap_or(0)
        };
        m.points_after_warmup = m.points_after_warmup.max(after);
    }
    if m.census_records > 0 {
        m.census_pause_ms_mean = pause_total / m.census_records as f64;
    }
    m
}

fn rule_reports(ctx: &Context, subjects: &[Subject], sufficiency: &gate::Sufficiency) -> Vec<RuleReport> {
    ctx.rules
        .iter()
        .map(|r| {
            let applicable = subjects.iter().filter(|s| rule_target_matches(r, s)).count();
            let violations: Vec<String> =
                subjects.iter().filter(|s| s.failed_rules.iter().any(|f| f == &r.text)).map(|s| s.id.clone()).collect();
            let known: Vec<String> = subjects
                .iter()
                .filter(|s| s.known_in_baseline && s.failed_rules.iter().any(|f| f == &r.text))
                .map(|s| s.id.clone())
                .collect();
            let unjudged = subjects.iter().filter(|s| s.blocking && rule_target_matches(r, s)).count();
            RuleReport {
                rule: r.text.clone(),
                default: ctx.default_rule,
                subjects: applicable,
                result: gate::rule_result(r, violations.len() - known.len(), sufficiency, unjudged),
                violations,
                known_in_baseline: known,
                unjudged,
            }
        })
        .collect()
}

fn rule_target_matches(r: &Rule, s: &Subject) -> bool {
    let t = s.type_name.as_deref().unwrap_or("");
    let site = s.site.as_deref().unwrap_or("");
    let target = match s.kind {
        SubjectKind::Type => Target::Type(t),
        SubjectKind::Site => Target::Site(t, site),
        SubjectKind::Native => Target::Native,
        SubjectKind::NativeSite => Target::NativeSite(site),
        SubjectKind::Managed => Target::Managed,
        SubjectKind::Heap => Target::Heap,
        SubjectKind::Rss => Target::Rss,
    };
    r.applies_to(target)
}

/// Sorts (failing, leaking, inconclusive, plateaued, stable) and drops the long tail.
fn list_subjects(mut subjects: Vec<Subject>) -> Vec<Subject> {
    let rank = |s: &Subject| -> u8 {
        if s.failing() {
            return 0;
        }
        match s.verdict {
            SoakVerdict::Leaking => 1,
            SoakVerdict::Inconclusive => 2,
            SoakVerdict::Plateaued => 3,
            SoakVerdict::Stable => 4,
        }
    };
    let kind_rank = |s: &Subject| s.kind as u8;
    subjects.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then_with(|| if rank(a) <= 1 { kind_rank(a).cmp(&kind_rank(b)) } else { std::cmp::Ordering::Equal })
            .then_with(|| match a.verdict {
                SoakVerdict::Leaking | SoakVerdict::Inconclusive => {
                    b.growth.bytes_per_hour.total_cmp(&a.growth.bytes_per_hour)
                }
                // Largest at any point first: a burst that ended at zero is still listed.
                _ => b.peak_bytes.total_cmp(&a.peak_bytes),
            })
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut stable = 0;
    let mut inconclusive = 0;
    subjects.retain(|s| {
        if s.failing() || !s.failed_rules.is_empty() {
            return true;
        }
        match s.verdict {
            SoakVerdict::Stable => {
                stable += 1;
                stable <= MAX_STABLE_LISTED
            }
            SoakVerdict::Inconclusive => {
                inconclusive += 1;
                inconclusive <= MAX_INCONCLUSIVE_LISTED
            }
            _ => true,
        }
    });
    subjects
}

/// What the headline is made of.
struct Verdicts<'a> {
    outcome: Outcome,
    subjects: &'a [Subject],
    problems: &'a [String],
    failing: usize,
    regressions: usize,
    counts: &'a Counts,
    /// Set when the soak lacked the evidence for a verdict: the INCONCLUSIVE headline.
    inconclusive: Option<String>,
    /// Process memory that grows while no rule breaks.
    signals: &'a [gate::Signal],
}

fn headline(v: &Verdicts<'_>) -> String {
    let counts = v.counts;
    let failing = v.failing;
    match v.outcome {
        Outcome::Fail => {
            let names: Vec<String> = v
                .subjects
                .iter()
                .filter(|s| s.failing())
                .take(3)
                .map(|s| format!("{} {}", s.label, rate(s.growth.bytes_per_hour)))
                .collect();
            let more = if failing > 3 { format!(" and {} more", failing - 3) } else { String::new() };
            let reg = if v.regressions > 0 {
                format!(
                    " ({} regression{} against the baseline)",
                    v.regressions,
                    if v.regressions == 1 { "" } else { "s" }
                )
            } else {
                String::new()
            };
            format!(
                "FAIL: {failing} subject{} break{} the rules{reg}: {}{more}",
                if failing == 1 { "" } else { "s" },
                if failing == 1 { "s" } else { "" },
                names.join("; ")
            )
        }
        Outcome::Error => {
            if let Some(h) = &v.inconclusive {
                return h.clone();
            }
            format!(
                "ERROR: could not judge the soak: {}",
                v.problems.first().map(String::as_str).unwrap_or("unknown problem")
            )
        }
        Outcome::Pass => {
            let mut h = match v.signals.first() {
                Some(s) => format!("PASS with a warning: {} while no rule breaks, see the warnings (", s.short),
                None => "PASS: no leak found (".to_string(),
            };
            let _ = write!(h, "{} plateaued, {} stable", counts.plateaued, counts.stable);
            if counts.leaking > 0 {
                let _ = write!(h, ", {} leaking but not gated or known in the baseline", counts.leaking);
            }
            if counts.inconclusive > 0 {
                let _ = write!(h, ", {} inconclusive", counts.inconclusive);
                if counts.too_small_to_matter > 0 {
                    let _ = write!(h, " of which {} too small to matter", counts.too_small_to_matter);
                }
            }
            h.push(')');
            h
        }
    }
}

fn memory_line(series: &data::Series, warmup: f64, ts: &TrendSettings) -> Option<MemoryLine> {
    let last = series.last()?;
    Some(MemoryLine {
        latest_bytes: last.bytes,
        growth: assess_trend(&to_points(series.points()), warmup, MEMORY_THRESHOLD_PER_HOUR, ts),
    })
}

fn grows(m: &Option<MemoryLine>) -> bool {
    m.as_ref().is_some_and(|m| m.growth.verdict == SoakVerdict::Leaking)
}

fn flat(m: &Option<MemoryLine>) -> bool {
    m.as_ref().is_some_and(|m| matches!(m.growth.verdict, SoakVerdict::Stable | SoakVerdict::Plateaued))
}

/// RSS, heap and live data side by side, and what their trends mean together.
/// `types_leak`: processes with a type judged leaking (else live data grows spread thinly).
fn memory_report(store: &Store, warmup: f64, ts: &TrendSettings, types_leak: &[u32]) -> Vec<ProcessMemory> {
    let mut out = Vec::new();
    for view in store.processes() {
        let agent = view.agent.map(|a| &a.soak);
        let shim = view.shim.map(|s| &s.soak);
        let rss_series = agent.filter(|a| !a.rss.is_empty()).or(shim).map(|s| &s.rss);
        let rss = rss_series.and_then(|s| memory_line(s, warmup, ts));
        let heap = agent.and_then(|a| memory_line(&a.heap, warmup, ts));
        let live = agent.and_then(|a| memory_line(&a.live, warmup, ts));
        let native = shim.and_then(|s| memory_line(&s.native_live, warmup, ts));
        let mut lines = Vec::new();
        let mut kept = false;
        let live_name = "live managed data (census)";
        let r = |m: &Option<MemoryLine>| {
            m.as_ref()
                .map(|m| format!("{} ({})", rate(m.growth.bytes_per_hour), m.growth.verdict.as_str()))
                .unwrap_or_else(|| "not measured".to_string())
        };
        if grows(&live) {
            lines.push(format!(
                "{live_name} grows at {}: the application keeps objects — {}",
                r(&live),
                if types_leak.contains(&view.pid) {
                    "see the leaking types"
                } else {
                    "spread over types none of which is leaking on its own (see the fastest steadily growing types)"
                }
            ));
        }
        if grows(&native) {
            lines.push(format!("native live memory grows at {}: see the native verdicts", r(&native)));
        }
        let live_flat = flat(&live);
        let native_ok = native.is_none() || flat(&native);
        if grows(&rss) && live_flat && native_ok && !grows(&heap) {
            kept = true;
            lines.push(format!(
                "RSS grows at {} while {live_name} does not ({}){}: this memory is retained by the GC or the allocator (free space it keeps for reuse, fragmentation, allocator caches), not leaked",
                r(&rss),
                r(&live),
                if native.is_some() { " and neither does native live memory" } else { "" }
            ));
        } else if grows(&heap) && live_flat {
            kept = true;
            lines.push(format!(
                "the managed heap grows at {} while {live_name} does not ({}): the GC kept it — memory it has not returned or compacted yet, not leaked objects{}",
                r(&heap),
                r(&live),
                if grows(&rss) { format!("; RSS follows at {}", r(&rss)) } else { String::new() }
            ));
        }
        if lines.is_empty() && (rss.is_some() || live.is_some()) {
            {
                lines.push(format!(
                    "after warm-up: RSS {}, managed heap {}, {live_name} {}{}",
                    r(&rss),
                    r(&heap),
                    r(&live),
                    if native.is_some() { format!(", native {}", r(&native)) } else { String::new() }
                ));
            }
        }
        if rss.is_none() && heap.is_none() && live.is_none() && native.is_none() {
            continue;
        }
        out.push(ProcessMemory {
            pid: view.pid,
            rss,
            heap,
            live,
            native,
            kept_not_leaked: kept,
            interpretation: lines,
            growing_types: Vec::new(),
            warning: None,
        });
    }
    out
}

/// The series of a subject, for re-judging prefixes.
fn subject_points(store: &Store, s: &Subject) -> Vec<Point> {
    let Some(p) = store.producers().find(|p| {
        p.key.pid == s.pid
            && match s.kind {
                SubjectKind::Native | SubjectKind::NativeSite => p.key.source == Source::Shim,
                SubjectKind::Rss => true,
                _ => p.key.source == Source::Agent,
            }
    }) else {
        return Vec::new();
    };
    let soak = &p.soak;
    match s.kind {
        SubjectKind::Type => match (&s.type_name, s.exact) {
            (Some(t), true) => soak
                .types
                .get(t)
                .map(|ts| {
                    to_points(&data::SoakData::with_leading_zeros(&ts.series, &soak.live, soak.censuses_complete))
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        },
        SubjectKind::Site => match (&s.type_name, &s.site) {
            (Some(t), Some(site)) => soak
                .retained
                .get(&(t.clone(), site.clone()))
                .map(|r| to_points(&data::SoakData::with_leading_zeros(&r.series, &soak.retained_times, true)))
                .unwrap_or_default(),
            _ => Vec::new(),
        },
        SubjectKind::Native => to_points(soak.native_live.points()),
        SubjectKind::NativeSite => {
            p.sites().find(|x| Some(&x.site) == s.site.as_ref()).map(|x| x.analysis_points()).unwrap_or_default()
        }
        SubjectKind::Managed => to_points(soak.live.points()),
        SubjectKind::Heap => to_points(soak.heap.points()),
        SubjectKind::Rss => to_points(soak.rss.points()),
    }
}

/// Cut times for re-judging prefixes: evenly spread over the points after warm-up.
fn cuts(points: &[Point], warmup: f64, min_points: usize) -> Vec<f64> {
    let after: Vec<f64> =
        points.iter().filter(|p| p.t_ms >= warmup).map(|p| p.t_ms).skip(min_points.saturating_sub(1)).collect();
    if after.len() <= VERDICT_CUTS {
        return after;
    }
    let n = after.len();
    (0..VERDICT_CUTS).map(|i| after[i * (n - 1) / (VERDICT_CUTS - 1)]).collect()
}

fn prefix(points: &[Point], cut: f64) -> &[Point] {
    let end = points.partition_point(|p| p.t_ms <= cut);
    &points[..end]
}

/// For each listed subject whose verdict is decisive, the time from which it held.
fn set_verdict_times(store: &Store, ctx: &Context, subjects: &mut [Subject], warmup: f64) {
    for s in subjects.iter_mut() {
        if s.growth.reason == TrendReason::TooFewPoints || s.verdict == SoakVerdict::Inconclusive {
            continue;
        }
        let points = subject_points(store, s);
        let tau = s.growth.threshold_bytes_per_hour;
        let mut since = None;
        for cut in cuts(&points, warmup, ctx.trend.min_points).into_iter().rev() {
            let v = assess_trend(prefix(&points, cut), warmup, tau, &ctx.trend).verdict;
            if v == s.verdict {
                since = Some(cut);
            } else {
                break;
            }
        }
        s.verdict_since_ms = since;
    }
}

/// Key of the native total among the exact series (no type is named like this).
const NATIVE_KEY: &str = "\u{0}native";

/// Re-judges subjects on prefixes of their data, applying the same census corroboration
/// to sampled sites as the final verdict does.
struct Rejudge<'a> {
    store: &'a Store,
    ctx: &'a Context,
    warmup: f64,
    /// Points of each exact series (census types, native totals), by (pid, type or
    /// [`NATIVE_KEY`]).
    types: HashMap<(u32, String), Vec<Point>>,
}

impl<'a> Rejudge<'a> {
    fn new(store: &'a Store, ctx: &'a Context, subjects: &[Subject], warmup: f64) -> Self {
        let types = subjects
            .iter()
            .filter(|s| s.exact && matches!(s.kind, SubjectKind::Type | SubjectKind::Native))
            .map(|s| {
                let key = match s.kind {
                    SubjectKind::Native => NATIVE_KEY.to_string(),
                    _ => s.type_name.clone().unwrap_or_default(),
                };
                ((s.pid, key), subject_points(store, s))
            })
            .collect();
        Rejudge { store, ctx, warmup, types }
    }

    fn leaking_at(&self, s: &Subject, points: &[Point], cut: f64) -> bool {
        let tau = s.growth.threshold_bytes_per_hour;
        let v = assess_trend(prefix(points, cut), self.warmup, tau, &self.ctx.trend).verdict;
        if v != SoakVerdict::Leaking {
            return false;
        }
        let exact_key = match s.kind {
            SubjectKind::Site => s.type_name.clone(),
            SubjectKind::NativeSite => Some(NATIVE_KEY.to_string()),
            _ => None,
        };
        if let Some(key) = exact_key {
            if let Some(tp) = self.types.get(&(s.pid, key)) {
                return assess_trend(prefix(tp, cut), self.warmup, tau, &self.ctx.trend).verdict
                    == SoakVerdict::Leaking;
            }
        }
        true
    }

    /// The earliest cut from which the subject was leaking at every later cut.
    fn leaking_since(&self, s: &Subject) -> Option<f64> {
        let points = subject_points(self.store, s);
        let mut since = None;
        for cut in cuts(&points, self.warmup, self.ctx.trend.min_points).into_iter().rev() {
            if self.leaking_at(s, &points, cut) {
                since = Some(cut);
            } else {
                break;
            }
        }
        since
    }

    /// The earliest time after warm-up from which the subject was never leaking (a subject
    /// with too few points, or none yet, is not leaking).
    fn clear_since(&self, s: &Subject) -> Option<f64> {
        let points = subject_points(self.store, s);
        let all_cuts = cuts(&points, self.warmup, 1);
        let first = *all_cuts.first()?;
        if s.growth.verdict == SoakVerdict::Stable && s.growth.ci_bytes_per_hour == Some([0.0, 0.0]) {
            return Some(first);
        }
        let mut since = None;
        for cut in all_cuts.into_iter().rev() {
            if self.leaking_at(s, &points, cut) {
                break;
            }
            since = Some(cut);
        }
        since
    }
}

/// When the outcome was reached, and the subject that settled it: for a failure, the earliest
/// time from which some failing subject stayed leaking; for a pass, the time from which no
/// gated subject was leaking any more.
fn decided_after(
    store: &Store,
    ctx: &Context,
    subjects: &[Subject],
    warmup: f64,
    outcome: Outcome,
) -> (Option<f64>, Option<String>) {
    let r = Rejudge::new(store, ctx, subjects, warmup);
    match outcome {
        Outcome::Fail => subjects
            .iter()
            .filter(|s| s.failing() && s.verdict == SoakVerdict::Leaking)
            .filter_map(|s| r.leaking_since(s).map(|t| (t, s.id.clone())))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map_or((None, None), |(t, id)| (Some(t), Some(id))),
        Outcome::Pass => {
            // No pass before there were enough comparable points to judge anything.
            let floor = store
                .producers()
                .filter(|p| p.key.source == Source::Agent)
                .filter_map(|p| {
                    let timeline = if p.soak.census_records > 0 { &p.soak.live } else { &p.soak.retained_times };
                    timeline.points().iter().filter(|x| x.t_ms >= warmup).nth(ctx.trend.min_points - 1).map(|x| x.t_ms)
                })
                .min_by(f64::total_cmp);
            let mut decided: Option<(f64, String)> = floor.map(|t| (t, String::new()));
            for s in subjects.iter().filter(|s| s.gated) {
                if s.growth.reason == TrendReason::TooFewPoints {
                    continue;
                }
                let Some(since) = r.clear_since(s) else {
                    continue;
                };
                if decided.as_ref().is_none_or(|d| since > d.0) {
                    decided = Some((since, s.id.clone()));
                }
            }
            decided.map_or((None, None), |(t, id)| (Some(t), (!id.is_empty()).then_some(id)))
        }
        Outcome::Error => (None, None),
    }
}

/// The soak progress line: elapsed, remaining, and the fastest-growing subject so far.
pub fn progress_line(store: &Store, ctx: &Context, elapsed: Duration) -> String {
    let duration = Duration::from_millis(ctx.settings.duration_ms);
    let left = duration.saturating_sub(elapsed);
    let mut line = format!(
        "soak {} / {} ({} left)",
        crate::units::format_clock(elapsed),
        crate::units::format_clock(duration),
        format_duration(left)
    );
    let agents: Vec<&Producer> = store.producers().filter(|p| p.key.source == Source::Agent).collect();
    if agents.is_empty() {
        line.push_str(" · waiting for the agent");
        return line;
    }
    let census: u64 = agents.iter().map(|p| p.soak.census_records).sum();
    let retained: u64 = agents.iter().map(|p| p.soak.retained_records).sum();
    // Summaries report the induced count every interval; a census follows each induced GC.
    let induced: u64 = agents.iter().map(|p| p.soak.induced_gcs.max(p.soak.census_records)).sum();
    let _ = write!(line, " · {induced} full GCs induced, {census} censuses");
    if census == 0 && retained == 0 {
        line.push_str(" · waiting for the first full GC");
        return line;
    }
    let data_ms = data_span_ms(store);
    // During the run the warm-up is the planned one (a fraction of --duration).
    let warmup = warmup_end_ms(&ctx.settings, ctx.settings.duration_ms as f64);
    if data_ms < warmup {
        let _ = write!(line, " · warming up until {}", clock(warmup));
        return line;
    }
    match top_growth(store, ctx, warmup) {
        Some((label, trend)) => {
            let _ = write!(
                line,
                " · top growth: {label} {} ({})",
                rate(trend.bytes_per_hour),
                if trend.reason == TrendReason::TooFewPoints {
                    format!("{} points so far", trend.points)
                } else {
                    trend.verdict.as_str().to_string()
                }
            );
        }
        None => line.push_str(" · no growth so far"),
    }
    line
}

/// The fastest-growing type (or native total) so far: a cheap slope on each non-constant
/// series, then the full verdict on the winner.
fn top_growth(store: &Store, ctx: &Context, warmup: f64) -> Option<(String, Trend)> {
    let mut best: Option<(f64, String, Vec<Point>)> = None;
    let mut consider = |label: String, series: &[SeriesPoint]| {
        let window: Vec<Point> =
            series.iter().filter(|p| p.t_ms >= warmup).map(|p| Point { t_ms: p.t_ms, bytes: p.bytes }).collect();
        if window.len() < 3 || window.iter().all(|p| p.bytes == window[0].bytes) {
            return;
        }
        let thin: Vec<Point> = if window.len() > 40 {
            (0..40).map(|i| window[i * (window.len() - 1) / 39]).collect()
        } else {
            window.clone()
        };
        if let Some(fit) = sen_fit(&thin, 0.95) {
            if best.as_ref().is_none_or(|b| fit.slope > b.0) {
                best = Some((fit.slope, label, to_points(series)));
            }
        }
    };
    for p in store.producers() {
        if p.soak.census_records > 0 {
            for (name, ts) in &p.soak.types {
                consider(name.clone(), ts.series.points());
            }
        } else {
            for r in p.soak.retained.values() {
                consider(format!("{} @ {}", r.type_name, r.site), r.series.points());
            }
        }
        if !p.soak.native_live.is_empty() {
            consider("native memory".to_string(), p.soak.native_live.points());
        }
    }
    let (slope, label, points) = best?;
    if slope <= 0.0 {
        return None;
    }
    let tau =
        ctx.rules.iter().filter(|r| r.quantity == Quantity::Growth).map(|r| r.value).fold(f64::INFINITY, f64::min);
    let tau = if tau.is_finite() { tau } else { ctx.info_threshold() };
    Some((label, assess_trend(&points, warmup, tau, &ctx.trend)))
}

/// The soak part of report.txt.
pub fn render_text(r: &SoakReport) -> String {
    const TEXT_SUBJECTS: usize = 25;
    let mut o = String::new();
    let _ = writeln!(o, "SOAK VERDICT: {} (exit {})", r.headline, r.exit_code);
    for p in &r.problems {
        let _ = writeln!(o, "  problem: {p}");
    }
    for w in &r.warnings {
        let _ = writeln!(o, "  warning: {w}");
    }
    let s = &r.settings;
    let _ = writeln!(
        o,
        "  {} soak, warm-up {}{}, a full GC induced every {}{}; {} comparable points after warm-up ({} censuses, {} retained reports, census pause {:.1} ms mean, {:.1} ms max)",
        span_text(r.measurement.data_ms),
        span_text(s.warmup_ms),
        if s.warmup_default { " (default: 20%)" } else { "" },
        span_text(s.gc_every_ms as f64),
        if s.gc_every_chosen { " (chosen for the duration)" } else { "" },
        r.measurement.points_after_warmup,
        r.measurement.census_records,
        r.measurement.retained_records,
        r.measurement.census_pause_ms_mean,
        r.measurement.census_pause_ms_max
    );
    if let Some(t) = r.decided_after_ms {
        let _ = writeln!(o, "  verdict reached after {} (and held to the end)", clock(t));
    }
    for rule in &r.rules {
        let _ = writeln!(
            o,
            "  rule `{}`{}: {} ({} subjects, {} breaking{})",
            rule.rule,
            if rule.default { " (default)" } else { "" },
            rule.result,
            rule.subjects,
            rule.violations.len(),
            if rule.known_in_baseline.is_empty() {
                String::new()
            } else {
                format!(", {} known in the baseline", rule.known_in_baseline.len())
            } + &if rule.unjudged > 0 {
                format!(", {} with material memory but too few points", rule.unjudged)
            } else {
                String::new()
            }
        );
    }
    if let Some(b) = &r.baseline {
        let _ = writeln!(
            o,
            "  baseline {}: {} regression{}, {} known, {} fixed",
            b.file,
            b.regressions.len(),
            if b.regressions.len() == 1 { "" } else { "s" },
            b.known.len(),
            b.fixed.len()
        );
        for reg in &b.regressions {
            let _ = writeln!(o, "    regression: {}", reg.text);
        }
    }
    let _ = writeln!(
        o,
        "  {} subjects judged: {} leaking, {} plateaued, {} stable, {} inconclusive{}",
        r.counts.judged,
        r.counts.leaking,
        r.counts.plateaued,
        r.counts.stable,
        r.counts.inconclusive,
        if r.counts.too_small_to_matter > 0 {
            format!(" ({} without a verdict but too small to matter)", r.counts.too_small_to_matter)
        } else {
            String::new()
        }
    );
    if !r.sufficiency.enough {
        if let Some(m) = &r.sufficiency.missing {
            let _ = writeln!(
                o,
                "  not enough evidence for a verdict: {m}{}",
                r.sufficiency.suffice.as_ref().map(|s| format!(" — {s}")).unwrap_or_default()
            );
        }
    }
    for m in &r.memory {
        for line in &m.interpretation {
            let _ = writeln!(o, "  memory (pid {}): {line}", m.pid);
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "    {:<13} {:<11} {:>14} {:>10}  subject", "verdict", "kind", "growth", "live");
    for subj in r.subjects.iter().filter(|x| x.verdict != SoakVerdict::Stable || x.failing()).take(TEXT_SUBJECTS) {
        let verdict =
            if subj.failing() { format!("{}!", subj.verdict.as_str()) } else { subj.verdict.as_str().to_string() };
        let _ = writeln!(
            o,
            "    {:<13} {:<11} {:>14} {:>10}  {}",
            verdict,
            subj.kind.as_str(),
            rate(subj.growth.bytes_per_hour),
            format_bytes(subj.live_bytes),
            subj.label
        );
        if subj.verdict != SoakVerdict::Stable {
            let _ = writeln!(o, "        {}", subj.evidence);
        }
    }
    let stable = r.subjects.iter().filter(|x| x.verdict == SoakVerdict::Stable).count();
    if stable > 0 {
        let _ = writeln!(o, "    … and {} stable subjects (listed in report.json)", r.counts.stable);
    }
    o
}

/// What `leakscope soak` prints when it ends: the verdict, what fails, where the files are.
pub fn render_summary(r: &crate::report::Report, out_dir: Option<&std::path::Path>) -> String {
    const SHOWN: usize = 8;
    let mut o = String::new();
    let Some(soak) = &r.soak else {
        return o;
    };
    let _ = writeln!(o);
    let _ = writeln!(o, "leakscope soak: {} (exit {})", soak.headline, soak.exit_code);
    for p in &soak.problems {
        let _ = writeln!(o, "  problem: {p}");
    }
    for w in &soak.warnings {
        let _ = writeln!(o, "  warning: {w}");
    }
    for s in soak.subjects.iter().filter(|s| s.failing() || s.verdict == SoakVerdict::Leaking).take(SHOWN) {
        let _ = writeln!(
            o,
            "  {}{} {}: {}",
            s.verdict.as_str(),
            if s.failing() { " (fails)" } else { "" },
            s.label,
            s.evidence
        );
    }
    if let Some(b) = &soak.baseline {
        for reg in &b.regressions {
            let _ = writeln!(o, "  regression: {}", reg.text);
        }
    }
    for m in &soak.memory {
        for line in &m.interpretation {
            let _ = writeln!(o, "  memory: {line}");
        }
    }
    if let Some(t) = soak.decided_after_ms {
        let _ = writeln!(o, "  verdict reached after {} of the run", clock(t));
    }
    if let Some(out_dir) = out_dir {
        let _ = writeln!(
            o,
            "Reports: {} (charts and verdicts), {}, {}",
            out_dir.join("report.html").display(),
            out_dir.join("report.json").display(),
            out_dir.join("junit.xml").display()
        );
    }
    o
}

/// Exit code of a report: the soak's, or 0 for other sessions.
pub fn exit_code_of(r: &crate::report::Report) -> i32 {
    r.soak.as_ref().map(|s| s.exit_code).unwrap_or(0)
}

#[cfg(test)]
mod tests;
