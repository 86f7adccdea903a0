//! Which retention path of a type grows. A type every part of a program allocates (`String`,
//! `Byte[]`) can leak through one owner long before the sampler meets the leaking call site;
//! but the agent's retention records count the type's instances per path, so comparing
//! successive records says which owner's share keeps rising: `static X.AuditTrail →
//! List<String> → String[] → String, +14 400 instances/h` — the owner to fix.
//!
//! Only finished paths count (a path cut short has no owner to name), and a path absent from a
//! record (ranked below the listed ones) is a missing point, not a zero. A series is growing
//! when its instances rise by Theil–Sen over at least four records with a one-sided
//! Mann–Kendall p below 0.05; the fastest such path is the one reported.

use serde::Serialize;

use crate::analysis::{Point, theil_sen, trend_p_value};
use crate::protocol::Retention;

/// Fewest records a path must appear in to be judged.
const MIN_POINTS: usize = 4;
const MAX_P: f64 = 0.05;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GrowingPath {
    /// The path as rendered (`static X.AuditTrail → … → System.String`).
    pub path: String,
    /// Instances gained per hour (Theil–Sen slope).
    pub per_hour: f64,
    /// Instances on it in the latest record.
    pub latest: u64,
    /// Records it was compared over, and their span.
    pub records: usize,
    pub span_ms: f64,
    pub p_value: f64,
}

/// The fastest-growing finished path of `type_name` over the `history` (oldest first).
pub fn growing_path<'a>(history: impl IntoIterator<Item = &'a Retention>, type_name: &str) -> Option<GrowingPath> {
    let mut series: Vec<(String, Vec<Point>)> = Vec::new();
    for r in history {
        let Some(t_ms) = r.t_ms.map(|t| t.0) else { continue };
        if r.type_entry(type_name).is_none() {
            continue;
        }
        for p in r.paths_for(type_name).filter(|p| p.finished()) {
            let path = p.render();
            let point = Point { t_ms, bytes: p.instances.map_or(0.0, |n| n.0) };
            match series.iter_mut().find(|(k, _)| *k == path) {
                Some((_, points)) => points.push(point),
                None => series.push((path, vec![point])),
            }
        }
    }
    let mut best: Option<GrowingPath> = None;
    for (path, points) in series {
        if points.len() < MIN_POINTS {
            continue;
        }
        let values: Vec<f64> = points.iter().map(|p| p.bytes).collect();
        let p_value = trend_p_value(&values);
        let Some(fit) = theil_sen(&points, None) else { continue };
        let per_hour = fit.slope * 3_600_000.0;
        let (first, last) = (points[0], points[points.len() - 1]);
        if p_value >= MAX_P || per_hour <= 0.0 || last.bytes <= first.bytes {
            continue;
        }
        if best.as_ref().is_none_or(|b| per_hour > b.per_hour) {
            best = Some(GrowingPath {
                path,
                per_hour,
                latest: last.bytes.max(0.0).round() as u64,
                records: points.len(),
                span_ms: last.t_ms - first.t_ms,
                p_value,
            });
        }
    }
    best
}

/// Between two records (a diff's two snapshots): the finished path of `type_name` whose
/// instance count rose most, with the rise (None when none rose).
pub fn grown_between(before: &Retention, after: &Retention, type_name: &str) -> Option<(String, i64)> {
    let count = |r: &Retention, path: &str| {
        r.paths_for(type_name)
            .filter(|p| p.finished())
            .find(|p| p.render() == path)
            .and_then(|p| p.instances)
            .map(|n| n.u64())
    };
    after
        .paths_for(type_name)
        .filter(|p| p.finished())
        .filter_map(|p| {
            let path = p.render();
            let now = p.instances.map_or(0, |n| n.u64()) as i64;
            let then = count(before, &path)? as i64;
            (now > then).then_some((path, now - then))
        })
        .max_by_key(|(_, rise)| *rise)
}

impl GrowingPath {
    /// `static X.AuditTrail → … → System.String, +14 400 instances/h`
    pub fn text(&self) -> String {
        format!("{}, +{} instances/h", self.path, crate::units::format_count(self.per_hour))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Num, RetentionPath, RetentionRoot, RetentionStep, RetentionType};

    fn record(t_s: f64, paths: &[(&str, f64)]) -> Retention {
        Retention {
            t_ms: Some(Num(t_s * 1000.0)),
            types: vec![RetentionType {
                type_name: "System.String".into(),
                instances: Some(Num(paths.iter().map(|p| p.1).sum())),
                paths: paths
                    .iter()
                    .map(|&(root, n)| RetentionPath {
                        root: RetentionRoot { kind: "static".into(), name: Some(root.into()), detail: None },
                        steps: vec![RetentionStep { type_name: "System.String".into(), field: None, repeated: false }],
                        instances: Some(Num(n)),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_owner_whose_share_keeps_rising_is_named_not_the_biggest() {
        // The cache is far bigger but flat (noisy); the audit trail gains 4 a second.
        let history: Vec<Retention> = (0..8)
            .map(|i| {
                let t = 60.0 * i as f64;
                let noise = [30.0, -20.0, 10.0, -40.0, 25.0, 0.0, -10.0, 15.0][i];
                record(t, &[("X.Cache", 100_000.0 + noise), ("X.AuditTrail", 500.0 + 4.0 * t)])
            })
            .collect();
        let g = growing_path(&history, "System.String").unwrap();
        assert!(g.path.starts_with("static X.AuditTrail"), "{g:?}");
        assert!((g.per_hour - 14_400.0).abs() < 1.0, "{g:?}");
        assert_eq!((g.records, g.latest), (8, 500 + 4 * 420));
        assert_eq!(g.text(), format!("{}, +14.4 k instances/h", g.path));
    }

    #[test]
    fn too_few_records_or_no_rise_name_nothing() {
        let few: Vec<Retention> = (0..3).map(|i| record(60.0 * i as f64, &[("X.A", 10.0 * i as f64)])).collect();
        assert_eq!(growing_path(&few, "System.String"), None);
        let flat: Vec<Retention> = (0..6).map(|i| record(60.0 * i as f64, &[("X.A", 100.0)])).collect();
        assert_eq!(growing_path(&flat, "System.String"), None);
    }

    #[test]
    fn between_two_snapshots_the_path_that_rose_most() {
        let a = record(0.0, &[("X.Cache", 1000.0), ("X.AuditTrail", 10.0)]);
        let b = record(600.0, &[("X.Cache", 990.0), ("X.AuditTrail", 2410.0)]);
        let (path, rise) = grown_between(&a, &b, "System.String").unwrap();
        assert!(path.starts_with("static X.AuditTrail"), "{path}");
        assert_eq!(rise, 2400);
        assert_eq!(grown_between(&b, &a, "System.String").map(|g| g.0.contains("Cache")), Some(true));
    }
}
