//! `leakscope diff A [B]`: two heap censuses compared type by type, growth first, each growing
//! type joined with the call sites whose sampled allocations survive in the later one.
//!
//! A census is exact (every object on the heap right after a full GC), so a difference is real
//! change, not sampling error; what remains is the application's own churn (objects in flight at
//! the moment of the GC). A type is called growing only when it grew by more than that noise
//! floor: [`NOISE_FLOOR_BYTES`] and [`NOISE_FLOOR_SHARE`] of its earlier size.

use crate::cli::DiffArgs;
use crate::commands::print_stdout;
use crate::error::{CliError, CliResult};
use crate::retention_view::KeptAliveBy;
use crate::snapshot_file::{Point, load, num};
use crate::units::{format_bytes, format_count, format_duration};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

/// Growth below this many bytes is churn, whatever the share.
pub const NOISE_FLOOR_BYTES: f64 = 256e3;

/// Growth below this share of the type's earlier bytes is churn.
pub const NOISE_FLOOR_SHARE: f64 = 0.05;

/// Call sites shown under each growing type.
const SITES_PER_TYPE: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Growing,
    Shrinking,
    Steady,
    New,
    Gone,
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteShare {
    pub site: String,
    pub location: Option<String>,
    /// Estimated bytes of this site's sampled survivors in the later census.
    pub bytes: f64,
    pub objects: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TypeDiff {
    pub type_name: String,
    pub change: Change,
    pub count_a: Option<u64>,
    pub count_b: Option<u64>,
    pub bytes_a: Option<u64>,
    pub bytes_b: Option<u64>,
    pub delta_count: i64,
    pub delta_bytes: i64,
    /// Only when both points come from one process: bytes per hour.
    pub bytes_per_hour: Option<f64>,
    pub sites: Vec<SiteShare>,
    /// What keeps it alive in B, when B asked (`snapshot --paths`, `LEAKSCOPE_RETENTION`).
    pub paths: Vec<KeptAliveBy>,
    /// When both snapshots asked: the path whose instances rose most from A to B (the owner
    /// to fix, call site sampled or not), and by how many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub growing_path: Option<GrownPath>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GrownPath {
    pub path: String,
    pub instances: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PointInfo {
    pub file: String,
    pub pid: u32,
    pub gc: Option<u64>,
    pub unix_ms: Option<u64>,
    pub objects: u64,
    pub bytes: u64,
    pub pause_ms: Option<f64>,
}

impl From<&Point> for PointInfo {
    fn from(p: &Point) -> PointInfo {
        PointInfo {
            file: p.file.display().to_string(),
            pid: p.pid,
            gc: p.census.gc,
            unix_ms: p.census.unix_ms.map(|n| n.u64()),
            objects: num(p.census.objects),
            bytes: num(p.census.bytes),
            pause_ms: p.census.pause_ms.map(|n| n.0),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub a: PointInfo,
    pub b: PointInfo,
    pub seconds_apart: Option<f64>,
    pub same_process: bool,
    pub growing: usize,
    pub shrinking: usize,
    pub types: Vec<TypeDiff>,
}

/// Compares two censuses: every type listed in either, growing ones first (largest growth
/// first), then the rest by how much they changed.
pub fn compare(a: &Point, b: &Point) -> Diff {
    let (ta, tb) = (a.types(), b.types());
    // Agents attached twice start twice: the same pid running the same command line is the
    // same process (a reused pid would also need the same command line, within the gap).
    let same_process = a.pid == b.pid && (a.file == b.file || (a.cmdline.is_some() && a.cmdline == b.cmdline));
    let seconds_apart = match (a.census.unix_ms, b.census.unix_ms) {
        (Some(x), Some(y)) if y.0 > x.0 => Some((y.0 - x.0) / 1e3),
        _ => None,
    };
    let mut names: Vec<&str> = ta.keys().chain(tb.keys()).copied().collect();
    names.sort_unstable();
    names.dedup();
    let mut types: Vec<TypeDiff> = names
        .into_iter()
        .map(|name| {
            let side = |t: &HashMap<&str, (u64, u64)>, complete: bool| match t.get(name) {
                Some(&v) => Some(v),
                None if complete => Some((0, 0)),
                None => None,
            };
            let (sa, sb) = (side(&ta, a.complete()), side(&tb, b.complete()));
            let (ca, ba) = sa.unzip();
            let (cb, bb) = sb.unzip();
            let delta_count = cb.unwrap_or(0) as i64 - ca.unwrap_or(0) as i64;
            let delta_bytes = bb.unwrap_or(0) as i64 - ba.unwrap_or(0) as i64;
            let change = classify(ba, bb);
            let bytes_per_hour = match (same_process, seconds_apart, sa, sb) {
                (true, Some(s), Some(_), Some(_)) => Some(delta_bytes as f64 / s * 3600.0),
                _ => None,
            };
            let growing = matches!(change, Change::Growing | Change::New);
            let sites = if growing { sites_of(b, name) } else { Vec::new() };
            let paths = if growing { paths_of(b, name) } else { Vec::new() };
            let growing_path = match (&a.retention, &b.retention) {
                (Some(ra), Some(rb)) if growing => crate::path_growth::grown_between(ra, rb, name)
                    .map(|(path, instances)| GrownPath { path, instances }),
                _ => None,
            };
            TypeDiff {
                type_name: name.to_string(),
                change,
                count_a: ca,
                count_b: cb,
                bytes_a: ba,
                bytes_b: bb,
                delta_count,
                delta_bytes,
                bytes_per_hour,
                sites,
                paths,
                growing_path,
            }
        })
        .collect();
    let rank = |t: &TypeDiff| match t.change {
        Change::Growing | Change::New => 0,
        _ => 1,
    };
    types.sort_by(|x, y| {
        rank(x)
            .cmp(&rank(y))
            .then_with(|| {
                if rank(x) == 0 {
                    y.delta_bytes.cmp(&x.delta_bytes)
                } else {
                    y.delta_bytes.abs().cmp(&x.delta_bytes.abs())
                }
            })
            .then_with(|| y.bytes_b.unwrap_or(0).cmp(&x.bytes_b.unwrap_or(0)))
            .then_with(|| x.type_name.cmp(&y.type_name))
    });
    Diff {
        a: a.into(),
        b: b.into(),
        seconds_apart,
        same_process,
        growing: types.iter().filter(|t| matches!(t.change, Change::Growing | Change::New)).count(),
        shrinking: types.iter().filter(|t| matches!(t.change, Change::Shrinking | Change::Gone)).count(),
        types,
    }
}

/// Growing or shrinking only beyond the noise floor; a side that is unknown (the type fell into
/// `other` there) makes the type steady rather than guessed.
fn classify(a: Option<u64>, b: Option<u64>) -> Change {
    let (Some(a), Some(b)) = (a, b) else { return Change::Steady };
    let floor = NOISE_FLOOR_BYTES.max(a as f64 * NOISE_FLOOR_SHARE);
    let delta = b as f64 - a as f64;
    match () {
        _ if a == 0 && delta > floor => Change::New,
        _ if b == 0 && -delta > floor => Change::Gone,
        _ if delta > floor => Change::Growing,
        _ if -delta > floor => Change::Shrinking,
        _ => Change::Steady,
    }
}

fn paths_of(point: &Point, type_name: &str) -> Vec<KeptAliveBy> {
    let Some(r) = &point.retention else { return Vec::new() };
    KeptAliveBy::of_type(r, type_name, SITES_PER_TYPE)
}

fn sites_of(point: &Point, type_name: &str) -> Vec<SiteShare> {
    let mut sites: Vec<SiteShare> = point
        .sites
        .iter()
        .filter(|s| s.type_name == type_name)
        .map(|s| SiteShare {
            site: s.site.clone(),
            location: s.location.clone(),
            bytes: s.bytes.map(|n| n.0).unwrap_or(0.0),
            objects: s.objects.map(|n| n.0).unwrap_or(0.0),
        })
        .collect();
    sites.sort_by(|x, y| y.bytes.total_cmp(&x.bytes).then_with(|| x.site.cmp(&y.site)));
    sites.truncate(SITES_PER_TYPE);
    sites
}

pub fn diff(args: DiffArgs) -> CliResult<i32> {
    let points_a = load(&args.a)?;
    let (a, b) = match &args.b {
        Some(path) => {
            let points_b = load(path)?;
            (points_a.last().cloned(), points_b.last().cloned())
        }
        None if points_a.len() < 2 => {
            return Err(CliError::usage(format!("{} has one census; comparing needs two", args.a.display()))
                .hint("give a second snapshot or recording: `leakscope diff A B`"));
        }
        None => (points_a.first().cloned(), points_a.last().cloned()),
    };
    let (Some(a), Some(b)) = (a, b) else { unreachable!("load returns at least one census") };
    let d = compare(&a, &b);
    if args.json {
        let text = serde_json::to_string_pretty(&d).map_err(|e| CliError::new(format!("cannot encode JSON: {e}")))?;
        print_stdout(&format!("{text}\n"));
    } else {
        print_stdout(&render(&d, &a, &b, args.top));
    }
    Ok(0)
}

fn signed_bytes(delta: i64) -> String {
    if delta > 0 {
        format!("+{}", format_bytes(delta as f64))
    } else if delta < 0 {
        format_bytes(delta as f64)
    } else {
        "0".to_string()
    }
}

fn signed_count(delta: i64) -> String {
    let sign = if delta > 0 {
        "+"
    } else if delta < 0 {
        "-"
    } else {
        ""
    };
    format!("{sign}{}", format_count(delta.unsigned_abs() as f64))
}

fn opt_count(n: Option<u64>) -> String {
    n.map(|n| format_count(n as f64)).unwrap_or_else(|| "?".into())
}

fn opt_bytes(n: Option<u64>) -> String {
    n.map(|n| format_bytes(n as f64)).unwrap_or_else(|| "?".into())
}

pub fn render(d: &Diff, a: &Point, b: &Point, top: usize) -> String {
    let mut out = String::new();
    out.push_str(&format!("A: {}\nB: {}\n", a.describe(), b.describe()));
    if let Some(s) = d.seconds_apart {
        out.push_str(&format!("{} apart", format_duration(Duration::from_secs_f64(s))));
        out.push_str(if d.same_process { ", same process\n" } else { "\n" });
    }
    out.push_str(&format!(
        "heap: {} objects / {} → {} objects / {} ({})\n\n",
        format_count(d.a.objects as f64),
        format_bytes(d.a.bytes as f64),
        format_count(d.b.objects as f64),
        format_bytes(d.b.bytes as f64),
        signed_bytes(d.b.bytes as i64 - d.a.bytes as i64)
    ));
    let shown: Vec<&TypeDiff> = d.types.iter().take(top).collect();
    let width = shown.iter().map(|t| t.type_name.chars().count()).max().unwrap_or(4).clamp(4, 70);
    out.push_str(&format!(
        "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>10}  {}\n",
        "TYPE", "COUNT A", "COUNT B", "Δ COUNT", "BYTES A", "BYTES B", "Δ BYTES", "CHANGE"
    ));
    for t in &shown {
        let name: String = if t.type_name.chars().count() > width {
            let keep: String = t.type_name.chars().take(width - 1).collect();
            format!("{keep}…")
        } else {
            t.type_name.clone()
        };
        let mut change = format!("{:?}", t.change).to_lowercase();
        if let Some(rate) = t.bytes_per_hour.filter(|_| matches!(t.change, Change::Growing | Change::New)) {
            change.push_str(&format!(" ({}/h)", signed_bytes(rate as i64)));
        }
        out.push_str(&format!(
            "{name:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>10}  {change}\n",
            opt_count(t.count_a),
            opt_count(t.count_b),
            signed_count(t.delta_count),
            opt_bytes(t.bytes_a),
            opt_bytes(t.bytes_b),
            signed_bytes(t.delta_bytes),
        ));
        for s in &t.sites {
            let at = s.location.as_deref().map(|l| format!(" ({l})")).unwrap_or_default();
            out.push_str(&format!("    ↳ surviving allocations from {}{at}: ~{}\n", s.site, format_bytes(s.bytes)));
        }
        if let Some(g) = &t.growing_path {
            out.push_str(&format!(
                "    ↳ owner to fix: {}, +{} instances from A to B\n",
                g.path,
                format_count(g.instances as f64)
            ));
        }
        for p in &t.paths {
            out.push_str(&format!("    ↳ kept alive by {}\n", p.line()));
        }
        if matches!(t.change, Change::Growing | Change::New) && t.sites.is_empty() {
            out.push_str(
                "    ↳ no sampled survivors of this type in B: sample longer (`leakscope snapshot --sample 30s`)\n",
            );
        }
    }
    if d.types.len() > shown.len() {
        out.push_str(&format!("… {} more types (--top N)\n", d.types.len() - shown.len()));
    }
    out.push_str(&format!(
        "\n{} growing, {} shrinking beyond the noise floor (max of {} and {:.0}% of the earlier size)\n",
        d.growing,
        d.shrinking,
        format_bytes(NOISE_FLOOR_BYTES),
        NOISE_FLOOR_SHARE * 100.0
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{self, Census};
    use crate::protocol::{CensusType, Num};
    use std::path::PathBuf;

    fn point(types: &[(&str, u64, u64)], unix_ms: f64) -> Point {
        Point {
            file: PathBuf::from("r.ndjson"),
            pid: 7,
            cmdline: None,
            census: Census {
                unix_ms: Some(Num(unix_ms)),
                types: types
                    .iter()
                    .map(|&(n, c, b)| CensusType {
                        type_name: n.into(),
                        count: Some(Num(c as f64)),
                        bytes: Some(Num(b as f64)),
                    })
                    .collect(),
                ..Census::default()
            },
            sites: Vec::new(),
            retention: None,
            peek: None,
        }
    }

    #[test]
    fn growth_beyond_the_noise_floor_comes_first() {
        let a = point(&[("Big", 1000, 100_000_000), ("Leak", 10, 1_000_000), ("Churn", 5, 300_000)], 0.0);
        let b = point(
            &[("Big", 1010, 101_000_000), ("Leak", 100, 10_000_000), ("Churn", 6, 400_000), ("Fresh", 9, 900_000)],
            3_600_000.0,
        );
        let d = compare(&a, &b);
        let order: Vec<(&str, Change)> = d.types.iter().map(|t| (t.type_name.as_str(), t.change)).collect();
        assert_eq!(
            order,
            [("Leak", Change::Growing), ("Fresh", Change::New), ("Big", Change::Steady), ("Churn", Change::Steady)]
        );
        assert_eq!(d.types[0].bytes_per_hour, Some(9_000_000.0));
        assert_eq!(d.growing, 2);
    }

    #[test]
    fn a_type_folded_into_other_is_unknown_not_zero() {
        let mut a = point(&[("Leak", 10, 1_000_000)], 0.0);
        a.census.other =
            Some(protocol::CensusOther { types: Some(Num(3.0)), count: Some(Num(5.0)), bytes: Some(Num(50.0)) });
        let b = point(&[("Leak", 10, 1_000_000), ("Rare", 1, 5_000_000)], 1.0);
        let d = compare(&a, &b);
        let rare = d.types.iter().find(|t| t.type_name == "Rare").unwrap();
        assert_eq!((rare.change, rare.count_a), (Change::Steady, None));
    }
}
