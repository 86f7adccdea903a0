//! The soak's text: the progress line while it runs, and the soak part of report.txt.

use super::candidates::{data_span_ms, to_points, warmup_end_ms};
use super::context::Context;
use super::evidence::{clock, rate, span_text};
use super::model::SoakReport;
use super::rules::Quantity;
use crate::analysis::{Point, SoakVerdict, Trend, TrendReason, assess_trend, sen_fit};
use crate::protocol::Source;
use crate::store::{Producer, SeriesPoint, Store};
use crate::units::{format_bytes, format_duration};
use std::fmt::Write as _;
use std::time::Duration;

/// The soak progress line: elapsed, remaining, and the fastest-growing subject so far.
pub fn progress_line(store: &Store, ctx: &Context, elapsed: Duration) -> String {
    let duration = Duration::from_millis(ctx.settings.duration_ms);
    let left = duration.saturating_sub(elapsed);
    let mut line = format!(
        "soak {} / {} ({} left)",
        crate::units::format_clock(elapsed),
        crate::units::format_clock(duration),
        format_duration(left)
    );
    let agents: Vec<&Producer> = store.producers().filter(|p| p.key.source == Source::Agent).collect();
    if agents.is_empty() {
        line.push_str(" · waiting for the agent");
        return line;
    }
    let census: u64 = agents.iter().map(|p| p.soak.census_records).sum();
    let retained: u64 = agents.iter().map(|p| p.soak.retained_records).sum();
    // Summaries report the induced count every interval; a census follows each induced GC.
    let induced: u64 = agents.iter().map(|p| p.soak.induced_gcs.max(p.soak.census_records)).sum();
    let _ = write!(line, " · {induced} full GCs induced, {census} censuses");
    if census == 0 && retained == 0 {
        line.push_str(" · waiting for the first full GC");
        return line;
    }
    let data_ms = data_span_ms(store);
    // During the run the warm-up is the planned one (a fraction of --duration).
    let warmup = warmup_end_ms(&ctx.settings, ctx.settings.duration_ms as f64);
    if data_ms < warmup {
        let _ = write!(line, " · warming up until {}", clock(warmup));
        return line;
    }
    match top_growth(store, ctx, warmup) {
        Some((label, trend)) => {
            let _ = write!(
                line,
                " · top growth: {label} {} ({})",
                rate(trend.bytes_per_hour),
                if trend.reason == TrendReason::TooFewPoints {
                    format!("{} points so far", trend.points)
                } else {
                    trend.verdict.as_str().to_string()
                }
            );
        }
        None => line.push_str(" · no growth so far"),
    }
    line
}

/// The fastest-growing type (or native total) so far: a cheap slope on each non-constant
/// series, then the full verdict on the winner.
fn top_growth(store: &Store, ctx: &Context, warmup: f64) -> Option<(String, Trend)> {
    let mut best: Option<(f64, String, Vec<Point>)> = None;
    let mut consider = |label: String, series: &[SeriesPoint]| {
        let window: Vec<Point> =
            series.iter().filter(|p| p.t_ms >= warmup).map(|p| Point { t_ms: p.t_ms, bytes: p.bytes }).collect();
        if window.len() < 3 || window.iter().all(|p| p.bytes == window[0].bytes) {
            return;
        }
        let thin: Vec<Point> = if window.len() > 40 {
            (0..40).map(|i| window[i * (window.len() - 1) / 39]).collect()
        } else {
            window.clone()
        };
        if let Some(fit) = sen_fit(&thin, 0.95) {
            if best.as_ref().is_none_or(|b| fit.slope > b.0) {
                best = Some((fit.slope, label, to_points(series)));
            }
        }
    };
    for p in store.producers() {
        if p.soak.census_records > 0 {
            for (name, ts) in &p.soak.types {
                consider(name.clone(), ts.series.points());
            }
        } else {
            for r in p.soak.retained.values() {
                consider(format!("{} @ {}", r.type_name, r.site), r.series.points());
            }
        }
        if !p.soak.native_live.is_empty() {
            consider("native memory".to_string(), p.soak.native_live.points());
        }
    }
    let (slope, label, points) = best?;
    if slope <= 0.0 {
        return None;
    }
    let tau =
        ctx.rules.iter().filter(|r| r.quantity == Quantity::Growth).map(|r| r.value).fold(f64::INFINITY, f64::min);
    let tau = if tau.is_finite() { tau } else { ctx.info_threshold() };
    Some((label, assess_trend(&points, warmup, tau, &ctx.trend)))
}

/// The soak part of report.txt.
pub fn render_text(r: &SoakReport) -> String {
    const TEXT_SUBJECTS: usize = 25;
    let mut o = String::new();
    let _ = writeln!(o, "SOAK VERDICT: {} (exit {})", r.headline, r.exit_code);
    for p in &r.problems {
        let _ = writeln!(o, "  problem: {p}");
    }
    for w in &r.warnings {
        let _ = writeln!(o, "  warning: {w}");
    }
    let s = &r.settings;
    let _ = writeln!(
        o,
        "  {} soak, warm-up {}{}, a full GC induced every {}{}; {} comparable points after warm-up ({} censuses, {} retained reports, census pause {:.1} ms mean, {:.1} ms max)",
        span_text(r.measurement.data_ms),
        span_text(s.warmup_ms),
        if s.warmup_default { " (default: 20%)" } else { "" },
        span_text(s.gc_every_ms as f64),
        if s.gc_every_chosen { " (chosen for the duration)" } else { "" },
        r.measurement.points_after_warmup,
        r.measurement.census_records,
        r.measurement.retained_records,
        r.measurement.census_pause_ms_mean,
        r.measurement.census_pause_ms_max
    );
    if let Some(t) = r.decided_after_ms {
        let _ = writeln!(o, "  verdict reached after {} (and held to the end)", clock(t));
    }
    for rule in &r.rules {
        let _ = writeln!(
            o,
            "  rule `{}`{}: {} ({} subjects, {} breaking{})",
            rule.rule,
            if rule.default { " (default)" } else { "" },
            rule.result,
            rule.subjects,
            rule.violations.len(),
            if rule.known_in_baseline.is_empty() {
                String::new()
            } else {
                format!(", {} known in the baseline", rule.known_in_baseline.len())
            } + &if rule.unjudged > 0 {
                format!(", {} with material memory not yet decided", rule.unjudged)
            } else {
                String::new()
            }
        );
    }
    if let Some(b) = &r.baseline {
        let _ = writeln!(
            o,
            "  baseline {}: {} regression{}, {} known, {} fixed",
            b.file,
            b.regressions.len(),
            if b.regressions.len() == 1 { "" } else { "s" },
            b.known.len(),
            b.fixed.len()
        );
        for reg in &b.regressions {
            let _ = writeln!(o, "    regression: {}", reg.text);
        }
    }
    let _ = writeln!(
        o,
        "  {} subjects judged: {} leaking, {} plateaued, {} stable, {} inconclusive{}",
        r.counts.judged,
        r.counts.leaking,
        r.counts.plateaued,
        r.counts.stable,
        r.counts.inconclusive,
        if r.counts.too_small_to_matter > 0 {
            format!(" ({} without a verdict but too small to matter)", r.counts.too_small_to_matter)
        } else {
            String::new()
        }
    );
    if !r.sufficiency.enough {
        if let Some(m) = &r.sufficiency.missing {
            let _ = writeln!(
                o,
                "  not enough evidence for a verdict: {m}{}",
                r.sufficiency.suffice.as_ref().map(|s| format!(" — {s}")).unwrap_or_default()
            );
        }
    }
    for m in &r.memory {
        for line in &m.interpretation {
            let _ = writeln!(o, "  memory (pid {}): {line}", m.pid);
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "    {:<13} {:<11} {:>14} {:>10}  subject", "verdict", "kind", "growth", "live");
    for subj in r.subjects.iter().filter(|x| x.verdict != SoakVerdict::Stable || x.failing()).take(TEXT_SUBJECTS) {
        let verdict =
            if subj.failing() { format!("{}!", subj.verdict.as_str()) } else { subj.verdict.as_str().to_string() };
        let _ = writeln!(
            o,
            "    {:<13} {:<11} {:>14} {:>10}  {}",
            verdict,
            subj.kind.as_str(),
            rate(subj.growth.bytes_per_hour),
            format_bytes(subj.live_bytes),
            subj.label
        );
        if subj.verdict != SoakVerdict::Stable {
            let _ = writeln!(o, "        {}", subj.evidence);
        }
    }
    let stable = r.subjects.iter().filter(|x| x.verdict == SoakVerdict::Stable).count();
    if stable > 0 {
        let _ = writeln!(o, "    … and {} stable subjects (listed in report.json)", r.counts.stable);
    }
    o
}
