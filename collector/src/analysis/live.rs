//! The live verdict of `run`, `listen`, `tail` and `demo` (the live view and the run report):
//! from one site's per-interval live-bytes series, is the memory that *survives* at this site
//! growing ([`LiveVerdict::Growing`]), steady (churn, garbage not yet collected), or levelling
//! off (a bounded cache, [`LiveVerdict::Plateaued`])? `soak` has its own, threshold-aware verdict
//! (`SoakVerdict`, in `analysis/soak.rs`).
//!
//! * **Trend**: Theil–Sen slope and Mann–Kendall test ([`super::stats`]), which do not assume
//!   normal noise.
//! * **Materiality**: a trend can be statistically real yet too small to matter; it must also
//!   add enough bytes over the window, absolutely and relative to the site's peak.
//! * **Still growing at the end**: a bounded cache rises and then stops; the slope over the
//!   recent half tells a leak (keeps going) from a plateau (stopped).
//! * **Survived a full GC** (managed sites, [`check_across_full_gcs`], applied by `sites.rs`):
//!   garbage promoted to gen2 rises like a leak until the next full GC, so a rise no full GC has
//!   confirmed is only [`LiveVerdict::Rising`].

use super::stats::{Point, mann_kendall, median, theil_sen, thin_evenly};
use serde::Serialize;

/// Tunable constants; the defaults are what the live view and the reports use.
#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    /// One-sided Mann–Kendall significance level for "growing". Stricter than the textbook
    /// 0.01 because the live view re-tests every site every interval (many comparisons);
    /// a real leak passes it within minutes because its trend dominates the noise.
    pub alpha: f64,
    /// Growth over the window must exceed this many bytes. Sampled estimates move in steps of
    /// the sampling quantum (~100 KiB for AllocationSampled), so anything below ~1 MB is a
    /// handful of samples: not evidence of anything.
    pub min_growth_bytes: f64,
    /// …and this fraction of the site's peak, so a large steady cache with a slight drift in
    /// its estimate is not called a leak. Leaks usually have a site of their own, starting
    /// near zero, so their growth is most of their peak.
    pub min_growth_fraction: f64,
    /// Leading fraction of the run that is ignored: start-up fills caches, pools and the JIT.
    pub warmup_fraction: f64,
    /// Fewer points than this (after warm-up) give no verdict.
    pub min_points: usize,
    /// The recent-half slope must be at least this fraction of the whole-window slope for
    /// "growing"; otherwise the site grew and stopped: "plateaued".
    pub still_growing_fraction: f64,
    /// Longer series are thinned evenly before the O(n²) pairwise work.
    pub max_points: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            alpha: 0.001,
            min_growth_bytes: 1_000_000.0,
            min_growth_fraction: 0.10,
            warmup_fraction: 0.20,
            min_points: 8,
            still_growing_fraction: 0.25,
            max_points: 240,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveVerdict {
    /// Significant, material, and still rising at the end of the window: a leak suspect.
    Growing,
    /// A managed site that rises like a leak, but no full GC has come since to tell it from
    /// garbage waiting for one (see [`FullGcCheck`]).
    Rising,
    /// Rose significantly but has stopped: typical of a cache filling up to its bound.
    Plateaued,
    /// No material upward trend: churn, or stable.
    Steady,
    /// Not enough points after warm-up to say.
    InsufficientData,
}

impl LiveVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            LiveVerdict::Growing => "growing",
            LiveVerdict::Rising => "rising",
            LiveVerdict::Plateaued => "plateaued",
            LiveVerdict::Steady => "steady",
            LiveVerdict::InsufficientData => "insufficient_data",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Growth {
    pub verdict: LiveVerdict,
    /// Theil–Sen slope over the analysed window.
    pub bytes_per_min: f64,
    /// 95 % confidence interval of the slope (Sen 1968), when computable.
    pub ci95_bytes_per_min: Option<[f64; 2]>,
    /// One-sided Mann–Kendall p-value for an increasing trend.
    pub p_value: f64,
    /// Mann–Kendall finds a trend, up or down, at the verdicts' level (`Thresholds::alpha`):
    /// without one the slope is noise (or one step), not a rate to quote.
    pub significant: bool,
    /// An upward trend at the verdicts' level whose recent half still rises (its slope at
    /// least `Thresholds::still_growing_fraction` of the window's), material or not: what lets
    /// a live view keep showing a suspect while its rise dips under the materiality floor.
    #[serde(skip)]
    pub still_rising: bool,
    /// Slope × window length: how much the site grew over the analysed window.
    pub growth_bytes: f64,
    /// Producer time (ms) of the first analysed point, and the analysed span.
    pub window_start_ms: f64,
    pub window_ms: f64,
    pub points: usize,
}

impl Growth {
    fn insufficient(points: usize, window_start_ms: f64, window_ms: f64) -> Growth {
        Growth {
            verdict: LiveVerdict::InsufficientData,
            bytes_per_min: 0.0,
            ci95_bytes_per_min: None,
            p_value: 1.0,
            significant: false,
            still_rising: false,
            growth_bytes: 0.0,
            window_start_ms,
            window_ms,
            points,
        }
    }
}

/// Assesses a series (sorted by time). `peak_bytes` is the site's peak over its whole history;
/// `recent_window_ms` limits the analysis to the most recent span (the live view's "recent
/// window"); `None` analyses everything after warm-up (the report).
pub fn assess(points: &[Point], peak_bytes: f64, th: &Thresholds, recent_window_ms: Option<f64>) -> Growth {
    let window = analysis_window(points, th, recent_window_ms);
    let (start_ms, span) = match (window.first(), window.last()) {
        (Some(a), Some(b)) => (a.t_ms, b.t_ms - a.t_ms),
        _ => (0.0, 0.0),
    };
    if window.len() < th.min_points.max(3) || span <= 0.0 {
        return Growth::insufficient(window.len(), start_ms, span);
    }
    let values: Vec<f64> = window.iter().map(|p| p.bytes).collect();
    let mk = mann_kendall(&values);
    let Some(sen) = theil_sen(&window, Some(mk.var_s)) else {
        return Growth::insufficient(window.len(), start_ms, span);
    };
    let growth_bytes = sen.slope * span;
    let peak = peak_bytes.max(values.iter().cloned().fold(0.0, f64::max));
    let significant = mk.p_increasing < th.alpha;
    let falling = super::stats::upper_tail_normal(-mk.z) < th.alpha;
    let material = growth_bytes > th.min_growth_bytes && growth_bytes > th.min_growth_fraction * peak;
    let still_rising = significant && {
        let recent = &window[window.len() / 2..];
        let recent_slope = theil_sen(recent, None).map(|s| s.slope).unwrap_or(0.0);
        !(recent.len() >= 4 && recent_slope < th.still_growing_fraction * sen.slope)
    };
    let verdict = match (significant && material, still_rising) {
        (true, true) => LiveVerdict::Growing,
        (true, false) => LiveVerdict::Plateaued,
        (false, _) => LiveVerdict::Steady,
    };
    const MS_PER_MIN: f64 = 60_000.0;
    Growth {
        verdict,
        bytes_per_min: sen.slope * MS_PER_MIN,
        ci95_bytes_per_min: sen.ci95.map(|(lo, hi)| [lo * MS_PER_MIN, hi * MS_PER_MIN]),
        p_value: mk.p_increasing,
        significant: significant || falling,
        still_rising,
        growth_bytes,
        window_start_ms: start_ms,
        window_ms: span,
        points: window.len(),
    }
}

/// What the full GCs inside a managed site's window say about its rise.
///
/// A managed site's live estimate counts the sampled objects whose weak handles are still set,
/// and a dead object promoted to gen2 keeps its handle until the next full GC collects it. So
/// between full GCs, churn that dies old (a retry window, a cache that turns over) rises like a
/// leak. Right after a full GC the estimate holds no such garbage, and an estimate never holds
/// less than what is truly live, so `after a full GC − at the window's start` is a lower bound
/// on how much the truly live bytes grew (up to sampling noise).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum FullGcCheck {
    /// The rise survived a full GC: at least `bytes` more are live after it than at the start.
    Confirmed { bytes: f64, full_gc_ms: f64 },
    /// The last full GC brought the site back to where the window started: the rise was garbage.
    FellBack { bytes: f64, full_gc_ms: f64 },
    /// No full GC late enough in the window to tell (or the rise it shows is not material yet).
    Unconfirmed { full_gcs: usize },
}

/// Checks a rise against the full GCs (producer times, ms) inside `growth`'s window; `points`
/// is the whole series, as given to [`assess`], and `collected` the site's cumulative collected
/// samples at each point (NaN where unknown).
///
/// `bytes_per_sample` (the weight of one followed sample) sets the noise floor. Each sample that
/// came (was born and is alive) or went (was collected) between the two estimates is one
/// sampling event, so their difference is off by about √(came + went) samples: a leak's samples
/// only come, churn's come and go. Without the collected counts, the bound assumes the whole
/// population turned over (√(samples at the start + samples after)). A confirmed rise must
/// stand 3 σ above that.
pub fn check_across_full_gcs(
    points: &[Point],
    collected: &[f64],
    growth: &Growth,
    full_gc_ms: &[f64],
    bytes_per_sample: Option<f64>,
    th: &Thresholds,
) -> FullGcCheck {
    let (start, end) = (growth.window_start_ms, growth.window_start_ms + growth.window_ms);
    let window: Vec<(Point, f64)> = points
        .iter()
        .copied()
        .zip(collected.iter().copied().chain(std::iter::repeat(f64::NAN)))
        .filter(|(p, _)| p.t_ms >= start && p.t_ms <= end)
        .collect();
    // The start is the median of the first three points, so one noisy point does not decide.
    let head = &window[..window.len().min(3)];
    let Some(head_end) = head.last().map(|(p, _)| p.t_ms) else {
        return FullGcCheck::Unconfirmed { full_gcs: 0 };
    };
    let (head_mid, collected_at_start) = head[head.len() / 2];
    let mut head_bytes: Vec<f64> = head.iter().map(|(p, _)| p.bytes).collect();
    let start_bytes = median(&mut head_bytes);
    let gcs: Vec<f64> = full_gc_ms.iter().copied().filter(|t| *t > head_end && *t <= end).collect();
    // The first point at or after the latest full GC holds no garbage that GC could collect.
    let after_last_gc =
        gcs.iter().rev().find_map(|t| window.iter().find(|(p, _)| p.t_ms >= *t).map(|(p, c)| (*t, p.bytes, *c)));
    let Some((gc_ms, after, collected_after)) = after_last_gc else {
        return FullGcCheck::Unconfirmed { full_gcs: gcs.len() };
    };
    let grown = after - start_bytes;
    // Material as for the trend, but against what is truly live (after the GC), not a peak
    // that held garbage; and beyond the sampling noise of the two estimates.
    let noise = bytes_per_sample
        .filter(|w| w.is_finite() && *w > 0.0)
        .map(|w| {
            let (at_start, at_after) = (start_bytes.max(0.0) / w, after.max(0.0) / w);
            let went = collected_after - collected_at_start;
            let events = if went.is_finite() && went >= 0.0 {
                (at_after - at_start + went).max(0.0) + went
            } else {
                at_start + at_after
            };
            3.0 * w * events.sqrt()
        })
        .unwrap_or(0.0);
    let material = th.min_growth_bytes.max(th.min_growth_fraction * after).max(noise);
    // What the window's slope predicts the site had gained by that GC.
    let expected = growth.bytes_per_min / 60_000.0 * (gc_ms - head_mid.t_ms);
    if grown > material {
        FullGcCheck::Confirmed { bytes: grown, full_gc_ms: gc_ms }
    } else if expected > material && grown < FELL_BACK_FRACTION * material {
        FullGcCheck::FellBack { bytes: grown, full_gc_ms: gc_ms }
    } else {
        FullGcCheck::Unconfirmed { full_gcs: gcs.len() }
    }
}

/// A full GC that leaves less than this share of a material rise, where the trend predicted a
/// material one, says the rise was garbage.
const FELL_BACK_FRACTION: f64 = 0.25;

/// Drops the warm-up, applies the recent window, and thins to `max_points`.
fn analysis_window(points: &[Point], th: &Thresholds, recent_window_ms: Option<f64>) -> Vec<Point> {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Vec::new();
    };
    let mut start = first.t_ms + th.warmup_fraction * (last.t_ms - first.t_ms);
    if let Some(w) = recent_window_ms {
        start = start.max(last.t_ms - w);
    }
    let kept: Vec<Point> = points.iter().copied().filter(|p| p.t_ms >= start).collect();
    thin_evenly(kept, th.max_points.max(3))
}
