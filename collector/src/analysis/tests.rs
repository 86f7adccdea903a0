//! Both verdicts and the statistics under them, on synthetic series: leaks, caches, churn,
//! warm-up, bursts, and the p-values and intervals against known values.

use super::stats::{mann_kendall, thin_evenly, upper_tail_normal};
use super::synthetic::{Rng, series_from};
use super::*;

const MB: f64 = 1e6;
/// Sampled estimates move in steps of the sampling quantum.
fn quantize(bytes: f64) -> f64 {
    const QUANTUM: f64 = 102_400.0;
    (bytes / QUANTUM).round().max(0.0) * QUANTUM
}

fn series(n: usize, interval_ms: f64, f: impl FnMut(usize, f64) -> f64) -> Vec<Point> {
    series_from(n, 0.0, interval_ms, f, quantize)
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
    assert_eq!(g.verdict, LiveVerdict::Growing, "{g:?}");
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
        assert_eq!(g.verdict, LiveVerdict::Growing, "seed {seed}: {g:?}");
        assert!((g.bytes_per_min - MB).abs() < 0.35 * MB, "seed {seed}: rate {}", g.bytes_per_min);
    }
}

#[test]
fn a_leak_starting_from_zero_is_flagged() {
    let pts = series(30, 5000.0, |_, t| 4.0 * MB * t / 60_000.0);
    assert_eq!(verdict_of(&pts).verdict, LiveVerdict::Growing);
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
        if g.verdict == LiveVerdict::Growing {
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
        assert_ne!(g.verdict, LiveVerdict::Growing, "fill fraction {fill_fraction}: {g:?}");
    }
}

#[test]
fn small_or_relative_tiny_growth_is_not_material() {
    // Perfectly monotonic but only 500 kB in total: significant, not material.
    let pts = series(40, 5000.0, |i, _| 1.0 * MB + 12_500.0 * i as f64 * 1.0);
    assert_eq!(verdict_of(&pts).verdict, LiveVerdict::Steady);
    // A 2 GB cache drifting by 5 MB over the window: under 10 % of its peak.
    let pts = series(40, 5000.0, |i, _| 2000.0 * MB + 0.125 * MB * i as f64);
    assert_eq!(verdict_of(&pts).verdict, LiveVerdict::Steady);
}

#[test]
fn too_few_points_give_no_verdict() {
    let pts = series(5, 5000.0, |i, _| i as f64 * 10.0 * MB);
    assert_eq!(verdict_of(&pts).verdict, LiveVerdict::InsufficientData);
    assert_eq!(verdict_of(&[]).verdict, LiveVerdict::InsufficientData);
    // Same timestamps everywhere: no time axis, no verdict, no panic.
    let same_t: Vec<Point> = (0..20).map(|i| Point { t_ms: 5.0, bytes: i as f64 }).collect();
    assert_eq!(verdict_of(&same_t).verdict, LiveVerdict::InsufficientData);
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
    assert_eq!(g.verdict, LiveVerdict::Growing, "{g:?}");
    assert!((g.bytes_per_min - 2.0 * MB).abs() < 0.3 * MB);
}

/// A sawtooth: garbage that dies old piles up between full GCs (every `gc_every` points)
/// on top of `live(i)`; returns the series and the full GCs' times.
fn sawtooth(n: usize, gc_every: usize, garbage_per_point: f64, live: impl Fn(usize) -> f64) -> (Vec<Point>, Vec<f64>) {
    let points = series(n, 1000.0, |i, _| live(i) + garbage_per_point * (i % gc_every) as f64);
    let gcs = (1..n).filter(|i| i % gc_every == 0).map(|i| i as f64 * 1000.0).collect();
    (points, gcs)
}

fn check(points: &[Point], gcs: &[f64]) -> (Growth, Option<FullGcCheck>) {
    let peak = points.iter().map(|p| p.bytes).fold(0.0, f64::max);
    let th = Thresholds::default();
    let g = assess(points, peak, &th, None);
    let c = (g.verdict == LiveVerdict::Growing).then(|| check_across_full_gcs(points, &[], &g, gcs, None, &th));
    (g, c)
}

#[test]
fn churn_that_dies_old_rises_like_a_leak_until_a_full_gc_takes_it_back() {
    // 4 MB of live messages; 150 kB of promoted garbage per second, a full GC every 50 s.
    let (points, gcs) = sawtooth(80, 50, 150_000.0, |_| 4.0 * MB);
    let (before_gc, _) = check(&points[..45], &[]);
    assert_eq!(before_gc.verdict, LiveVerdict::Growing, "the trend test alone cannot tell: {before_gc:?}");
    let (_, c) = check(&points[..45], &gcs);
    assert_eq!(c, Some(FullGcCheck::Unconfirmed { full_gcs: 0 }), "no full GC yet: rising, not growing");
    // A full GC at 50 s brings it back; the window (after warm-up) still trends up.
    let (points, gcs) = sawtooth(100, 50, 150_000.0, |_| 4.0 * MB);
    let (g, c) = check(&points[..80], &gcs);
    if g.verdict == LiveVerdict::Growing {
        assert!(matches!(c, Some(FullGcCheck::FellBack { .. })), "{c:?}");
    }
}

#[test]
fn a_leak_under_the_same_churn_is_confirmed_by_the_full_gc() {
    // The same sawtooth, plus 120 kB/s that stays live.
    let (points, gcs) = sawtooth(80, 50, 150_000.0, |i| 4.0 * MB + 120_000.0 * i as f64);
    let (g, c) = check(&points, &gcs);
    assert_eq!(g.verdict, LiveVerdict::Growing, "{g:?}");
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
    assert_eq!(g.verdict, LiveVerdict::Growing);
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
    assert_eq!(g.verdict, LiveVerdict::Growing);
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

#[test]
fn a_one_off_step_is_steady_and_not_a_significant_trend_though_its_slope_is_large() {
    // What the demo's live line showed: a native site steps from 415 kB to 6.09 MB once, and
    // the window holds a few points before the step and more after it.
    let points = series(14, 1000.0, |i, _| if i < 8 { 415_000.0 } else { 6_090_000.0 });
    let g = assess(&points, 6_090_000.0, &Thresholds::default(), Some(10.0 * 60_000.0));
    assert_eq!(g.verdict, LiveVerdict::Steady, "{g:?}");
    assert!(g.bytes_per_min > 1.0 * MB, "the slope is large, which is why it must not be quoted: {g:?}");
    assert!(!g.significant, "{g:?}");
}

#[test]
fn a_small_steady_trend_is_significant_and_a_fall_is_too() {
    // +20 kB a minute on a 50 MB site: real, but far below materiality.
    let small = series(60, 60_000.0, |i, _| 50.0 * MB + 20_480.0 * i as f64);
    let g = verdict_of(&small);
    assert_eq!(g.verdict, LiveVerdict::Steady, "{g:?}");
    assert!(g.significant && g.bytes_per_min > 0.0, "{g:?}");
    let falling = series(60, 60_000.0, |i, _| 100.0 * MB - MB * i as f64);
    let g = verdict_of(&falling);
    assert_eq!(g.verdict, LiveVerdict::Steady, "{g:?}");
    assert!(g.significant && g.bytes_per_min < 0.0, "{g:?}");
    let flat = series(60, 60_000.0, |i, _| 20.0 * MB + if i % 2 == 0 { 300_000.0 } else { 0.0 });
    assert!(!verdict_of(&flat).significant);
}
