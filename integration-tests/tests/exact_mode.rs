//! Exact mode (`LEAKSCOPE_EXACT`): a slow leak that allocation sampling would take hours to
//! catch — 20 objects of 32 bytes a second under 20 MB/s of garbage — is found within seconds,
//! because once censuses show its type rising the agent follows every allocation of it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use integration_tests::*;
use serde_json::Value;

fn heap_app() -> DotnetApp {
    dotnet_app("HeapApp", Build::FrameworkDependent)
}

/// Runs `HeapApp slowleak 20` under the agent in soak mode with `LEAKSCOPE_EXACT=exact`.
fn slow_leak_under(exact: &str, dir: &Path) -> Vec<Value> {
    let out = dir.join("out.ndjson");
    let mut c = heap_app().command();
    c.args(["slowleak", "20", "2"])
        .envs(agent_env(&out, &dir.join("agent.log"), "1s"))
        .env("LEAKSCOPE_INDUCE_FULL_GC", "1s")
        .env("LEAKSCOPE_EXACT", exact);
    let output = run_with_timeout(c, Duration::from_secs(90));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout_of(&output).contains("done"), "{}", stdout_of(&output));
    read_records(&out)
}

fn statuses(records: &[Value]) -> Vec<String> {
    of_type(records, "status").iter().map(|s| s["message"].as_str().unwrap_or("").to_string()).collect()
}

fn census_count(records: &[Value], type_name: &str) -> u64 {
    let census = of_type(records, "census").into_iter().last().expect("a census");
    census["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type_name"] == type_name)
        .map_or(0, |t| t["count"].as_u64().unwrap())
}

fn retained_site<'a>(records: &'a [Value], type_name: &str, site: &str) -> Option<&'a Value> {
    let last = of_type(records, "retained").into_iter().last()?;
    last["sites"].as_array().unwrap().iter().find(|s| s["type_name"] == type_name && s["site"] == site)
}

#[test]
fn auto_exact_mode_finds_a_slow_leak_from_the_census_trend() {
    let dir = tempfile::tempdir().unwrap();
    let records = slow_leak_under("auto", dir.path());
    let messages = statuses(&records);
    let aimed = messages
        .iter()
        .find(|m| m.starts_with("exact mode: following every allocation of HeapApp.Subscription"))
        .unwrap_or_else(|| panic!("never aimed at the leaking type: {messages:#?}"));
    assert!(aimed.contains("rose in 3 censuses in a row"), "{aimed}");
    // Churn is never a suspect: its counts go up and down.
    assert!(!messages.iter().any(|m| m.contains("following every allocation of System.Byte[]")), "{messages:#?}");

    let live = census_count(&records, "HeapApp.Subscription");
    let site = retained_site(&records, "HeapApp.Subscription", "HeapApp.World.Subscribe").unwrap_or_else(|| {
        panic!("no retained site for the slow leak: {:#}", of_type(&records, "retained").last().unwrap())
    });
    let (objects, samples) = (site["objects"].as_u64().unwrap(), site["samples"].as_u64().unwrap());
    eprintln!("slow leak: census {live} live, exact mode followed {objects} ({samples} samples); aimed: {aimed}");
    // Every allocation since the aim is followed, at weight one; only the first few seconds'
    // (before three rises were seen) are missing.
    assert_eq!(objects, samples, "exact samples stand for themselves: {site}");
    assert!(objects as f64 >= 0.6 * live as f64 && objects <= live, "followed {objects} of {live}");
    assert!(site["location"].as_str().is_some_and(|l| l.starts_with("Program.cs:")), "{site}");

    // The hello says how the agent was set up; comparable points carry the process's RSS.
    let hello = of_type(&records, "hello")[0];
    assert_eq!(
        (hello["config"]["induce_full_gc_ms"].as_u64(), hello["config"]["exact"].as_str()),
        (Some(1000), Some("auto"))
    );
    let census = of_type(&records, "census").into_iter().last().unwrap();
    assert!(
        census["rss"].as_u64().unwrap() > 10_000_000 && census["gc_ms"].as_f64().unwrap() > 0.0,
        "{}",
        census["rss"]
    );
    let exact = &last_summary(&records)["agent"]["exact"];
    assert_eq!(exact["aimed"][0], "HeapApp.Subscription", "{exact}");
    assert!(exact["allocations"].as_u64().unwrap() >= objects, "{exact}");
}

#[test]
fn a_named_type_is_followed_from_the_first_census() {
    let dir = tempfile::tempdir().unwrap();
    let records = slow_leak_under("HeapApp.Subscription", dir.path());
    let messages = statuses(&records);
    assert!(
        messages
            .iter()
            .any(|m| m.contains("following every allocation of HeapApp.Subscription (named in LEAKSCOPE_EXACT)")),
        "{messages:#?}"
    );
    let live = census_count(&records, "HeapApp.Subscription");
    let site =
        retained_site(&records, "HeapApp.Subscription", "HeapApp.World.Subscribe").expect("the slow leak's site");
    let objects = site["objects"].as_u64().unwrap();
    eprintln!("named: census {live} live, followed {objects}: {site}");
    assert!(objects as f64 >= 0.85 * live as f64 && objects <= live, "followed {objects} of {live}");
}

/// `ObjectAllocated` can only be switched on at startup: attached, exact mode says it is off
/// and everything else works.
#[test]
fn exact_mode_is_refused_after_attach_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = heap_app().command();
    c.args(["slowleak", "60", "1"]).env("LEAKSCOPE_EXACT", "auto");
    without_profiler_env(&mut c);
    let mut run = Running::start(c);
    run.wait_for_line("ready", Duration::from_secs(60));
    let out = dir.path().join("attach");
    let mut attach = Command::new(cli_path());
    attach
        .args(["attach", &run.pid().to_string(), "--interval", "1s", "--duration", "4s", "--plain", "--out"])
        .arg(&out);
    let output = run_with_timeout(attach, Duration::from_secs(60));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let records = read_records_lenient(&out.join("recording.ndjson"));
    let messages = statuses(&records);
    assert!(messages.iter().any(|m| m.contains("LEAKSCOPE_EXACT needs the agent loaded at startup")), "{messages:#?}");
    assert!(!of_type(&records, "summary").is_empty(), "profiling went on without it");
}
