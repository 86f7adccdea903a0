//! Ranking sites across producers: every series assessed, growing ones first.

use crate::analysis::{self, FullGcCheck, Growth, LiveVerdict, Thresholds};
use crate::protocol::Source;
use crate::store::{Producer, SiteLatest, Stack, Store, site_label};
use std::sync::Arc;

/// One site of one producer with its assessment; owned, so views can keep it across frames.
#[derive(Debug, Clone)]
pub struct SiteRow {
    pub pid: u32,
    pub source: Source,
    pub type_name: Option<String>,
    pub site: String,
    pub frames: Option<Arc<Stack>>,
    pub location: Option<String>,
    pub latest: SiteLatest,
    pub peak_bytes: f64,
    pub present: bool,
    pub growth: Growth,
    /// Managed sites: full (gen2) GCs inside the analysed window.
    pub full_gcs: Option<u64>,
    /// Managed sites that rose: whether the rise survived a full GC (see [`FullGcCheck`]).
    pub full_gc_check: Option<FullGcCheck>,
}

impl SiteRow {
    pub fn label(&self) -> String {
        site_label(self.type_name.as_deref(), &self.site, self.location.as_deref())
    }
}

/// Assesses every site of every producer of `source` and ranks them: growing first (fastest
/// first), then by current live bytes. `recent_window_ms` as in [`analysis::assess`].
pub fn ranked(store: &Store, source: Source, th: &Thresholds, recent_window_ms: Option<f64>) -> Vec<SiteRow> {
    let mut rows = assessed_all(store, source, th, recent_window_ms);
    sort_ranked(&mut rows);
    rows
}

/// Every site of every producer of `source` with its assessment, unsorted.
pub fn assessed_all(store: &Store, source: Source, th: &Thresholds, recent_window_ms: Option<f64>) -> Vec<SiteRow> {
    store.producers().filter(|p| p.key.source == source).flat_map(|p| assessed(p, th, recent_window_ms)).collect()
}

/// Every site of one producer with its assessment, unsorted.
pub fn assessed(producer: &Producer, th: &Thresholds, recent_window_ms: Option<f64>) -> Vec<SiteRow> {
    let source = producer.key.source;
    // A site whose peak is under the materiality bound can never be "growing": a coarser look
    // is enough for its rate column, and keeps ranking thousands of small sites cheap.
    let small = Thresholds { max_points: th.max_points.min(48), ..th.clone() };
    // Copied out only when a managed site rises: most rankings have none.
    let full_gc_ms = std::cell::OnceCell::new();
    producer
        .sites()
        .map(|series| {
            let th = if series.peak_bytes <= th.min_growth_bytes { &small } else { th };
            let points = series.analysis_points();
            let mut growth = analysis::assess(&points, series.peak_bytes, th, recent_window_ms);
            let full_gc_check = (source == Source::Agent && growth.verdict == LiveVerdict::Growing).then(|| {
                let per_sample = (series.latest.samples > 0.0).then(|| series.latest.bytes / series.latest.samples);
                let collected: Vec<f64> = series.points().iter().map(|p| p.collected).collect();
                let check = analysis::check_across_full_gcs(
                    &points,
                    &collected,
                    &growth,
                    full_gc_ms.get_or_init(|| producer.full_gc_times_ms()),
                    per_sample,
                    th,
                );
                growth.verdict = verdict_after_full_gcs(check);
                check
            });
            SiteRow {
                pid: producer.key.pid,
                source,
                type_name: series.type_name.clone(),
                site: series.site.clone(),
                frames: producer.frames_of(series),
                location: series.location.clone(),
                latest: series.latest.clone(),
                peak_bytes: series.peak_bytes,
                present: series.present,
                full_gcs: (source == Source::Agent).then(|| {
                    producer.full_gcs_between(growth.window_start_ms, growth.window_start_ms + growth.window_ms)
                }),
                growth,
                full_gc_check,
            }
        })
        .collect()
}

/// A site's growth as the tables and the live line show it: the slope, or "no trend" for a
/// steady site whose slope is noise (no significant trend, or a rise a full GC took back) —
/// "+26 MB/min steady" after a one-off step would read as a contradiction. None while there is
/// too little data (each view has its own word for that).
pub fn growth_text(growth: &Growth, full_gc_check: Option<FullGcCheck>) -> Option<String> {
    match growth.verdict {
        LiveVerdict::InsufficientData => None,
        _ if !quotes_rate(growth, full_gc_check) => Some(NO_TREND.to_string()),
        _ => Some(crate::units::format_rate_per_min(growth.bytes_per_min)),
    }
}

/// Whether a site's slope is a rate to show: every verdict's but a steady site's without a
/// significant trend or whose rise fell back at a full GC.
pub fn quotes_rate(growth: &Growth, full_gc_check: Option<FullGcCheck>) -> bool {
    let fell_back = matches!(full_gc_check, Some(FullGcCheck::FellBack { .. }));
    !(growth.verdict == LiveVerdict::Steady && (!growth.significant || fell_back))
}

/// What a steady site without a trend shows in place of a rate.
const NO_TREND: &str = "no trend";

/// A managed rise is a leak suspect only once it has survived a full GC; garbage that died old
/// falls back at the first one.
fn verdict_after_full_gcs(check: FullGcCheck) -> LiveVerdict {
    match check {
        FullGcCheck::Confirmed { .. } => LiveVerdict::Growing,
        FullGcCheck::FellBack { .. } => LiveVerdict::Steady,
        FullGcCheck::Unconfirmed { .. } => LiveVerdict::Rising,
    }
}

/// Growing first, then rising (fastest first), then by current live bytes.
pub fn sort_ranked(rows: &mut [SiteRow]) {
    rows.sort_by(|a, b| {
        let rank = |r: &SiteRow| match r.growth.verdict {
            LiveVerdict::Growing => 0,
            LiveVerdict::Rising => 1,
            _ => 2,
        };
        rank(a)
            .cmp(&rank(b))
            .then_with(|| match a.growth.verdict {
                LiveVerdict::Growing | LiveVerdict::Rising => b.growth.bytes_per_min.total_cmp(&a.growth.bytes_per_min),
                _ => std::cmp::Ordering::Equal,
            })
            .then_with(|| b.latest.bytes.total_cmp(&a.latest.bytes))
            .then_with(|| b.peak_bytes.total_cmp(&a.peak_bytes))
            .then_with(|| a.site.cmp(&b.site))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn growth(verdict: LiveVerdict, significant: bool) -> Growth {
        Growth {
            verdict,
            bytes_per_min: 26_300_000.0,
            ci95_bytes_per_min: None,
            p_value: 0.02,
            significant,
            still_rising: false,
            growth_bytes: 0.0,
            window_start_ms: 0.0,
            window_ms: 60_000.0,
            points: 12,
        }
    }

    #[test]
    fn a_steady_site_quotes_its_rate_only_when_it_has_a_trend() {
        assert_eq!(growth_text(&growth(LiveVerdict::Steady, false), None).as_deref(), Some(NO_TREND));
        assert_eq!(growth_text(&growth(LiveVerdict::Steady, true), None).as_deref(), Some("+26.3 MB/min"));
        let fell_back = FullGcCheck::FellBack { bytes: 0.0, full_gc_ms: 1.0 };
        assert_eq!(growth_text(&growth(LiveVerdict::Steady, true), Some(fell_back)).as_deref(), Some(NO_TREND));
        for v in [LiveVerdict::Growing, LiveVerdict::Rising, LiveVerdict::Plateaued] {
            assert_eq!(growth_text(&growth(v, true), None).as_deref(), Some("+26.3 MB/min"), "{v:?}");
        }
        assert_eq!(growth_text(&growth(LiveVerdict::InsufficientData, false), None), None);
    }
}
