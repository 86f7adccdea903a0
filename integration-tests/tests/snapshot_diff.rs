//! `leakscope snapshot` and `leakscope diff` against real .NET processes started without any
//! leakscope variables: exact heap counts checked against dotnet-gcdump, a leaking process's
//! growing type named first with its call site, a still one showing no growth.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use integration_tests::*;
use serde_json::Value;

fn heap_app() -> DotnetApp {
    dotnet_app("HeapApp", Build::FrameworkDependent)
}

/// HeapApp (`hold` or `grow`) started the ordinary way, its heap built.
fn worker(mode: &str, seconds: &str) -> Running {
    let mut c = heap_app().command();
    c.args([mode, seconds, "10"]);
    without_profiler_env(&mut c);
    let mut run = Running::start(c);
    run.wait_for_line("ready", Duration::from_secs(60));
    run
}

fn leakscope(args: &[&str]) -> Output {
    let mut c = Command::new(cli_path());
    c.args(args);
    run_with_timeout(c, Duration::from_secs(180))
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "leakscope failed ({:?}):\n{}\n{}",
        output.status,
        stdout_of(output),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout_of(output)).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", stdout_of(output)))
}

fn snapshot(pid: u32, out: &Path, sample: &str) -> Value {
    snapshot_with(pid, out, sample, &[])
}

fn snapshot_with(pid: u32, out: &Path, sample: &str, extra: &[&str]) -> Value {
    let pid = pid.to_string();
    let mut args = vec!["snapshot", &pid, "--sample", sample, "--json", "--top", "40", "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    json_of(&leakscope(&args))
}

fn diff(a: &Path, b: Option<&Path>) -> Value {
    let mut args = vec!["diff", a.to_str().unwrap()];
    if let Some(b) = b {
        args.push(b.to_str().unwrap());
    }
    args.push("--json");
    json_of(&leakscope(&args))
}

/// A type name reduced to what leakscope and dotnet-gcdump both spell the same way: every
/// dotted or nested name down to its last part (`System.Collections.Generic.List<HeapApp.Order>`
/// and `List<Order>` → `List<Order>`), no spaces, no gcdump size bucket (` (Bytes > 10K)`).
fn comparable(type_name: &str) -> String {
    let name = type_name.split(" (Bytes").next().unwrap_or(type_name);
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(word.rsplit(['.', '+']).next().unwrap_or(""));
        word.clear();
    };
    for ch in name.chars() {
        if ch.is_alphanumeric() || ch == '_' || ch == '.' || ch == '+' || ch == '`' {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
            if !ch.is_whitespace() {
                out.push(ch);
            }
        }
    }
    flush(&mut word, &mut out);
    out
}

/// `dotnet-gcdump report -p PID`: object counts by comparable type name, and the heap's total.
fn gcdump_counts(pid: u32) -> (HashMap<String, u64>, u64) {
    let mut c = Command::new(dotnet_tool("dotnet-gcdump"));
    c.args(["report", "-p", &pid.to_string()]);
    let output = run_with_timeout(c, Duration::from_secs(120));
    assert!(output.status.success(), "dotnet-gcdump failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = stdout_of(&output);
    let number = |s: &str| s.replace(',', "").parse::<u64>().ok();
    let (mut counts, mut total) = (HashMap::new(), 0);
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if line.contains("GC Heap objects") {
            total = number(fields[0]).unwrap();
        } else if let (true, Some(_), Some(count)) =
            (fields.len() >= 3, fields.first().and_then(|f| number(f)), fields.get(1).and_then(|f| number(f)))
        {
            // "<bytes> <count> <type, may contain spaces>  [<module>]"
            let rest = fields[2..].join(" ");
            let type_name = rest.rfind(" [").map_or(rest.as_str(), |end| &rest[..end]);
            *counts.entry(comparable(type_name)).or_default() += count;
        }
    }
    assert!(total > 0, "unexpected gcdump report:\n{text}");
    (counts, total)
}

#[test]
fn type_names_compare_across_tools() {
    assert_eq!(comparable("System.Collections.Generic.List<Order>"), "List<Order>");
    assert_eq!(comparable("System.Collections.Generic.List<HeapApp.Order>"), "List<Order>");
    assert_eq!(comparable("Entry<System.String,HeapApp.Customer>[] (Bytes > 100K)"), "Entry<String,Customer>[]");
    assert_eq!(
        comparable("System.Collections.Generic.Dictionary.Entry<String, Customer>[]"),
        "Entry<String,Customer>[]"
    );
    assert_eq!(comparable("System.Int32[][]"), "Int32[][]");
}

/// The census counts every object: on a still heap its top 20 types agree with dotnet-gcdump's
/// counts, taken just before, within 2%.
#[test]
fn census_counts_match_gcdump_for_the_top_20_types() {
    let dir = tempfile::tempdir().unwrap();
    let run = worker("hold", "120");
    // The first diagnostics session in a process (ours or gcdump's) has the runtime build a few
    // dozen reflection objects for its event sources, alive until the next full GC: measured,
    // 12 RuntimeMethodInfo and 6 RuntimeParameterInfo more in the first count than in any later
    // one. Let that happen first, so both tools count the same still heap.
    snapshot(run.pid(), &dir.path().join("first.ndjson"), "0s");
    let (gcdump, gcdump_total) = gcdump_counts(run.pid());
    let snap = snapshot(run.pid(), &dir.path().join("snap.ndjson"), "0s");

    let ours: Vec<(String, u64)> = snap["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["type_name"].as_str().unwrap().to_string(), t["count"].as_u64().unwrap()))
        .collect();
    // Several of our names may reduce to one comparable name (two nested `Entry<…>[]`): sum them.
    let mut ours_by_key: HashMap<String, u64> = HashMap::new();
    for (name, count) in &ours {
        *ours_by_key.entry(comparable(name)).or_default() += count;
    }
    let names: Vec<&String> = ours.iter().map(|(n, _)| n).collect();
    assert!(
        names.iter().any(|n| *n == "HeapApp.Order")
            && names.iter().any(|n| *n == "System.Collections.Generic.List<Order>"),
        "{names:#?}"
    );
    let objects = snap["objects"].as_u64().unwrap();
    eprintln!("census: {objects} objects; gcdump: {gcdump_total}");
    assert!(
        (objects as f64 / gcdump_total as f64 - 1.0).abs() <= 0.02,
        "total objects {objects} vs gcdump {gcdump_total}"
    );
    let mut checked = 0;
    for (name, _) in ours.iter().take(20) {
        let key = comparable(name);
        let mine = ours_by_key[&key];
        let theirs = *gcdump.get(&key).unwrap_or_else(|| panic!("gcdump has no {key} (ours: {name})"));
        let error = mine as f64 / theirs as f64 - 1.0;
        eprintln!("{name:<70} leakscope {mine:>8}  gcdump {theirs:>8}  {:+.2}%", error * 100.0);
        assert!(error.abs() <= 0.02, "{name}: leakscope {mine}, gcdump {theirs}");
        checked += 1;
    }
    assert_eq!(checked, 20);
    // The census says how long the application stood still for it.
    assert!(snap["pause_ms"].as_f64().unwrap() > 0.0, "{}", snap["pause_ms"]);
}

/// Two snapshots of a leaking process: the leaking type comes first, growing, with the call site
/// whose allocations survive; the process runs on after each.
#[test]
fn diff_of_a_leaking_process_puts_the_leaking_type_first() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    let run = worker("grow", "120");
    snapshot(run.pid(), &a, "2s");
    std::thread::sleep(Duration::from_secs(3));
    // B also asks what keeps the top surviving site's type alive.
    let snap_b = snapshot_with(run.pid(), &b, "3s", &["--paths"]);
    let kept = &snap_b["retention"]["types"][0];
    assert_eq!(kept["type_name"], "HeapApp.SessionState", "{:#}", snap_b["retention"]);
    assert_eq!(kept["paths"][0]["root"]["name"], "HeapApp.World.Sessions", "{kept:#}");
    assert!(kept["paths"][0]["instances"].as_u64().unwrap() as f64 >= 0.9 * kept["instances"].as_u64().unwrap() as f64);
    let d = diff(&a, Some(&b));
    let first = &d["types"][0];
    assert_eq!(first["type_name"], "HeapApp.SessionState", "{:#}", d["types"]);
    assert_eq!(first["change"], "growing", "{first:#}");
    assert!(first["delta_count"].as_i64().unwrap() > 10_000, "{first:#}");
    assert!(first["bytes_per_hour"].as_f64().unwrap() > 0.0, "same process, so a rate: {first:#}");
    assert_eq!(first["sites"][0]["site"], "HeapApp.World.OpenSession", "{first:#}");
    assert!(d["same_process"].as_bool().unwrap(), "{d:#}");
    // The heap's other types held still: the building blocks of the static world did not grow.
    let order = d["types"].as_array().unwrap().iter().find(|t| t["type_name"] == "HeapApp.Order").unwrap();
    assert_eq!(order["change"], "steady", "{order:#}");
    assert!(snap_b["sites"].as_array().unwrap().iter().any(|s| s["site"] == "HeapApp.World.OpenSession"), "{snap_b:#}");
    // Detached twice, and still running.
    assert!(Path::new(&format!("/proc/{}", run.pid())).exists());
    let text = stdout_of(&leakscope(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]));
    assert!(
        text.contains("HeapApp.SessionState")
            && text.contains("↳ surviving allocations from HeapApp.World.OpenSession"),
        "{text}"
    );
    assert!(text.contains("↳ kept alive by static HeapApp.World.Sessions → "), "{text}");
    assert_eq!(
        first["paths"][0]["path"].as_str().unwrap().split(" → ").next(),
        Some("static HeapApp.World.Sessions"),
        "{first:#}"
    );
    drop(run);
}

/// Two snapshots of a process holding still: nothing grows or shrinks beyond noise.
#[test]
fn diff_of_a_steady_process_shows_no_growth() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    let run = worker("hold", "120");
    snapshot(run.pid(), &a, "1s");
    std::thread::sleep(Duration::from_secs(2));
    snapshot(run.pid(), &b, "1s");
    let d = diff(&a, Some(&b));
    let changed: Vec<&Value> = d["types"].as_array().unwrap().iter().filter(|t| t["change"] != "steady").collect();
    assert!(changed.is_empty(), "changes on a still heap: {changed:#?}");
    assert_eq!((d["growing"].as_u64(), d["shrinking"].as_u64()), (Some(0), Some(0)));
    drop(run);
}

/// One recording with census points (soak mode): its first and last census are compared.
#[test]
fn diff_of_one_recording_compares_its_first_and_last_census() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("soak");
    let mut c = Command::new(cli_path());
    c.args(["soak", "--duration", "12s", "--gc-every", "2s", "--allow-short", "--plain", "--out"]).arg(&out).arg("--");
    let app = heap_app();
    c.arg(&app.program).args(&app.leading_args).args(["grow", "60", "2"]);
    let output = run_with_timeout(c, Duration::from_secs(120));
    assert!(output.status.code().is_some(), "soak: {}", String::from_utf8_lossy(&output.stderr));
    let d = diff(&out, None);
    assert_eq!(d["types"][0]["type_name"], "HeapApp.SessionState", "{:#}", d["types"]);
    assert!(d["same_process"].as_bool().unwrap());
    assert!(d["b"]["gc"].as_u64() > d["a"]["gc"].as_u64(), "{d:#}");
}

#[test]
fn bad_input_gets_a_clear_message_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    // A recording without any census.
    let empty = dir.path().join("none.ndjson");
    std::fs::write(&empty, "{\"v\":1,\"type\":\"bye\",\"source\":\"agent\",\"pid\":1,\"t_ms\":1,\"reason\":\"x\"}\n")
        .unwrap();
    let out = leakscope(&["diff", empty.to_str().unwrap(), empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no heap census"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not a .NET process.
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let out = leakscope(&["snapshot", &sleeper.id().to_string(), "-o", dir.path().join("x.ndjson").to_str().unwrap()]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a .NET process"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("x.ndjson").exists(), "a refused snapshot leaves no file");
}

/// `snapshot --peek`: a few instances of the leaking type with their fields' values; a string
/// field shows only its length unless `--peek-strings` asks for its contents.
#[test]
fn peek_shows_sample_instances_and_string_contents_only_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    let run = worker("grow", "120");
    std::thread::sleep(Duration::from_secs(1));
    let pid = run.pid().to_string();
    let args =
        ["snapshot", &pid, "--sample", "0s", "--json", "-o", a.to_str().unwrap(), "--peek", "HeapApp.SessionState"];
    let output = leakscope(&args);
    let snap = json_of(&output);
    let peek = &snap["peek"];
    let t = &peek["types"][0];
    assert_eq!(
        (t["type_name"].as_str(), t["matched"][0].as_str()),
        (Some("HeapApp.SessionState"), Some("HeapApp.SessionState")),
        "{peek:#}"
    );
    assert!(t["instances"].as_u64().unwrap() >= 3, "{t:#}");
    let samples = t["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 3, "{t:#}");
    let field = |s: &Value, name: &str| -> Value {
        s["fields"].as_array().unwrap().iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("no {name}: {s:#}"))
            ["value"]
            .clone()
    };
    let mut opened = Vec::new();
    for s in samples {
        assert_eq!(s["type_name"], "HeapApp.SessionState", "{s:#}");
        assert!(s["size"].as_u64().unwrap() >= 80, "{s:#}");
        let names: Vec<&str> = s["fields"].as_array().unwrap().iter().filter_map(|f| f["name"].as_str()).collect();
        assert_eq!(names, ["User", "Opened", "Expires", "Id", "Hits", "Misses", "BytesIn", "BytesOut"], "{s:#}");
        assert_eq!(field(s, "User"), "<string, 9 chars>", "{s:#}");
        let o = field(s, "Opened").as_i64().unwrap_or_else(|| panic!("Opened: {s:#}"));
        assert_eq!(field(s, "Expires").as_i64(), Some(o + 3600), "{s:#}");
        assert_eq!(field(s, "Hits").as_i64(), Some(0), "{s:#}");
        assert_eq!(field(s, "Id"), "<System.Guid>", "{s:#}");
        opened.push(o);
    }
    // Spread over the heap: three different instances.
    opened.sort();
    opened.dedup();
    assert_eq!(opened.len(), 3, "{t:#}");
    // The contents were not asked for: they appear nowhere.
    let everything = format!(
        "{}{}{}",
        stdout_of(&output),
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(&a).unwrap()
    );
    assert!(!everything.contains("anonymous"), "string contents leaked without --peek-strings");

    let snap = snapshot_with(run.pid(), &b, "0s", &["--peek", "HeapApp.SessionState", "--peek-strings"]);
    let samples = snap["peek"]["types"][0]["samples"].as_array().unwrap().clone();
    assert_eq!(samples.len(), 3, "{:#}", snap["peek"]);
    for s in &samples {
        assert_eq!(field(s, "User"), "anonymous", "{s:#}");
    }
    assert_eq!(snap["peek"]["strings"], true);
    // The table shows them too, one field per line.
    let text = stdout_of(&leakscope(&[
        "snapshot",
        &pid,
        "--sample",
        "0s",
        "-o",
        dir.path().join("c.ndjson").to_str().unwrap(),
        "--peek",
        "SessionState",
    ]));
    assert!(text.contains("HeapApp.SessionState #1 (") && text.contains("      User = <string, 9 chars>\n"), "{text}");
    assert!(Path::new(&format!("/proc/{}", run.pid())).exists());
    drop(run);
}
