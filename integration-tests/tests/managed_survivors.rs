//! The managed-survivors slice end to end: the real agent inside real `dotnet` processes
//! running the LeakApp scenarios, asserted on what the agent reports.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::*;
use serde_json::Value;

fn leak_app() -> DotnetApp {
    dotnet_app("LeakApp", Build::FrameworkDependent)
}

fn scenario(app: &DotnetApp, args: &[&str], env: &[(String, String)]) -> Command {
    let mut c = app.command();
    c.args(args).envs(env.iter().map(|(k, v)| (k, v))).env("DOTNET_CLI_TELEMETRY_OPTOUT", "1");
    c
}

/// 1-based line of the first line of LeakApp's Program.cs containing `needle`.
fn source_line(needle: &str) -> usize {
    let source = std::fs::read_to_string(workspace_root().join("integration-tests/dotnet/LeakApp/Program.cs")).unwrap();
    source.lines().position(|l| l.contains(needle)).expect("needle in Program.cs") + 1
}

/// Runs a LeakApp scenario to completion under the agent; returns its output and the records.
fn run_scenario(args: &[&str], interval: &str, extra_env: &[(&str, &str)]) -> (std::process::Output, Vec<Value>) {
    let app = leak_app();
    let dir = tempfile::tempdir().unwrap();
    let (out, log) = (dir.path().join("out.ndjson"), dir.path().join("agent.log"));
    let mut env = agent_env(&out, &log, interval);
    env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let output = run_with_timeout(scenario(&app, args, &env), Duration::from_secs(90));
    assert!(output.status.success(), "scenario {args:?} failed: {:?}\n{}", output.status, log_text(&log));
    (output, read_records(&out))
}

fn top_site(summary: &Value) -> &Value {
    sites(summary).first().expect("no survivor sites in the summary")
}

/// What `dotnet-gcdump report` says about the heap: total bytes and per-type (bytes, count).
struct GcDump {
    heap_bytes: f64,
    rows: Vec<(f64, f64, String)>,
}

fn gcdump_report(pid: u32) -> GcDump {
    let output = run_with_timeout(
        {
            let mut c = Command::new(dotnet_tool("dotnet-gcdump"));
            c.args(["report", "-p", &pid.to_string()]);
            c
        },
        Duration::from_secs(120),
    );
    assert!(output.status.success(), "dotnet-gcdump failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = stdout_of(&output);
    let number = |s: &str| s.replace(',', "").parse::<f64>().ok();
    let mut dump = GcDump { heap_bytes: 0.0, rows: Vec::new() };
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if line.contains("GC Heap bytes") {
            dump.heap_bytes = number(fields[0]).unwrap();
        } else if let (true, Some(bytes), Some(count)) =
            (fields.len() >= 3, fields.first().and_then(|f| number(f)), fields.get(1).and_then(|f| number(f)))
        {
            {
                // "<bytes> <count> <type, may contain spaces>  [<module>]"
                let rest = after_tokens(line, 2);
                let type_name = rest.rfind("  [").map_or(rest, |end| &rest[..end]);
                dump.rows.push((bytes, count, type_name.trim().to_string()));
            }
        }
    }
    assert!(dump.heap_bytes > 0.0, "unexpected gcdump report:\n{text}");
    dump
}

/// `line` after its first `n` whitespace-separated tokens.
fn after_tokens(line: &str, n: usize) -> &str {
    let mut rest = line;
    for _ in 0..n {
        rest = rest.trim_start();
        rest = &rest[rest.find(char::is_whitespace).unwrap_or(rest.len())..];
    }
    rest
}

fn is_string_row(type_name: &str) -> bool {
    type_name == "System.String" || type_name.starts_with("System.String (Bytes")
}

/// The motivating case: strings leaked into a static list from a known method. The agent must
/// name (System.String, LeakApp.StringLeak.RecordAuditLine) as the top survivor, and its live
/// estimate must agree with dotnet-gcdump taken at the same moment within ±30%.
#[test]
fn string_leak_is_the_top_survivor_and_matches_gcdump() {
    let app = leak_app();
    let dir = tempfile::tempdir().unwrap();
    let (out, log) = (dir.path().join("out.ndjson"), dir.path().join("agent.log"));
    // Leak 80 MB of strings, then hold them (with light churn) while we measure. Every sample
    // followed: the leak takes ~0.5 s, over the agent's first thinning pick (it measured 2 943
    // samples/s there and followed 1 in 2), and a machine twice as fast would have it switch
    // 100 ms sampling windows under a leak that ends mid-window, an error of its own that
    // this comparison is not about (`thinned_sampling_says_so_and_keeps_the_estimate_honest` is).
    let mut env = agent_env(&out, &log, "500ms");
    env.push(("LEAKSCOPE_MAX_SAMPLES_PER_SEC".into(), "0".into()));
    let mut run = Running::start(scenario(&app, &["hold", "90", "80"], &env));
    let ready = run.wait_for_line("ready", Duration::from_secs(60));
    let retained: f64 = ready.split_whitespace().nth(1).unwrap().parse().unwrap();
    std::thread::sleep(Duration::from_secs(1));

    let dump = gcdump_report(run.pid());
    // dotnet-gcdump's induced full GC is done: wait for two summaries made after it.
    let seen = of_type(&read_records_lenient(&out), "summary").len();
    let records = wait_for_summaries(&out, seen + 2, Duration::from_secs(20));
    let summary = last_summary(&records);

    let top = top_site(summary);
    assert_eq!(top["type_name"], "System.String", "top site: {top}");
    assert_eq!(top["site"], "LeakApp.StringLeak.RecordAuditLine", "top site: {top}");
    // The line of code: the statement that appends to the static list.
    assert_eq!(top["location"], format!("Program.cs:{}", source_line("Retained.Add($\"audit entry")), "{top}");
    let stack = of_type(&records, "stack").into_iter().find(|s| s["id"] == top["stack"]).expect("top site's stack");
    let frames: Vec<&str> = stack["frames"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(
        frames.contains(&"LeakApp.StringLeak.LeakThenHold") && frames.contains(&"LeakApp.Program.Main"),
        "{frames:?}"
    );

    // gcdump's object counts are exact. Its per-type byte column shows a single object's size
    // for variable-size types (22 B for the System.String row), so the strings' bytes are the
    // heap total minus every other type's bytes.
    let gcdump_strings: f64 = dump.rows.iter().filter(|r| is_string_row(&r.2)).map(|r| r.1).sum();
    let others: f64 = dump.rows.iter().filter(|r| !is_string_row(&r.2)).map(|r| r.0).sum();
    let gcdump_string_bytes = dump.heap_bytes - others;
    let our_objects = objects_of_type(summary, "System.String");
    let our_bytes = bytes_of_type(summary, "System.String");
    let object_error = our_objects / gcdump_strings - 1.0;
    let byte_error = our_bytes / gcdump_string_bytes - 1.0;
    eprintln!(
        "strings: leakscope {our_objects:.0} objects / {:.1} MB; gcdump {gcdump_strings:.0} objects / {:.1} MB; \
         app retained {retained}; errors {:+.1}% objects, {:+.1}% bytes",
        our_bytes / 1e6,
        gcdump_string_bytes / 1e6,
        object_error * 100.0,
        byte_error * 100.0
    );
    assert!(object_error.abs() <= 0.30, "object estimate off by {:.1}%", object_error * 100.0);
    assert!(byte_error.abs() <= 0.30, "byte estimate off by {:.1}%", byte_error * 100.0);
    assert!(summary["heap"]["gen2"].as_u64().unwrap() > 50_000_000, "gen2 size: {}", summary["heap"]);
    assert!(summary["gc"]["induced"].as_u64().unwrap() >= 1, "gcdump's induced GC not counted: {}", summary["gc"]);
}

/// Heavy garbage with nothing kept: no site may show sustained growth.
#[test]
fn pure_churn_shows_no_sustained_growth() {
    let (_, records) = run_scenario(&["churn", "12"], "500ms", &[]);
    let summaries = of_type(&records, "summary");
    assert!(summaries.len() >= 15, "only {} summaries", summaries.len());
    let samples = last_summary(&records)["agent"]["samples"].as_u64().unwrap();
    assert!(samples > 1000, "churn should be sampled a lot: {samples}");

    // Live survivor estimate over time. Garbage promoted to gen2 counts until a full GC collects
    // it (its weak handle says alive till then): about one summary in four carries such a spike
    // of 1-11 MB (31 of 120 measured). Each half's mean moved with them: a second half 2 MB
    // above 1.5 × the first came ~1 run in 90 (simulated from the measured spikes). What
    // survives for good is the floor under the spikes, each half's smallest value: under pure
    // churn it must not rise, and it stays small (the app keeps ~1.3 MB alive at any time; the
    // floor measured 0.3-0.5 MB). A half's floor is a spike only if all ~12 of its summaries
    // are (~1 in 10^7 at one in four). Dead samples counted as survivors would lift the floor
    // by every sample taken since (megabytes a second here).
    let totals: Vec<f64> =
        summaries[2..].iter().map(|s| sites(s).iter().map(|r| r["bytes"].as_f64().unwrap()).sum::<f64>()).collect();
    let half = totals.len() / 2;
    let floor = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (first, second) = (floor(&totals[..half]), floor(&totals[half..]));
    eprintln!("churn survivor bytes: floor of the first half {first:.0}, of the second {second:.0}; series {totals:?}");
    assert!(second < first * 1.5 + 2e6, "survivors grew under pure churn: {first:.0} -> {second:.0}: {totals:?}");
    assert!(first < 5e6 && second < 5e6, "churn survivors too large: {totals:?}");
}

/// A generic-type leak: type names are rendered fully and C#-style.
#[test]
fn generic_type_names_are_rendered_fully() {
    let (_, records) = run_scenario(&["generic", "8"], "1s", &[]);
    let summary = last_summary(&records);
    let has =
        |type_name: &str, site: &str| sites(summary).iter().any(|s| s["type_name"] == type_name && s["site"] == site);
    let names: Vec<String> = sites(summary).iter().map(|s| format!("{} @ {}", s["type_name"], s["site"])).collect();
    assert!(
        has("System.Collections.Generic.Dictionary<String, List<Order>>", "LeakApp.GenericLeak.IndexOrder"),
        "{names:#?}"
    );
    assert!(has("LeakApp.Order", "LeakApp.GenericLeak.IndexOrder"), "{names:#?}");
}

/// Eight threads allocating and leaking at once: correct result, no crash, no deadlock.
#[test]
fn eight_threads_leaking_at_once() {
    let (output, records) = run_scenario(&["threads", "10"], "1s", &[]);
    assert_eq!(stdout_of(&output), "ready\ndone 1\n");
    let summary = last_summary(&records);
    let top = top_site(summary);
    assert_eq!(
        (top["type_name"].as_str(), top["site"].as_str()),
        (Some("System.Byte[]"), Some("LeakApp.ThreadedLeak.LeakBuffer")),
        "{top}"
    );
    let agent = &summary["agent"];
    assert_eq!(agent["handle_failures"], 0);
    assert!(agent["samples"].as_u64().unwrap() > 500, "{agent}");
    assert!(agent["memory_bytes"].as_u64().unwrap() < 64 << 20, "{agent}");
    assert!(of_type(&records, "bye").len() == 1, "no clean shutdown record");
}

/// A self-contained .NET 8 app (AllocationTick sampling): same finding.
#[test]
fn dotnet8_self_contained_app_is_profiled_with_allocation_tick() {
    let app = dotnet_app("LeakApp.Net8", Build::SelfContained);
    let dir = tempfile::tempdir().unwrap();
    let (out, log) = (dir.path().join("out.ndjson"), dir.path().join("agent.log"));
    let output =
        run_with_timeout(scenario(&app, &["strings", "6"], &agent_env(&out, &log, "1s")), Duration::from_secs(90));
    assert!(output.status.success());
    let records = read_records(&out);
    let hello = of_type(&records, "hello")[0];
    assert!(hello["runtime"].as_str().unwrap().starts_with("8."), "{hello}");
    assert_eq!(hello["sampling"], "AllocationTick");
    let top = top_site(last_summary(&records));
    assert_eq!(
        (top["type_name"].as_str(), top["site"].as_str()),
        (Some("System.String"), Some("LeakApp.StringLeak.RecordAuditLine")),
        "{top}"
    );
}

// ---- Bad input: the host's exit code and stdout never change; the agent says why it degraded.

fn baseline(app: &DotnetApp) -> (Option<i32>, String) {
    let output = run_with_timeout(scenario(app, &["exit-code"], &[]), Duration::from_secs(60));
    (output.status.code(), stdout_of(&output))
}

fn profiler_only_env() -> Vec<(String, String)> {
    vec![
        ("CORECLR_ENABLE_PROFILING".into(), "1".into()),
        ("CORECLR_PROFILER".into(), AGENT_CLSID.into()),
        ("CORECLR_PROFILER_PATH".into(), agent_path().display().to_string()),
    ]
}

fn run_exit_code_with(app: &DotnetApp, extra: &[(&str, String)]) -> (Option<i32>, String, String) {
    let mut env = profiler_only_env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let output = run_with_timeout(scenario(app, &["exit-code"], &env), Duration::from_secs(60));
    (output.status.code(), stdout_of(&output), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn absent_or_unwritable_collector_leaves_the_app_unchanged() {
    let app = leak_app();
    let expected = baseline(&app);
    assert_eq!(expected.0, Some(3));
    let dir = tempfile::tempdir().unwrap();

    let log = dir.path().join("absent.log");
    let absent = dir.path().join("nobody-listens.sock");
    let (code, stdout, stderr) = run_exit_code_with(
        &app,
        &[("LEAKSCOPE_SOCKET", absent.display().to_string()), ("LEAKSCOPE_LOG", log.display().to_string())],
    );
    assert_eq!((code, stdout), expected.clone());
    assert_eq!(stderr, "");
    assert!(log_text(&log).contains("cannot open collector socket"), "log: {}", log_text(&log));

    let log = dir.path().join("unwritable.log");
    let (code, stdout, stderr) = run_exit_code_with(
        &app,
        &[("LEAKSCOPE_OUTPUT", "/proc/no/such/dir/out.ndjson".into()), ("LEAKSCOPE_LOG", log.display().to_string())],
    );
    assert_eq!((code, stdout), expected.clone());
    assert_eq!(stderr, "");
    assert!(log_text(&log).contains("cannot open output file"), "log: {}", log_text(&log));

    // Only the CORECLR_* variables: nowhere to report, so the agent declines and says why in
    // its default log file.
    let (code, stdout, _) = run_exit_code_with(&app, &[("TMPDIR", dir.path().display().to_string())]);
    assert_eq!((code, stdout), expected);
    let default_log = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("leakscope-agent."))
        .expect("a default log file in TMPDIR");
    assert!(log_text(&default_log.path()).contains("neither LEAKSCOPE_SOCKET nor LEAKSCOPE_OUTPUT"));
}

#[test]
fn garbage_settings_fall_back_to_defaults_and_are_reported() {
    let app = leak_app();
    let expected = baseline(&app);
    let dir = tempfile::tempdir().unwrap();
    let (out, log) = (dir.path().join("out.ndjson"), dir.path().join("agent.log"));
    let (code, stdout, stderr) = run_exit_code_with(
        &app,
        &[
            ("LEAKSCOPE_OUTPUT", out.display().to_string()),
            ("LEAKSCOPE_LOG", log.display().to_string()),
            ("LEAKSCOPE_INTERVAL", "banana".into()),
            ("LEAKSCOPE_MAX_TRACKED", "-12".into()),
            ("LEAKSCOPE_LOG_LEVEL", "very loud".into()),
            ("LEAKSCOPE_STACK_DEPTH", "\u{1F4A9}".into()),
        ],
    );
    assert_eq!((code, stdout), expected);
    assert_eq!(stderr, "");
    let records = read_records(&out);
    let statuses: Vec<String> = of_type(&records, "status").iter().map(|s| s["message"].to_string()).collect();
    for name in ["LEAKSCOPE_INTERVAL", "LEAKSCOPE_MAX_TRACKED", "LEAKSCOPE_LOG_LEVEL", "LEAKSCOPE_STACK_DEPTH"] {
        assert!(statuses.iter().any(|s| s.contains(name)), "no status about {name}: {statuses:?}");
        assert!(log_text(&log).contains(name), "log does not mention {name}");
    }
    let hello = of_type(&records, "hello")[0];
    assert_eq!(hello["interval_ms"], 5000, "default interval not used");
    assert_eq!(hello["config"]["max_tracked"], 100_000);
    assert!(!of_type(&records, "summary").is_empty());
}

/// The collector goes away mid-run and comes back: the app runs on, the agent reconnects and
/// starts the new connection with a fresh hello.
#[test]
fn agent_reconnects_when_the_collector_comes_back() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    let app = leak_app();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("collector.sock");
    let log = dir.path().join("agent.log");
    let mut env = profiler_only_env();
    env.push(("LEAKSCOPE_SOCKET".into(), socket.display().to_string()));
    env.push(("LEAKSCOPE_LOG".into(), log.display().to_string()));
    env.push(("LEAKSCOPE_INTERVAL".into(), "200ms".into()));

    let listener = UnixListener::bind(&socket).unwrap();
    let mut run = Running::start(scenario(&app, &["strings", "12"], &env));
    let first_connection_lines = {
        let (conn, _) = listener.accept().unwrap();
        let mut lines = BufReader::new(conn).lines();
        let mut got = Vec::new();
        while got.len() < 5 {
            got.push(lines.next().expect("agent closed the connection").unwrap());
        }
        got
    }; // the collector "dies": connection and listener dropped
    drop(listener);
    std::fs::remove_file(&socket).unwrap();
    assert!(first_connection_lines[0].contains(r#""type":"hello""#));
    std::thread::sleep(Duration::from_secs(2));

    let listener = UnixListener::bind(&socket).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    listener.set_nonblocking(true).unwrap();
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("agent never reconnected: {e}"),
        }
    };
    conn.set_nonblocking(false).unwrap();
    let mut lines = BufReader::new(conn).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains(r#""type":"hello""#), "reconnection must start with hello: {first}");
    let summary =
        lines.map(Result::unwrap).find(|l| l.contains(r#""type":"summary""#)).expect("a summary after reconnecting");
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert!(summary["seq"].as_u64().unwrap() > 1);
    assert!(run.wait_for_line("done", Duration::from_secs(60)).starts_with("done"));
    assert!(run.wait(Duration::from_secs(30)).success());
    assert!(log_text(&log).contains("restored"), "log: {}", log_text(&log));
}

/// Soak mode: the agent induces full GCs from its own thread and reports, after each, what the
/// application still retains.
#[test]
fn soak_mode_reports_what_survives_each_induced_full_gc() {
    let (_, records) = run_scenario(&["strings", "8"], "1s", &[("LEAKSCOPE_INDUCE_FULL_GC", "1s")]);
    assert!(
        of_type(&records, "status")
            .iter()
            .any(|s| s["message"].as_str().unwrap().contains("inducing a full blocking GC")),
        "soak mode not announced"
    );
    let retained = of_type(&records, "retained");
    assert!(retained.len() >= 5, "only {} retained reports", retained.len());
    let leak: Vec<f64> = retained.iter().map(|r| bytes_of_type(r, "System.String")).collect();
    assert!(leak.windows(2).all(|w| w[1] >= w[0] * 0.9), "retained strings should keep rising: {leak:?}");
    assert!(leak.last().unwrap() > &(leak[0] + 10e6), "{leak:?}");
    assert_eq!(sites(retained.last().unwrap())[0]["site"], "LeakApp.StringLeak.RecordAuditLine");
    assert!(last_summary(&records)["gc"]["induced"].as_u64().unwrap() >= 5);

    // After each induced GC, a census of the whole heap: exact string counts, rising.
    let censuses = of_type(&records, "census");
    assert!(censuses.len() >= 5, "only {} censuses", censuses.len());
    let strings: Vec<u64> = censuses
        .iter()
        .map(|c| {
            c["types"].as_array().unwrap().iter().find(|t| t["type_name"] == "System.String").unwrap()["count"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(strings.windows(2).all(|w| w[1] > w[0]), "census string counts should rise: {strings:?}");
    assert!(censuses.iter().all(|c| c["pause_ms"].as_f64().unwrap() > 0.0 && c["unreadable"] == 0));
}

/// Past `LEAKSCOPE_MAX_SAMPLES_PER_SEC` the agent follows one sample in N, says so, and its
/// estimate stays unbiased: the leaked strings are still counted, within 5 standard errors.
#[test]
fn thinned_sampling_says_so_and_keeps_the_estimate_honest() {
    let (output, records) = run_scenario(&["strings", "30"], "1s", &[("LEAKSCOPE_MAX_SAMPLES_PER_SEC", "100")]);
    let leaked: f64 = stdout_of(&output).lines().last().unwrap().trim_start_matches("done ").parse().unwrap();
    let summary = last_summary(&records);
    // Thinning is applied at the source (allocation sampling on in one window in `one_in`, on
    // .NET 10) and, beyond that, to the delivered samples (`keep_one_in`).
    let agent = &summary["agent"];
    let windows = agent["sampling_windows"]["one_in"].as_u64().unwrap_or(1);
    let keep = agent["keep_one_in"].as_u64().unwrap();
    assert!(windows * keep > 1, "no thinning: {agent}");
    if windows > 1 {
        assert!(agent["sampling_windows"]["switches"].as_u64().unwrap() >= 2, "windows never switched: {agent}");
    } else {
        assert!(agent["thinned"].as_u64().unwrap() > 0, "{agent}");
    }
    assert!(
        of_type(&records, "status").iter().any(|s| s["message"].as_str().unwrap().contains("following 1 sample in")),
        "thinning not announced"
    );
    let site = sites(summary)
        .iter()
        .find(|s| s["type_name"] == "System.String" && s["site"] == "LeakApp.StringLeak.RecordAuditLine")
        .expect("the leak site");
    let (objects, bytes) = (site["objects"].as_f64().unwrap(), site["bytes"].as_f64().unwrap());
    // The standard error, from what the test knows. Every leaked string has the same size s
    // (its bytes per object), so the runtime draws each with p = 1 - (1 - 1/102400)^s, and the
    // agent follows a drawn one with probability 1/f (f: the windows skipped times the thinning
    // of what is delivered, at most the largest factor of the run), weighing it f/p: the
    // estimate's variance is at most the sum of f/p over the strings, so its relative standard
    // error at most sqrt(f_max / (leaked p)). About 450 strings followed here: ~5 %.
    let factor = |s: &Value| {
        let agent = &s["agent"];
        agent["keep_one_in"].as_f64().unwrap_or(1.0) * agent["sampling_windows"]["one_in"].as_f64().unwrap_or(1.0)
    };
    let f_max = of_type(&records, "summary").into_iter().map(factor).fold(1.0, f64::max);
    let p = 1.0 - (1.0 - 1.0 / 102_400.0f64).powf(bytes / objects);
    let se = (f_max / (leaked * p)).sqrt();
    let error = objects / leaked - 1.0;
    eprintln!(
        "thinned estimate: {objects:.0} objects vs {leaked} leaked ({:+.1}%, {:+.2} standard errors of {:.1}%; \
         {} samples, largest factor {f_max})",
        error * 100.0,
        error / se,
        se * 100.0,
        site["samples"]
    );
    // 5 of them: a false failure ~1 in 10^6 from the draws alone. The choice of 100 ms sampling
    // windows adds a variance of its own as the leak's pace varies, which the bound leaves out
    // of the arithmetic: measured over 8 runs (1 window in 4, then 1 in 2), the errors were
    // -0.5 to +2.0 of these standard errors (sd 0.8), so the sum of f/p bounds both. (Over 8 s,
    // ~120 strings followed, the error is ~9.5 %: ±30 % failed ~1 run in 700; 2 of 5 runs
    // measured -17 %.) A factor left out of the weights (2 at least) would be 50 % off: the
    // bound stays below that.
    assert!(5.0 * se < 0.45, "too few strings followed to judge the estimate: ±{:.1}%", se * 100.0);
    assert!(error.abs() <= 5.0 * se, "estimate off by {:.1}% ({:.1} standard errors)", error * 100.0, error / se);
}
