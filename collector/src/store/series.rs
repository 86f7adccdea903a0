//! One site's bounded time series and what it is made of: call stacks, points, the latest
//! counters, and compaction (older points merged pairwise so a series stays bounded).

use crate::analysis::Point;
use crate::budget::Charge;
use std::sync::Arc;

/// Points kept per series before the older two thirds are merged pairwise. At a 5 s interval
/// this is 40 minutes at full resolution, then progressively coarser history.
pub const MAX_SERIES_POINTS: usize = 480;

/// A live series at its largest: its points' capacity, then compaction keeps it there.
pub const SERIES_BYTES: usize = (MAX_SERIES_POINTS.next_power_of_two()) * std::mem::size_of::<SeriesPoint>();

/// A resolved call stack, innermost first, with `File:line` per frame where known.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stack {
    pub frames: Vec<String>,
    pub lines: Vec<Option<String>>,
    /// Held by the producer's table and by the series naming it; given back with the last one.
    pub charge: Charge,
}

impl Stack {
    pub fn line(&self, i: usize) -> Option<&str> {
        self.lines.get(i).and_then(|l| l.as_deref())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesPoint {
    pub t_ms: f64,
    pub bytes: f64,
    /// Objects (managed) or allocations (native).
    pub count: f64,
    /// Managed: the site's samples collected so far (cumulative; NaN when the agent did not say).
    pub collected: f64,
}

/// What a site looked like in the latest record that listed it.
#[derive(Debug, Clone, Default)]
pub struct SiteLatest {
    pub bytes: f64,
    pub count: f64,
    pub samples: f64,
    pub age_gcs: Option<f64>,
    pub gens: Vec<u64>,
    /// Managed: samples collected so far (cumulative), when the agent says.
    pub collected: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct SiteSeries {
    /// Managed type; `None` for native sites.
    pub type_name: Option<String>,
    pub site: String,
    pub stack_id: Option<u64>,
    pub frames: Option<Arc<Stack>>,
    /// `File:line` of the call site, when the producer knows it.
    pub location: Option<String>,
    points: Vec<SeriesPoint>,
    pub peak_bytes: f64,
    pub latest: SiteLatest,
    /// Listed in the most recent record of its producer.
    pub present: bool,
    pub(super) _charge: Charge,
}

impl SiteSeries {
    pub(super) fn new(type_name: Option<String>, site: String) -> Self {
        SiteSeries {
            type_name,
            site,
            stack_id: None,
            frames: None,
            location: None,
            points: Vec::new(),
            peak_bytes: 0.0,
            latest: SiteLatest::default(),
            present: false,
            _charge: Charge::default(),
        }
    }

    pub fn points(&self) -> &[SeriesPoint] {
        &self.points
    }

    pub fn analysis_points(&self) -> Vec<Point> {
        self.points.iter().map(|p| Point { t_ms: p.t_ms, bytes: p.bytes }).collect()
    }

    /// `Type @ site` for managed sites, the site alone for native ones.
    pub fn label(&self) -> String {
        site_label(self.type_name.as_deref(), &self.site, self.location.as_deref())
    }

    pub(super) fn push(&mut self, p: SeriesPoint) {
        if let Some(last) = self.points.last() {
            if p.t_ms <= last.t_ms {
                return;
            }
        }
        self.peak_bytes = self.peak_bytes.max(p.bytes);
        self.points.push(p);
        if self.points.len() >= MAX_SERIES_POINTS {
            compact(&mut self.points);
        }
    }
}

/// `Type @ Ns.Class.Method (File.cs:42)`; native sites have no type and carry their module.
pub fn site_label(type_name: Option<&str>, site: &str, location: Option<&str>) -> String {
    let mut label = match type_name {
        Some(t) => format!("{t} @ {site}"),
        None => site.to_string(),
    };
    if let Some(loc) = location {
        label.push_str(&format!(" ({loc})"));
    }
    label
}

/// Merges the oldest two thirds pairwise (averaging), keeping recent points at full resolution.
pub(crate) fn compact(points: &mut Vec<SeriesPoint>) {
    let old = points.len() * 2 / 3;
    let old = old - old % 2;
    let merged: Vec<SeriesPoint> = points[..old]
        .chunks(2)
        .map(|pair| {
            let n = pair.len() as f64;
            SeriesPoint {
                t_ms: pair.iter().map(|p| p.t_ms).sum::<f64>() / n,
                bytes: pair.iter().map(|p| p.bytes).sum::<f64>() / n,
                count: pair.iter().map(|p| p.count).sum::<f64>() / n,
                collected: pair.iter().map(|p| p.collected).sum::<f64>() / n,
            }
        })
        .collect();
    points.splice(..old, merged);
}
