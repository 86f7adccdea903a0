//! Picking the series to judge: one [`Candidate`] per managed type (census, or sampled sites
//! summed by type), call site, native total or site, and process total a rule asks for; and the
//! series of an already judged subject, for re-judging prefixes.

use super::context::Context;
use super::model::{DEFAULT_WARMUP_FRACTION, Subject, SubjectKind};
use super::rules::{Scope, Target};
use crate::analysis::Point;
use crate::protocol::Source;
use crate::session_info::SoakSettings;
use crate::store::soak_series;
use crate::store::{Producer, SeriesPoint, Stack, Store};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// A series to judge, before judging.
pub(super) struct Candidate {
    pub(super) kind: SubjectKind,
    pub(super) pid: u32,
    pub(super) type_name: Option<String>,
    pub(super) site: Option<String>,
    pub(super) location: Option<String>,
    pub(super) frames: Option<Arc<Stack>>,
    pub(super) source: &'static str,
    pub(super) exact: bool,
    pub(super) points: Vec<Point>,
    pub(super) live_bytes: f64,
    pub(super) live_count: f64,
    pub(super) peak_bytes: f64,
    /// Sampled subjects: live samples behind the latest point (for the sampling error).
    pub(super) samples: Option<f64>,
}

impl Candidate {
    pub(super) fn target(&self) -> Target<'_> {
        let t = self.type_name.as_deref().unwrap_or("");
        let s = self.site.as_deref().unwrap_or("");
        match self.kind {
            SubjectKind::Type => Target::Type(t),
            SubjectKind::Site => Target::Site(t, s),
            SubjectKind::Native => Target::Native,
            SubjectKind::NativeSite => Target::NativeSite(s),
            SubjectKind::Managed => Target::Managed,
            SubjectKind::Heap => Target::Heap,
            SubjectKind::Rss => Target::Rss,
        }
    }

    pub(super) fn id(&self) -> String {
        let t = self.type_name.as_deref().unwrap_or("");
        let s = self.site.as_deref().unwrap_or("");
        match self.kind {
            SubjectKind::Type => format!("type:{t}"),
            SubjectKind::Site => format!("site:{t} @ {s}"),
            SubjectKind::Native => "native".to_string(),
            SubjectKind::NativeSite => format!("native:{s}"),
            SubjectKind::Managed => "managed".to_string(),
            SubjectKind::Heap => "heap".to_string(),
            SubjectKind::Rss => "rss".to_string(),
        }
    }

    pub(super) fn label(&self) -> String {
        let t = self.type_name.as_deref().unwrap_or("");
        let s = self.site.as_deref().unwrap_or("");
        let mut l = match self.kind {
            SubjectKind::Type => t.to_string(),
            SubjectKind::Site => format!("{t} @ {s}"),
            SubjectKind::Native => "native memory".to_string(),
            SubjectKind::NativeSite => format!("native @ {s}"),
            SubjectKind::Managed => "live managed data".to_string(),
            SubjectKind::Heap => "managed heap".to_string(),
            SubjectKind::Rss => "RSS".to_string(),
        };
        if let Some(loc) = &self.location {
            let _ = write!(l, " ({loc})");
        }
        l
    }
}

pub fn to_points(points: &[SeriesPoint]) -> Vec<Point> {
    points.iter().map(|p| Point { t_ms: p.t_ms, bytes: p.bytes }).collect()
}

/// The latest producer time of any agent or shim, ms.
pub(super) fn data_span_ms(store: &Store) -> f64 {
    store.producers().filter_map(|p| p.last_t_ms).max().unwrap_or(0) as f64
}

/// Where the warm-up ends, in producer time.
pub fn warmup_end_ms(settings: &SoakSettings, data_ms: f64) -> f64 {
    match settings.warmup_ms {
        Some(w) => w as f64,
        None => DEFAULT_WARMUP_FRACTION * (settings.duration_ms as f64).min(data_ms.max(0.0)),
    }
}

pub(super) fn candidates(store: &Store, ctx: &Context) -> Vec<Candidate> {
    let mut out = Vec::new();
    let wants = |scope: fn(&Scope) -> bool| ctx.rules.iter().any(|r| scope(&r.scope));
    for p in store.producers() {
        let pid = p.key.pid;
        match p.key.source {
            Source::Agent => agent_candidates(p, &mut out),
            Source::Shim => shim_candidates(store, p, &mut out),
        }
        let soak = &p.soak;
        let totals: [(SubjectKind, &soak_series::Series, bool, bool); 3] = [
            (SubjectKind::Managed, &soak.live, wants(|s| *s == Scope::Managed), true),
            (SubjectKind::Heap, &soak.heap, wants(|s| *s == Scope::Heap), false),
            (SubjectKind::Rss, &soak.rss, wants(|s| *s == Scope::Rss), false),
        ];
        for (kind, series, wanted, exact) in totals {
            // RSS comes from the agent's summaries when there is an agent, else from the shim.
            let duplicate = kind == SubjectKind::Rss
                && p.key.source == Source::Shim
                && store.producers().any(|a| a.key.pid == pid && a.key.source == Source::Agent);
            if wanted && !series.is_empty() && !duplicate {
                out.push(total_candidate(kind, pid, series, exact));
            }
        }
    }
    out
}

fn total_candidate(kind: SubjectKind, pid: u32, series: &soak_series::Series, exact: bool) -> Candidate {
    let last = series.last().copied().unwrap_or(SeriesPoint { t_ms: 0.0, bytes: 0.0, count: 0.0, collected: f64::NAN });
    Candidate {
        kind,
        pid,
        type_name: None,
        site: None,
        location: None,
        frames: None,
        source: if kind == SubjectKind::Managed { "census" } else { "summary" },
        exact,
        points: to_points(series.points()),
        live_bytes: last.bytes,
        live_count: last.count,
        peak_bytes: series.peak_bytes(),
        samples: None,
    }
}

fn agent_candidates(p: &Producer, out: &mut Vec<Candidate>) {
    let pid = p.key.pid;
    let soak = &p.soak;
    if soak.census_records > 0 {
        for (name, ts) in &soak.types {
            let last = ts.series.last().copied();
            out.push(Candidate {
                kind: SubjectKind::Type,
                pid,
                type_name: Some(name.clone()),
                site: None,
                location: None,
                frames: None,
                source: "census",
                exact: true,
                points: to_points(&soak_series::SoakData::with_leading_zeros(
                    &ts.series,
                    &soak.live,
                    soak.censuses_complete,
                )),
                live_bytes: last.map(|l| l.bytes).unwrap_or(0.0),
                live_count: last.map(|l| l.count).unwrap_or(0.0),
                peak_bytes: ts.series.peak_bytes(),
                samples: None,
            });
        }
    } else if soak.retained_records > 0 {
        // No census on this runtime: sum the sampled sites by type, point by point.
        let mut by_type: HashMap<&str, Vec<&soak_series::RetainedSite>> = HashMap::new();
        for s in soak.retained.values() {
            by_type.entry(s.type_name.as_str()).or_default().push(s);
        }
        for (name, sites) in by_type {
            let mut sums: std::collections::BTreeMap<u64, (f64, f64)> = Default::default();
            for s in &sites {
                for pt in s.series.points() {
                    let e = sums.entry(pt.t_ms.to_bits()).or_insert((0.0, 0.0));
                    e.0 += pt.bytes;
                    e.1 += pt.count;
                }
            }
            let mut points: Vec<(f64, f64, f64)> =
                sums.into_iter().map(|(t, (b, c))| (f64::from_bits(t), b, c)).collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let last = points.last().copied().unwrap_or((0.0, 0.0, 0.0));
            out.push(Candidate {
                kind: SubjectKind::Type,
                pid,
                type_name: Some(name.to_string()),
                site: None,
                location: None,
                frames: None,
                source: "retained_by_type",
                exact: false,
                peak_bytes: points.iter().map(|p| p.1).fold(0.0, f64::max),
                points: points.iter().map(|&(t_ms, bytes, _)| Point { t_ms, bytes }).collect(),
                live_bytes: last.1,
                live_count: last.2,
                samples: Some(sites.iter().map(|s| s.samples).sum()),
            });
        }
    }
    for s in soak.retained.values() {
        let last = s.series.last().copied();
        out.push(Candidate {
            kind: SubjectKind::Site,
            pid,
            type_name: Some(s.type_name.clone()),
            site: Some(s.site.clone()),
            location: s.location.clone(),
            frames: s.frames.clone().or_else(|| s.stack_id.and_then(|id| p.stack(id).cloned())),
            source: "retained",
            exact: false,
            points: to_points(&soak_series::SoakData::with_leading_zeros(&s.series, &soak.retained_times, true)),
            live_bytes: last.map(|l| l.bytes).unwrap_or(0.0),
            live_count: last.map(|l| l.count).unwrap_or(0.0),
            peak_bytes: s.series.peak_bytes(),
            samples: Some(s.samples),
        });
    }
}

fn shim_candidates(_store: &Store, p: &Producer, out: &mut Vec<Candidate>) {
    let pid = p.key.pid;
    let soak = &p.soak;
    if !soak.native_live.is_empty() {
        let last = soak.native_live.last().copied();
        // The shim's default totals are estimated from its samples: judged as a sampled series.
        let sampled = p.native.as_ref().filter(|n| n.sampled);
        out.push(Candidate {
            kind: SubjectKind::Native,
            pid,
            type_name: None,
            site: None,
            location: None,
            frames: None,
            source: if sampled.is_some() { "native_sampled" } else { "native" },
            exact: sampled.is_none(),
            points: to_points(soak.native_live.points()),
            live_bytes: last.map(|l| l.bytes).unwrap_or(0.0),
            live_count: last.map(|l| l.count).unwrap_or(0.0),
            peak_bytes: soak.native_live.peak_bytes(),
            samples: sampled.map(|n| n.live_samples.unwrap_or(0) as f64),
        });
    }
    for s in p.sites() {
        out.push(Candidate {
            kind: SubjectKind::NativeSite,
            pid,
            type_name: None,
            site: Some(s.site.clone()),
            location: s.location.clone(),
            frames: p.frames_of(s),
            source: "native_sampled",
            exact: false,
            points: s.analysis_points(),
            live_bytes: s.latest.bytes,
            live_count: s.latest.count,
            peak_bytes: s.peak_bytes,
            samples: Some(s.latest.samples),
        });
    }
}

/// The series of a subject, for re-judging prefixes.
pub fn subject_points(store: &Store, s: &Subject) -> Vec<Point> {
    let Some(p) = store.producers().find(|p| {
        p.key.pid == s.pid
            && match s.kind {
                SubjectKind::Native | SubjectKind::NativeSite => p.key.source == Source::Shim,
                SubjectKind::Rss => true,
                _ => p.key.source == Source::Agent,
            }
    }) else {
        return Vec::new();
    };
    let soak = &p.soak;
    match s.kind {
        SubjectKind::Type => match (&s.type_name, s.exact) {
            (Some(t), true) => soak
                .types
                .get(t)
                .map(|ts| {
                    to_points(&soak_series::SoakData::with_leading_zeros(
                        &ts.series,
                        &soak.live,
                        soak.censuses_complete,
                    ))
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        },
        SubjectKind::Site => match (&s.type_name, &s.site) {
            (Some(t), Some(site)) => soak
                .retained
                .get(&(t.clone(), site.clone()))
                .map(|r| to_points(&soak_series::SoakData::with_leading_zeros(&r.series, &soak.retained_times, true)))
                .unwrap_or_default(),
            _ => Vec::new(),
        },
        SubjectKind::Native => to_points(soak.native_live.points()),
        SubjectKind::NativeSite => {
            p.sites().find(|x| Some(&x.site) == s.site.as_ref()).map(|x| x.analysis_points()).unwrap_or_default()
        }
        SubjectKind::Managed => to_points(soak.live.points()),
        SubjectKind::Heap => to_points(soak.heap.points()),
        SubjectKind::Rss => to_points(soak.rss.points()),
    }
}
