//! Growth analysis of one site's live-bytes time series. Pure functions, no I/O.
//!
//! The question is the team's lesson (1)–(3) from PRODUCT.md: does the memory that *survives*
//! at this site keep growing, or does it fluctuate (churn, garbage not yet collected) or level
//! off (a bounded cache)? We answer it with tools that do not assume normal noise:
//!
//! * **Theil–Sen slope**: the median of all pairwise slopes. Up to ~29 % of the points can be
//!   wild (a GC that has not run yet, a sampling burst) without moving it.
//! * **Mann–Kendall trend test**: a rank test for a monotonic trend, with tie correction
//!   (sampled estimates come in steps of the sampling quantum, so ties are common). It also
//!   gives the classic 95 % confidence interval on the Theil–Sen slope (Sen 1968).
//! * **Materiality**: a trend can be statistically real yet too small to matter; it must also
//!   add enough bytes over the window, absolutely and relative to the site's peak.
//! * **Still growing at the end**: a bounded cache rises and then stops; the slope over the
//!   recent half tells a leak (keeps going) from a plateau (stopped).

use serde::Serialize;

/// One observation: producer time (ms) and estimated live bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t_ms: f64,
    pub bytes: f64,
}

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
pub enum Verdict {
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

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Growing => "growing",
            Verdict::Rising => "rising",
            Verdict::Plateaued => "plateaued",
            Verdict::Steady => "steady",
            Verdict::InsufficientData => "insufficient_data",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Growth {
    pub verdict: Verdict,
    /// Theil–Sen slope over the analysed window.
    pub bytes_per_min: f64,
    /// 95 % confidence interval of the slope (Sen 1968), when computable.
    pub ci95_bytes_per_min: Option<[f64; 2]>,
    /// One-sided Mann–Kendall p-value for an increasing trend.
    pub p_value: f64,
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
            verdict: Verdict::InsufficientData,
            bytes_per_min: 0.0,
            ci95_bytes_per_min: None,
            p_value: 1.0,
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
    let material = growth_bytes > th.min_growth_bytes && growth_bytes > th.min_growth_fraction * peak;
    let verdict = if significant && material {
        let recent = &window[window.len() / 2..];
        let recent_slope = theil_sen(recent, None).map(|s| s.slope).unwrap_or(0.0);
        if recent.len() >= 4 && recent_slope < th.still_growing_fraction * sen.slope {
            Verdict::Plateaued
        } else {
            Verdict::Growing
        }
    } else {
        Verdict::Steady
    };
    const MS_PER_MIN: f64 = 60_000.0;
    Growth {
        verdict,
        bytes_per_min: sen.slope * MS_PER_MIN,
        ci95_bytes_per_min: sen.ci95.map(|(lo, hi)| [lo * MS_PER_MIN, hi * MS_PER_MIN]),
        p_value: mk.p_increasing,
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

/// Keeps `max` points spread evenly, always including the first and the last.
fn thin_evenly(points: Vec<Point>, max: usize) -> Vec<Point> {
    if points.len() <= max {
        return points;
    }
    let n = points.len();
    (0..max).map(|i| points[i * (n - 1) / (max - 1)]).collect()
}

#[derive(Debug, Clone, Copy)]
pub struct SenSlope {
    /// Bytes per millisecond.
    pub slope: f64,
    pub ci95: Option<(f64, f64)>,
}

/// The slopes between every pair of points (pairs with equal times skipped), sorted; None when
/// there are none.
fn pairwise_slopes(points: &[Point]) -> Option<Vec<f64>> {
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            let dt = b.t_ms - a.t_ms;
            if dt.abs() > f64::EPSILON {
                slopes.push((b.bytes - a.bytes) / dt);
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_by(f64::total_cmp);
    Some(slopes)
}

/// The median of a sorted, non-empty slice.
fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 { sorted[n / 2] } else { 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]) }
}

/// Theil–Sen estimator. With `mk_var_s` (the Mann–Kendall variance of S for these values) it
/// also returns Sen's 95 % confidence interval. Pairs with equal times are skipped.
pub fn theil_sen(points: &[Point], mk_var_s: Option<f64>) -> Option<SenSlope> {
    let slopes = pairwise_slopes(points)?;
    let n = slopes.len();
    let slope = median_of_sorted(&slopes);
    let ci95 = mk_var_s.filter(|v| *v > 0.0).map(|var_s| {
        const Z_975: f64 = 1.959_964;
        let c = Z_975 * var_s.sqrt();
        let lower_rank = ((n as f64 - c) / 2.0).floor().max(0.0) as usize;
        let upper_rank = ((n as f64 + c) / 2.0).ceil() as usize;
        (slopes[lower_rank.min(n - 1)], slopes[upper_rank.min(n - 1)])
    });
    Some(SenSlope { slope, ci95 })
}

#[derive(Debug, Clone, Copy)]
pub struct MannKendall {
    pub s: f64,
    pub var_s: f64,
    pub z: f64,
    /// One-sided p-value for an increasing trend.
    pub p_increasing: f64,
}

/// Mann–Kendall test on values in time order, with the tie correction of the variance.
pub fn mann_kendall(values: &[f64]) -> MannKendall {
    let n = values.len();
    let mut s = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            s += match values[j].partial_cmp(&values[i]) {
                Some(std::cmp::Ordering::Greater) => 1.0,
                Some(std::cmp::Ordering::Less) => -1.0,
                _ => 0.0,
            };
        }
    }
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i + 1;
        while j < sorted.len() && sorted[j] == sorted[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        if t > 1.0 {
            tie_term += t * (t - 1.0) * (2.0 * t + 5.0);
        }
        i = j;
    }
    let nf = n as f64;
    let var_s = ((nf * (nf - 1.0) * (2.0 * nf + 5.0)) - tie_term) / 18.0;
    let z = if var_s <= 0.0 {
        0.0
    } else if s > 0.0 {
        (s - 1.0) / var_s.sqrt()
    } else if s < 0.0 {
        (s + 1.0) / var_s.sqrt()
    } else {
        0.0
    };
    MannKendall { s, var_s, z, p_increasing: upper_tail_normal(z) }
}

// ─────────────────────────────────────────────────────────────────────────────────────────────
// Soak trends: a threshold-aware verdict on a series of comparable points (after full GCs).
//
// `assess` above answers "is this site growing?" for the live view. A soak gate asks a sharper
// question: "does this subject grow faster than τ bytes per hour, and is it still growing at the
// end?" — and must be allowed to say "cannot tell yet". The answer uses:
//
// * the Theil–Sen slope with **Sen's confidence interval** taken from the null distribution of
//   Kendall's S: exact (Mahonian numbers) for n ≤ 50, the normal approximation with tie
//   correction beyond. The exact distribution ignores ties, which only widens the interval;
// * the same on the **recent part** of the window (its last half), so a series that rose and
//   then levelled off (a cache reaching its bound, warm-up) is told from one that keeps rising;
// * a Mann–Kendall trend test at a strict level for "leaking", because a soak judges hundreds
//   of types and sites at once and a false alarm must stay rare.
// ─────────────────────────────────────────────────────────────────────────────────────────────

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

/// Theil–Sen slope with Sen's interval at `confidence`; `None` with fewer than two times.
#[derive(Debug, Clone, Copy)]
pub struct SenFit {
    /// Bytes per millisecond.
    pub slope: f64,
    pub lo: f64,
    pub hi: f64,
}

pub fn sen_fit(points: &[Point], confidence: f64) -> Option<SenFit> {
    let slopes = pairwise_slopes(points)?;
    let m = slopes.len();
    let slope = median_of_sorted(&slopes);
    let tail = (1.0 - confidence.clamp(0.5, 0.9999)) / 2.0;
    let lower_index = if points.len() <= EXACT_KENDALL_MAX_N {
        kendall_lower_index_exact(points.len(), tail)
    } else {
        let values: Vec<f64> = points.iter().map(|p| p.bytes).collect();
        let var_s = mann_kendall(&values).var_s;
        let c = normal_quantile_upper(tail) * var_s.max(0.0).sqrt();
        ((m as f64 - c) / 2.0).floor().max(1.0) as usize - 1
    };
    let lower_index = lower_index.min((m - 1) / 2);
    Some(SenFit { slope, lo: slopes[lower_index], hi: slopes[m - 1 - lower_index] })
}

/// Up to this many points, Sen's interval uses the exact null distribution of Kendall's S.
const EXACT_KENDALL_MAX_N: usize = 50;

/// P(I ≤ i) for i = 0..=N, where I is the number of discordant pairs among n untied values
/// in random order (the Mahonian distribution): Kendall's S = N − 2I under "no trend".
/// Cached per n; n ≤ [`EXACT_KENDALL_MAX_N`].
fn kendall_cdf(n: usize) -> std::rc::Rc<Vec<f64>> {
    thread_local! {
        static CACHE: std::cell::RefCell<std::collections::HashMap<usize, std::rc::Rc<Vec<f64>>>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    if let Some(hit) = CACHE.with(|c| c.borrow().get(&n).cloned()) {
        return hit;
    }
    let pairs = n * n.saturating_sub(1) / 2;
    let mut dist = vec![0.0f64; pairs + 1];
    dist[0] = 1.0;
    let mut max_i = 0;
    for k in 2..=n {
        // Inserting the k-th item adds 0..k-1 inversions, each with probability 1/k.
        let new_max = max_i + (k - 1);
        let mut prefix = vec![0.0f64; max_i + 2];
        for i in 0..=max_i {
            prefix[i + 1] = prefix[i] + dist[i];
        }
        for (i, slot) in dist.iter_mut().enumerate().take(new_max + 1) {
            let hi = i.min(max_i);
            let lo = i.saturating_sub(k - 1);
            *slot = if lo <= hi { (prefix[hi + 1] - prefix[lo]) / k as f64 } else { 0.0 };
        }
        max_i = new_max;
    }
    let mut cdf = Vec::with_capacity(pairs + 1);
    let mut acc = 0.0;
    for p in dist {
        acc += p;
        cdf.push(acc.min(1.0));
    }
    let table = std::rc::Rc::new(cdf);
    CACHE.with(|c| c.borrow_mut().insert(n, table.clone()));
    table
}

/// 0-based index of the lower end of Sen's interval among the N = n(n−1)/2 sorted slopes:
/// the largest m with P(I ≤ m) ≤ tail. 0 (the widest interval) when even m = 0 is likelier
/// than `tail` (n ≤ 4 at 95 %).
fn kendall_lower_index_exact(n: usize, tail: f64) -> usize {
    let cdf = kendall_cdf(n);
    let mut m = 0;
    for (i, c) in cdf.iter().enumerate().take(cdf.len() / 2 + 1) {
        if *c <= tail * (1.0 + 1e-9) {
            m = i;
        } else {
            break;
        }
    }
    m
}

/// One-sided p-value for an increasing trend: exact (ignoring ties, which makes it
/// conservative) for n ≤ [`EXACT_KENDALL_MAX_N`], else Mann–Kendall's normal approximation.
pub fn trend_p_value(values: &[f64]) -> f64 {
    let mk = mann_kendall(values);
    let n = values.len();
    if n < 2 {
        return 1.0;
    }
    if n > EXACT_KENDALL_MAX_N {
        return mk.p_increasing;
    }
    let pairs = n * (n - 1) / 2;
    // P(S ≥ s) = P(I ≤ (N − s) / 2); with ties S can be odd: round towards the larger p.
    let s = mk.s.round() as i64;
    let i_max = ((pairs as i64 - s) as f64 / 2.0).floor();
    if i_max < 0.0 {
        return 0.0;
    }
    let cdf = kendall_cdf(n);
    cdf[(i_max as usize).min(pairs)]
}

/// z with P(Z > z) = p, by bisection on the tail function (accurate to ~1e-7).
fn normal_quantile_upper(p: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0f64, 10.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if upper_tail_normal(mid) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { 0.5 * (values[n / 2 - 1] + values[n / 2]) }
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

/// P(Z > z) for a standard normal Z.
fn upper_tail_normal(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes `erfcc`, fractional error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small deterministic generator (xorshift64*), so the synthetic series are reproducible.
    struct Rng(u64);
    impl Rng {
        fn next_f64(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }
        /// Uniform in [-1, 1).
        fn sym(&mut self) -> f64 {
            2.0 * self.next_f64() - 1.0
        }
    }

    const MB: f64 = 1e6;
    /// Sampled estimates move in steps of the sampling quantum.
    fn quantize(bytes: f64) -> f64 {
        const QUANTUM: f64 = 102_400.0;
        (bytes / QUANTUM).round().max(0.0) * QUANTUM
    }

    fn series(n: usize, interval_ms: f64, mut f: impl FnMut(usize, f64) -> f64) -> Vec<Point> {
        (0..n)
            .map(|i| {
                let t = i as f64 * interval_ms;
                Point { t_ms: t, bytes: quantize(f(i, t)) }
            })
            .collect()
    }

    fn verdict_of(points: &[Point]) -> Growth {
        let peak = points.iter().map(|p| p.bytes).fold(0.0, f64::max);
        assess(points, peak, &Thresholds::default(), None)
    }

    #[test]
    fn erfc_and_normal_tail_match_tables() {
        assert!((upper_tail_normal(0.0) - 0.5).abs() < 1e-7);
        assert!((upper_tail_normal(1.959_964) - 0.025).abs() < 1e-6);
        assert!((upper_tail_normal(3.090_232) - 0.001).abs() < 1e-6);
        assert!((upper_tail_normal(-1.644_854) - 0.95).abs() < 1e-6);
    }

    #[test]
    fn mann_kendall_matches_the_textbook_values() {
        // Strictly increasing, n = 10: S = 45, Var(S) = 10·9·25/18 = 125.
        let v: Vec<f64> = (0..10).map(|i| i as f64).collect();
        let mk = mann_kendall(&v);
        assert_eq!(mk.s, 45.0);
        assert!((mk.var_s - 125.0).abs() < 1e-9);
        assert!((mk.z - 44.0 / 125f64.sqrt()).abs() < 1e-9);
        assert!(mk.p_increasing < 1e-4);
        // All ties: no information, no trend.
        let flat = mann_kendall(&[5.0; 12]);
        assert_eq!(flat.s, 0.0);
        assert!((flat.p_increasing - 0.5).abs() < 1e-6);
        // Tie correction: two groups of two ties reduce the variance.
        let tied = mann_kendall(&[1.0, 1.0, 2.0, 2.0, 3.0]);
        let untied_var = 5.0 * 4.0 * 15.0 / 18.0;
        assert!((tied.var_s - (untied_var - 2.0 * 2.0 * 1.0 * 9.0 / 18.0)).abs() < 1e-9);
    }

    #[test]
    fn theil_sen_is_exact_on_a_line_and_ignores_outliers() {
        let line: Vec<Point> =
            (0..20).map(|i| Point { t_ms: i as f64 * 1000.0, bytes: 5.0 + 2.0 * i as f64 * 1000.0 }).collect();
        let s = theil_sen(&line, None).unwrap();
        assert!((s.slope - 2.0).abs() < 1e-12);
        // A quarter of the points replaced by wild values: the slope barely moves.
        let mut dirty = line.clone();
        for i in (0..20).step_by(4) {
            dirty[i].bytes = if i % 8 == 0 { 1e9 } else { 0.0 };
        }
        let s = theil_sen(&dirty, None).unwrap();
        assert!((s.slope - 2.0).abs() < 0.2, "slope {}", s.slope);
        assert!(theil_sen(&[Point { t_ms: 1.0, bytes: 1.0 }], None).is_none());
    }

    #[test]
    fn steady_leak_under_churn_is_flagged_with_its_rate() {
        // 3 MB/min leak with ±0.6 MB of sampling noise, a point every 2 s for 50 s: the shape
        // `leakscope demo` produces at its leak site.
        let mut rng = Rng(7);
        let noise: Vec<f64> = (0..25).map(|_| rng.sym() * 0.6 * MB).collect();
        let pts = series(25, 2000.0, |i, t| 10.0 * MB + 3.0 * MB * t / 60_000.0 + noise[i]);
        let g = verdict_of(&pts);
        assert_eq!(g.verdict, Verdict::Growing, "{g:?}");
        assert!((g.bytes_per_min - 3.0 * MB).abs() < 0.6 * MB, "rate {}", g.bytes_per_min);
        let [lo, hi] = g.ci95_bytes_per_min.unwrap();
        assert!(lo <= g.bytes_per_min && g.bytes_per_min <= hi);
        assert!(g.p_value < 0.001);
    }

    #[test]
    fn slow_leak_under_heavy_churn_is_flagged_over_a_longer_soak() {
        // 1 MB/min under ±5 MB of churn: a point every 5 s for 12 minutes.
        for seed in 1..=20 {
            let mut rng = Rng(seed);
            let noise: Vec<f64> = (0..144).map(|_| rng.sym() * 5.0 * MB).collect();
            let pts = series(144, 5000.0, |i, t| 20.0 * MB + 1.0 * MB * t / 60_000.0 + noise[i]);
            let g = verdict_of(&pts);
            assert_eq!(g.verdict, Verdict::Growing, "seed {seed}: {g:?}");
            assert!((g.bytes_per_min - MB).abs() < 0.35 * MB, "seed {seed}: rate {}", g.bytes_per_min);
        }
    }

    #[test]
    fn a_leak_starting_from_zero_is_flagged() {
        let pts = series(30, 5000.0, |_, t| 4.0 * MB * t / 60_000.0);
        assert_eq!(verdict_of(&pts).verdict, Verdict::Growing);
    }

    #[test]
    fn pure_churn_is_never_flagged() {
        // Live bytes fluctuating around a constant level: uniform noise, heavy-tailed spikes
        // (garbage the GC has not collected yet), and GC-timing sawtooth. Many seeds and sizes.
        let mut flagged = Vec::new();
        for seed in 1..=400u64 {
            let mut rng = Rng(seed * 7919);
            let level = (5.0 + 95.0 * rng.next_f64()) * MB;
            let noise_frac = [0.05, 0.2, 0.5][(seed % 3) as usize];
            let n = [12, 25, 60, 144][(seed % 4) as usize];
            let shape = seed % 3;
            let raw: Vec<f64> = (0..n)
                .map(|i| match shape {
                    0 => level * (1.0 + noise_frac * rng.sym()),
                    1 => {
                        let spike = if rng.next_f64() < 0.1 { level * 0.8 * rng.next_f64() } else { 0.0 };
                        level * (1.0 + 0.5 * noise_frac * rng.sym()) + spike
                    }
                    _ => {
                        let period = 7 + (seed % 5) as usize;
                        level * (1.0 + noise_frac * ((i % period) as f64 / period as f64)) + 0.1 * level * rng.sym()
                    }
                })
                .collect();
            let pts = series(n, 5000.0, |i, _| raw[i]);
            let g = verdict_of(&pts);
            if g.verdict == Verdict::Growing {
                flagged.push((seed, g));
            }
        }
        assert!(flagged.is_empty(), "churn flagged as growing: {flagged:?}");
    }

    #[test]
    fn a_cache_that_fills_and_plateaus_is_not_a_leak() {
        // A bounded cache fills to 20 MB over the first part of the run, then holds.
        for (seed, fill_fraction) in [(3u64, 0.15), (4, 0.35), (5, 0.5), (6, 0.6)] {
            let mut rng = Rng(seed);
            let n = 60;
            let fill_points = (n as f64 * fill_fraction) as usize;
            let pts = series(n, 5000.0, |i, _| {
                let filled = (i as f64 / fill_points as f64).min(1.0);
                20.0 * MB * filled + 0.5 * MB * rng.sym()
            });
            let g = verdict_of(&pts);
            assert_ne!(g.verdict, Verdict::Growing, "fill fraction {fill_fraction}: {g:?}");
        }
    }

    #[test]
    fn small_or_relative_tiny_growth_is_not_material() {
        // Perfectly monotonic but only 500 kB in total: significant, not material.
        let pts = series(40, 5000.0, |i, _| 1.0 * MB + 12_500.0 * i as f64 * 1.0);
        assert_eq!(verdict_of(&pts).verdict, Verdict::Steady);
        // A 2 GB cache drifting by 5 MB over the window: under 10 % of its peak.
        let pts = series(40, 5000.0, |i, _| 2000.0 * MB + 0.125 * MB * i as f64);
        assert_eq!(verdict_of(&pts).verdict, Verdict::Steady);
    }

    #[test]
    fn too_few_points_give_no_verdict() {
        let pts = series(5, 5000.0, |i, _| i as f64 * 10.0 * MB);
        assert_eq!(verdict_of(&pts).verdict, Verdict::InsufficientData);
        assert_eq!(verdict_of(&[]).verdict, Verdict::InsufficientData);
        // Same timestamps everywhere: no time axis, no verdict, no panic.
        let same_t: Vec<Point> = (0..20).map(|i| Point { t_ms: 5.0, bytes: i as f64 }).collect();
        assert_eq!(verdict_of(&same_t).verdict, Verdict::InsufficientData);
    }

    #[test]
    fn recent_window_sees_a_leak_that_started_late() {
        // Flat for 50 minutes, then 2 MB/min for the last 10: the whole-run slope is diluted,
        // the live view's 10-minute window shows it.
        let pts = series(720, 5000.0, |i, t| {
            let base = 30.0 * MB + if i % 2 == 0 { 0.3 * MB } else { -0.3 * MB };
            if t > 50.0 * 60_000.0 { base + 2.0 * MB * (t - 50.0 * 60_000.0) / 60_000.0 } else { base }
        });
        let g = assess(&pts, 60.0 * MB, &Thresholds::default(), Some(10.0 * 60_000.0));
        assert_eq!(g.verdict, Verdict::Growing, "{g:?}");
        assert!((g.bytes_per_min - 2.0 * MB).abs() < 0.3 * MB);
    }

    /// A sawtooth: garbage that dies old piles up between full GCs (every `gc_every` points)
    /// on top of `live(i)`; returns the series and the full GCs' times.
    fn sawtooth(
        n: usize,
        gc_every: usize,
        garbage_per_point: f64,
        live: impl Fn(usize) -> f64,
    ) -> (Vec<Point>, Vec<f64>) {
        let points = series(n, 1000.0, |i, _| live(i) + garbage_per_point * (i % gc_every) as f64);
        let gcs = (1..n).filter(|i| i % gc_every == 0).map(|i| i as f64 * 1000.0).collect();
        (points, gcs)
    }

    fn check(points: &[Point], gcs: &[f64]) -> (Growth, Option<FullGcCheck>) {
        let peak = points.iter().map(|p| p.bytes).fold(0.0, f64::max);
        let th = Thresholds::default();
        let g = assess(points, peak, &th, None);
        let c = (g.verdict == Verdict::Growing).then(|| check_across_full_gcs(points, &[], &g, gcs, None, &th));
        (g, c)
    }

    #[test]
    fn churn_that_dies_old_rises_like_a_leak_until_a_full_gc_takes_it_back() {
        // 4 MB of live messages; 150 kB of promoted garbage per second, a full GC every 50 s.
        let (points, gcs) = sawtooth(80, 50, 150_000.0, |_| 4.0 * MB);
        let (before_gc, _) = check(&points[..45], &[]);
        assert_eq!(before_gc.verdict, Verdict::Growing, "the trend test alone cannot tell: {before_gc:?}");
        let (_, c) = check(&points[..45], &gcs);
        assert_eq!(c, Some(FullGcCheck::Unconfirmed { full_gcs: 0 }), "no full GC yet: rising, not growing");
        // A full GC at 50 s brings it back; the window (after warm-up) still trends up.
        let (points, gcs) = sawtooth(100, 50, 150_000.0, |_| 4.0 * MB);
        let (g, c) = check(&points[..80], &gcs);
        if g.verdict == Verdict::Growing {
            assert!(matches!(c, Some(FullGcCheck::FellBack { .. })), "{c:?}");
        }
    }

    #[test]
    fn a_leak_under_the_same_churn_is_confirmed_by_the_full_gc() {
        // The same sawtooth, plus 120 kB/s that stays live.
        let (points, gcs) = sawtooth(80, 50, 150_000.0, |i| 4.0 * MB + 120_000.0 * i as f64);
        let (g, c) = check(&points, &gcs);
        assert_eq!(g.verdict, Verdict::Growing, "{g:?}");
        let Some(FullGcCheck::Confirmed { bytes, full_gc_ms }) = c else { panic!("{c:?}") };
        assert_eq!(full_gc_ms, 50_000.0);
        // From the window's start (~17 s, on the sawtooth: 8.6 MB) to just after the GC at
        // 50 s (10 MB), where all of it is live.
        assert!(bytes > 1.0 * MB && bytes < 2.0 * MB, "{bytes}");
    }

    #[test]
    fn sampling_noise_is_not_confirmed_growth() {
        // Churn whose estimate just after the full GC came out 3 MB high by chance. It stands
        // 1 MB above the window's start (6 MB), but with 100 kB per sample two estimates of
        // 6–7 MB are each off by about ±0.8 MB: 1 MB is noise.
        let (mut points, gcs) = sawtooth(80, 50, 150_000.0, |_| 4.0 * MB);
        points[50].bytes += 3.0 * MB;
        let peak = points.iter().map(|p| p.bytes).fold(0.0, f64::max);
        let th = Thresholds::default();
        let g = assess(&points[..60], peak, &th, None);
        let without_noise = check_across_full_gcs(&points[..60], &[], &g, &gcs, None, &th);
        assert!(matches!(without_noise, FullGcCheck::Confirmed { .. }), "{without_noise:?}");
        let with_noise = check_across_full_gcs(&points[..60], &[], &g, &gcs, Some(100_000.0), &th);
        assert!(matches!(with_noise, FullGcCheck::Unconfirmed { .. }), "{with_noise:?}");
        // The same, with the agent's collected counts showing the turnover: still noise.
        let churned: Vec<f64> = (0..60).map(|i| 15.0 * i as f64).collect();
        let counted = check_across_full_gcs(&points[..60], &churned, &g, &gcs, Some(100_000.0), &th);
        assert!(matches!(counted, FullGcCheck::Unconfirmed { .. }), "{counted:?}");
    }

    /// A leak's samples only come: with the collected counts saying none went, the noise of the
    /// difference is that of the samples gained alone, and a rise too small to stand above a
    /// turned-over population's noise is confirmed.
    #[test]
    fn a_leak_whose_samples_only_come_is_confirmed_sooner() {
        // 50 kB/s from 1 MB, 100 kB per sample; full GC at 40 s; window from ~8 s.
        let (points, _) = sawtooth(45, 1000, 0.0, |i| 1.0 * MB + 50_000.0 * i as f64);
        let peak = points.iter().map(|p| p.bytes).fold(0.0, f64::max);
        let th = Thresholds::default();
        let g = assess(&points, peak, &th, None);
        assert_eq!(g.verdict, Verdict::Growing);
        let turned_over = check_across_full_gcs(&points, &[], &g, &[40_000.0], Some(100_000.0), &th);
        assert!(matches!(turned_over, FullGcCheck::Unconfirmed { .. }), "{turned_over:?}");
        let none_went = vec![0.0; points.len()];
        let only_came = check_across_full_gcs(&points, &none_went, &g, &[40_000.0], Some(100_000.0), &th);
        assert!(matches!(only_came, FullGcCheck::Confirmed { .. }), "{only_came:?}");
    }

    #[test]
    fn a_full_gc_too_early_in_the_window_confirms_nothing_and_refutes_nothing() {
        // A leak with a full GC just after the window starts: too little time to confirm.
        let (points, _) = sawtooth(60, 1000, 0.0, |i| 120_000.0 * i as f64);
        let (g, c) = check(&points, &[16_000.0]);
        assert_eq!(g.verdict, Verdict::Growing);
        assert!(matches!(c, Some(FullGcCheck::Unconfirmed { full_gcs: 1 })), "{c:?}");
    }

    #[test]
    fn thinning_keeps_the_endpoints() {
        let pts: Vec<Point> = (0..1000).map(|i| Point { t_ms: i as f64, bytes: 0.0 }).collect();
        let thin = thin_evenly(pts, 240);
        assert_eq!(thin.len(), 240);
        assert_eq!(thin[0].t_ms, 0.0);
        assert_eq!(thin[239].t_ms, 999.0);
    }
}
