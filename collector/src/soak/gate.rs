//! When a soak may pass. A gate that says PASS without the data to judge ships the leak with a
//! green check, so:
//!
//! * **Enough evidence.** A soak passes only when it had [`crate::analysis::TrendSettings::min_points`]
//!   comparable points after the warm-up, and every gated subject that carries *material
//!   memory* had enough of them for a verdict. Otherwise it is INCONCLUSIVE (exit 2), saying what
//!   was missing and what would suffice ([`Sufficiency`]).
//! * **Material memory.** A subject carries material memory when its largest size during the
//!   soak is at least what its growth threshold allows over the judged window:
//!   `peak_bytes ≥ threshold × (end of data − end of warm-up)` (with a threshold of 0: any
//!   memory at all). Below that, even if all of it had appeared within the window, its growth
//!   could not have been above the threshold — no verdict could have failed it — so it may stay
//!   without one; the report counts it. A sampled subject (a call site) whose exact total (its
//!   type's census, the native total) was judged does not block either: the exact verdict
//!   decides, as it does when the two disagree.
//! * **Process-level signals.** The default rule on the census total fails a soak in which no
//!   type or site breaks a rule but live managed data leaks (a leak spread thinly over many
//!   types). RSS, the managed heap or native memory judged leaking while no rule breaks is
//!   never a plain PASS: "PASS with a warning" says what grows and what it means — memory the GC
//!   or the allocator keeps (live data flat), objects under rules that do not cover them (live
//!   data leaking), or, with live data not judged, that leakscope cannot tell yet (RSS and the
//!   heap also grow in the first minutes of a healthy worker, so this does not fail the gate).

use super::context::Context;
use super::evidence::rate;
use super::model::{DEFAULT_MANAGED_RULE, GrowingType, ProcessMemory, Subject, SubjectKind, Sufficiency};
use super::plan::{Plan, round_up_duration};
use super::rules::{Quantity, Rule};
use crate::analysis::{SoakVerdict, TrendReason};
use crate::units::format_duration;
use std::collections::HashMap;
use std::time::Duration;

/// Types named when live managed data grows with no type to blame.
pub const GROWING_TYPES_NAMED: usize = 5;
/// Subjects named in the INCONCLUSIVE headline.
const EXAMPLES: usize = 3;

/// Does this subject carry material memory over a judged window of `window_ms`?
pub fn material(peak_bytes: f64, threshold_per_hour: f64, window_ms: f64) -> bool {
    peak_bytes > 0.0 && peak_bytes >= threshold_per_hour.max(0.0) * window_ms.max(0.0) / 3_600_000.0
}

/// Marks each subject's material memory and whether it blocks a pass, and says whether the
/// soak had enough evidence. `interval_ms`: how often summaries came (native and memory series).
pub fn assess(
    subjects: &mut [Subject],
    ctx: &Context,
    points_after_warmup: usize,
    warmup_ms: f64,
    data_ms: f64,
    interval_ms: Option<u64>,
) -> Sufficiency {
    let window = (data_ms - warmup_ms).max(0.0);
    let needed = ctx.trend.min_points;
    let judged_exact: Vec<(u32, SubjectKind, Option<String>)> = subjects
        .iter()
        .filter(|s| s.exact && s.growth.reason != TrendReason::TooFewPoints)
        .map(|s| (s.pid, s.kind, s.type_name.clone()))
        .collect();
    let covered = |s: &Subject| match s.kind {
        SubjectKind::Site => {
            judged_exact.iter().any(|(pid, k, t)| *pid == s.pid && *k == SubjectKind::Type && *t == s.type_name)
        }
        SubjectKind::NativeSite => judged_exact.iter().any(|(pid, k, _)| *pid == s.pid && *k == SubjectKind::Native),
        _ => false,
    };
    let mut out = Sufficiency { points_after_warmup, points_needed: needed, ..Sufficiency::default() };
    let marks: Vec<(bool, bool)> = subjects
        .iter()
        .map(|s| {
            let is_material = material(s.peak_bytes.max(s.live_bytes), s.growth.threshold_bytes_per_hour, window);
            let short = s.rule.is_some() && s.growth.reason == TrendReason::TooFewPoints;
            (is_material, short && is_material && !covered(s))
        })
        .collect();
    let mut blocking: Vec<usize> = Vec::new();
    for (i, (s, (is_material, blocks))) in subjects.iter_mut().zip(marks).enumerate() {
        let short = s.rule.is_some() && s.growth.reason == TrendReason::TooFewPoints;
        if short && !is_material {
            out.too_small_to_matter += 1;
        } else if short && !blocks {
            out.covered_by_exact += 1;
        }
        s.material = is_material;
        s.blocking = blocks;
        if blocks {
            blocking.push(i);
        }
    }
    out.blocking = blocking.len();
    // Grew faster than its rule over the whole window, with confidence, but the recent part
    // cannot yet tell a leak from a rise that stopped: not evidence of no leak, so no PASS.
    let mut unsettled: Vec<usize> = subjects
        .iter()
        .enumerate()
        .filter(|(_, s)| s.rule.is_some() && s.material && s.growth.reason == TrendReason::RecentUnclear && !covered(s))
        .map(|(i, _)| i)
        .collect();
    for &i in &unsettled {
        subjects[i].blocking = true;
    }
    out.unsettled = unsettled.len();
    blocking.sort_by(|&a, &b| subjects[b].peak_bytes.total_cmp(&subjects[a].peak_bytes));
    out.examples = blocking
        .iter()
        .take(EXAMPLES)
        .map(|&i| {
            let s = &subjects[i];
            let p = s.growth.points;
            format!("{} ({p} point{})", s.label, if p == 1 { "" } else { "s" })
        })
        .collect();

    let growth_rules = ctx.rules.iter().any(|r| r.quantity == Quantity::Growth);
    let timeline_short = growth_rules && points_after_warmup < needed;
    out.enough = !timeline_short && blocking.is_empty() && unsettled.is_empty();
    if out.enough {
        return out;
    }
    let warm = format_duration(Duration::from_millis(warmup_ms.max(0.0) as u64));
    let s = &ctx.settings;
    let plan = Plan::new(
        Duration::from_millis(s.duration_ms),
        s.warmup_ms.map(Duration::from_millis),
        Some(Duration::from_millis(s.gc_every_ms)),
        interval_ms.map(Duration::from_millis),
    );
    if timeline_short {
        out.missing = Some(format!(
            "{points_after_warmup} comparable point{} after the {warm} warm-up, {needed} needed",
            if points_after_warmup == 1 { "" } else { "s" }
        ));
        if plan.points(plan.gc_every) >= needed as u64 {
            // The settings would have done: the soak ended early.
            out.suffice = Some(format!(
                "let the soak run its full --duration {} (it ended after {})",
                format_duration(plan.duration),
                format_duration(Duration::from_millis(data_ms.max(0.0) as u64))
            ));
            out.suggested_duration_ms = Some(s.duration_ms);
        } else {
            let fix = plan.fix(needed as u64, plan.gc_every, "--gc-every");
            out.suggested_duration_ms = Some(fix.duration.as_millis() as u64);
            out.suggested_gc_every_ms = fix.period.map(|p| p.as_millis() as u64);
            out.suffice = Some(fix.text);
        }
        return out;
    }
    if blocking.is_empty() {
        // Every subject had its points; some grew but their recent part is unclear.
        unsettled.sort_by(|&a, &b| subjects[b].growth.bytes_per_hour.total_cmp(&subjects[a].growth.bytes_per_hour));
        let more = unsettled.iter().filter_map(|&i| subjects[i].growth.more_ms).fold(0.0, f64::max);
        let period = plan.gc_every.max(plan.interval);
        let longer = round_up_duration(plan.duration + Duration::from_millis(more.max(0.0) as u64) + period);
        out.examples = unsettled
            .iter()
            .take(EXAMPLES)
            .map(|&i| format!("{} {}", subjects[i].label, rate(subjects[i].growth.bytes_per_hour)))
            .collect();
        out.missing = Some(format!(
            "{} subject{} grew faster than {} rule over the soak, but the recent part cannot tell yet whether \
             {} still growing ({})",
            unsettled.len(),
            if unsettled.len() == 1 { "" } else { "s" },
            if unsettled.len() == 1 { "its" } else { "their" },
            if unsettled.len() == 1 { "it is" } else { "they are" },
            out.examples.join(", ")
        ));
        out.suffice = Some(format!("soak longer: use --duration {} or more", format_duration(longer)));
        out.suggested_duration_ms = Some(longer.as_millis() as u64);
        return out;
    }
    // Enough points overall, but some subjects with material memory lack them (first seen
    // late, or on a series that comes with the summaries).
    let fewest = blocking.iter().map(|&i| subjects[i].growth.points).min().unwrap_or(0);
    let period = plan.gc_every.max(plan.interval);
    let more = period * (needed.saturating_sub(fewest) as u32 + 1);
    let longer = round_up_duration(plan.duration + more);
    out.missing = Some(format!(
        "{} subject{} with material memory had too few comparable points after the {warm} warm-up ({}; {needed} needed)",
        blocking.len(),
        if blocking.len() == 1 { "" } else { "s" },
        out.examples.join(", ")
    ));
    out.suffice = Some(format!("soak longer: use --duration {} or more", format_duration(longer)));
    out.suggested_duration_ms = Some(longer.as_millis() as u64);
    out
}

/// A rule's result: `fail` when a subject breaks it (and is not known in the baseline),
/// `inconclusive` when the soak lacked the evidence to check it, else `pass`.
pub fn rule_result(rule: &Rule, failing: usize, sufficiency: &Sufficiency, unjudged: usize) -> &'static str {
    if failing > 0 {
        "fail"
    } else if rule.quantity == Quantity::Growth && (unjudged > 0 || !sufficiency.enough) {
        "inconclusive"
    } else {
        "pass"
    }
}

/// The default rule on the census total is a backstop: when a type or site of the same process
/// breaks a rule, the soak fails naming it, and the leaking total is shown but not counted as one
/// more failure (the failing types account for it).
pub fn release_explained_total(subjects: &mut [Subject]) {
    let failing_pids: Vec<u32> = subjects
        .iter()
        .filter(|s| s.kind != SubjectKind::Managed && !s.failed_rules.is_empty())
        .map(|s| s.pid)
        .collect();
    for s in subjects.iter_mut().filter(|s| s.kind == SubjectKind::Managed && failing_pids.contains(&s.pid)) {
        s.failed_rules.retain(|r| r != DEFAULT_MANAGED_RULE);
    }
}

/// The fastest steadily growing types of each process (census, else sampled), whatever their
/// verdict: where a total that grows with no type to blame is going. Steadily: the trend test
/// reaches `alpha` (the plateau level, 0.05), so a type whose slope is only noise is not named.
pub fn largest_growing_types(subjects: &[Subject], alpha: f64) -> HashMap<u32, Vec<GrowingType>> {
    let mut by_pid: HashMap<u32, Vec<GrowingType>> = HashMap::new();
    for s in subjects
        .iter()
        .filter(|s| s.kind == SubjectKind::Type && s.growth.bytes_per_hour > 0.0 && s.growth.p_value < alpha)
    {
        by_pid.entry(s.pid).or_default().push(GrowingType {
            id: s.id.clone(),
            label: s.label.clone(),
            bytes_per_hour: s.growth.bytes_per_hour,
            verdict: s.verdict,
        });
    }
    for v in by_pid.values_mut() {
        v.sort_by(|a, b| b.bytes_per_hour.total_cmp(&a.bytes_per_hour).then_with(|| a.id.cmp(&b.id)));
        v.truncate(GROWING_TYPES_NAMED);
    }
    by_pid
}

/// "SoakApp.Shard<M1,M2> +52.0 kB/h (stable), …".
pub fn name_types(types: &[GrowingType]) -> String {
    types
        .iter()
        .map(|t| format!("{} {} ({})", t.label, rate(t.bytes_per_hour), t.verdict.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The evidence of the census total, completed: where its growth goes, and why a leaking total
/// does not fail when types do.
pub fn annotate_total(s: &mut Subject, types: Option<&Vec<GrowingType>>) {
    if s.kind != SubjectKind::Managed {
        return;
    }
    if let Some(types) = types.filter(|t| !t.is_empty()) {
        if s.growth.bytes_per_hour > 0.0 {
            s.evidence.push_str(&format!("; the fastest steadily growing types: {}", name_types(types)));
        }
    }
    if s.verdict == SoakVerdict::Leaking && s.failed_rules.is_empty() && s.rule.as_deref() == Some(DEFAULT_MANAGED_RULE)
    {
        s.evidence
            .push_str("; not counted as a failure of its own: the types and sites that break a rule account for it");
    }
}

/// A process whose memory grows while no rule breaks: what grows, and what it means.
#[derive(Debug, Clone)]
pub struct Signal {
    pub pid: u32,
    /// "RSS grows at +12.0 MB/h (leaking)"
    pub short: String,
    /// The sentence for the warnings, with the interpretation.
    pub full: String,
}

/// RSS, the managed heap, live managed data or native memory judged leaking (at
/// [`super::model::MEMORY_THRESHOLD_PER_HOUR`]) in a process where no subject breaks a rule. A total
/// that a rule of the user's judges (`heap growth > 50MB/h`) raises no signal: it was judged.
pub fn process_signals(
    memory: &[ProcessMemory],
    subjects: &[Subject],
    growing: &HashMap<u32, Vec<GrowingType>>,
    native_tracked: bool,
    duration_ms: u64,
) -> Vec<Signal> {
    let mut out = Vec::new();
    for m in memory {
        if subjects.iter().any(|s| s.pid == m.pid && !s.failed_rules.is_empty()) {
            continue;
        }
        let judged_by_a_rule = |kind: SubjectKind| subjects.iter().any(|s| s.pid == m.pid && s.kind == kind && s.gated);
        let leaking = |line: &Option<super::MemoryLine>, kind: SubjectKind| {
            line.as_ref()
                .filter(|l| l.growth.verdict == SoakVerdict::Leaking && !judged_by_a_rule(kind))
                .map(|l| rate(l.growth.bytes_per_hour))
        };
        let live = leaking(&m.live, SubjectKind::Managed);
        let heap = leaking(&m.heap, SubjectKind::Heap);
        let rss = leaking(&m.rss, SubjectKind::Rss);
        let native = leaking(&m.native, SubjectKind::Native);
        let mut grows = Vec::new();
        for (what, r) in
            [("live managed data", &live), ("the managed heap", &heap), ("RSS", &rss), ("native live memory", &native)]
        {
            if let Some(r) = r {
                grows.push(format!("{what} grows at {r} (leaking)"));
            }
        }
        if grows.is_empty() {
            continue;
        }
        let short = grows.join(", ");
        let live_flat =
            m.live.as_ref().is_some_and(|l| matches!(l.growth.verdict, SoakVerdict::Stable | SoakVerdict::Plateaued));
        let live_leaking = m.live.as_ref().is_some_and(|l| l.growth.verdict == SoakVerdict::Leaking);
        // Native memory explains RSS; only the managed side needs live data to be told apart.
        let needs_live = heap.is_some()
            || (rss.is_some() && m.native.as_ref().is_none_or(|n| n.growth.verdict != SoakVerdict::Leaking));
        let meaning = if live.is_some() {
            let named = growing
                .get(&m.pid)
                .filter(|t| !t.is_empty())
                .map(|t| format!(" — the fastest steadily growing types: {}", name_types(t)))
                .unwrap_or_default();
            format!(
                "the application keeps objects, spread over types each below its rule's threshold{named}; `--fail-on '{DEFAULT_MANAGED_RULE}'` gates on the total"
            )
        } else if !needs_live {
            "no rule judges it (see the native verdicts)".to_string()
        } else if live_flat || live_leaking {
            let mut t = if m.kept_not_leaked || live_flat {
                "memory the GC or the allocator keeps (see memory), not objects the application keeps".to_string()
            } else {
                "live managed data grows too, under rules that do not judge it".to_string()
            };
            if rss.is_some() && !native_tracked {
                t.push_str("; native memory was not tracked, so a native leak is not ruled out");
            }
            t
        } else {
            // Live data neither flat nor leaking (or not measured): objects, or the GC? No
            // verdict can say yet. RSS and the heap grow in the first minutes of a healthy .NET
            // worker too (the GC sizing its budgets), so this warns rather than fails the gate.
            let more = m.live.as_ref().and_then(|l| l.growth.more_ms).unwrap_or(duration_ms as f64);
            let longer = round_up_duration(Duration::from_millis(duration_ms + more.max(0.0) as u64));
            let live_text = match &m.live {
                Some(l) if l.growth.reason == TrendReason::TooFewPoints => format!(
                    "live managed data has {} comparable point{} after the warm-up",
                    l.growth.points,
                    if l.growth.points == 1 { "" } else { "s" }
                ),
                Some(l) => format!(
                    "live managed data is {} ({}, {})",
                    l.growth.verdict.as_str(),
                    rate(l.growth.bytes_per_hour),
                    super::ci_text(l.growth.ci_bytes_per_hour)
                ),
                None => "live managed data was not measured (no census)".to_string(),
            };
            format!(
                "{live_text}, so leakscope cannot tell yet whether the application keeps objects or the GC or the allocator keeps memory: soak longer, e.g. --duration {}",
                format_duration(longer)
            )
        };
        let mut full = format!("{short} while no rule breaks: {meaning}");
        if memory.len() > 1 {
            full = format!("pid {}: {full}", m.pid);
        }
        out.push(Signal { pid: m.pid, short, full });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn material_memory_is_what_the_threshold_allows_over_the_window() {
        // 100 kB/h over 48 s: 1.33 kB.
        assert!(!material(1000.0, 1e5, 48_000.0));
        assert!(material(1400.0, 1e5, 48_000.0));
        // A threshold of 0: any memory matters, none does not.
        assert!(material(1.0, 0.0, 48_000.0));
        assert!(!material(0.0, 0.0, 48_000.0));
        // A longer window raises the bar: 1 MB/h over an hour.
        assert!(!material(999_999.0, 1e6, 3_600_000.0));
        assert!(material(1e6, 1e6, 3_600_000.0));
    }
}
