//! The whole soak verdict: every subject judged, the rules and the baseline applied, the
//! evidence checked for sufficiency, the problems and warnings gathered, the outcome, its exit
//! code and headline, and the subjects listed in report.json.

use super::candidates::{candidates, data_span_ms, warmup_end_ms};
use super::context::Context;
use super::evidence::{evidence, rate};
use super::judge::{attach_paths, attach_sites, corroborate_sites, judge};
use super::memory::memory_report;
use super::model::{
    Counts, MEMORY_THRESHOLD_PER_HOUR, Measurement, Outcome, RuleReport, SOAK_SCHEMA, SettingsReport, SoakReport,
    Subject, SubjectKind, Sufficiency,
};
use super::rules::{Rule, Target};
use super::timing::{decided_after, set_verdict_times};
use super::{baseline, gate};
use crate::analysis::SoakVerdict;
use crate::error::{EXIT_FAILURE, EXIT_USAGE};
use crate::protocol::Source;
use crate::session_info::SessionInfo;
use crate::store::{Producer, Store};
use crate::units::format_duration;
use std::fmt::Write as _;
use std::time::Duration;

/// Stable subjects listed in report.json (largest first); the rest are counted.
const MAX_STABLE_LISTED: usize = 100;
/// Inconclusive subjects listed (largest growth first); the rest are counted.
const MAX_INCONCLUSIVE_LISTED: usize = 200;

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
fn insufficiency_problem(s: &Sufficiency, points: usize) -> String {
    let suffice = s.suffice.clone().unwrap_or_default();
    if points < s.points_needed {
        format!("the soak was too short to judge: only {}; {suffice}", s.missing.clone().unwrap_or_default())
    } else {
        format!("not every subject could be judged: {}; {suffice}", s.missing.clone().unwrap_or_default())
    }
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

fn rule_reports(ctx: &Context, subjects: &[Subject], sufficiency: &Sufficiency) -> Vec<RuleReport> {
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
