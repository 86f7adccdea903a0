//! A soak gate never passes what it could not judge (issue #10): the real CLI on real `dotnet`
//! workers (SoakApp, LeakApp) with the real agent.
//!
//! * one comparable point after warm-up is INCONCLUSIVE (exit 2) in every report, never a pass;
//!   settings that cannot give 8 points are refused before anything starts;
//! * without `--gc-every` the period is chosen from `--duration`: a one-minute soak decides;
//! * a leak spread over a hundred types, each far below the per-type threshold, fails the
//!   default rule on the census total;
//! * `run` on a short recording says "not enough data", not "no leak suspect";
//! * a worker started by `run` from a background job stops at the first signal.
//!
//! The four soaks (60 s each, light on CPU) run at once, the first time a test asks ([`farm`]);
//! the other tests run beside them.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use integration_tests::*;
use serde_json::Value;

const SOAK_TIMEOUT: Duration = Duration::from_secs(300);

/// `leakscope soak --duration 60s [extra…] -- dotnet SoakApp.dll SCENARIO` (`extra` may set
/// its own `--duration`).
fn soak_command(out: &Path, scenario: &str, extra: &[&str]) -> Command {
    let mut args = if extra.contains(&"--duration") { vec![] } else { vec!["--duration", "60s"] };
    args.extend_from_slice(extra);
    soak_app_command(out, scenario, &args)
}

/// Every soak of this file, started at once the first time a test asks.
fn farm() -> &'static HashMap<String, SoakRun> {
    static FARM: OnceLock<HashMap<String, SoakRun>> = OnceLock::new();
    FARM.get_or_init(|| {
        soak_app(); // build once, before the parallel runs
        let dir = profile_dir().join("soak-gate-tests");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let shim = shim_path().display().to_string();
        let jobs: Vec<(&str, &str, Vec<&str>)> = vec![
            // The soak: a minute, a full GC every 30 s (run anyway with --allow-short).
            ("leak-every-30s", "steady-leak", vec!["--gc-every", "30s", "--allow-short", "--no-native"]),
            // The same minute, the period left to leakscope.
            ("leak-chosen", "steady-leak", vec!["--no-native"]),
            // Churn only, the period left to leakscope, with the shim (native verdicts at the
            // chosen summary interval).
            ("churn-chosen", "churn", vec!["--shim", shim.as_str()]),
            // 90 s: at 60 s the recent part's interval of a 5 MB/h total sometimes still
            // straddled the 1 MB/h rule (INCONCLUSIVE, "about 6 s more would decide"; one
            // fresh-clone run in several).
            ("thin-leak", "thin-leak", vec!["--duration", "90s", "--no-native"]),
        ];
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(name, scenario, extra)| {
                let out = dir.join(name);
                let c = soak_command(&out, scenario, &extra);
                let name = name.to_string();
                std::thread::spawn(move || (name, run_soak(c, &out, SOAK_TIMEOUT, None)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn run(name: &str) -> &'static SoakRun {
    farm().get(name).unwrap_or_else(|| panic!("no soak {name}"))
}

/// The `<testcase …>` elements of a JUnit report, each up to the next one.
fn testcases(xml: &str) -> Vec<&str> {
    xml.split("<testcase ").skip(1).map(|c| c.split("</testsuite>").next().unwrap()).collect()
}

fn passes(case: &str) -> bool {
    !(case.contains("<failure ") || case.contains("<error ") || case.contains("<skipped "))
}

// ─────────────────────────── no pass without enough evidence ───────────────────────────

#[test]
fn a_minute_with_a_full_gc_every_30s_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    let app = soak_app();
    let mut c = Command::new(cli_path());
    c.args(["soak", "--duration", "60s", "--gc-every", "30s", "--no-native", "--out"]).arg(&out);
    c.arg("--").arg(&app.program).args(&app.leading_args).arg("steady-leak");
    let started = Instant::now();
    let o = run_with_timeout(c, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "refused only after {:?}", started.elapsed());
    assert!(
        err.contains("leakscope: error: --duration 1m00s with --gc-every 30s gives about 1 comparable point after the 12s warm-up; a verdict needs at least 8"),
        "{err}"
    );
    assert!(err.contains("hint: use --duration 6m00s or more, or --gc-every 5s"), "{err}");
    assert!(err.contains("--allow-short"), "{err}");
    assert!(!out.exists(), "nothing is started or written");
}

#[test]
fn a_minute_with_a_full_gc_every_30s_on_a_leaking_worker_is_inconclusive_never_a_pass() {
    let r = run("leak-every-30s");
    assert_eq!(r.code, Some(2), "{}", r.summary());
    assert!(
        r.stderr.contains("leakscope: warning: --duration 1m00s with --gc-every 30s gives about 1 comparable point"),
        "{}",
        r.stderr
    );
    let soak = r.soak();
    assert_eq!(soak["outcome"], "error");
    let headline = soak["headline"].as_str().unwrap();
    assert!(
        headline.starts_with("INCONCLUSIVE: ")
            && headline.contains(" after the 12s warm-up, 8 needed: use --duration 6m00s or more, or --gc-every 5s"),
        "{headline}"
    );
    assert!(headline.contains("comparable point"), "{headline}");
    let suff = &soak["sufficiency"];
    assert_eq!(suff["enough"], false);
    assert!(suff["points_after_warmup"].as_u64().unwrap() < 8, "{suff}");
    assert!(suff["blocking"].as_u64().unwrap() > 0, "{suff}");
    assert_eq!(suff["suggested_gc_every_ms"], 5000);
    assert!(soak["decided_after_ms"].is_null());
    let leak = r.subject("type:SoakApp.AuditRecord");
    assert_eq!(leak["verdict"], "inconclusive");
    assert_eq!(leak["growth"]["reason"], "too_few_points");
    assert_eq!(leak["blocking"], true);

    // report.txt, the summary, report.html: the same headline, and no time to verdict.
    let text = r.file("report.txt");
    assert!(text.contains(&format!("SOAK VERDICT: {headline} (exit 2)")), "{text}");
    assert!(r.stderr.contains(&format!("leakscope soak: {headline} (exit 2)")), "{}", r.stderr);
    let html = r.file("report.html");
    assert!(html.contains("<span class=\"outcome inconclusive\">INCONCLUSIVE</span>"));
    for (name, t) in [("report.txt", &text), ("stderr", &r.stderr), ("report.html", &html)] {
        assert!(!t.contains("verdict reached after"), "{name} claims a verdict: {t}");
    }

    // junit.xml: an error, and no passing testcase for the leaking subjects or the rules.
    let xml = r.file("junit.xml");
    assert!(xml.contains("<error message=\"INCONCLUSIVE: "), "{xml}");
    let cases = testcases(&xml);
    let leaking: Vec<&&str> =
        cases.iter().filter(|c| c.contains("AuditRecord") || c.contains("AuditLog.Append")).collect();
    assert!(
        leaking.iter().any(|c| c.starts_with("classname=\"leakscope.type\" name=\"SoakApp.AuditRecord\"")),
        "{xml}"
    );
    for c in &leaking {
        assert!(!passes(c), "a passing testcase for a leaking subject: {c}");
    }
    for c in cases.iter().filter(|c| c.starts_with("classname=\"leakscope.rule\"")) {
        assert!(c.contains("<error message=\"`"), "a rule that could not be checked passes: {c}");
    }
}

#[test]
fn a_minute_with_the_period_left_to_leakscope_finds_the_leak() {
    let r = run("leak-chosen");
    assert_eq!(r.code, Some(1), "{}", r.summary());
    assert!(
        r.stderr.contains("leakscope soak: a full GC every 3s (chosen for --duration 1m00s; --gc-every sets it): about 16 comparable points after the 12s warm-up"),
        "{}",
        r.stderr
    );
    let soak = r.soak();
    assert_eq!(soak["settings"]["gc_every_ms"], 3000);
    assert_eq!(soak["settings"]["gc_every_chosen"], true);
    let points = soak["measurement"]["points_after_warmup"].as_u64().unwrap();
    assert!(points >= 12, "{points} comparable points after warm-up: {}", r.summary());
    assert_eq!(soak["sufficiency"]["enough"], true);
    assert!(r.failing().contains(&"type:SoakApp.AuditRecord".to_string()), "{}", r.summary());
    assert!(soak["headline"].as_str().unwrap().starts_with("FAIL: "), "{}", r.summary());
    assert!(soak["headline"].as_str().unwrap().contains("SoakApp.AuditRecord"), "{}", r.summary());
    let t = r.subject("type:SoakApp.AuditRecord");
    assert_eq!(t["sites"][0]["site"], "SoakApp.AuditLog.Append", "{t}");
    assert!(r.file("report.txt").contains("a full GC induced every 3s (chosen for the duration)"));
}

#[test]
fn a_minute_of_churn_with_the_period_left_to_leakscope_passes() {
    let r = run("churn-chosen");
    assert_eq!(r.code, Some(0), "{}", r.summary());
    let soak = r.soak();
    assert_eq!(soak["outcome"], "pass");
    assert_eq!(soak["settings"]["gc_every_chosen"], true);
    assert!(soak["measurement"]["points_after_warmup"].as_u64().unwrap() >= 12, "{}", r.summary());
    assert_eq!(soak["sufficiency"]["enough"], true);
    assert!(r.failing().is_empty(), "{}", r.summary());
    // The shim was on: native memory was judged on summaries at the chosen interval (3 s).
    assert_eq!(r.report["session"]["interval_ms"], 3000);
    let native = r.subject("native");
    assert_ne!(native["growth"]["reason"], "too_few_points", "{native}");
    assert!(soak["decided_after_ms"].as_f64().is_some());
    assert!(r.stderr.contains("verdict reached after"), "{}", r.stderr);
}

#[test]
fn a_leak_spread_thinly_over_a_hundred_types_fails_on_the_census_total() {
    let r = run("thin-leak");
    assert_eq!(r.code, Some(1), "{}", r.summary());
    assert_eq!(r.failing(), ["managed"], "no single type breaks the per-type rule: {}", r.summary());
    let total = r.subject("managed");
    assert_eq!(total["failed_rules"][0], "managed growth > 1MB/h");
    let rate = total["growth"]["bytes_per_hour"].as_f64().unwrap();
    assert!(rate > 3.5e6 && rate < 7e6, "the leak is 5 MB/h in all, measured {rate}");
    // Each of its types grows far below the per-type 100 kB/h, and the evidence names them.
    let shards: Vec<&Value> = r.soak()["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["id"].as_str().unwrap().starts_with("type:SoakApp.Shard<"))
        .collect();
    assert!(!shards.is_empty(), "{}", r.summary());
    for s in &shards {
        assert!(s["growth"]["bytes_per_hour"].as_f64().unwrap() < 100e3, "{s}");
    }
    let evidence = total["evidence"].as_str().unwrap();
    let named = evidence.split("the fastest steadily growing types: ").nth(1).unwrap_or_else(|| panic!("{evidence}"));
    assert!(named.matches("SoakApp.Shard<").count() >= 3, "{evidence}");
    let growing = r.soak()["memory"][0]["growing_types"].as_array().unwrap();
    assert!(
        growing.iter().filter(|t| t["label"].as_str().unwrap().starts_with("SoakApp.Shard<")).count() >= 3,
        "{growing:?}"
    );
    assert!(
        r.soak()["headline"].as_str().unwrap().starts_with("FAIL: 1 subject breaks the rules: live managed data +"),
        "{}",
        r.summary()
    );
    let xml = r.file("junit.xml");
    assert!(xml.contains("classname=\"leakscope.managed\" name=\"live managed data\""), "{xml}");
}

// ─────────────────────────── run: not enough data ───────────────────────────

#[test]
fn run_for_20s_on_a_leaking_worker_says_not_enough_data_not_no_leak_suspect() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let app = dotnet_app("LeakApp", Build::FrameworkDependent);
    let mut c = Command::new(cli_path());
    c.args(["run", "--no-native", "--plain", "--duration", "20s", "--out"]).arg(&out).arg("--");
    c.arg(&app.program).args(&app.leading_args).args(["strings", "120"]);
    let o = run_with_timeout(c, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let text = std::fs::read_to_string(out.join("report.txt")).unwrap();
    for (name, t) in [("summary", stderr.as_ref()), ("report.txt", text.as_str())] {
        assert!(t.contains("Not enough data to judge yet: "), "{name}: {t}");
        assert!(t.contains("full GC"), "{name}: {t}");
        assert!(t.contains("record longer, e.g. --duration "), "{name}: {t}");
        assert!(!t.to_lowercase().contains("no leak suspect"), "{name}: {t}");
    }
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let s = &report["sufficiency"];
    assert_eq!(s["enough"], false, "{s}");
    assert!(s["points_after_warmup"].as_u64().unwrap() < 8, "{s}");
    assert!(s["suggested_duration_ms"].as_u64().unwrap() > 20_000, "{s}");
}

// ─────────────────────────── signals from a background job ───────────────────────────

/// `(state, ppid)` of a process, from /proc/PID/stat; `None` once it is gone.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

fn alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

fn signal_mask(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let v = status.lines().find_map(|l| l.strip_prefix(key)).unwrap();
    u64::from_str_radix(v.trim(), 16).unwrap()
}

/// A shell script's background job (`bash -c '… &'`) starts with SIGINT ignored. The worker
/// `run` starts from there must still stop at the first signal: leakscope's SIGINT to its group.
#[test]
fn a_worker_started_by_run_from_a_background_job_stops_at_the_first_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let log = dir.path().join("run.log");
    let app = soak_app();
    let quote = |p: &Path| format!("'{}'", p.display());
    let script = format!(
        "{} run --no-native --plain --out {} -- {} {} churn > {} 2>&1 & echo $!",
        quote(&cli_path()),
        quote(&out),
        quote(&app.program),
        app.leading_args.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" "),
        quote(&log)
    );
    let o = run_with_timeout(
        {
            let mut c = Command::new("bash");
            c.arg("-c").arg(&script).env("DOTNET_CLI_TELEMETRY_OPTOUT", "1");
            c
        },
        Duration::from_secs(30),
    );
    let leakscope: u32 = stdout_of(&o).trim().parse().expect("the background job's pid");
    // The worker: leakscope's child, once it printed "ready" (its handlers are installed).
    let deadline = Instant::now() + Duration::from_secs(60);
    let worker = loop {
        assert!(Instant::now() < deadline, "no worker started: {}", std::fs::read_to_string(&log).unwrap_or_default());
        let child = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|&pid| proc_stat(pid).is_some_and(|(_, ppid)| ppid == leakscope));
        if let Some(pid) = child.filter(|_| std::fs::read_to_string(&log).unwrap_or_default().contains("ready")) {
            break pid;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(2));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let bit = 1u64 << (sig - 1);
        assert_eq!(signal_mask(worker, "SigIgn:") & bit, 0, "signal {sig} is ignored by the worker");
        assert_eq!(signal_mask(worker, "SigBlk:") & bit, 0, "signal {sig} is blocked in the worker");
    }
    // SAFETY: kill(2) on a pid this test started (through bash); no memory is involved.
    assert_eq!(unsafe { libc::kill(leakscope as libc::pid_t, libc::SIGTERM) }, 0);
    let sent = Instant::now();
    while alive(worker) && sent.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped_after = sent.elapsed();
    eprintln!("worker stopped {stopped_after:?} after the SIGTERM to leakscope");
    assert!(stopped_after < Duration::from_secs(2), "the worker took {stopped_after:?} to stop");
    // leakscope finishes its report and exits.
    let deadline = Instant::now() + Duration::from_secs(60);
    while alive(leakscope) {
        assert!(Instant::now() < deadline, "leakscope did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["session"]["stopped_by"], "SIGTERM", "{}", report["session"]);
}
