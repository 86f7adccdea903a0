//! The pure statistics both verdicts are built on, with no notion of a leak: the Theil–Sen
//! slope, the Mann–Kendall trend test, Sen's confidence interval on the slope (exact for small
//! samples, the normal approximation beyond), and the p-values and quantiles they need.
//!
//! * **Theil–Sen slope**: the median of all pairwise slopes. Up to ~29 % of the points can be
//!   wild (a GC that has not run yet, a sampling burst) without moving it.
//! * **Mann–Kendall trend test**: a rank test for a monotonic trend, with tie correction
//!   (sampled estimates come in steps of the sampling quantum, so ties are common). It also
//!   gives the classic 95 % confidence interval on the Theil–Sen slope (Sen 1968).

/// One observation: producer time (ms) and estimated live bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t_ms: f64,
    pub bytes: f64,
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

pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { 0.5 * (values[n / 2 - 1] + values[n / 2]) }
}

/// P(Z > z) for a standard normal Z.
pub(super) fn upper_tail_normal(z: f64) -> f64 {
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

/// Keeps `max` points spread evenly, always including the first and the last.
pub fn thin_evenly(points: Vec<Point>, max: usize) -> Vec<Point> {
    if points.len() <= max {
        return points;
    }
    let n = points.len();
    (0..max).map(|i| points[i * (n - 1) / (max - 1)]).collect()
}
