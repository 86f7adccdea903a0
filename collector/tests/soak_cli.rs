//! The `leakscope` binary on a soak recording written here (census, retained and summary
//! records as docs/PROTOCOL.md describes them): `report` re-judges it, exits like the soak did,
//! and honours `--fail-on` and `--baseline`; bad rules are usage errors. No .NET needed; the
//! real agent runs in integration-tests/tests/soak.rs.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const LEAKSCOPE: &str = env!("CARGO_BIN_EXE_leakscope");

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("leakscope-soakcli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn leakscope(args: &[&str]) -> Output {
    Command::new(LEAKSCOPE)
        .args(args)
        .env_remove("LEAKSCOPE_AGENT")
        .env_remove("LEAKSCOPE_SHIM")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A 70 s soak recording: churn, and (with `leak`) a steady leak sampled at its site.
fn write_soak_dir(dir: &Path, leak: bool) {
    let mut lines = vec![
        r#"{"v":1,"type":"hello","source":"agent","pid":11,"interval_ms":5000,"runtime":"10.0.12","sampling":"AllocationSampled"}"#.to_string(),
        r#"{"v":1,"type":"status","source":"agent","pid":11,"level":"info","message":"soak mode: inducing a full blocking GC every 5s so that what survives is still referenced, not merely uncollected"}"#.to_string(),
        r#"{"v":1,"type":"stack","source":"agent","pid":11,"id":4,"frames":["Shop.Audit.Append","Shop.Program.Main"],"lines":["Audit.cs:9",null]}"#.to_string(),
    ];
    for k in 1..=14u64 {
        let t = k * 5000;
        let churn = 4_000_000 + (k * 7919 % 13) * 10_000;
        let leaked = if leak { 40 * t } else { 0 };
        lines.push(format!(
            r#"{{"v":1,"type":"census","source":"agent","pid":11,"gc":{k},"t_ms":{t},"pause_ms":4.0,"objects":9000,"bytes":{},"unreadable":0,"types":[{{"type_name":"System.Byte[]","count":3000,"bytes":{churn}}},{{"type_name":"Shop.AuditRecord","count":{},"bytes":{leaked}}}],"other":{{"types":0,"count":0,"bytes":0}}}}"#,
            churn + leaked,
            leaked / 40
        ));
        let sampled = leaked / 102_400 * 102_400;
        lines.push(format!(
            r#"{{"v":1,"type":"retained","source":"agent","pid":11,"gc":{k},"t_ms":{},"sites":[{{"type_name":"Shop.AuditRecord","site":"Shop.Audit.Append","location":"Audit.cs:9","stack":4,"samples":{},"objects":{},"bytes":{sampled}}}]}}"#,
            t + 1,
            sampled / 102_400,
            sampled / 40
        ));
        lines.push(format!(
            r#"{{"v":1,"type":"summary","source":"agent","pid":11,"t_ms":{},"rss":70000000,"heap":{{"gen0":1000,"gen1":1000,"gen2":{},"loh":0,"poh":0}},"gc":{{"count":[20,10,{k}],"induced":{k}}},"sites":[]}}"#,
            t + 2,
            5_000_000 + leaked
        ));
    }
    lines
        .push(r#"{"v":1,"type":"bye","source":"agent","pid":11,"t_ms":70003,"reason":"runtime shutdown"}"#.to_string());
    std::fs::write(dir.join("recording.ndjson"), lines.join("\n") + "\n").unwrap();
    let session = serde_json::json!({
        "schema": "leakscope.session/1", "mode": "soak", "command": ["dotnet", "Shop.dll"],
        "started_unix_ms": 1795000000000u64, "ended_unix_ms": 1795000070500u64,
        "exit": {"code": 0, "signal": null}, "stopped_by": "--duration elapsed", "interval_ms": 5000,
        "native_tracking": {"enabled": false, "reason": "turned off with --no-native"}, "notes": [],
        "soak": {"duration_ms": 70000, "warmup_ms": null, "gc_every_ms": 5000, "fail_on": [],
                 "baseline": null, "strict": false}
    });
    std::fs::write(dir.join("session.json"), session.to_string()).unwrap();
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn report_rejudges_a_soak_recording_and_exits_like_the_soak() {
    let t = TempDir::new("leak");
    write_soak_dir(&t.0, true);
    let o = leakscope(&["report", t.0.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let r = json(&o);
    assert_eq!(r["session"]["mode"], "soak");
    assert_eq!(r["soak"]["schema"], "leakscope.soak/1");
    assert_eq!(r["soak"]["outcome"], "fail");
    let first = &r["soak"]["subjects"][0];
    assert_eq!(first["id"], "type:Shop.AuditRecord");
    assert_eq!(first["verdict"], "leaking");
    assert_eq!(first["sites"][0]["site"], "Shop.Audit.Append");
    assert_eq!(first["sites"][0]["location"], "Audit.cs:9");
    for f in ["report.json", "report.txt", "junit.xml", "report.html"] {
        assert!(t.0.join(f).is_file(), "{f} not written");
    }
    let text = std::fs::read_to_string(t.0.join("report.txt")).unwrap();
    assert!(text.contains("SOAK VERDICT: FAIL"), "{text}");
    let xml = std::fs::read_to_string(t.0.join("junit.xml")).unwrap();
    assert!(xml.contains("<failure message=\"leaking: +"), "{xml}");
    let html = std::fs::read_to_string(t.0.join("report.html")).unwrap();
    assert!(html.contains("data-subject=\"type:Shop.AuditRecord\"") && html.contains("<svg id=\"chart-types\""));

    // A looser rule passes; a rule about something else passes; a bad rule is a usage error.
    let o = leakscope(&["report", t.0.to_str().unwrap(), "--json", "--fail-on", "growth > 1GB/h"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(json(&o)["soak"]["settings"]["fail_on"][0], "growth > 1GB/h");
    let o = leakscope(&["report", t.0.to_str().unwrap(), "--fail-on", "type:Shop.AuditRecord live > 1GB"]);
    assert_eq!(o.status.code(), Some(0));
    let o = leakscope(&["report", t.0.to_str().unwrap(), "--fail-on", "growth => 1MB/h"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad --fail-on rule"));
}

#[test]
fn report_with_a_baseline_fails_only_on_regressions() {
    let leak = TempDir::new("base-leak");
    write_soak_dir(&leak.0, true);
    let clean = TempDir::new("base-clean");
    write_soak_dir(&clean.0, false);
    assert_eq!(leakscope(&["report", clean.0.to_str().unwrap()]).status.code(), Some(0));
    assert_eq!(leakscope(&["report", leak.0.to_str().unwrap()]).status.code(), Some(1));
    // The same leak in the baseline: known, so it passes.
    let own = leak.0.join("report.json");
    let copy = clean.0.join("leak-baseline.json");
    std::fs::copy(&own, &copy).unwrap();
    let o = leakscope(&["report", leak.0.to_str().unwrap(), "--json", "--baseline", copy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", json(&o)["soak"]["baseline"]);
    // A clean baseline: the leak is new.
    let o = leakscope(&[
        "report",
        leak.0.to_str().unwrap(),
        "--json",
        "--baseline",
        clean.0.join("report.json").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let r = json(&o);
    assert!(r["soak"]["baseline"]["regressions"].to_string().contains("new_leak"), "{}", r["soak"]["baseline"]);
    // A report.json that is not a soak's is refused.
    let plain = clean.0.join("plain.json");
    std::fs::write(&plain, r#"{"schema":"leakscope.report/1","soak":null}"#).unwrap();
    let o = leakscope(&["report", leak.0.to_str().unwrap(), "--baseline", plain.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no soak verdicts"));
}

#[test]
fn soak_rejects_bad_rules_before_starting_anything() {
    let o = leakscope(&["soak", "--duration", "1m", "--fail-on", "site:X.Y growth > 5MB", "--", "/bin/true"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("a growth needs a rate"), "{err}");
    assert!(err.contains("^"), "{err}");
    let o = leakscope(&["soak", "--duration", "1m", "--gc-every", "0.5s", "--", "/bin/true"]);
    assert_eq!(o.status.code(), Some(2));
    let o = leakscope(&["soak", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("--fail-on <EXPR>") && help.contains("Exit codes: 0 pass, 1"), "{help}");
}
