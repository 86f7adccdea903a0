//! Time to verdict: re-judging prefixes of the data to find when each verdict was reached and
//! held, and when the outcome was decided and by which subject.

use super::candidates::subject_points;
use super::context::Context;
use super::model::{Outcome, Subject, SubjectKind};
use crate::analysis::{Point, SoakVerdict, TrendReason, assess_trend};
use crate::protocol::Source;
use crate::store::Store;
use std::collections::HashMap;

/// Prefixes of the data re-judged to find when each verdict was reached.
const VERDICT_CUTS: usize = 40;

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
pub(super) fn set_verdict_times(store: &Store, ctx: &Context, subjects: &mut [Subject], warmup: f64) {
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
pub(super) fn decided_after(
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
