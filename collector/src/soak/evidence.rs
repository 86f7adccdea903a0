//! The words of a verdict: the evidence paragraph of each subject (what was measured and why
//! this verdict), and the rate, interval and time texts the soak's reports share.

use super::model::{Subject, SubjectKind};
use crate::analysis::{SoakVerdict, TrendReason, TrendSettings};
use crate::units::{format_bytes, format_count, format_duration};
use std::fmt::Write as _;
use std::time::Duration;

pub fn rate(bytes_per_hour: f64) -> String {
    if bytes_per_hour.abs() < 0.5 {
        return "0 B/h".to_string();
    }
    let sign = if bytes_per_hour > 0.0 { "+" } else { "" };
    format!("{sign}{}/h", format_bytes(bytes_per_hour))
}

pub fn ci_text(ci: Option<[f64; 2]>) -> String {
    match ci {
        Some([lo, hi]) => format!("95% CI {} to {}", rate(lo), rate(hi)),
        None => "no interval".to_string(),
    }
}

pub(super) fn span_text(ms: f64) -> String {
    format_duration(Duration::from_millis(ms.max(0.0) as u64))
}

pub fn clock(ms: f64) -> String {
    crate::units::format_clock(Duration::from_millis(ms.max(0.0) as u64))
}

/// The evidence paragraph of a subject.
pub(super) fn evidence(s: &Subject) -> String {
    let g = &s.growth;
    let mut e = String::new();
    let what = match (s.kind, s.exact) {
        (SubjectKind::Type, true) => "exact census after each induced full GC",
        (SubjectKind::Type, false) => "sampled survivors of each full GC, summed by type (no census on this runtime)",
        (SubjectKind::Site, _) => "sampled survivors of each full GC",
        (SubjectKind::Native, _) => "the shim's exact native live bytes",
        (SubjectKind::NativeSite, _) => "sampled native allocations still live",
        (SubjectKind::Managed, _) => "census totals after each induced full GC",
        (SubjectKind::Heap, _) => "the GC's generation sizes",
        (SubjectKind::Rss, _) => "resident set size",
    };
    let threshold = rate(g.threshold_bytes_per_hour);
    match g.reason {
        TrendReason::TooFewPoints => {
            let _ = write!(
                e,
                "only {} comparable point{} after warm-up (at least {} needed): soak longer or induce full GCs more often",
                g.points,
                if g.points == 1 { "" } else { "s" },
                TrendSettings::default().min_points
            );
        }
        TrendReason::GrowsThroughout => {
            let _ = write!(
                e,
                "grows at {} ({}, trend p {}) over {} after warm-up — above the {threshold} threshold — and still at {} over the last {} points (trend p {})",
                rate(g.bytes_per_hour),
                ci_text(g.ci_bytes_per_hour),
                p_text(g.p_value),
                span_text(g.window_ms),
                rate(g.recent_bytes_per_hour.unwrap_or(0.0)),
                g.recent_points,
                p_text(g.recent_p_value.unwrap_or(1.0))
            );
        }
        TrendReason::Slowing => {
            let _ = write!(
                e,
                "grew at {} early in the window but only {} over the last {} points: it is slowing down and may level off — soak longer to tell",
                rate(g.early_bytes_per_hour.unwrap_or(0.0)),
                rate(g.recent_bytes_per_hour.unwrap_or(0.0)),
                g.recent_points
            );
        }
        TrendReason::LevelledOff => {
            let recent_hi = g.recent_ci_bytes_per_hour.map(|c| c[1]).unwrap_or(0.0);
            let _ = write!(
                e,
                "rose from {} to {}, then levelled off{}: the last {} points grow at {} ({}){}",
                format_bytes(g.start_bytes),
                format_bytes(g.end_bytes),
                g.flat_since_ms.map(|t| format!(" at about {}", clock(t))).unwrap_or_default(),
                g.recent_points,
                rate(g.recent_bytes_per_hour.unwrap_or(0.0)),
                ci_text(g.recent_ci_bytes_per_hour),
                if recent_hi <= g.threshold_bytes_per_hour {
                    format!(", within the {threshold} threshold")
                } else {
                    format!(
                        ", far below the early {} — a residual growth of up to {} cannot be ruled out yet",
                        rate(g.early_bytes_per_hour.unwrap_or(0.0)),
                        rate(recent_hi)
                    )
                }
            );
        }
        TrendReason::NoGrowth => {
            let _ = write!(
                e,
                "no growth beyond {threshold}: {} ({}) over {} after warm-up",
                rate(g.bytes_per_hour),
                ci_text(g.ci_bytes_per_hour),
                span_text(g.window_ms)
            );
        }
        TrendReason::WeakTrend => {
            let _ = write!(
                e,
                "{} over {} ({}), above the {threshold} threshold, but the trend test reaches only p {} where a leak call needs p < {}: soak longer to tell",
                rate(g.bytes_per_hour),
                span_text(g.window_ms),
                ci_text(g.ci_bytes_per_hour),
                p_text(g.p_value),
                TrendSettings::default().alpha
            );
        }
        TrendReason::NotCorroborated => {
            let _ = write!(
                e,
                "its sampled survivors grow at {} ({}) over {}, but {} does not: sampling noise (samples of long-lived objects rise and fall together), not counted as a leak",
                rate(g.bytes_per_hour),
                ci_text(g.ci_bytes_per_hour),
                span_text(g.window_ms),
                match &s.type_name {
                    Some(t) => format!("the exact census of {t}"),
                    None => "the exact native total".to_string(),
                }
            );
        }
        TrendReason::Straddles | TrendReason::RecentUnclear => {
            let _ = write!(
                e,
                "{} over {}, but the {} straddles the {threshold} threshold{}",
                rate(g.bytes_per_hour),
                span_text(g.window_ms),
                if g.reason == TrendReason::RecentUnclear {
                    format!("recent part's interval ({})", ci_text(g.recent_ci_bytes_per_hour))
                } else {
                    format!("interval ({})", ci_text(g.ci_bytes_per_hour))
                },
                g.more_ms.map(|m| format!(": roughly {} more would decide", span_text(m))).unwrap_or_default()
            );
        }
    }
    if let Some(k) = g.samples_gained.filter(|k| *k >= 1.0) {
        let _ = write!(
            e,
            " (the interval includes the sampling error of the ~{k:.0} samples gained, ±{:.0}%)",
            196.0 / k.sqrt()
        );
    }
    let count_word = match s.kind {
        SubjectKind::Native | SubjectKind::NativeSite => "allocations",
        _ => "objects",
    };
    if matches!(s.kind, SubjectKind::Type | SubjectKind::Site | SubjectKind::Native | SubjectKind::NativeSite) {
        let _ =
            write!(e, "; {} live in {} {count_word} ({what})", format_bytes(s.live_bytes), format_count(s.live_count));
    } else {
        let _ = write!(e, "; {} at the end ({what})", format_bytes(s.live_bytes));
    }
    if matches!(s.kind, SubjectKind::Type | SubjectKind::Native) {
        if s.sites.is_empty() {
            if s.verdict == SoakVerdict::Leaking || !s.failed_rules.is_empty() {
                e.push_str(
                    "; no sampled call site yet: it allocates too slowly for the sampler (about one sample per 100 KiB allocated) — soak longer to name the site",
                );
            }
        } else {
            let sites: Vec<String> = s
                .sites
                .iter()
                .map(|r| {
                    let at = match &r.location {
                        Some(l) => format!("{} ({l})", r.site),
                        None => r.site.clone(),
                    };
                    format!("{at}: {} sampled, {}", format_bytes(r.live_bytes), r.verdict.as_str())
                })
                .collect();
            let _ = write!(e, "; allocated at {}", sites.join("; "));
        }
    }
    if let Some(owner) = &s.owner_to_fix {
        let _ = write!(e, "; owner to fix: {}", owner.text());
    } else if let Some(kept) = &s.kept_alive_by {
        let _ = write!(e, "; {kept}");
    }
    if !s.failed_rules.is_empty() {
        let _ = write!(e, "; breaks `{}`", s.failed_rules.join("`, `"));
        if s.known_in_baseline {
            e.push_str(" (known in the baseline at a comparable rate: not failed)");
        }
    }
    e
}

fn p_text(p: f64) -> String {
    if p < 0.001 { "< 0.001".to_string() } else { format!("= {p:.3}") }
}
