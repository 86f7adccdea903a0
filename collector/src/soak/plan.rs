//! Soak settings that fit the duration, decided before the worker starts.
//!
//! A verdict needs [`crate::analysis::TrendSettings::min_points`] (8) comparable points — full
//! GCs induced by the agent — after the warm-up. With no `--gc-every`, leakscope chooses the
//! period from `--duration` and `--warmup` so that about [`TARGET_POINTS`] follow the warm-up
//! (between [`MIN_CHOSEN_GC_EVERY`] and [`super::model::DEFAULT_GC_EVERY`]); with no `--interval`, the
//! summaries (RSS, heap, native totals) come at least as often. Settings that cannot give 8
//! points are refused before anything starts, with the settings that would, unless the user
//! insists (`--allow-short`).

use std::time::Duration;

/// Comparable points the chosen period aims for after the warm-up: 8 are needed for a verdict;
/// more narrow the confidence intervals, so slower leaks are decided in the same soak.
pub const TARGET_POINTS: u64 = 12;
/// The shortest period leakscope chooses by itself: a blocking full GC and a heap walk every
/// 2 s is fine for a staging worker, and is what short CI soaks need.
pub const MIN_CHOSEN_GC_EVERY: Duration = Duration::from_secs(2);
/// The shortest period the agent accepts.
pub const MIN_GC_EVERY: Duration = Duration::from_secs(1);
/// How often producers send summaries when `--interval` is not given (and the period is longer).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// What a soak will do, with where each setting came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub duration: Duration,
    /// The planned warm-up: `--warmup`, else [`super::model::DEFAULT_WARMUP_FRACTION`] of the soak.
    pub warmup: Duration,
    pub warmup_given: bool,
    pub gc_every: Duration,
    /// `--gc-every` was not given: [`choose_gc_every`] picked it.
    pub gc_every_chosen: bool,
    pub interval: Duration,
    pub interval_chosen: bool,
}

/// Settings that would give enough points: "use --duration 6m00s or more, or --gc-every 5s".
#[derive(Debug, Clone, PartialEq)]
pub struct Fix {
    pub text: String,
    pub duration: Duration,
    /// A shorter period for the same duration, when one of at least 1 s would do.
    pub period: Option<Duration>,
}

/// Why the settings cannot give a verdict, and what would.
#[derive(Debug, Clone, PartialEq)]
pub struct Shortfall {
    /// "--duration 1m00s with --gc-every 30s gives about 1 comparable point after the 12s warm-up; a verdict needs at least 8"
    pub problem: String,
    /// "use --duration 6m or more, or --gc-every 5s"
    pub fix: String,
}

impl Plan {
    pub fn new(
        duration: Duration,
        warmup: Option<Duration>,
        gc_every: Option<Duration>,
        interval: Option<Duration>,
    ) -> Plan {
        let planned_warmup = warmup.unwrap_or_else(|| duration.mul_f64(super::model::DEFAULT_WARMUP_FRACTION));
        let span = duration.saturating_sub(planned_warmup);
        let gc = gc_every.unwrap_or_else(|| choose_gc_every(span));
        Plan {
            duration,
            warmup: planned_warmup,
            warmup_given: warmup.is_some(),
            gc_every: gc,
            gc_every_chosen: gc_every.is_none(),
            interval: interval.unwrap_or(DEFAULT_INTERVAL.min(gc)),
            interval_chosen: interval.is_none(),
        }
    }

    /// The time after the warm-up, where the verdicts are made.
    pub fn judged_span(&self) -> Duration {
        self.duration.saturating_sub(self.warmup)
    }

    /// Points a period gives after the warm-up (at least this many land, whatever the phase of
    /// the first one, minus one).
    pub fn points(&self, every: Duration) -> u64 {
        points_in(self.judged_span(), every)
    }

    /// `None` when the settings can give a verdict. `native`: the shim is on, so native
    /// verdicts (judged on summaries every `--interval`) need their points too.
    pub fn shortfall(&self, min_points: u64, native: bool) -> Option<Shortfall> {
        let warm = crate::units::format_duration(self.warmup);
        let duration = crate::units::format_duration(self.duration);
        let gc_points = self.points(self.gc_every);
        if gc_points < min_points {
            let plural = if gc_points == 1 { "" } else { "s" };
            let problem = if self.gc_every_chosen {
                format!(
                    "--duration {duration} leaves {} after the {warm} warm-up: even a full GC every {} (the shortest leakscope chooses) gives about {gc_points} comparable point{plural}; a verdict needs at least {min_points}",
                    crate::units::format_duration(self.judged_span()),
                    crate::units::format_duration(self.gc_every)
                )
            } else {
                format!(
                    "--duration {duration} with --gc-every {} gives about {gc_points} comparable point{plural} after the {warm} warm-up; a verdict needs at least {min_points}",
                    crate::units::format_duration(self.gc_every)
                )
            };
            return Some(Shortfall { problem, fix: self.fix(min_points, self.gc_every, "--gc-every").text });
        }
        let summary_points = self.points(self.interval);
        if native && !self.interval_chosen && summary_points < min_points {
            return Some(Shortfall {
                problem: format!(
                    "--duration {duration} with --interval {} gives about {summary_points} native-memory points after the {warm} warm-up; a native verdict needs at least {min_points}",
                    crate::units::format_duration(self.interval)
                ),
                fix: self.fix(min_points, self.interval, "--interval").text,
            });
        }
        None
    }

    /// What would give `min_points` with this period (`flag` names the setting): a longer
    /// `--duration`, or a shorter period for this one.
    pub fn fix(&self, min_points: u64, every: Duration, flag: &str) -> Fix {
        let longer = duration_for(min_points, every, self.warmup_given.then_some(self.warmup));
        let shorter = period_for(min_points, self.judged_span());
        let mut text = format!("use --duration {} or more", crate::units::format_duration(longer));
        if let Some(p) = shorter {
            text.push_str(&format!(", or {flag} {}", crate::units::format_duration(p)));
            if flag == "--gc-every" && !self.gc_every_chosen {
                text.push_str(" (or leave --gc-every out: leakscope then chooses it from --duration)");
            }
        }
        Fix { text, duration: longer, period: shorter }
    }

    /// The line `soak` prints when it starts: the settings and where they came from.
    pub fn describe(&self) -> String {
        let points = self.points(self.gc_every);
        let mut s = format!(
            "a full GC every {}{}: about {points} comparable points after the {} warm-up{}",
            crate::units::format_duration(self.gc_every),
            if self.gc_every_chosen {
                format!(" (chosen for --duration {}; --gc-every sets it)", crate::units::format_duration(self.duration))
            } else {
                String::new()
            },
            crate::units::format_duration(self.warmup),
            if self.warmup_given { "" } else { " (20% of the soak)" }
        );
        if self.gc_every_chosen && points < TARGET_POINTS {
            s.push_str(&format!(" ({TARGET_POINTS} wanted: a longer --duration narrows the verdicts)"));
        }
        if self.interval_chosen && self.interval != DEFAULT_INTERVAL {
            s.push_str(&format!("; summaries every {} to match", crate::units::format_duration(self.interval)));
        }
        s
    }
}

/// Points a period gives in a span: the first lands anywhere within one period of the start,
/// so one fewer than the span holds is sure.
pub fn points_in(span: Duration, every: Duration) -> u64 {
    if every.is_zero() {
        return 0;
    }
    (span.as_secs_f64() / every.as_secs_f64()).floor() as u64
}

/// The period for a judged span: [`TARGET_POINTS`] + 1 periods fit in it (one spare for the
/// phase of the first induced GC), in whole seconds, within [`MIN_CHOSEN_GC_EVERY`] and
/// [`super::model::DEFAULT_GC_EVERY`].
pub fn choose_gc_every(judged_span: Duration) -> Duration {
    let secs = (judged_span.as_secs_f64() / (TARGET_POINTS + 1) as f64).floor() as u64;
    Duration::from_secs(secs).clamp(MIN_CHOSEN_GC_EVERY, super::model::DEFAULT_GC_EVERY)
}

/// The longest period (whole seconds, at least [`MIN_GC_EVERY`]) that gives `points` in a span,
/// one spare for the phase; `None` when even the shortest does not.
pub fn period_for(points: u64, judged_span: Duration) -> Option<Duration> {
    let secs = (judged_span.as_secs_f64() / (points + 1) as f64).floor() as u64;
    let d = Duration::from_secs(secs);
    (d >= MIN_GC_EVERY).then_some(d)
}

/// The shortest `--duration` (rounded up to a round figure) that gives `points` with this
/// period: `warmup` when given, else the default fraction of the soak.
pub fn duration_for(points: u64, every: Duration, warmup: Option<Duration>) -> Duration {
    let span = every.as_secs_f64() * (points + 1) as f64;
    let secs = match warmup {
        Some(w) => w.as_secs_f64() + span,
        None => span / (1.0 - super::model::DEFAULT_WARMUP_FRACTION),
    };
    round_up_duration(Duration::from_secs_f64(secs))
}

/// Up to a round figure: 10 s steps up to 2 minutes, whole minutes up to an hour, then 10
/// minutes.
pub fn round_up_duration(d: Duration) -> Duration {
    let secs = d.as_secs_f64();
    let step = if secs <= 120.0 {
        10.0
    } else if secs <= 3600.0 {
        60.0
    } else {
        600.0
    };
    Duration::from_secs(((secs / step).ceil() * step) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_chosen_period_gives_at_least_twelve_points_after_the_warm_up() {
        for d in [30, 45, 60, 70, 90, 120, 300, 600, 1800, 7200, 86_400] {
            let p = Plan::new(S(d), None, None, None);
            assert!(p.gc_every_chosen);
            assert!(p.gc_every >= MIN_CHOSEN_GC_EVERY && p.gc_every <= crate::soak::model::DEFAULT_GC_EVERY);
            // One spare period: whatever the phase of the first induced GC, 12 land.
            let sure = p.points(p.gc_every).saturating_sub(1);
            assert!(sure >= TARGET_POINTS || p.gc_every == MIN_CHOSEN_GC_EVERY, "{d}s: {:?} gives {sure}", p.gc_every);
            assert!(p.shortfall(8, true).is_none(), "{d}s");
        }
        assert_eq!(Plan::new(S(60), None, None, None).gc_every, S(3));
        assert_eq!(Plan::new(S(70), None, None, None).gc_every, S(4));
        assert_eq!(Plan::new(S(300), None, None, None).gc_every, S(18));
        // Long soaks keep the 30 s default: cheap, and plenty of points.
        assert_eq!(Plan::new(S(1800), None, None, None).gc_every, S(30));
        // An explicit warm-up leaves less (or more) to judge.
        assert_eq!(Plan::new(S(60), Some(S(34)), None, None).gc_every, S(2));
    }

    #[test]
    fn summaries_come_at_least_as_often_as_the_chosen_full_gcs() {
        let p = Plan::new(S(60), None, None, None);
        assert_eq!(p.interval, S(3));
        assert!(p.describe().contains("summaries every 3s to match"), "{}", p.describe());
        assert_eq!(Plan::new(S(3600), None, None, None).interval, DEFAULT_INTERVAL);
        assert_eq!(Plan::new(S(60), None, None, Some(S(1))).interval, S(1));
    }

    #[test]
    fn explicit_settings_that_cannot_give_eight_points_are_refused_with_the_fix() {
        let p = Plan::new(S(60), None, Some(S(30)), None);
        let s = p.shortfall(8, false).expect("1 point is not enough");
        assert_eq!(
            s.problem,
            "--duration 1m00s with --gc-every 30s gives about 1 comparable point after the 12s warm-up; a verdict needs at least 8"
        );
        // 9 periods of 30 s after a 20 % warm-up: 337.5 s, rounded up to 6 minutes; or 48 s / 9.
        assert_eq!(
            s.fix,
            "use --duration 6m00s or more, or --gc-every 5s (or leave --gc-every out: leakscope then chooses it from --duration)"
        );
        // Two minutes with the old 30 s default: 3 points.
        assert!(Plan::new(S(120), None, Some(S(30)), None).shortfall(8, false).is_some());
        // Enough with a shorter period.
        assert!(Plan::new(S(60), None, Some(S(5)), None).shortfall(8, false).is_none());
    }

    #[test]
    fn a_duration_too_short_even_for_the_shortest_chosen_period_is_refused() {
        let p = Plan::new(S(10), None, None, None);
        assert_eq!(p.gc_every, MIN_CHOSEN_GC_EVERY);
        let s = p.shortfall(8, false).unwrap();
        assert!(s.problem.contains("even a full GC every 2s (the shortest leakscope chooses) gives about 4 comparable points; a verdict needs at least 8"), "{}", s.problem);
        // 9 × 2 s / 0.8 = 22.5 s, rounded up.
        assert_eq!(s.fix, "use --duration 30s or more");
        assert!(!s.fix.contains("--gc-every"), "no period would do: {}", s.fix);
    }

    #[test]
    fn an_explicit_interval_too_long_for_native_verdicts_is_refused_only_with_the_shim() {
        let p = Plan::new(S(60), None, None, Some(S(10)));
        assert!(p.shortfall(8, false).is_none());
        let s = p.shortfall(8, true).unwrap();
        assert!(s.problem.contains("--interval 10s gives about 4 native-memory points"), "{}", s.problem);
        assert!(s.fix.ends_with(", or --interval 5s"), "{}", s.fix);
    }

    /// docs/CLI.md's "Choosing the settings" is what the code does: the table of chosen periods,
    /// the start line and the refusal it quotes.
    #[test]
    fn the_documented_choices_are_the_ones_made() {
        let doc = include_str!("../../../docs/CLI.md");
        let section = doc
            .split("**Choosing the settings.**")
            .nth(1)
            .expect("docs/CLI.md has 'Choosing the settings'")
            .split("**Rules**")
            .next()
            .unwrap();
        let mut rows = 0;
        for line in section.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| `--duration`")) {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let duration = crate::units::parse_duration(cells[0]).unwrap();
            let period = crate::units::parse_duration(cells[1].split(' ').next().unwrap()).unwrap();
            let points: u64 = cells[2].parse().unwrap();
            let p = Plan::new(duration, None, None, None);
            assert_eq!((p.gc_every, p.points(p.gc_every)), (period, points), "docs/CLI.md: {line}");
            let earliest = p.warmup + p.gc_every * 8;
            let shown: f64 = cells[3].trim_start_matches('~').split(' ').next().unwrap().parse().unwrap();
            let secs = if cells[3].ends_with("min") { shown * 60.0 } else { shown };
            assert!(
                (secs - earliest.as_secs_f64()).abs() <= 0.1 * earliest.as_secs_f64(),
                "docs/CLI.md: {line}: {earliest:?}"
            );
            rows += 1;
        }
        assert!(rows >= 5, "the table of chosen periods is missing");
        let start = Plan::new(S(60), None, None, None).describe();
        assert!(section.contains(&format!("leakscope soak: {start}")), "the start line changed: {start}");
        let refused = Plan::new(S(60), None, Some(S(30)), None).shortfall(8, false).unwrap();
        assert!(section.contains(&format!("leakscope: error: {}", refused.problem)), "{}", refused.problem);
        assert!(section.contains(&format!("hint: {}", refused.fix)), "{}", refused.fix);
    }

    #[test]
    fn suggested_durations_are_round_and_sufficient() {
        assert_eq!(duration_for(8, S(30), None), S(360));
        assert_eq!(duration_for(8, S(5), None), S(60));
        assert_eq!(duration_for(8, S(30), Some(S(600))), S(900));
        assert_eq!(duration_for(8, S(600), None), S(7200));
        for (points, every) in [(8, S(3)), (8, S(7)), (8, S(30)), (12, S(45))] {
            let d = duration_for(points, every, None);
            let p = Plan::new(d, None, Some(every), None);
            assert!(p.points(every) > points, "{d:?} with {every:?}");
        }
        assert_eq!(period_for(8, S(48)), Some(S(5)));
        assert_eq!(period_for(8, S(8)), None);
    }
}
