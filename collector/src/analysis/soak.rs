//! The verdict of `soak`: a threshold-aware trend on a series of comparable points (after full
//! GCs). The live verdict (`analysis/live.rs`) answers "is this site growing?"; a soak gate asks a
//! sharper question: "does this subject grow faster than τ bytes per hour, and is it still
//! growing at the end?" — and must be allowed to say "cannot tell yet" ([`SoakVerdict`]).
//! The answer uses:
//!
//! * the Theil–Sen slope with **Sen's confidence interval** taken from the null distribution of
//!   Kendall's S: exact (Mahonian numbers) for n ≤ 50, the normal approximation with tie
//!   correction beyond. The exact distribution ignores ties, which only widens the interval;
//! * the same on the **recent part** of the window (its last half), so a series that rose and
//!   then levelled off (a cache reaching its bound, warm-up) is told from one that keeps rising;
//! * a Mann–Kendall trend test at a strict level for "leaking", because a soak judges hundreds
//!   of types and sites at once and a false alarm must stay rare.

use super::stats::{Point, median, sen_fit, thin_evenly, trend_p_value};
use serde::Serialize;

const MS_PER_HOUR: f64 = 3_600_000.0;

/// Constants of the soak trend test; echoed in every soak report.
#[derive(Debug, Clone, Serialize)]
pub struct TrendSettings {
    /// Two-sided confidence of the slope intervals.
    pub confidence: f64,
    /// One-sided Mann–Kendall level the whole window must reach for "leaking".
    pub alpha: f64,
    /// One-sided Mann–Kendall level the recent part must reach for "still growing".
    pub recent_alpha: f64,
    /// One-sided Mann–Kendall level for "it did rise" (plateaued rather than stable).
    pub plateau_alpha: f64,
    /// Comparable points needed after warm-up for any verdict but inconclusive.
    pub min_points: usize,
    /// The recent part is this trailing fraction of the window's points…
    pub recent_fraction: f64,
    /// …and at least this many points.
    pub min_recent_points: usize,
    /// A series whose recent slope is confidently below this fraction of its early slope is
    /// slowing down: it may be a cache about to level off, so not (yet) called leaking.
    pub slowing_ratio: f64,
    /// A plateau must have risen by at least this fraction of its final level.
    pub min_rise_fraction: f64,
    /// Longer windows are thinned evenly before the O(n²) pairwise work.
    pub max_points: usize,
}

impl Default for TrendSettings {
    fn default() -> Self {
        TrendSettings {
            confidence: 0.95,
            alpha: 0.001,
            recent_alpha: 0.05,
            plateau_alpha: 0.05,
            min_points: 8,
            recent_fraction: 0.5,
            min_recent_points: 6,
            slowing_ratio: 1.0 / 3.0,
            min_rise_fraction: 0.05,
            max_points: 160,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoakVerdict {
    /// Grows faster than the threshold over the window and still in its recent part.
    Leaking,
    /// Rose, then stopped: the recent part grows no faster than the threshold.
    Plateaued,
    /// No growth beyond the threshold.
    Stable,
    /// Too few points, or the interval straddles the threshold.
    Inconclusive,
}

impl SoakVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            SoakVerdict::Leaking => "leaking",
            SoakVerdict::Plateaued => "plateaued",
            SoakVerdict::Stable => "stable",
            SoakVerdict::Inconclusive => "inconclusive",
        }
    }
}

/// Why a trend got its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrendReason {
    /// Fewer comparable points after warm-up than `min_points`.
    TooFewPoints,
    /// Leaking: the whole window and its recent part both grow faster than the threshold.
    GrowsThroughout,
    /// Grew, and the recent part still grows, but confidently slower than early on.
    Slowing,
    /// Plateaued: rose, then the recent part stopped growing.
    LevelledOff,
    /// Stable: the interval is at or below the threshold.
    NoGrowth,
    /// The slope's interval straddles the threshold.
    Straddles,
    /// Grew over the window, but the recent part's interval straddles the threshold.
    RecentUnclear,
    /// The interval is above the threshold, but the trend test does not reach the strict
    /// level a leak call needs (many subjects are judged at once).
    WeakTrend,
    /// A sampled call site that seems to grow while the exact census of its type does not:
    /// sampling noise (survivor samples stay correlated for as long as their objects live).
    NotCorroborated,
}

/// The verdict on one series, with its evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    pub verdict: SoakVerdict,
    pub reason: TrendReason,
    pub threshold_bytes_per_hour: f64,
    /// Theil–Sen slope over the window after warm-up, and its confidence interval.
    pub bytes_per_hour: f64,
    pub ci_bytes_per_hour: Option<[f64; 2]>,
    /// The same over the recent part of the window.
    pub recent_bytes_per_hour: Option<f64>,
    pub recent_ci_bytes_per_hour: Option<[f64; 2]>,
    /// One-sided trend p-value of the recent part.
    pub recent_p_value: Option<f64>,
    /// Slope over the first half of the window.
    pub early_bytes_per_hour: Option<f64>,
    /// One-sided Mann–Kendall p-value for an increasing trend over the window.
    pub p_value: f64,
    pub points: usize,
    pub recent_points: usize,
    /// Producer time of the first point after warm-up, and the window's span.
    pub window_start_ms: f64,
    pub window_ms: f64,
    /// Level at the start and at the end of the window (medians of its first and last quarter).
    pub start_bytes: f64,
    pub end_bytes: f64,
    /// Plateaued: producer time from which the series stayed near its final level.
    pub flat_since_ms: Option<f64>,
    /// Inconclusive: a rough estimate of how much longer the soak must run to decide.
    pub more_ms: Option<f64>,
    /// Sampled series: samples gained over the window; the interval then includes the
    /// sampling error (±1.96/√k).
    pub samples_gained: Option<f64>,
}

/// Judges a series (sorted by time) against `threshold_per_hour` over the points at or after
/// `window_start_ms` (the end of warm-up).
pub fn assess_trend(points: &[Point], window_start_ms: f64, threshold_per_hour: f64, s: &TrendSettings) -> Trend {
    let window: Vec<Point> =
        points.iter().copied().filter(|p| p.t_ms >= window_start_ms && p.bytes.is_finite()).collect();
    let window = thin_evenly(window, s.max_points.max(8));
    let n = window.len();
    let tau = threshold_per_hour.max(0.0) / MS_PER_HOUR;
    let (start_ms, span) = match (window.first(), window.last()) {
        (Some(a), Some(b)) => (a.t_ms, b.t_ms - a.t_ms),
        _ => (window_start_ms, 0.0),
    };
    let quarter = (n / 4).max(2).min(n);
    let start_bytes = median(&mut window[..quarter].iter().map(|p| p.bytes).collect::<Vec<_>>());
    let end_bytes = median(&mut window[n - quarter..].iter().map(|p| p.bytes).collect::<Vec<_>>());
    let mut trend = Trend {
        verdict: SoakVerdict::Inconclusive,
        reason: TrendReason::TooFewPoints,
        threshold_bytes_per_hour: threshold_per_hour.max(0.0),
        bytes_per_hour: 0.0,
        ci_bytes_per_hour: None,
        recent_bytes_per_hour: None,
        recent_ci_bytes_per_hour: None,
        recent_p_value: None,
        early_bytes_per_hour: None,
        p_value: 1.0,
        points: n,
        recent_points: 0,
        window_start_ms: start_ms,
        window_ms: span,
        start_bytes,
        end_bytes,
        flat_since_ms: None,
        more_ms: None,
        samples_gained: None,
    };
    if n < s.min_points.max(3) || span <= 0.0 {
        if n >= 2 && span > 0.0 {
            if let Some(f) = sen_fit(&window, s.confidence) {
                trend.bytes_per_hour = f.slope * MS_PER_HOUR;
            }
        }
        return trend;
    }
    let per_hour = |x: f64| x * MS_PER_HOUR;
    // Constant series (common in exact censuses): nothing to sort.
    if window.iter().all(|p| p.bytes == window[0].bytes) {
        trend.ci_bytes_per_hour = Some([0.0, 0.0]);
        trend.recent_bytes_per_hour = Some(0.0);
        trend.recent_ci_bytes_per_hour = Some([0.0, 0.0]);
        trend.early_bytes_per_hour = Some(0.0);
        trend.p_value = 0.5;
        trend.recent_points = n;
        trend.verdict = SoakVerdict::Stable;
        trend.reason = TrendReason::NoGrowth;
        return trend;
    }
    let Some(whole) = sen_fit(&window, s.confidence) else {
        return trend;
    };
    let values: Vec<f64> = window.iter().map(|p| p.bytes).collect();
    let p_whole = trend_p_value(&values);
    let recent_n = ((n as f64 * s.recent_fraction).ceil() as usize).max(s.min_recent_points).min(n);
    let recent = &window[n - recent_n..];
    let early = &window[..(n / 2).max(2)];
    let recent_fit = sen_fit(recent, s.confidence);
    let early_slope = sen_fit(early, s.confidence).map(|f| f.slope);
    trend.bytes_per_hour = per_hour(whole.slope);
    trend.ci_bytes_per_hour = Some([per_hour(whole.lo), per_hour(whole.hi)]);
    trend.p_value = p_whole;
    trend.recent_points = recent_n;
    trend.recent_bytes_per_hour = recent_fit.map(|f| per_hour(f.slope));
    trend.recent_ci_bytes_per_hour = recent_fit.map(|f| [per_hour(f.lo), per_hour(f.hi)]);
    trend.early_bytes_per_hour = early_slope.map(per_hour);

    // Leaking: the whole window grows faster than τ with confidence (and a strict trend test,
    // since hundreds of subjects are judged at once), and the recent part still grows: its
    // slope is above τ with a significant trend of its own, not far below the early slope.
    let grows_whole = whole.lo > tau && p_whole < s.alpha;
    let recent_values: Vec<f64> = recent.iter().map(|p| p.bytes).collect();
    let p_recent = trend_p_value(&recent_values);
    trend.recent_p_value = Some(p_recent);
    let recent_slope = recent_fit.map(|f| f.slope).unwrap_or(0.0);
    let recent_hi = recent_fit.map(|f| f.hi).unwrap_or(f64::INFINITY);
    let still_growing = recent_slope > tau && p_recent < s.recent_alpha;
    let rise = end_bytes - start_bytes;
    if grows_whole && still_growing {
        let slowing = early_slope.is_some_and(|e| e > 0.0 && recent_slope < e * s.slowing_ratio);
        if slowing {
            trend.reason = TrendReason::Slowing;
            trend.more_ms = Some(span);
        } else {
            trend.verdict = SoakVerdict::Leaking;
            trend.reason = TrendReason::GrowsThroughout;
        }
        return trend;
    }
    // Plateaued or stable: the recent part confidently grows no faster than τ — or it shows no
    // trend of its own and is confidently far below the early slope (the rise has stopped; a
    // residual growth up to the recent interval's upper end is not ruled out yet, and the
    // evidence says so).
    let recent_trend = recent_slope > tau && p_recent < s.recent_alpha;
    let levelled = !recent_trend && early_slope.is_some_and(|e| e > tau && recent_hi < e * s.slowing_ratio);
    if recent_hi <= tau || levelled {
        // It rose if the trend test says so, or if the rise dwarfs the recent fluctuation.
        let recent_spread = recent_values.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
            - recent_values.iter().cloned().fold(f64::INFINITY, f64::min);
        let rose = rise > tau * span
            && rise > s.min_rise_fraction * end_bytes.abs()
            && (p_whole < s.plateau_alpha || rise > 10.0 * recent_spread);
        if rose {
            trend.verdict = SoakVerdict::Plateaued;
            trend.reason = TrendReason::LevelledOff;
            let near = start_bytes + 0.9 * rise;
            trend.flat_since_ms = window.iter().find(|p| p.bytes >= near).map(|p| p.t_ms);
        } else {
            trend.verdict = SoakVerdict::Stable;
            trend.reason = TrendReason::NoGrowth;
        }
        return trend;
    }
    if whole.hi <= tau {
        trend.verdict = SoakVerdict::Stable;
        trend.reason = TrendReason::NoGrowth;
        return trend;
    }
    // Inconclusive. The interval narrows roughly as T^(-3/2) with a point every fixed period:
    // estimate when its half-width falls below the slope's distance from the threshold.
    if !grows_whole && whole.lo > tau {
        trend.reason = TrendReason::WeakTrend;
        trend.more_ms = Some(span * 0.5);
        return trend;
    }
    let (fit, fit_span) = if grows_whole {
        trend.reason = TrendReason::RecentUnclear;
        let rspan = recent.last().map(|p| p.t_ms).unwrap_or(0.0) - recent.first().map(|p| p.t_ms).unwrap_or(0.0);
        (recent_fit.unwrap_or(whole), rspan.max(1.0))
    } else {
        trend.reason = TrendReason::Straddles;
        (whole, span)
    };
    let half = 0.5 * (fit.hi - fit.lo);
    let distance = (fit.slope - tau).abs().max(half / 20.0);
    if half > 0.0 {
        let factor = (half / distance).powf(2.0 / 3.0);
        trend.more_ms = Some((fit_span * factor - fit_span).max(fit_span * 0.25));
    }
    trend
}
