//! Whether a `run`/`listen`/`tail` report had the data to say "no leak suspect".
//!
//! A site's verdict needs [`Thresholds::min_points`] summaries after its warm-up (the first
//! [`Thresholds::warmup_fraction`] of its own series). A short recording has none with a
//! verdict: the summary then says "not enough data to judge yet", how much more would do, and
//! never "no leak suspect", which reads as a clean bill of health.

use super::model::{DataSufficiency, ProcessReport, SiteReport};
use crate::analysis::{LiveVerdict, Thresholds};
use crate::units::{format_bytes, format_duration};
use std::time::Duration;

/// `None` when no producer sent anything (the report says so on its own).
pub fn assess(processes: &[ProcessReport], interval_ms: Option<u64>, th: &Thresholds) -> Option<DataSufficiency> {
    if !processes.iter().any(|p| p.agent.is_some() || p.shim.is_some()) {
        return None;
    }
    let sites: Vec<&SiteReport> =
        processes.iter().flat_map(|p| p.managed_sites.iter().chain(p.native_sites.iter())).collect();
    let waiting = |s: &&&SiteReport| s.growth.verdict == LiveVerdict::InsufficientData;
    let judged = sites.iter().filter(|s| !waiting(s)).count();
    let material: Vec<&&SiteReport> =
        sites.iter().filter(waiting).filter(|s| s.peak_bytes as f64 > th.min_growth_bytes).collect();
    let enough = judged > 0 && material.is_empty();
    let interval = interval_ms
        .or_else(|| processes.iter().find_map(|p| p.agent.as_ref().and_then(|a| a.interval_ms)))
        .unwrap_or(5000)
        .max(1) as f64;
    let span = processes
        .iter()
        .flat_map(|p| [&p.agent, &p.shim])
        .filter_map(|r| r.as_ref().map(|r| r.duration_ms))
        .max()
        .unwrap_or(0) as f64;
    let needed = th.min_points.max(3);
    let points = sites.iter().map(|s| s.growth.points).max().unwrap_or(0);
    // The sites that matter most for "more": the waiting ones with material memory, else all.
    let fewest = if material.is_empty() { points } else { material.iter().map(|s| s.growth.points).min().unwrap_or(0) };
    // A series of n points at `interval` keeps 1 − warm-up of them: n points after warm-up take
    // about (n − 1) / (1 − warm-up) intervals.
    let per_point = interval / (1.0 - th.warmup_fraction).max(0.05);
    let more_points = needed.saturating_sub(fewest);
    let more_ms = if enough { 0.0 } else { (more_points.max(1) as f64 * per_point).max(interval) };
    let suggested = crate::soak::plan::round_up_duration(Duration::from_millis((span + more_ms + interval) as u64));
    Some(DataSufficiency {
        enough,
        sites_judged: judged,
        sites_waiting: material.len(),
        bytes_waiting: material.iter().map(|s| s.live_bytes).sum(),
        points_after_warmup: points,
        points_needed: needed,
        full_gcs: processes.iter().filter_map(|p| p.gc.as_ref()).filter_map(|g| g.count.get(2).map(|n| n.u64())).sum(),
        more_points,
        more_ms: more_ms as u64,
        suggested_duration_ms: suggested.as_millis() as u64,
    })
}

/// The summary's verdict line when nothing was found: "No leak suspect" only with the data
/// to say it. `mode`: `run`, `listen`, `tail`, … (what to suggest: `--duration` or a longer
/// recording).
pub fn verdict_line(s: &DataSufficiency, mode: &str) -> String {
    if s.enough {
        return "No leak suspect: no site's surviving memory grew both significantly and materially.".to_string();
    }
    let longer = match mode {
        "tail" | "report" => {
            format!("let the worker write for about {} more", format_duration(Duration::from_millis(s.more_ms)))
        }
        _ => format!(
            "record longer, e.g. --duration {}",
            format_duration(Duration::from_millis(s.suggested_duration_ms))
        ),
    };
    let gcs = format!("{} full GC{} seen", s.full_gcs, if s.full_gcs == 1 { "" } else { "s" });
    if s.sites_judged == 0 {
        format!(
            "Not enough data to judge yet: {gcs}, {} point{} after the warm-up where a verdict needs {}; about {} more ({}) would do: {longer}.",
            s.points_after_warmup,
            if s.points_after_warmup == 1 { "" } else { "s" },
            s.points_needed,
            s.more_points.max(1),
            format_duration(Duration::from_millis(s.more_ms))
        )
    } else {
        format!(
            "Not enough data to judge every site yet: {} site{} holding {} {} too few points for a verdict ({gcs}; about {} more needed); the {} judged show no growth: {longer}.",
            s.sites_waiting,
            if s.sites_waiting == 1 { "" } else { "s" },
            format_bytes(s.bytes_waiting as f64),
            if s.sites_waiting == 1 { "has" } else { "have" },
            format_duration(Duration::from_millis(s.more_ms)),
            s.sites_judged
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::build_with_soak;
    use crate::session_info::SessionInfo;
    use crate::store::Store;

    /// An agent reporting every 5 s for `summaries` summaries: one site leaking 1 MB per
    /// summary (100 kB per sample, AllocationSampled's quantum) and one small steady one; a full
    /// GC every other summary.
    fn recording(summaries: u64) -> Store {
        let mut store = Store::new();
        store.ingest_line(br#"{"v":1,"type":"hello","source":"agent","pid":3,"interval_ms":5000,"runtime":"10.0.12","sampling":"AllocationSampled"}"#);
        for k in 1..=summaries {
            let t = k * 5000;
            let sites = format!(
                r#"{{"type_name":"App.Audit","site":"App.Log.Append","samples":{},"objects":{},"bytes":{}}},{{"type_name":"App.Small","site":"App.X.Y","samples":1,"objects":1,"bytes":1000}}"#,
                k * 10,
                k * 100,
                k * 1_000_000
            );
            store.ingest_line(format!(
                r#"{{"v":1,"type":"summary","source":"agent","pid":3,"t_ms":{t},"rss":100000000,"heap":{{"gen2":5}},"gc":{{"count":[{k},{k},{}]}},"sites":[{sites}]}}"#,
                k / 2
            ).as_bytes());
        }
        store
    }

    fn report_of(store: &Store, mode: &str) -> crate::report::Report {
        let mut info = SessionInfo::new(mode);
        info.interval_ms = Some(5000);
        build_with_soak(store, &info, &Thresholds::default(), None)
    }

    #[test]
    fn a_short_recording_says_not_enough_data_never_no_leak_suspect() {
        // 20 s at 5 s: 4 summaries over 15 s, 3 after the warm-up (the first 20 % of them).
        let r = report_of(&recording(4), "run");
        let s = r.sufficiency.as_ref().unwrap();
        assert!(!s.enough);
        assert_eq!((s.sites_judged, s.points_needed, s.full_gcs), (0, 8, 2));
        let line = verdict_line(s, "run");
        assert!(line.starts_with("Not enough data to judge yet: 2 full GCs seen, 3 points after the warm-up where a verdict needs 8; about 5 more (31s) would do"), "{line}");
        // 15 s + 31 s + one interval spare, rounded up: 8 points after a 20 % warm-up need
        // a 44 s span.
        assert!(line.contains("record longer, e.g. --duration 1m00s"), "{line}");
        for text in [crate::report::render_text(&r), crate::report::render_summary(&r, None)] {
            assert!(text.contains("Not enough data to judge yet"), "{text}");
            assert!(!text.contains("No leak suspect"), "{text}");
        }
        // `tail` has no --duration: it says how much longer the worker should write.
        assert!(verdict_line(s, "tail").contains("let the worker write for about"));
    }

    #[test]
    fn long_enough_it_finds_the_leak_or_says_no_leak_suspect() {
        let r = report_of(&recording(14), "run");
        assert!(r.sufficiency.as_ref().unwrap().enough);
        assert_eq!(r.findings.len(), 1);
        let mut store = Store::new();
        store.ingest_line(br#"{"v":1,"type":"hello","source":"agent","pid":3,"interval_ms":5000}"#);
        for k in 1..=14u64 {
            store.ingest_line(format!(r#"{{"v":1,"type":"summary","source":"agent","pid":3,"t_ms":{},"sites":[{{"type_name":"App.Small","site":"App.X.Y","samples":1,"objects":1,"bytes":1000}}]}}"#, k * 5000).as_bytes());
        }
        let r = report_of(&store, "listen");
        assert!(r.sufficiency.as_ref().unwrap().enough);
        assert!(crate::report::render_summary(&r, None).contains("No leak suspect"));
    }

    #[test]
    fn a_large_site_first_seen_late_keeps_no_leak_suspect_from_being_said() {
        // The judged site is steady; a large one first seen in the last three summaries is not.
        let mut store = Store::new();
        store.ingest_line(br#"{"v":1,"type":"hello","source":"agent","pid":3,"interval_ms":5000}"#);
        for k in 1..=14u64 {
            let mut sites =
                r#"{"type_name":"App.Small","site":"App.X.Y","samples":1,"objects":1,"bytes":1000}"#.to_string();
            if k > 11 {
                sites.push_str(
                    r#",{"type_name":"App.Late","site":"App.Z.W","samples":40,"objects":40,"bytes":4000000}"#,
                );
            }
            store.ingest_line(
                format!(r#"{{"v":1,"type":"summary","source":"agent","pid":3,"t_ms":{},"sites":[{sites}]}}"#, k * 5000)
                    .as_bytes(),
            );
        }
        let r = report_of(&store, "run");
        let s = r.sufficiency.as_ref().unwrap();
        assert!(!s.enough);
        assert_eq!((s.sites_judged, s.sites_waiting, s.bytes_waiting), (1, 1, 4_000_000));
        let line = verdict_line(s, "run");
        assert!(
            line.starts_with("Not enough data to judge every site yet: 1 site holding 4.00 MB has too few points"),
            "{line}"
        );
        assert!(!crate::report::render_summary(&r, None).contains("No leak suspect"));
    }
}
