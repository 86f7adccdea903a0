//! Judging one subject: its trend at the strictest rule's threshold, the rules it breaks, the
//! census corroboration of sampled sites, the sampling error, and what is attached to a type
//! verdict (its sampled sites, what keeps it alive).

use super::candidates::{Candidate, candidates, subject_points, warmup_end_ms};
use super::context::Context;
use super::model::{SiteRef, Subject, SubjectKind};
use super::rules::{Quantity, Rule};
use crate::analysis::{SoakVerdict, Trend, TrendReason, assess_trend};
use crate::retention_view::{KeptAliveBy, kept_alive_lines, latest_retention, owner_to_fix};
use crate::store::Store;
use std::collections::HashMap;

/// Sampled sites named under a type verdict.
const SITES_PER_TYPE: usize = 3;

pub(super) fn judge(c: Candidate, ctx: &Context, warmup: f64, info_tau: f64) -> Subject {
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
pub(super) fn corroborate_sites(store: &Store, ctx: &Context, subjects: &mut [Subject], warmup: f64) {
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
pub fn widen_for_sampling(g: &mut Trend, samples: f64, live_bytes: f64) {
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
pub(super) fn attach_sites(subjects: &mut [Subject]) {
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
pub(super) fn attach_paths(store: &Store, subjects: &mut [Subject]) {
    for s in subjects.iter_mut().filter(|s| s.kind == SubjectKind::Type) {
        let Some(type_name) = s.type_name.clone() else { continue };
        s.owner_to_fix = owner_to_fix(store, s.pid, Some(&type_name));
        let latest = latest_retention(store, s.pid, &type_name);
        s.kept_alive_by =
            latest.and_then(|r| kept_alive_lines(&KeptAliveBy::of_type(r, &type_name, 3)).into_iter().next());
    }
}
