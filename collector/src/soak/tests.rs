//! Soak verdicts on synthetic protocol lines: the shapes the scenarios produce (steady leak,
//! bounded cache, warm-up, bursts, churn, slow drip), rules, baseline, memory comparison, the
//! reports, and boundedness over hours of data.

use super::*;

use crate::analysis::synthetic::{Rng, series_from};
use crate::analysis::{Point, SoakVerdict, TrendReason, TrendSettings, assess_trend, sen_fit, trend_p_value};

use crate::session_info::SessionInfo;

use crate::store::soak_series;

use crate::store::Store;

pub(crate) const KB: f64 = 1e3;

pub(crate) const MB: f64 = 1e6;

pub(crate) const H: f64 = 3_600_000.0;

pub(crate) fn series(n: usize, every_ms: f64, f: impl FnMut(usize, f64) -> f64) -> Vec<Point> {
    series_from(n, every_ms, every_ms, f, |b| b.max(0.0).round())
}

pub(crate) fn judge(points: &[Point], warmup_ms: f64, tau_per_hour: f64) -> crate::analysis::Trend {
    assess_trend(points, warmup_ms, tau_per_hour, &TrendSettings::default())
}

// ───────────────────────────── statistics ─────────────────────────────

#[test]
fn exact_kendall_interval_matches_the_tables() {
    // Hollander & Wolfe: n = 10, P(K ≥ 23) = .023, so C = 21, M = (45 − 21)/2 = 12: the 12th
    // smallest of the 45 slopes (index 11) is the lower end of the 95 % interval.
    let line: Vec<Point> = (0..10).map(|i| Point { t_ms: i as f64, bytes: ((i * 7919) % 13) as f64 }).collect();
    let mut slopes = Vec::new();
    for i in 0..10 {
        for j in i + 1..10 {
            slopes.push((line[j].bytes - line[i].bytes) / (line[j].t_ms - line[i].t_ms));
        }
    }
    slopes.sort_by(f64::total_cmp);
    let fit = sen_fit(&line, 0.95).unwrap();
    assert_eq!(fit.lo, slopes[11]);
    assert_eq!(fit.hi, slopes[45 - 1 - 11]);
    // n = 5: even the extremes are needed (P(K = 10) = 1/120 < .025 < P(K ≥ 8) = 5/120).
    let five = &line[..5];
    let fit = sen_fit(five, 0.95).unwrap();
    let mut s5 = Vec::new();
    for i in 0..5 {
        for j in i + 1..5 {
            s5.push((five[j].bytes - five[i].bytes) / (five[j].t_ms - five[i].t_ms));
        }
    }
    s5.sort_by(f64::total_cmp);
    assert_eq!((fit.lo, fit.hi), (s5[0], s5[9]));
}

#[test]
fn exact_trend_p_values() {
    let up: Vec<f64> = (0..8).map(|i| i as f64).collect();
    assert!((trend_p_value(&up) - 1.0 / 40320.0).abs() < 1e-12, "{}", trend_p_value(&up));
    let down: Vec<f64> = (0..8).map(|i| -(i as f64)).collect();
    assert!((trend_p_value(&down) - 1.0).abs() < 1e-12);
    // n = 5 with one tie among otherwise rising values: S = 9 → P(I ≤ 0) = 1/120.
    let p = trend_p_value(&[1.0, 2.0, 2.0, 3.0, 4.0]);
    assert!((p - 1.0 / 120.0).abs() < 1e-12, "{p}");
}

#[test]
fn a_steady_leak_and_a_slow_drip_are_leaking() {
    // 100 MB/h with sampling-like steps, a point every 5 s after a 12 s warm-up.
    let mut rng = Rng(1);
    let pts = series(14, 5000.0, |_, t| 2.0 * MB + 100.0 * MB * t / H + 0.1 * MB * rng.sym());
    let g = judge(&pts, 12_000.0, 100.0 * KB);
    assert_eq!(g.verdict, SoakVerdict::Leaking, "{g:?}");
    let [lo, hi] = g.ci_bytes_per_hour.unwrap();
    assert!(lo < 100.0 * MB && 100.0 * MB < hi, "{g:?}");
    // The slow drip: ~340 B/s exactly (census), under the default threshold of 100 kB/h.
    let pts = series(14, 5000.0, |_, t| 6720.0 + (t / 1000.0).floor() * 336.0);
    let g = judge(&pts, 12_000.0, 100.0 * KB);
    assert_eq!(g.verdict, SoakVerdict::Leaking, "{g:?}");
    assert!((g.bytes_per_hour - 1.21 * MB).abs() < 0.02 * MB, "{g:?}");
    // …but not against a 2 MB/h rule: it is then stable (the interval is under 2 MB/h).
    assert_eq!(judge(&pts, 12_000.0, 2.0 * MB).verdict, SoakVerdict::Stable);
}

#[test]
fn a_cache_that_fills_then_holds_plateaus() {
    // Fills to 1.92 MB by 27 s, then holds with a little jitter (in-flight entries).
    let mut rng = Rng(3);
    let pts = series(14, 5000.0, |_, t| {
        (1.92 * MB * t / 27_000.0).min(1.92 * MB) + if t > 27_000.0 { 2.0 * KB * rng.sym() } else { 0.0 }
    });
    let g = judge(&pts, 14_000.0, 100.0 * KB);
    assert_eq!(g.verdict, SoakVerdict::Plateaued, "{g:?}");
    assert!(g.flat_since_ms.unwrap() <= 30_000.0, "{g:?}");
    // Server GC: up to 12 kB of jitter on the flat part, about as much as the recent part can
    // hold. By chance the jitter sometimes trends (then: inconclusive); never a leak.
    let mut plateaued = 0;
    for seed in 1..=100u64 {
        let mut rng = Rng(seed);
        let pts = series(13, 5000.0, |_, t| {
            (1.93 * MB * (t - 2000.0) / 27_000.0).min(1.93 * MB)
                - if t > 30_000.0 { 12.0 * KB * rng.next_f64() } else { 0.0 }
        });
        let g = judge(&pts, 14_000.0, 100.0 * KB);
        assert_ne!(g.verdict, SoakVerdict::Leaking, "seed {seed}: {g:?}");
        plateaued += (g.verdict == SoakVerdict::Plateaued) as u32;
    }
    assert!(plateaued >= 85, "only {plateaued}/100 plateaued");
    // Exactly flat after filling: plateaued, within the threshold.
    let pts = series(14, 5000.0, |_, t| (1.92 * MB * t / 27_000.0).min(1.92 * MB));
    let g = judge(&pts, 14_000.0, 100.0 * KB);
    assert_eq!(g.verdict, SoakVerdict::Plateaued, "{g:?}");
    assert_eq!(g.recent_ci_bytes_per_hour, Some([0.0, 0.0]));
}

#[test]
fn warm_up_growth_then_flat_is_never_leaking() {
    // Growth during the first 25 s: fully inside, or overlapping, the warm-up.
    for warmup in [10_000.0, 14_000.0, 30_000.0] {
        let pts = series(14, 5000.0, |_, t| 0.2 * MB * t.min(25_000.0) / 1000.0);
        let g = judge(&pts, warmup, 100.0 * KB);
        assert!(matches!(g.verdict, SoakVerdict::Plateaued | SoakVerdict::Stable), "warm-up {warmup}: {g:?}");
    }
}

#[test]
fn bursts_and_churn_are_never_leaking() {
    let mut leaking = Vec::new();
    for seed in 1..=300u64 {
        let mut rng = Rng(seed * 7919);
        let n = [10, 14, 24, 60][(seed % 4) as usize];
        let level = (0.1 + 10.0 * rng.next_f64()) * MB;
        let shape = seed % 3;
        let pts = series(n, 5000.0, |i, _| match shape {
            // Bursts: a batch caught by the census now and then.
            0 => {
                if rng.next_f64() < 0.25 {
                    level + 4.0 * MB
                } else {
                    level
                }
            }
            // Churn: in-flight objects at the census moment.
            1 => level * (1.0 + 0.05 * rng.sym()),
            // Flips between two values (a buffer sometimes in flight).
            _ => level + if (i * 7 + seed as usize) % 3 == 0 { 3840.0 } else { 0.0 },
        });
        for tau in [0.0, 100.0 * KB, MB] {
            let g = judge(&pts, 12_000.0, tau);
            if g.verdict == SoakVerdict::Leaking {
                leaking.push((seed, tau, g.bytes_per_hour));
            }
        }
    }
    assert!(leaking.is_empty(), "called leaking: {leaking:?}");
}

#[test]
fn too_few_points_or_a_straddling_interval_is_inconclusive() {
    let pts = series(6, 5000.0, |_, t| t * 1000.0);
    let g = judge(&pts, 0.0, 0.0);
    assert_eq!((g.verdict, g.reason), (SoakVerdict::Inconclusive, TrendReason::TooFewPoints));
    // 1.2 MB/h with noise ±40 kB against a 1 MB/h threshold over a minute: cannot tell.
    let mut rng = Rng(11);
    let pts = series(14, 5000.0, |_, t| MB + 1.2 * MB * t / H + 40.0 * KB * rng.sym());
    let g = judge(&pts, 10_000.0, MB);
    assert_eq!(g.verdict, SoakVerdict::Inconclusive, "{g:?}");
    assert!(g.more_ms.unwrap() > 0.0);
    assert!(judge(&[], 0.0, 0.0).verdict == SoakVerdict::Inconclusive);
}

#[test]
fn growth_that_is_slowing_down_is_not_yet_a_leak() {
    // A cache approaching its bound exponentially: still rising at the end, but much slower.
    let pts = series(24, 5000.0, |_, t| 10.0 * MB * (1.0 - (-t / 25_000.0).exp()));
    let g = judge(&pts, 10_000.0, 100.0 * KB);
    assert_ne!(g.verdict, SoakVerdict::Leaking, "{g:?}");
}

// ───────────────────────────── soak evaluation ─────────────────────────────

/// Protocol lines for one agent (pid 7) in soak mode, plus an optional shim.
pub(crate) struct Sim {
    lines: Vec<String>,
    gc: u64,
}

impl Sim {
    pub(crate) fn new() -> Sim {
        let mut s = Sim { lines: Vec::new(), gc: 0 };
        s.push(r#"{"v":1,"type":"hello","source":"agent","pid":7,"interval_ms":5000,"runtime":"10.0.12","sampling":"AllocationSampled"}"#.to_string());
        s.push(r#"{"v":1,"type":"status","source":"agent","pid":7,"level":"info","message":"soak mode: inducing a full blocking GC every 5s so that what survives is still referenced, not merely uncollected"}"#.to_string());
        s.push(r#"{"v":1,"type":"stack","source":"agent","pid":7,"id":1,"frames":["Shop.Audit.Append","Shop.Worker.Run"],"lines":["Audit.cs:12",null]}"#.to_string());
        s
    }

    pub(crate) fn push(&mut self, l: String) {
        self.lines.push(l);
    }

    /// A census (types: name, bytes, count) and a retained record (type, site, bytes).
    pub(crate) fn full_gc(&mut self, t: u64, types: &[(&str, f64, f64)], sites: &[(&str, &str, f64)]) {
        self.gc += 1;
        let gc = self.gc;
        let total: f64 = types.iter().map(|x| x.1).sum();
        let types_json: Vec<String> = types
            .iter()
            .map(|(n, b, c)| format!(r#"{{"type_name":"{n}","count":{},"bytes":{}}}"#, *c as u64, *b as u64))
            .collect();
        self.push(format!(
            r#"{{"v":1,"type":"census","source":"agent","pid":7,"gc":{gc},"t_ms":{t},"pause_ms":3.5,"objects":1000,"bytes":{},"unreadable":0,"types":[{}],"other":{{"types":0,"count":0,"bytes":0}}}}"#,
            total as u64,
            types_json.join(",")
        ));
        let sites_json: Vec<String> = sites
            .iter()
            .map(|(ty, site, b)| {
                format!(
                    r#"{{"type_name":"{ty}","site":"{site}","location":"Audit.cs:12","stack":1,"samples":{},"objects":{},"bytes":{}}}"#,
                    (*b / 102_400.0).round() as u64,
                    (*b / 100.0) as u64,
                    *b as u64
                )
            })
            .collect();
        self.push(format!(
            r#"{{"v":1,"type":"retained","source":"agent","pid":7,"gc":{gc},"t_ms":{},"sites":[{}]}}"#,
            t + 1,
            sites_json.join(",")
        ));
    }

    pub(crate) fn summary(&mut self, t: u64, rss: f64, gen2: f64) {
        self.push(format!(
            r#"{{"v":1,"type":"summary","source":"agent","pid":7,"t_ms":{},"rss":{},"heap":{{"gen0":1000,"gen1":2000,"gen2":{},"loh":0,"poh":0}},"gc":{{"count":[10,5,{}],"induced":{}}},"sites":[]}}"#,
            t + 2,
            rss as u64,
            gen2 as u64,
            self.gc,
            self.gc
        ));
    }

    pub(crate) fn store(&self) -> Store {
        let mut store = Store::new();
        for l in &self.lines {
            store.ingest_line(l.as_bytes());
        }
        store
    }
}

pub(crate) fn settings(rules: &[&str]) -> SoakSettings {
    SoakSettings {
        duration_ms: 70_000,
        warmup_ms: None,
        gc_every_ms: 5000,
        gc_every_chosen: false,
        allow_short: false,
        fail_on: rules.iter().map(|r| r.to_string()).collect(),
        baseline: None,
        strict: false,
    }
}

pub(crate) fn soak_session() -> SessionInfo {
    let mut s = SessionInfo::new("soak");
    s.stopped_by = Some("--duration elapsed".into());
    s.exit = Some(crate::launch::ExitInfo { code: Some(0), signal: None });
    s
}

pub(crate) fn evaluate_with(store: &Store, rules: &[&str]) -> SoakReport {
    let ctx = Context::new(settings(rules)).unwrap();
    evaluate(store, &soak_session(), &ctx)
}

/// 70 s of a worker with churn, a bounded cache, a steady leak and a slow drip (census every
/// 5 s), the leak also sampled at its site.
pub(crate) fn worker(leak: bool, drip: bool) -> Sim {
    let mut sim = Sim::new();
    let mut rng = Rng(42);
    for k in 1..=14u64 {
        let t = k * 5000;
        let secs = t as f64 / 1000.0;
        let mut types = vec![
            ("System.Byte[]", 4.0 * MB + 100.0 * KB * rng.sym(), 3000.0),
            ("Shop.CacheEntry", 1.92 * MB * (secs / 27.0).min(1.0), 40_000.0),
            ("Shop.Message", if k % 3 == 0 { 147_840.0 } else { 144_000.0 }, 3000.0),
        ];
        let mut sites = vec![("System.Byte[]", "Shop.Worker.Handle", 4.0 * MB + 400.0 * KB * rng.sym())];
        if leak {
            types.push(("Shop.AuditRecord", 40.0 * secs * 1000.0, 1000.0 * secs));
            sites.push((
                "Shop.AuditRecord",
                "Shop.Audit.Append",
                (40.0 * secs * 1000.0 / 102_400.0).floor() * 102_400.0,
            ));
        }
        if drip {
            types.push(("Shop.DripEntry", 336.0 * secs.floor(), secs.floor()));
        }
        sim.full_gc(t, &types, &sites);
        sim.summary(t, 60.0 * MB, 8.0 * MB);
    }
    sim
}

pub(crate) fn subject<'a>(r: &'a SoakReport, id: &str) -> &'a Subject {
    r.subjects
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no subject {id}: {:?}", r.subjects.iter().map(|s| &s.id).collect::<Vec<_>>()))
}

#[test]
fn a_leak_fails_naming_its_type_and_site_and_the_rest_passes() {
    let r = evaluate_with(&worker(true, false).store(), &[]);
    assert_eq!((r.outcome, r.exit_code), (Outcome::Fail, 1), "{}", r.headline);
    let t = subject(&r, "type:Shop.AuditRecord");
    assert_eq!(t.verdict, SoakVerdict::Leaking);
    assert!(t.failing());
    assert_eq!(t.sites[0].site, "Shop.Audit.Append");
    assert_eq!(t.sites[0].location.as_deref(), Some("Audit.cs:12"));
    assert!(t.evidence.contains("allocated at Shop.Audit.Append (Audit.cs:12)"), "{}", t.evidence);
    assert!((t.growth.bytes_per_hour - 144.0 * MB).abs() < 2.0 * MB, "{:?}", t.growth);
    let s = subject(&r, "site:Shop.AuditRecord @ Shop.Audit.Append");
    assert_eq!(s.verdict, SoakVerdict::Leaking, "{}", s.evidence);
    assert_eq!(s.frames, ["Shop.Audit.Append", "Shop.Worker.Run"]);
    assert_eq!(subject(&r, "type:Shop.CacheEntry").verdict, SoakVerdict::Plateaued);
    for id in ["type:System.Byte[]", "type:Shop.Message", "site:System.Byte[] @ Shop.Worker.Handle"] {
        assert!(!subject(&r, id).failing(), "{id}");
    }
    assert_eq!(r.subjects[0].id, "type:Shop.AuditRecord", "failing subjects come first");
    assert!(r.headline.starts_with("FAIL: "), "{}", r.headline);
    assert!(r.decided_after_ms.is_some());
    assert!(r.measurement.announced);
    assert_eq!(r.measurement.census_records, 14);
    assert_eq!(r.rules[0].rule, DEFAULT_RULE);
    assert!(r.rules[0].default);
}

#[test]
fn without_a_leak_the_soak_passes() {
    let r = evaluate_with(&worker(false, false).store(), &[]);
    assert_eq!((r.outcome, r.exit_code), (Outcome::Pass, 0), "{}", r.headline);
    assert!(r.subjects.iter().all(|s| s.verdict != SoakVerdict::Leaking));
    assert!(r.decided_after_ms.is_some());
}

#[test]
fn a_slow_drip_fails_by_type_and_says_no_site_was_sampled() {
    let r = evaluate_with(&worker(false, true).store(), &[]);
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.headline);
    let d = subject(&r, "type:Shop.DripEntry");
    assert!(d.failing());
    assert!(d.sites.is_empty());
    assert!(d.evidence.contains("no sampled call site yet"), "{}", d.evidence);
    // A rule above its rate lets it pass; a rule on another site does not gate it.
    let r = evaluate_with(&worker(false, true).store(), &["growth > 5MB/h"]);
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.headline);
    let r = evaluate_with(&worker(false, true).store(), &["site:Shop.Audit.* growth > 0"]);
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.headline);
    assert!(!subject(&r, "type:Shop.DripEntry").gated);
    assert!(r.warnings.iter().any(|w| w.contains("matched no subject")), "{:?}", r.warnings);
}

#[test]
fn scoped_and_live_rules() {
    let store = worker(true, false).store();
    let r = evaluate_with(&store, &["site:Shop.Audit.Append growth > 0"]);
    assert_eq!(r.outcome, Outcome::Fail);
    assert_eq!(r.rules[0].violations, ["site:Shop.AuditRecord @ Shop.Audit.Append"]);
    let r = evaluate_with(&store, &["type:Shop.CacheEntry live > 1MB"]);
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.headline);
    assert_eq!(subject(&r, "type:Shop.CacheEntry").failed_rules, ["type:Shop.CacheEntry live > 1MB"]);
    let r = evaluate_with(&store, &["managed growth > 1GB/h"]);
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.headline);
    assert_eq!(subject(&r, "managed").kind, SubjectKind::Managed);
    // Bad rules and baselines are usage errors.
    let e = Context::new(settings(&["growth < 1MB/h"])).unwrap_err();
    assert_eq!(e.exit_code, 2);
    assert!(e.message.contains("only `>` and `>=`"), "{}", e.message);
    let mut s = settings(&[]);
    s.baseline = Some("/nonexistent/report.json".into());
    assert_eq!(Context::new(s).unwrap_err().exit_code, 2);
}

#[test]
fn a_sampled_site_the_census_contradicts_is_not_a_leak() {
    // The cache's sampled survivors drift up (correlated samples), its exact census is flat.
    let mut sim = Sim::new();
    for k in 1..=14u64 {
        let t = k * 5000;
        sim.full_gc(
            t,
            &[("Shop.CacheEntry", 1.92 * MB, 40_000.0)],
            &[("Shop.CacheEntry", "Shop.Cache.Put", (30.0 + 2.0 * k as f64) * 102_400.0)],
        );
    }
    let r = evaluate_with(&sim.store(), &[]);
    let s = subject(&r, "site:Shop.CacheEntry @ Shop.Cache.Put");
    assert_eq!(s.verdict, SoakVerdict::Inconclusive);
    assert_eq!(s.growth.reason, TrendReason::NotCorroborated);
    assert!(s.failed_rules.is_empty());
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.headline);
}

#[test]
fn no_agent_no_points_or_too_short_is_an_error() {
    let r = evaluate_with(&Store::new(), &[]);
    assert_eq!((r.outcome, r.exit_code), (Outcome::Error, 2));
    assert!(r.problems[0].contains("no agent connected"));
    let mut sim = Sim::new();
    sim.summary(1000, MB, MB);
    let r = evaluate_with(&sim.store(), &[]);
    assert!(r.problems[0].contains("no comparable points"), "{:?}", r.problems);
    let mut sim = Sim::new();
    for k in 1..=4u64 {
        sim.full_gc(k * 5000, &[("A", 1.0, 1.0)], &[]);
    }
    let r = evaluate_with(&sim.store(), &[]);
    assert_eq!(r.outcome, Outcome::Error);
    assert!(r.problems[0].contains("too short"), "{:?}", r.problems);
    // A worker that died on its own is an infrastructure error unless a leak was found.
    let mut session = soak_session();
    session.stopped_by = None;
    session.exit = Some(crate::launch::ExitInfo { code: Some(134), signal: None });
    let ctx = Context::new(settings(&[])).unwrap();
    let r = evaluate(&worker(false, false).store(), &session, &ctx);
    assert_eq!(r.outcome, Outcome::Error);
    let r = evaluate(&worker(true, false).store(), &session, &ctx);
    assert_eq!(r.outcome, Outcome::Fail);
}

#[test]
fn memory_retained_by_the_gc_is_not_called_a_leak() {
    // RSS and the heap climb while the census (live data) stays flat.
    let mut sim = Sim::new();
    for k in 1..=14u64 {
        let t = k * 5000;
        sim.full_gc(t, &[("Shop.Order", 5.0 * MB, 1000.0)], &[]);
        sim.summary(t, 60.0 * MB + 1.5 * MB * k as f64, 8.0 * MB + 1.0 * MB * k as f64);
    }
    let r = evaluate_with(&sim.store(), &[]);
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.headline);
    let m = &r.memory[0];
    assert!(m.kept_not_leaked, "{:?}", m.interpretation);
    assert!(
        m.interpretation[0].contains("the GC kept it") || m.interpretation[0].contains("not leaked"),
        "{:?}",
        m.interpretation
    );
    assert_eq!(m.live.as_ref().unwrap().growth.verdict, SoakVerdict::Stable);
    // RSS alone (heap flat too): retained by the GC or the allocator.
    let mut sim = Sim::new();
    for k in 1..=14u64 {
        let t = k * 5000;
        sim.full_gc(t, &[("Shop.Order", 5.0 * MB, 1000.0)], &[]);
        sim.summary(t, 60.0 * MB + 1.5 * MB * k as f64, 8.0 * MB);
    }
    let r = evaluate_with(&sim.store(), &[]);
    let m = &r.memory[0];
    assert!(m.kept_not_leaked);
    assert!(m.interpretation[0].contains("retained by the GC or the allocator"), "{:?}", m.interpretation);
}

#[test]
fn native_leaks_are_judged_on_the_shims_exact_totals() {
    let mut sim = worker(false, false);
    sim.push(r#"{"v":1,"type":"hello","source":"shim","pid":7,"sampling":"poisson","mean_bytes":524288}"#.to_string());
    sim.push(r#"{"v":1,"type":"stack","source":"shim","pid":7,"id":3,"frames":["leak_from_here (libleaky.so+0x1139)","main (leaky+0x20)"]}"#.to_string());
    for k in 1..=14u64 {
        let t = k * 5000 + 3;
        let live = 10.0 * MB + 20.0 * MB * (t as f64) / H * 1.0;
        sim.push(format!(
            r#"{{"v":1,"type":"native","source":"shim","pid":7,"t_ms":{t},"live_bytes":{},"live_allocs":{},"rss":{},"sites":[{{"site":"leak_from_here (libleaky.so+0x1139)","stack":3,"samples":{k},"allocs":{k},"bytes":{}}}]}}"#,
            live as u64,
            1000 + k,
            (80.0 * MB) as u64,
            (k as f64 * 524_288.0) as u64
        ));
    }
    let store = sim.store();
    let r = evaluate_with(&store, &["native growth > 5MB/h"]);
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.headline);
    let n = subject(&r, "native");
    assert_eq!(n.verdict, SoakVerdict::Leaking);
    assert!((n.growth.bytes_per_hour - 20.0 * MB).abs() < 0.5 * MB, "{:?}", n.growth);
    assert!(n.exact);
    let site = subject(&r, "native:leak_from_here (libleaky.so+0x1139)");
    assert_eq!(site.kind, SubjectKind::NativeSite);
    assert!(!site.gated, "`native` scopes the total, not the sites");
    assert_eq!(evaluate_with(&store, &["native growth > 50MB/h"]).outcome, Outcome::Pass);
    // The default rule covers native memory and native sites too.
    let r = evaluate_with(&store, &[]);
    assert!(subject(&r, "native").failing());
}

#[test]
fn a_baseline_excuses_known_leaks_and_fails_new_or_faster_ones() {
    let store = worker(true, false).store();
    let current = evaluate_with(&store, &[]);
    let mut report = serde_json::json!({"soak": serde_json::to_value(&current).unwrap()});
    // Same run as its own baseline: known, so it passes.
    let b = baseline::parse(std::path::Path::new("same.json"), &report).unwrap();
    let mut ctx = Context::new(settings(&[])).unwrap();
    ctx.baseline = Some(b);
    let r = evaluate(&store, &soak_session(), &ctx);
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.headline);
    let cmp = r.baseline.as_ref().unwrap();
    assert!(cmp.regressions.is_empty());
    assert!(cmp.known.contains(&"type:Shop.AuditRecord".to_string()));
    // A baseline where the leak was much slower: growth up beyond both intervals.
    for s in report["soak"]["subjects"].as_array_mut().unwrap() {
        if s["id"] == "type:Shop.AuditRecord" {
            s["growth"]["bytes_per_hour"] = serde_json::json!(10e6);
            s["growth"]["ci_bytes_per_hour"] = serde_json::json!([9e6, 11e6]);
        }
    }
    ctx.baseline = Some(baseline::parse(std::path::Path::new("slow.json"), &report).unwrap());
    let r = evaluate(&store, &soak_session(), &ctx);
    assert_eq!(r.outcome, Outcome::Fail);
    let reg = &r.baseline.as_ref().unwrap().regressions;
    assert!(reg.iter().any(|x| x.subject == "type:Shop.AuditRecord" && x.kind == "growth_up"), "{reg:?}");
    // A baseline without the leak: a new leak.
    let clean = evaluate_with(&worker(false, false).store(), &[]);
    let v = serde_json::json!({"soak": serde_json::to_value(&clean).unwrap()});
    ctx.baseline = Some(baseline::parse(std::path::Path::new("clean.json"), &v).unwrap());
    let r = evaluate(&store, &soak_session(), &ctx);
    assert_eq!(r.outcome, Outcome::Fail);
    assert!(r.baseline.as_ref().unwrap().regressions.iter().any(|x| x.kind == "new_leak"));
    // Not a soak report: refused.
    assert!(
        baseline::parse(std::path::Path::new("x.json"), &serde_json::json!({"schema": "leakscope.report/1"})).is_err()
    );
}

#[test]
fn hours_of_data_stay_bounded() {
    // Eight hours with a census every 5 s (5760 records) over 300 types, one of them leaking.
    let mut store = Store::new();
    store.ingest_line(br#"{"v":1,"type":"hello","source":"agent","pid":9,"interval_ms":5000}"#);
    let mut line = String::new();
    for k in 1..=5760u64 {
        let t = k * 5000;
        line.clear();
        line.push_str(&format!(
            r#"{{"v":1,"type":"census","source":"agent","pid":9,"gc":{k},"t_ms":{t},"bytes":1,"objects":1,"types":["#
        ));
        for i in 0..300u64 {
            let bytes = if i == 0 { 1000 + k * 500 } else { 10_000 + (k * i) % 97 };
            if i > 0 {
                line.push(',');
            }
            line.push_str(&format!(r#"{{"type_name":"T{i}","count":1,"bytes":{bytes}}}"#));
        }
        line.push_str(r#"],"other":{"types":0}}"#);
        store.ingest_line(line.as_bytes());
        if k % 6 == 0 {
            store.ingest_line(format!(r#"{{"v":1,"type":"summary","source":"agent","pid":9,"t_ms":{},"rss":100000000,"heap":{{"gen2":5}}}}"#, t + 1).as_bytes());
        }
    }
    let p = store.producers().next().unwrap();
    assert_eq!(p.soak.census_records, 5760);
    assert!(p.soak.types.values().all(|s| s.series.len() < soak_series::SOAK_SERIES_POINTS));
    assert!(p.soak.live.len() < soak_series::SOAK_SERIES_POINTS);
    assert!(p.soak.rss.len() < soak_series::SOAK_SERIES_POINTS);
    let bytes = p.soak.approx_bytes();
    assert!(bytes < 3_000_000, "{bytes} bytes for 300 types over 8 h");
    let started = std::time::Instant::now();
    let mut s = settings(&[]);
    s.duration_ms = 8 * 3_600_000;
    let ctx = Context::new(s).unwrap();
    let r = evaluate(&store, &soak_session(), &ctx);
    eprintln!("8 h of censuses over 300 types: {bytes} bytes of soak series, judged in {:?}", started.elapsed());
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    let t0 = subject(&r, "type:T0");
    assert_eq!(t0.verdict, SoakVerdict::Leaking);
    assert!((t0.growth.bytes_per_hour - 360_000.0).abs() < 1000.0, "{:?}", t0.growth);
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.headline);
    assert_eq!(r.counts.leaking, 1, "{}", r.headline);
    let line = progress_line(&store, &ctx, std::time::Duration::from_secs(3600));
    assert!(line.contains("top growth: T0"), "{line}");
}

#[test]
fn progress_line_reports_elapsed_remaining_and_top_growth() {
    let store = worker(true, false).store();
    let ctx = Context::new(settings(&[])).unwrap();
    let line = progress_line(&store, &ctx, std::time::Duration::from_secs(40));
    assert!(line.starts_with("soak 00:00:40 / 00:01:10 (30s left)"), "{line}");
    assert!(line.contains("top growth: Shop.AuditRecord +144 MB/h (leaking)"), "{line}");
    let empty = progress_line(&Store::new(), &ctx, std::time::Duration::from_secs(1));
    assert!(empty.contains("waiting for the agent"));
}

#[test]
fn strict_fails_inconclusive_gated_subjects() {
    let store = worker(false, false).store();
    let r = evaluate_with(&store, &[]);
    assert_eq!(r.outcome, Outcome::Pass);
    assert!(r.counts.inconclusive > 0, "the noisy churn is inconclusive in a minute");
    let mut s = settings(&[]);
    s.strict = true;
    let ctx = Context::new(s).unwrap();
    let r = evaluate(&store, &soak_session(), &ctx);
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.headline);
    assert!(
        r.subjects
            .iter()
            .filter(|s| s.failing())
            .all(|s| s.verdict == SoakVerdict::Inconclusive && s.failed_rules == ["--strict (inconclusive)"])
    );
}

// ───────────────────────────── the gate: evidence, material memory, process signals ─────────────────────────────

#[test]
fn a_soak_ended_early_says_the_planned_duration_would_have_sufficed() {
    let mut sim = Sim::new();
    for k in 1..=4u64 {
        sim.full_gc(k * 5000, &[("Shop.Order", 5.0 * MB + k as f64, 1000.0)], &[]);
        sim.summary(k * 5000, 60.0 * MB, 8.0 * MB);
    }
    let ctx = Context::new(settings(&[])).unwrap();
    let mut session = soak_session();
    session.stopped_by = Some("SIGINT (Ctrl-C)".into());
    let r = evaluate(&sim.store(), &session, &ctx);
    assert_eq!(r.outcome, Outcome::Error);
    assert!(r.headline.contains("let the soak run its full --duration 1m10s (it ended after 20s)"), "{}", r.headline);
}

/// Census lines that lump the smallest types into `other` (so a type first seen late has no
/// known zeros before it), and a shim whose native sites come and go.
pub(crate) fn incomplete_censuses(late_bytes: f64) -> Store {
    let mut sim = Sim::new();
    for k in 1..=14u64 {
        let t = k * 5000;
        let mut types = format!(r#"{{"type_name":"Shop.Order","count":1000,"bytes":{}}}"#, 5_000_000);
        if k >= 12 {
            types.push_str(&format!(
                r#",{{"type_name":"Shop.Late","count":10,"bytes":{}}}"#,
                (late_bytes * (k - 11) as f64) as u64
            ));
        }
        sim.push(format!(
            r#"{{"v":1,"type":"census","source":"agent","pid":7,"gc":{k},"t_ms":{t},"pause_ms":3.5,"objects":1000,"bytes":5000000,"unreadable":0,"types":[{types}],"other":{{"types":3,"count":10,"bytes":500}}}}"#
        ));
        sim.push(format!(
            r#"{{"v":1,"type":"retained","source":"agent","pid":7,"gc":{k},"t_ms":{},"sites":[]}}"#,
            t + 1
        ));
    }
    sim.push(r#"{"v":1,"type":"hello","source":"shim","pid":7,"sampling":"poisson","mean_bytes":524288}"#.to_string());
    sim.push(
        r#"{"v":1,"type":"stack","source":"shim","pid":7,"id":3,"frames":["late_site (libx.so+0x10)"]}"#.to_string(),
    );
    for k in 1..=14u64 {
        let t = k * 5000 + 3;
        let sites = if k >= 12 {
            r#"[{"site":"late_site (libx.so+0x10)","stack":3,"samples":1,"allocs":1,"bytes":524288}]"#
        } else {
            "[]"
        };
        sim.push(format!(
            r#"{{"v":1,"type":"native","source":"shim","pid":7,"t_ms":{t},"live_bytes":20000000,"live_allocs":100,"rss":80000000,"sites":{sites}}}"#
        ));
    }
    sim.store()
}

#[test]
fn material_subjects_without_a_verdict_block_the_pass_and_small_ones_are_counted() {
    // A type first seen in the last three censuses, holding 300 kB: material (100 kB/h over the
    // 56 s window allows 1.6 kB), three points: the soak cannot pass.
    let r = evaluate_with(&incomplete_censuses(100_000.0), &[]);
    assert_eq!(r.outcome, Outcome::Error, "{}", r.headline);
    let late = subject(&r, "type:Shop.Late");
    assert_eq!(late.growth.reason, TrendReason::TooFewPoints);
    assert!(late.material && late.blocking);
    assert!(
        r.headline.starts_with(
            "INCONCLUSIVE: 1 subject with material memory had too few comparable points after the 14s warm-up (Shop.Late (3 points); 8 needed): soak longer: use --duration"
        ),
        "{}",
        r.headline
    );
    assert!(r.problems[0].starts_with("not every subject could be judged"), "{:?}", r.problems);
    // The late native site is sampled and its exact native total was judged: it does not block.
    let site = subject(&r, "native:late_site (libx.so+0x10)");
    assert_eq!(site.growth.reason, TrendReason::TooFewPoints);
    assert!(site.material && !site.blocking, "{site:?}");
    assert_eq!(r.sufficiency.covered_by_exact, 1);
    assert_eq!(r.sufficiency.blocking, 1);
    let rule = r.rules.iter().find(|x| x.rule == DEFAULT_RULE).unwrap();
    assert_eq!((rule.result, rule.unjudged), ("inconclusive", 1));

    // The same type holding 300 bytes: too little to matter. It stays inconclusive, the soak
    // passes, and the report counts it.
    let r = evaluate_with(&incomplete_censuses(100.0), &[]);
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.headline);
    let late = subject(&r, "type:Shop.Late");
    assert_eq!(late.verdict, SoakVerdict::Inconclusive);
    assert!(!late.material && !late.blocking);
    assert_eq!(r.counts.too_small_to_matter, 1);
    assert_eq!(r.sufficiency.too_small_to_matter, 1);
    assert!(r.sufficiency.enough);
    assert!(r.headline.contains("of which 1 too small to matter"), "{}", r.headline);
    assert!(r.decided_after_ms.is_some());
}

/// 70 s of a worker whose leak is spread over 100 types, each growing ~50 kB/h (one 80-byte
/// object every 5.76 s), 5 MB/h in all, beside garbage-only churn.
pub(crate) fn thin_leak() -> Sim {
    let mut sim = Sim::new();
    let mut rng = Rng(7);
    let names: Vec<String> = (0..100).map(|i| format!("Shop.Shard<M{}, M{}>", i / 10, i % 10)).collect();
    for k in 1..=14u64 {
        let t = k * 5000;
        let secs = t as f64 / 1000.0;
        let mut types: Vec<(&str, f64, f64)> = vec![("System.Byte[]", 400.0 * KB + 3.0 * KB * rng.sym(), 300.0)];
        for (i, n) in names.iter().enumerate() {
            let objects = (secs / 5.76 + i as f64 / 100.0).floor();
            types.push((n.as_str(), 80.0 * objects, objects));
        }
        sim.full_gc(t, &types, &[]);
        sim.summary(t, 60.0 * MB, 8.0 * MB);
    }
    sim
}

#[test]
fn a_leak_spread_thinly_over_many_types_fails_the_default_rule_on_the_census_total() {
    let store = thin_leak().store();
    let r = evaluate_with(&store, &[]);
    assert_eq!((r.outcome, r.exit_code), (Outcome::Fail, 1), "{}", r.headline);
    let failing: Vec<&str> = r.subjects.iter().filter(|s| s.failing()).map(|s| s.id.as_str()).collect();
    assert_eq!(failing, ["managed"], "only the total fails: no single type is above 100 kB/h");
    let total = subject(&r, "managed");
    assert_eq!(total.failed_rules, [DEFAULT_MANAGED_RULE]);
    assert!((total.growth.bytes_per_hour - 5.0 * MB).abs() < 0.5 * MB, "{:?}", total.growth);
    for s in r.subjects.iter().filter(|s| s.kind == SubjectKind::Type && s.id.contains("Shard")) {
        assert!(s.growth.bytes_per_hour < 100.0 * KB, "{} {:?}", s.id, s.growth);
    }
    let named = total
        .evidence
        .split("the fastest steadily growing types: ")
        .nth(1)
        .unwrap_or_else(|| panic!("{}", total.evidence));
    assert!(named.matches("Shop.Shard<M").count() >= 4, "{named}");
    assert_eq!(r.memory[0].growing_types.len(), gate::GROWING_TYPES_NAMED);
    assert!(r.headline.starts_with("FAIL: 1 subject breaks the rules: live managed data +"), "{}", r.headline);
}

#[test]
fn the_census_total_is_not_one_more_failure_when_its_types_already_fail() {
    let r = evaluate_with(&worker(true, false).store(), &[]);
    let total = subject(&r, "managed");
    assert_eq!(total.verdict, SoakVerdict::Leaking);
    assert!(total.failed_rules.is_empty() && !total.failing());
    assert!(total.evidence.contains("the types and sites that break a rule account for it"), "{}", total.evidence);
    let rule = r.rules.iter().find(|x| x.rule == DEFAULT_MANAGED_RULE).unwrap();
    assert_eq!(rule.result, "pass");
    assert!(r.memory[0].warning.is_none(), "a rule breaks: nothing contradicts the verdict");
}

#[test]
fn memory_growing_while_no_rule_breaks_is_a_pass_with_a_warning_never_a_plain_pass() {
    // RSS climbs 1.5 MB every 5 s while the census stays flat: the GC or the allocator keeps it.
    let mut sim = Sim::new();
    for k in 1..=14u64 {
        let t = k * 5000;
        sim.full_gc(t, &[("Shop.Order", 5.0 * MB, 1000.0)], &[]);
        sim.summary(t, 60.0 * MB + 1.5 * MB * k as f64, 8.0 * MB);
    }
    let ctx = Context::new(settings(&[])).unwrap();
    let mut session = soak_session();
    session.native_tracking = Some(crate::session_info::NativeTracking {
        enabled: false,
        reason: Some("turned off with --no-native".into()),
    });
    let r = evaluate(&sim.store(), &session, &ctx);
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.headline);
    assert!(r.headline.starts_with("PASS with a warning: RSS grows at +"), "{}", r.headline);
    let w = r.memory[0].warning.as_deref().unwrap();
    assert!(w.contains("memory the GC or the allocator keeps"), "{w}");
    assert!(w.contains("native memory was not tracked"), "{w}");
    // Without the census, live data cannot be judged: the warning says leakscope cannot tell
    // objects from GC memory yet.
    let mut sim = Sim::new();
    for k in 1..=14u64 {
        let t = k * 5000;
        sim.push(format!(
            r#"{{"v":1,"type":"retained","source":"agent","pid":7,"gc":{k},"t_ms":{t},"sites":[{{"type_name":"Shop.Order","site":"Shop.Audit.Append","stack":1,"samples":5,"objects":5,"bytes":512000}}]}}"#
        ));
        sim.summary(t, 60.0 * MB + 1.5 * MB * k as f64, 8.0 * MB + 1.0 * MB * k as f64);
    }
    let r = evaluate_with(&sim.store(), &[]);
    assert_eq!((r.outcome, r.exit_code), (Outcome::Pass, 0), "{}", r.headline);
    assert!(r.headline.starts_with("PASS with a warning: the managed heap grows at +"), "{}", r.headline);
    let w = r.memory[0].warning.as_deref().unwrap();
    assert!(
        w.contains("live managed data was not measured (no census), so leakscope cannot tell yet whether the application keeps objects"),
        "{w}"
    );
    assert!(w.contains("soak longer, e.g. --duration "), "{w}");
}

/// A type that grew faster than its rule over the whole soak, with confidence, but whose recent
/// part is too noisy to say whether it still grows, is no evidence of no leak: the soak is
/// INCONCLUSIVE (never PASS), says which subject and how much longer would decide. Seen in a
/// 270 s soak of a slow string leak among churning strings (`+1.29 MB/h`, recent interval
/// −1.22 to +1.29 MB/h), which passed.
#[test]
fn a_growth_whose_recent_part_is_unclear_keeps_the_soak_from_passing() {
    let mut sim = Sim::new();
    // 10 MB/h (13.9 kB per 5 s) for 14 censuses; the last six swing ±40 kB about the line.
    for k in 1..=14u64 {
        let noise = if k >= 9 { if k % 2 == 0 { 40_000.0 } else { -40_000.0 } } else { 0.0 };
        let drip = 5.0 * MB + 13_900.0 * k as f64 + noise;
        sim.full_gc(k * 5000, &[("Shop.Drip", drip, 1000.0 + k as f64), ("Shop.Order", 5.0 * MB, 1000.0)], &[]);
        sim.summary(k * 5000, 60.0 * MB, 8.0 * MB);
    }
    let r = evaluate_with(&sim.store(), &[]);
    let drip = subject(&r, "type:Shop.Drip");
    assert_eq!(drip.growth.reason, TrendReason::RecentUnclear, "{:?}", drip.growth);
    assert_eq!(drip.verdict, SoakVerdict::Inconclusive);
    assert!(drip.material && drip.blocking, "{drip:?}");
    assert_eq!(r.outcome, Outcome::Error, "{}", r.headline);
    assert_eq!(r.exit_code, 2);
    // The census total grows with it (the default managed rule's backstop): both are named.
    assert_eq!((r.sufficiency.unsettled, r.sufficiency.blocking), (2, 0));
    assert!(
        r.headline.starts_with(
            "INCONCLUSIVE: 2 subjects grew faster than their rule over the soak, but the recent part cannot tell yet \
             whether they are still growing (Shop.Drip +10.0 MB/h, live managed data +10.0 MB/h): soak longer"
        ),
        "{}",
        r.headline
    );
    assert!(r.headline.contains("soak longer: use --duration"), "{}", r.headline);
    assert!(r.sufficiency.suggested_duration_ms.unwrap() > 70_000, "{:?}", r.sufficiency);
    let rule = r.rules.iter().find(|x| x.rule == DEFAULT_RULE).unwrap();
    assert_eq!((rule.result, rule.unjudged), ("inconclusive", 1));
}
