//! What a producer told us that soak verdicts are judged on, kept in bounded series:
//!
//! * `census` records → one series per **type** (exact live bytes and objects after each induced
//!   full GC) and the census total (live managed data);
//! * `retained` records → one series per **(type, call site)** (sampled survivors of each full GC);
//! * `summary` records → RSS, the GC's heap size and its generation sizes, for the "the GC kept
//!   it" comparison and the charts;
//! * `native` records (shim) → exact native live bytes.
//!
//! Memory stays bounded for hours of data: every series holds at most [`SOAK_SERIES_POINTS`]
//! points (older points are merged pairwise, as the live view's series are), and the number of
//! type and site series is capped (the smallest absent ones are evicted first).

use super::series::{SeriesPoint, Stack, compact};
use crate::protocol::Status;
use std::collections::HashMap;
use std::sync::Arc;

/// Points kept per soak series before the older two thirds are merged pairwise. With a full GC
/// every 30 s that is two hours at full resolution, then progressively coarser history.
pub const SOAK_SERIES_POINTS: usize = 240;
/// Type series per producer (a census lists at most 5000 types).
pub const MAX_TYPE_SERIES: usize = 6000;
/// (type, site) series per producer.
pub const MAX_RETAINED_SERIES: usize = 4000;

pub const SOAK_SERIES_BYTES: usize = SOAK_SERIES_POINTS.next_power_of_two() * std::mem::size_of::<SeriesPoint>();

/// A bounded time series of bytes (and objects or allocations).
#[derive(Debug, Clone, Default)]
pub struct Series {
    points: Vec<SeriesPoint>,
    peak_bytes: f64,
}

impl Series {
    /// Appends a point; points not after the last one are ignored. Returns whether it was kept.
    pub fn push(&mut self, t_ms: f64, bytes: f64, count: f64) -> bool {
        if self.points.last().is_some_and(|last| t_ms <= last.t_ms) {
            return false;
        }
        self.peak_bytes = self.peak_bytes.max(bytes);
        self.points.push(SeriesPoint { t_ms, bytes, count, collected: f64::NAN });
        if self.points.len() >= SOAK_SERIES_POINTS {
            compact(&mut self.points);
        }
        true
    }

    pub fn points(&self) -> &[SeriesPoint] {
        &self.points
    }

    pub fn last(&self) -> Option<&SeriesPoint> {
        self.points.last()
    }

    pub fn peak_bytes(&self) -> f64 {
        self.peak_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }
}

/// One (type, call site) pair's sampled survivors of successive full GCs.
#[derive(Debug, Clone)]
pub struct RetainedSite {
    pub type_name: String,
    pub site: String,
    pub location: Option<String>,
    pub stack_id: Option<u64>,
    pub frames: Option<Arc<Stack>>,
    pub series: Series,
    /// Tracked samples behind the latest point.
    pub samples: f64,
    /// Listed in the latest `retained` record.
    pub present: bool,
    /// Its share of the session's memory budget.
    pub charge: crate::budget::Charge,
}

/// One type's exact census counts.
#[derive(Debug, Clone, Default)]
pub struct TypeSeries {
    pub series: Series,
    pub present: bool,
    /// Its share of the session's memory budget.
    pub charge: crate::budget::Charge,
}

/// Everything soak verdicts need from one producer.
#[derive(Debug, Clone, Default)]
pub struct SoakData {
    /// The agent's status saying it induces full GCs (soak mode), if it said so.
    pub announced: Option<String>,
    /// The agent's status saying the census is unavailable (runtime before .NET 9).
    pub census_unavailable: Option<String>,
    pub retained_records: u64,
    pub census_records: u64,
    pub census_pause_ms_total: f64,
    pub census_pause_ms_max: f64,
    /// Objects the census could not read (should stay 0).
    pub census_unreadable: u64,
    /// Induced GCs, as counted by the agent's summaries.
    pub induced_gcs: u64,
    pub retained: HashMap<(String, String), RetainedSite>,
    pub types: HashMap<String, TypeSeries>,
    pub retained_evicted: u64,
    pub types_evicted: u64,
    /// Census totals: live managed bytes and objects right after each induced full GC.
    pub live: Series,
    /// From summaries: resident set size, the GC's heap (sum of generation sizes) and each
    /// generation's size (gen0, gen1, gen2, LOH, POH) after the latest GC.
    pub rss: Series,
    pub heap: Series,
    pub gens: [Series; 5],
    /// From the shim: exact native live bytes (and allocations).
    pub native_live: Series,
    /// Times of the `retained` records (a site first seen late was at zero before).
    pub retained_times: Series,
    /// Every census so far listed all types (none summed in `other`), so a type first seen
    /// late was at zero in the earlier ones.
    pub censuses_complete: bool,
    last_retained_t: Option<f64>,
    /// Unix time (ms) of the latest `retained` record: the agent sends one right after each
    /// full GC, so this is when the worker's latest full GC was reported.
    pub last_full_gc_unix_ms: Option<u64>,
}

impl SoakData {
    /// A series preceded by zeros at the times of earlier comparable points (`timeline`), when
    /// those points are known to be complete. Returns (t, bytes, count).
    pub fn with_leading_zeros(series: &Series, timeline: &Series, complete: bool) -> Vec<SeriesPoint> {
        let first = series.points().first().map(|p| p.t_ms).unwrap_or(f64::INFINITY);
        let mut out: Vec<SeriesPoint> = if complete {
            timeline
                .points()
                .iter()
                .filter(|p| p.t_ms < first)
                .map(|p| SeriesPoint { t_ms: p.t_ms, bytes: 0.0, count: 0.0, collected: f64::NAN })
                .collect()
        } else {
            Vec::new()
        };
        out.extend_from_slice(series.points());
        out
    }

    /// Has any comparable point (after a full GC) arrived?
    /// Types of the (type, site) pairs in the latest `retained` record, largest first.
    pub fn latest_retained_sites(&self) -> Vec<String> {
        let mut present: Vec<(&RetainedSite, f64)> = self
            .retained
            .values()
            .filter(|s| s.present)
            .map(|s| (s, s.series.last().map_or(0.0, |p| p.bytes)))
            .collect();
        present.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.site.cmp(&b.0.site)));
        present.into_iter().map(|(s, _)| s.type_name.clone()).collect()
    }

    pub fn has_comparable_points(&self) -> bool {
        self.census_records > 0 || self.retained_records > 0
    }

    /// Makes room for one more type series; false if every series is present.
    pub(crate) fn room_for_type(&mut self) -> bool {
        make_room(&mut self.types, MAX_TYPE_SERIES, &mut self.types_evicted)
    }

    pub(crate) fn room_for_site(&mut self) -> bool {
        make_room(&mut self.retained, MAX_RETAINED_SERIES, &mut self.retained_evicted)
    }

    /// Approximate heap bytes held by the series (for the boundedness test and the report).
    pub fn approx_bytes(&self) -> usize {
        let point = std::mem::size_of::<SeriesPoint>();
        let sites: usize =
            self.retained.values().map(|s| s.series.len() * point + s.type_name.len() + s.site.len() + 128).sum();
        let types: usize = self.types.iter().map(|(k, s)| s.series.len() * point + k.len() + 96).sum();
        let totals = (self.live.len()
            + self.rss.len()
            + self.heap.len()
            + self.native_live.len()
            + self.retained_times.len()
            + self.gens.iter().map(Series::len).sum::<usize>())
            * point;
        sites + types + totals
    }
}

impl SoakData {
    /// Producer time of the latest `retained` record.
    pub(crate) fn live_retained_time(&self) -> Option<f64> {
        self.last_retained_t
    }

    pub(crate) fn set_retained_time(&mut self, t: f64) {
        self.last_retained_t = Some(t);
    }

    /// A (type, site)'s sampled survivors of the worker's latest full GC: its point in the
    /// latest `retained` record. Right after a full GC nothing unreachable is left, so unlike the
    /// summaries' estimate between full GCs it holds no garbage waiting for one. `None` before
    /// the first full GC, and when the latest record did not list the site (first seen since,
    /// or ranked out of a full record); 0 when it listed the site before and not now.
    pub fn after_latest_full_gc(&self, type_name: &str, site: &str) -> Option<&SeriesPoint> {
        let latest = self.last_retained_t?;
        let entry = self.retained.get(&(type_name.to_string(), site.to_string()))?;
        entry.series.last().filter(|p| p.t_ms == latest)
    }

    /// Remembers the agent's own statements about soak mode (PROTOCOL.md `status`).
    pub(crate) fn note_status(&mut self, status: &Status) {
        let message = &status.message;
        if message.starts_with("soak mode") && self.announced.is_none() {
            self.announced = Some(message.to_string());
        }
        // Given up for good, not only for one commanded census.
        if status.census_given_up() && self.census_unavailable.is_none() {
            self.census_unavailable = Some(message.to_string());
        }
    }
}

/// A series that may be evicted to make room for another.
trait Evictable {
    /// Listed in the latest record (never evicted).
    fn present(&self) -> bool;
    fn peak_bytes(&self) -> f64;
}

impl Evictable for TypeSeries {
    fn present(&self) -> bool {
        self.present
    }
    fn peak_bytes(&self) -> f64 {
        self.series.peak_bytes()
    }
}

impl Evictable for RetainedSite {
    fn present(&self) -> bool {
        self.present
    }
    fn peak_bytes(&self) -> f64 {
        self.series.peak_bytes()
    }
}

/// Makes room in `series` for one more entry when it holds `max`: evicts the smallest (by peak
/// bytes) of those absent from the latest record, counting it in `evicted`. False if every
/// series is present.
fn make_room<K: Clone + Eq + std::hash::Hash, V: Evictable>(
    series: &mut HashMap<K, V>,
    max: usize,
    evicted: &mut u64,
) -> bool {
    if series.len() < max {
        return true;
    }
    let victim = series
        .iter()
        .filter(|(_, s)| !s.present())
        .min_by(|a, b| a.1.peak_bytes().total_cmp(&b.1.peak_bytes()))
        .map(|(k, _)| k.clone());
    *evicted += 1;
    match victim {
        Some(k) => {
            series.remove(&k);
            true
        }
        None => false,
    }
}
