//! The run report built from synthetic protocol lines, and its text.

use super::*;
use crate::analysis::Thresholds;
use crate::analysis::{FullGcCheck, LiveVerdict};
use crate::launch::ExitInfo;
use crate::retention_view::kept_alive_lines;
use crate::session_info::SessionInfo;
use crate::store::Store;

/// A search a budget cut short: report.txt keeps the path it finished (as a share of the
/// instances) and says `unknown` for the rest, with the budget that would have sufficed,
/// never a root kind.
#[test]
fn a_search_cut_short_prints_unknown_with_the_budget_needed() {
    let mut store = sample_store();
    store.ingest_line(br#"{"v":1,"type":"retention","source":"agent","pid":42,"t_ms":61000,"truncated":true,"truncated_by":["memory"],"cut_short":"walk cut short: 900 of 4096 sampled instances (22 %) not followed to a root after 3 walks of 3.10 M objects, memory budget 1 MB ran out following 12 k objects; at least 3 MB needed","types":[{"type_name":"System.String","instances":10000,"sampled":4096,"unknown":2200,"paths":[{"root":{"kind":"static","name":"Demo.OrderAudit.Lines"},"steps":[{"type_name":"System.Collections.Generic.List<String>"},{"type_name":"System.String[]","field":"_items"},{"type_name":"System.String","field":"[]"}],"instances":7800,"bytes":624000},{"root":{"kind":"unknown","detail":"walk cut short: 900 of 4096 sampled instances (22 %) not followed to a root after 3 walks of 3.10 M objects, memory budget 1 MB ran out following 12 k objects; at least 3 MB needed"},"steps":[{"type_name":"System.String"}],"instances":2200,"bytes":176000}]}]}"#);
    let report = build(&store, &SessionInfo::new("run"), &Thresholds::default());
    let finding = report.findings.iter().find(|f| f.type_name.as_deref() == Some("System.String")).unwrap();
    let lines = kept_alive_lines(&finding.kept_alive_by);
    assert_eq!(
        lines[0],
        "kept alive by: static Demo.OrderAudit.Lines → System.Collections.Generic.List<String> → System.String[] (_items) → System.String ([]) (7800 instances, 78 % of them)"
    );
    assert!(lines[1].starts_with("kept alive by: unknown (walk cut short: "), "{lines:?}");
    assert!(lines[1].contains("memory budget 1 MB") && lines[1].contains("at least 3 MB needed"), "{lines:?}");
    assert!(lines[1].ends_with("(2200 instances, 22 % of them)"), "{lines:?}");
    let text = render_text(&report);
    assert!(text.contains("      kept alive by: unknown (walk cut short: "), "{text}");
    assert!(!text.contains("referenced by no object"), "{text}");
}

/// The share of a path is of the instances the search's walk met (`walked`), which its
/// estimates add up to, not of the census's count: here the heap grew by a fifth between the
/// two, and 9000 of the 12 000 met is 75 %, not 90 %.
#[test]
fn a_paths_share_is_of_the_instances_the_walk_met() {
    let mut store = sample_store();
    store.ingest_line(br#"{"v":1,"type":"retention","source":"agent","pid":42,"t_ms":61000,"types":[{"type_name":"System.String","instances":10000,"walked":12000,"sampled":4096,"paths":[{"root":{"kind":"static","name":"Demo.OrderAudit.Lines"},"steps":[{"type_name":"System.String"}],"instances":9000,"bytes":720000},{"root":{"kind":"other","detail":"referenced by no object"},"steps":[{"type_name":"System.String"}],"instances":3000,"bytes":240000}]}]}"#);
    let report = build(&store, &SessionInfo::new("run"), &Thresholds::default());
    let finding = report.findings.iter().find(|f| f.type_name.as_deref() == Some("System.String")).unwrap();
    let shares: Vec<f64> = finding.kept_alive_by.iter().filter_map(|k| k.share).collect();
    assert_eq!(shares.first(), Some(&0.75), "{:?}", finding.kept_alive_by);
    let lines = kept_alive_lines(&finding.kept_alive_by);
    assert!(lines[0].ends_with("(9000 instances, 75 % of them)"), "{lines:?}");
}

/// A synthetic session: one process with a leaking site, a churning one and a shim; full GCs
/// at 30 s and 58 s (the leak's rise survives them).
pub(crate) fn sample_store() -> Store {
    sample_store_with_full_gcs(true)
}

pub(crate) fn sample_store_with_full_gcs(full_gcs: bool) -> Store {
    let mut store = Store::new();
    store.ingest_line(br#"{"v":1,"type":"hello","source":"agent","pid":42,"version":"0.1.0","cmdline":"dotnet Demo.dll","interval_ms":2000,"runtime":"10.0.12","sampling":"AllocationSampled","mode":"sampled"}"#);
    store.ingest_line(br#"{"v":1,"type":"stack","source":"agent","pid":42,"id":1,"frames":["Demo.OrderAudit.Record","Demo.OrderWorker.Handle","Demo.Program.Main"],"lines":["OrderAudit.cs:17","OrderWorker.cs:20",null]}"#);
    store.ingest_line(br#"{"v":1,"type":"hello","source":"shim","pid":42,"sampling":"poisson","mean_bytes":524288}"#);
    for i in 0..30u64 {
        let leak = 100_000 + i * 100_000;
        let churn = if i % 2 == 0 { 5_000_000 } else { 4_500_000 };
        store.ingest_line(format!(
            r#"{{"v":1,"type":"summary","source":"agent","pid":42,"t_ms":{},"rss":90000000,"heap":{{"gen0":1,"gen2":{}}},"gc":{{"count":[{i},1,{}]}},"agent":{{"tracked":10,"max_tracked":100000,"dropped":0}},"sites":[{{"type_name":"System.String","site":"Demo.OrderAudit.Record","location":"OrderAudit.cs:17","stack":1,"samples":{i},"objects":{},"bytes":{leak}}},{{"type_name":"System.Byte[]","site":"Demo.Parser.Parse","samples":3,"objects":10,"bytes":{churn}}}]}}"#,
            2000 * (i + 1),
            leak,
            if full_gcs { i / 14 } else { 0 },
            leak / 150
        ).as_bytes());
        store.ingest_line(format!(
            r#"{{"v":1,"type":"native","source":"shim","pid":42,"t_ms":{},"live_bytes":1000000,"live_allocs":50,"sites":[{{"site":"malloc_steady (libx.so+0x10)","allocs":50,"bytes":1000000}}]}}"#,
            2000 * (i + 1)
        ).as_bytes());
    }
    store.ingest_line(
        br#"{"v":1,"type":"status","source":"agent","pid":42,"level":"warn","message":"tracking budget full"}"#,
    );
    store.ingest_line(br#"{"v":1,"type":"bye","source":"agent","pid":42,"t_ms":61000,"reason":"runtime shutdown"}"#);
    store.ingest_line(b"garbage");
    store
}

/// The same leak with no full GC in the whole run: its rise could still be garbage waiting
/// for one, so it is listed as rising, apart from the leak suspects, and says why.
#[test]
fn a_rise_no_full_gc_confirmed_is_rising_not_a_leak_suspect() {
    let r = build(&sample_store_with_full_gcs(false), &SessionInfo::new("run"), &Thresholds::default());
    assert!(r.findings.iter().all(|f| f.kind == "native"), "{:#?}", r.findings);
    assert_eq!(r.rising.len(), 1, "{:#?}", r.rising);
    let f = &r.rising[0];
    assert_eq!((f.type_name.as_deref(), f.verdict), (Some("System.String"), LiveVerdict::Rising));
    assert_eq!(f.full_gc_check, Some(FullGcCheck::Unconfirmed { full_gcs: 0 }));
    assert!(f.text.starts_with("Rising, not yet a leak suspect: System.String allocated at"), "{}", f.text);
    assert!(f.text.contains("no full GC since it began to rise"), "{}", f.text);
    let text = render_text(&r);
    assert!(text.contains("RISING, NOT YET CONFIRMED BY A FULL GC"), "{text}");
    assert!(!text.contains("Leak suspect: System.String"), "{text}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["rising"][0]["verdict"], "rising");
    assert_eq!(json["rising"][0]["full_gc_check"]["outcome"], "unconfirmed");
}

#[test]
fn report_names_the_leak_and_not_the_churn() {
    let store = sample_store();
    let mut session = SessionInfo::new("run");
    session.command = Some(vec!["dotnet".into(), "Demo.dll".into()]);
    session.exit = Some(ExitInfo { code: Some(0), signal: None });
    let r = build(&store, &session, &Thresholds::default());
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    let f = &r.findings[0];
    assert_eq!(f.type_name.as_deref(), Some("System.String"));
    assert_eq!(f.site, "Demo.OrderAudit.Record");
    assert_eq!(f.frames.len(), 3);
    assert!((f.bytes_per_min - 3_000_000.0).abs() < 100_000.0, "{}", f.bytes_per_min);
    assert!(
        f.text.starts_with(
            "Leak suspect: System.String allocated at Demo.OrderAudit.Record (OrderAudit.cs:17), +3.00 MB/min"
        ),
        "{}",
        f.text
    );
    let p = &r.processes[0];
    assert_eq!(p.managed_sites_total, 2);
    assert_eq!(p.managed_sites[1].growth.verdict, LiveVerdict::Steady);
    assert_eq!(p.native_sites[0].growth.verdict, LiveVerdict::Steady);
    assert_eq!(p.agent.as_ref().unwrap().ended, "bye");
    assert_eq!(r.input.not_json, 1);
    assert!(r.messages.iter().any(|m| m.message == "tracking budget full"));
}

#[test]
fn report_json_is_versioned_and_has_the_documented_fields() {
    let store = sample_store();
    let r = build(&store, &SessionInfo::new("tail"), &Thresholds::default());
    let v: serde_json::Value = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(v["schema"], "leakscope.report/1");
    for key in ["generator", "session", "thresholds", "input", "processes", "findings", "messages"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    let site = &v["processes"][0]["managed_sites"][0];
    for key in ["type_name", "site", "frames", "live_bytes", "live_count", "peak_bytes", "growth"] {
        assert!(site.get(key).is_some(), "site lacks {key}");
    }
    assert_eq!(site["growth"]["verdict"], "growing");
    assert!(site["growth"]["ci95_bytes_per_min"].is_array());
    assert_eq!(v["processes"][0]["native_sites"][0]["type_name"], serde_json::Value::Null);
}

#[test]
fn text_report_reads_like_a_finding() {
    let store = sample_store();
    let r = build(&store, &SessionInfo::new("tail"), &Thresholds::default());
    let text = render_text(&r);
    assert!(text.contains("FINDINGS\n  Leak suspect: System.String allocated at Demo.OrderAudit.Record"), "{text}");
    assert!(
        text.contains("      at Demo.OrderAudit.Record (OrderAudit.cs:17)\n         Demo.OrderWorker.Handle (OrderWorker.cs:20)\n         Demo.Program.Main\n"),
        "{text}"
    );
    assert!(text.contains("PROCESS 42: dotnet Demo.dll"));
    assert!(text.contains("ended: bye (runtime shutdown)"));
    assert!(text.contains("Native survivors (top 1 of 1 sites)"));
    assert!(text.contains("1 skipped (1 not JSON)"));
}

#[test]
fn a_shim_that_turned_itself_off_is_reported_with_its_reason() {
    let mut store = Store::new();
    store.ingest_line(
        br#"{"v":1,"type":"hello","source":"shim","pid":9,"native":"off","native_reason":"LEAKSCOPE_NATIVE=0"}"#,
    );
    let r = build(&store, &SessionInfo::new("listen"), &Thresholds::default());
    assert!(r.messages.iter().any(|m| m.level == "warn" && m.message == "native tracking off: LEAKSCOPE_NATIVE=0"));
}

#[test]
fn a_shim_reason_said_in_a_status_too_is_reported_once() {
    let mut store = Store::new();
    store.ingest_line(
        br#"{"v":1,"type":"hello","source":"shim","pid":9,"native":"off","native_reason":"not first in LD_PRELOAD"}"#,
    );
    store.ingest_line(br#"{"v":1,"type":"status","source":"shim","pid":9,"level":"error","message":"native tracking off: not first in LD_PRELOAD"}"#);
    let r = build(&store, &SessionInfo::new("listen"), &Thresholds::default());
    let said: Vec<&str> =
        r.messages.iter().filter(|m| m.message.contains("LD_PRELOAD")).map(|m| m.level.as_str()).collect();
    assert_eq!(said, ["error"], "{:?}", r.messages);
}

#[test]
fn an_empty_session_says_nothing_connected() {
    let mut session = SessionInfo::new("run");
    session.note("error", "no agent connected: is the target a .NET app?");
    let r = build(&Store::new(), &session, &Thresholds::default());
    let text = render_text(&r);
    assert!(text.contains("Nothing to analyse"));
    assert!(text.contains("no agent connected"));
}
