//! The store on synthetic protocol lines: series, caps, compaction, the budget, hostile input.

use super::*;

fn summary(pid: u32, t: u64, sites: &[(&str, &str, u64)]) -> String {
    let sites: Vec<String> = sites
        .iter()
        .map(|(ty, site, bytes)| {
            format!(
                r#"{{"type_name":"{ty}","site":"{site}","stack":1,"samples":1,"objects":{},"bytes":{bytes}}}"#,
                bytes / 100
            )
        })
        .collect();
    format!(
        r#"{{"v":1,"type":"summary","source":"agent","pid":{pid},"t_ms":{t},"rss":1000,"heap":{{"gen2":5}},"sites":[{}]}}"#,
        sites.join(",")
    )
}

#[test]
fn summaries_build_series_and_absent_sites_drop_to_zero() {
    let mut store = Store::new();
    store.ingest_line(br#"{"v":1,"type":"hello","source":"agent","pid":1,"interval_ms":1000}"#);
    store.ingest_line(br#"{"v":1,"type":"stack","source":"agent","pid":1,"id":1,"frames":["A.B.C","A.B.Main"]}"#);
    store.ingest_line(summary(1, 1000, &[("T", "S", 100), ("U", "V", 50)]).as_bytes());
    store.ingest_line(summary(1, 2000, &[("T", "S", 200), ("T", "S", 5)]).as_bytes());
    let p = store.producer(&ProducerKey { pid: 1, source: Source::Agent }).unwrap();
    let mut sites: Vec<&SiteSeries> = p.sites().collect();
    sites.sort_by(|a, b| a.site.cmp(&b.site));
    assert_eq!(sites[0].points().iter().map(|p| p.bytes).collect::<Vec<_>>(), [100.0, 205.0], "duplicates are summed");
    assert_eq!(sites[1].points().iter().map(|p| p.bytes).collect::<Vec<_>>(), [50.0, 0.0], "absent → zero");
    assert_eq!(sites[0].frames.as_ref().unwrap().frames[0], "A.B.C");
    assert_eq!(p.rss, Some(1000));
    assert_eq!(store.data_version, 2);
}

#[test]
fn full_gcs_are_counted_when_the_gen2_count_rises() {
    let mut store = Store::new();
    for (t, gen2) in [(1000, 0), (2000, 0), (3000, 1), (4000, 1), (5000, 3), (6000, 3)] {
        store.ingest_line(
            format!(r#"{{"v":1,"type":"summary","source":"agent","pid":1,"t_ms":{t},"gc":{{"count":[9,9,{gen2}]}}}}"#)
                .as_bytes(),
        );
    }
    let p = store.producer(&ProducerKey { pid: 1, source: Source::Agent }).unwrap();
    assert_eq!(p.full_gcs_between(0.0, 10_000.0), 2, "two summaries saw the count go up");
    assert_eq!(p.full_gcs_between(3500.0, 10_000.0), 1);
}

#[test]
fn out_of_order_and_duplicate_times_are_ignored_for_series() {
    let mut store = Store::new();
    store.ingest_line(summary(1, 2000, &[("T", "S", 100)]).as_bytes());
    store.ingest_line(summary(1, 2000, &[("T", "S", 999)]).as_bytes());
    store.ingest_line(summary(1, 1000, &[("T", "S", 999)]).as_bytes());
    let p = store.producer(&ProducerKey { pid: 1, source: Source::Agent }).unwrap();
    assert_eq!(p.out_of_order, 2);
    assert_eq!(p.sites().next().unwrap().points().len(), 1);
}

#[test]
fn series_stay_bounded_and_keep_their_shape() {
    let mut s = SiteSeries::new(None, "x".into());
    for i in 0..10_000u64 {
        s.push(SeriesPoint { t_ms: i as f64 * 1000.0, bytes: i as f64, count: 0.0, collected: f64::NAN });
    }
    assert!(s.points().len() < MAX_SERIES_POINTS);
    assert!(s.points().windows(2).all(|w| w[0].t_ms < w[1].t_ms), "time stays sorted");
    let last = s.points().last().unwrap();
    assert_eq!(last.bytes, 9999.0, "the newest point is kept exactly");
    // Averaging pairs of a line keeps it a line: slope preserved.
    let g = crate::analysis::theil_sen(&s.analysis_points(), None).unwrap();
    assert!((g.slope - 0.001).abs() < 1e-9);
    assert_eq!(s.peak_bytes, 9999.0);
}

#[test]
fn site_count_per_producer_is_capped() {
    let mut store = Store::new();
    for batch in 0..(MAX_SERIES_PER_PRODUCER / 500 + 2) {
        let sites: Vec<(String, String, u64)> =
            (0..500).map(|i| ("T".to_string(), format!("site{batch}_{i}"), 1000)).collect();
        let refs: Vec<(&str, &str, u64)> = sites.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), *c)).collect();
        store.ingest_line(summary(1, 1000 * (batch as u64 + 1), &refs).as_bytes());
    }
    let p = store.producer(&ProducerKey { pid: 1, source: Source::Agent }).unwrap();
    assert!(p.site_count() <= MAX_SERIES_PER_PRODUCER);
    assert!(p.series_evicted > 0);
}

#[test]
fn skipped_lines_are_counted_with_examples_and_bye_and_disconnect_tracked() {
    let mut store = Store::new();
    store.ingest_line(b"not json");
    store.ingest_line(b"");
    store.ingest_line(br#"{"v":9,"type":"hello","source":"agent","pid":1}"#);
    store.ingest_line(br#"{"v":1,"type":"hello","source":"agent","pid":1}"#);
    store.ingest_line(br#"{"v":1,"type":"hello","source":"shim","pid":2}"#);
    store.ingest_line(br#"{"v":1,"type":"bye","source":"agent","pid":1,"reason":"runtime shutdown"}"#);
    store.producer_disconnected(ProducerKey { pid: 1, source: Source::Agent });
    store.producer_disconnected(ProducerKey { pid: 2, source: Source::Shim });
    assert_eq!(store.input.lines, 6);
    assert_eq!(store.input.not_json, 1);
    assert_eq!(store.input.empty, 1);
    assert_eq!(store.input.unknown_version, 1);
    assert_eq!(store.input.examples.len(), 2);
    let agent = store.producer(&ProducerKey { pid: 1, source: Source::Agent }).unwrap();
    assert_eq!(agent.connection, Connection::SaidBye);
    let shim = store.producer(&ProducerKey { pid: 2, source: Source::Shim }).unwrap();
    assert_eq!(shim.connection, Connection::Lost);
    assert_eq!(store.notes.len(), 1);
    assert_eq!(store.processes().len(), 2);
}

#[test]
fn producers_beyond_the_cap_are_dropped_counted_and_said() {
    let mut store = Store::new();
    for pid in 1..=1000u32 {
        store.ingest_line(format!(r#"{{"v":1,"type":"hello","source":"agent","pid":{pid},"cmdline":"w"}}"#).as_bytes());
        store.ingest_line(summary(pid, 1000, &[("T", "S", 100)]).as_bytes());
    }
    assert_eq!(store.producers().count(), MAX_PRODUCERS);
    assert_eq!(store.refused.records, 2 * (1000 - MAX_PRODUCERS as u64));
    assert_eq!(store.refused.pids.len(), 5);
    let said = store.bounds_messages().join("\n");
    assert!(said.contains("at most 128 producers"), "{said}");
}

#[test]
fn the_memory_budget_caps_series_and_stacks_and_gives_back_what_is_evicted() {
    let limit = 4 << 20;
    let mut store = Store::with_budget(limit);
    let big_frame = "F".repeat(3000);
    for round in 0..200u64 {
        let frames: Vec<String> = (0..100).map(|_| format!("\"{big_frame}\"")).collect();
        store.ingest_line(
            format!(
                r#"{{"v":1,"type":"stack","source":"agent","pid":1,"id":{round},"frames":[{}]}}"#,
                frames.join(",")
            )
            .as_bytes(),
        );
        let sites: Vec<(String, String, u64)> = (0..50).map(|i| (format!("T{round}"), format!("S{i}"), 100)).collect();
        let sites: Vec<(&str, &str, u64)> = sites.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), *c)).collect();
        store.ingest_line(summary(1, 1000 + round, &sites).as_bytes());
        assert!(store.budget.held() <= limit);
    }
    let key = ProducerKey { pid: 1, source: Source::Agent };
    let p = store.producer(&key).unwrap();
    assert!(p.budget_dropped > 0, "the budget ran out");
    assert!(p.site_count() > 0);
    let said = store.bounds_messages().join("\n");
    assert!(said.contains("memory budget"), "{said}");
    // A new connection's hello drops the stack table: its bytes come back unless a series
    // still names the stack.
    let before = store.budget.held();
    store.ingest_line(br#"{"v":1,"type":"hello","source":"agent","pid":1}"#);
    assert!(store.budget.held() < before);
    drop(store);
}

#[test]
fn long_and_hostile_names_are_capped_and_escaped_before_they_are_kept() {
    let mut store = Store::new();
    let long = "N".repeat(100_000);
    store.ingest_line(summary(1, 1000, &[(&long, "\\u001b]0;pwned\\u0007", 100)]).as_bytes());
    let key = ProducerKey { pid: 1, source: Source::Agent };
    let site = store.producer(&key).unwrap().sites().next().unwrap();
    assert!(site.type_name.as_ref().unwrap().len() <= crate::untrusted::MAX_TEXT_BYTES + 4);
    assert_eq!(site.site, "\\x1b]0;pwned\\x07");
}
