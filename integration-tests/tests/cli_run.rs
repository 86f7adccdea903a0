//! The `leakscope` CLI driving the real agent in real `dotnet` processes: what a user runs.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use integration_tests::*;
use serde_json::Value;

fn leak_app() -> DotnetApp {
    dotnet_app("LeakApp", Build::FrameworkDependent)
}

/// `leakscope run --no-native --out DIR --interval 500ms -- <LeakApp scenario…>`.
fn leakscope_run(out: &Path, scenario: &[&str]) -> std::process::Output {
    let app = leak_app();
    let mut c = Command::new(cli_path());
    c.args(["run", "--no-native", "--interval", "500ms", "--out"]).arg(out).arg("--");
    c.arg(&app.program).args(&app.leading_args).args(scenario);
    run_with_timeout(c, Duration::from_secs(180))
}

fn report(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("report.json")).expect("report.json written");
    serde_json::from_str(&text).expect("report.json is JSON")
}

fn managed_sites(report: &Value) -> Vec<&Value> {
    report["processes"].as_array().unwrap().iter().flat_map(|p| p["managed_sites"].as_array().unwrap()).collect()
}

#[test]
fn run_names_the_leaking_type_site_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = leakscope_run(&out, &["strings", "12"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // Not a terminal: the target's stdout passes through untouched.
    assert!(stdout_of(&output).starts_with("ready\n") && stdout_of(&output).contains("done "));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Leak suspect: System.String allocated at LeakApp.StringLeak.RecordAuditLine"), "{stderr}");

    let report = report(&out);
    assert_eq!(report["schema"], "leakscope.report/1");
    let finding = &report["findings"][0];
    assert_eq!(finding["kind"], "managed");
    assert_eq!(finding["type_name"], "System.String");
    assert_eq!(finding["site"], "LeakApp.StringLeak.RecordAuditLine");
    assert!(finding["location"].as_str().unwrap().starts_with("Program.cs:"), "{finding}");
    assert!(finding["bytes_per_min"].as_f64().unwrap() > 1e6, "{finding}");
    assert_eq!(
        report["findings"].as_array().unwrap().len(),
        1,
        "only the real leak is a finding: {}",
        report["findings"]
    );
    let text = std::fs::read_to_string(out.join("report.txt")).unwrap();
    assert!(text.contains("Leak suspect: System.String allocated at LeakApp.StringLeak.RecordAuditLine"));
    assert!(out.join("recording.ndjson").is_file());
}

/// When `--duration` ends the run, leakscope asks the agent what keeps the growing type alive
/// before stopping the worker: the finding names the static field.
#[test]
fn run_ended_by_duration_says_what_keeps_the_leak_alive() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let app = leak_app();
    let mut c = Command::new(cli_path());
    c.args(["run", "--no-native", "--interval", "500ms", "--duration", "10s", "--out"]).arg(&out).arg("--");
    c.arg(&app.program).args(&app.leading_args).args(["strings", "120"]);
    let output = run_with_timeout(c, Duration::from_secs(180));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = report(&out);
    let finding = &report["findings"][0];
    assert_eq!(finding["site"], "LeakApp.StringLeak.RecordAuditLine", "{stderr}");
    let top = &finding["kept_alive_by"][0];
    assert!(
        top["path"]
            .as_str()
            .unwrap()
            .starts_with("static LeakApp.StringLeak.Retained → System.Collections.Generic.List<String>"),
        "{finding:#}"
    );
    assert!(top["instances"].as_u64().unwrap() > 10_000, "{top}");
    assert!(stderr.contains("kept alive by: static LeakApp.StringLeak.Retained"), "{stderr}");
}

#[test]
fn run_on_pure_churn_reports_no_growing_site() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = leakscope_run(&out, &["churn", "12"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report = report(&out);
    assert_eq!(report["findings"].as_array().unwrap().len(), 0, "churn flagged: {}", report["findings"]);
    let sites = managed_sites(&report);
    assert!(!sites.is_empty(), "the agent reported nothing at all");
    for site in sites {
        assert_ne!(site["growth"]["verdict"], "growing", "{site}");
    }
    let health = &report["processes"][0]["agent_health"];
    assert!(health.to_string().contains("dropped"), "{health}");
}

#[test]
fn run_passes_the_exit_code_through() {
    let dir = tempfile::tempdir().unwrap();
    let output = leakscope_run(&dir.path().join("run"), &["exit-code"]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(stdout_of(&output), "ready\ndone 20000\n");
}

#[test]
fn run_explains_a_target_that_is_not_dotnet() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new(cli_path());
    c.args(["run", "--no-native", "--out"]).arg(dir.path().join("run")).args(["--", "/bin/true"]);
    let output = run_with_timeout(c, Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no agent connected"), "{stderr}");

    let mut c = Command::new(cli_path());
    c.args(["run", "--no-native", "--out"]).arg(dir.path().join("run2")).args(["--", "/no/such/program"]);
    let output = run_with_timeout(c, Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(127), "{}", String::from_utf8_lossy(&output.stderr));
}

/// `leakscope env --output FILE` for a worker started elsewhere, then `leakscope tail FILE`.
#[test]
fn env_then_tail_follows_a_worker_started_elsewhere() {
    let app = leak_app();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("worker.ndjson");
    let mut c = Command::new(cli_path());
    c.args(["env", "--no-native", "--interval", "500ms", "--output"]).arg(&file);
    let env_out = run_with_timeout(c, Duration::from_secs(30));
    assert!(env_out.status.success());
    let exports: Vec<(String, String)> = stdout_of(&env_out)
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches(|c| c == '\'' || c == '"').to_string()))
        .collect();
    assert!(exports.iter().any(|(k, _)| k == "CORECLR_PROFILER_PATH"), "{exports:?}");

    let mut worker = app.command();
    worker.args(["strings", "10"]).envs(exports.iter().map(|(k, v)| (k, v)));
    let output = run_with_timeout(worker, Duration::from_secs(90));
    assert!(output.status.success());

    let mut c = Command::new(cli_path());
    c.args(["tail", "--json"]).arg(&file);
    let tailed = run_with_timeout(c, Duration::from_secs(60));
    assert!(tailed.status.success(), "{}", String::from_utf8_lossy(&tailed.stderr));
    let report: Value = serde_json::from_slice(&tailed.stdout).expect("tail --json prints the report");
    assert_eq!(report["findings"][0]["type_name"], "System.String", "{}", report["findings"]);
    assert_eq!(report["findings"][0]["site"], "LeakApp.StringLeak.RecordAuditLine");
}

/// `leakscope run` (shim on) on NativeLeakApp: 24 rounds of 40 x 64 KiB, 250 ms apart.
fn leakscope_run_native_app(out: &Path, extra: &[&str]) -> std::process::Output {
    let app = dotnet_app("NativeLeakApp", Build::FrameworkDependent);
    let mut c = Command::new(cli_path());
    c.args(["run", "--interval", "500ms", "--shim"]).arg(shim_path()).arg("--out").arg(out).arg("--");
    c.arg(&app.program).args(&app.leading_args).args(extra);
    c.args(["--rounds", "24", "--count", "40", "--pause-ms", "250"]);
    run_with_timeout(c, Duration::from_secs(120))
}

/// Native memory: with the shim (on by default), `run` names the managed method behind a
/// `Marshal.AllocHGlobal` leak and shows native live bytes beside the managed heap.
#[test]
fn run_names_the_method_behind_a_native_leak() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = leakscope_run_native_app(&out, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout_of(&output).contains("leaked_bytes=62914560"));
    let report = report(&out);
    assert_eq!(report["session"]["native_tracking"]["enabled"], true);
    let finding = &report["findings"][0];
    assert_eq!(finding["kind"], "native", "{finding}");
    assert_eq!(finding["site"], "NativeLeakApp.Leaker.LeakBuffers", "{finding}");
    // `run` leaves the shim at its default: live totals estimated from the samples.
    let totals = &report["processes"][0]["native_totals"];
    assert_eq!(totals["totals"], "sampled", "{totals}");
    // The estimate comes with its standard error, small enough to be worth reporting.
    let live = totals["live_bytes"].as_f64().unwrap();
    let se = totals["live_bytes_se"].as_f64().expect("a sampled estimate carries its standard error");
    assert!(se < 0.15 * live, "standard error {se} of {live}");
    // The leak's site holds the leak within 4.5 standard errors. The total is not compared with
    // what was leaked: it also holds the runtime's own native memory (~1.8 MB at exit without
    // the agent), a bias of half a standard error or more. The total's error is at least the
    // site's; 960 blocks of 64 KiB drawn with p = 1 - exp(-65544/262144) = 0.221 each, and the
    // error estimated from the draws themselves (small exactly when too few were drawn), put a
    // false failure at ~1 in 43,000 runs (exact binomial tail; 4 of them: 1 in 7,600). A site
    // not scaled up by 1/p would be 78 % low: 13 of them.
    let sites = report["processes"][0]["native_sites"].as_array().unwrap();
    let leak: f64 = sites
        .iter()
        .filter(|s| s["site"] == "NativeLeakApp.Leaker.LeakBuffers")
        .map(|s| s["live_bytes"].as_f64().unwrap())
        .sum();
    assert!(
        (leak - 62_914_560.0).abs() <= 4.5 * se,
        "LeakBuffers' live bytes {leak} ± {se} estimated for 62914560 leaked (all native: {live})"
    );
    let text = std::fs::read_to_string(out.join("report.txt")).unwrap();
    assert!(text.contains("(estimated from samples)") && text.contains("(95% "), "{text}");
    // The agent's own bookkeeping never shows up as the application's native memory.
    assert!(sites.iter().all(|s| !s["site"].as_str().unwrap_or("").contains("libleakscope_agent")), "{sites:?}");
}

/// The same app freeing everything: no native site grows.
#[test]
fn run_reports_no_native_growth_when_everything_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = leakscope_run_native_app(&out, &["--free"]);
    assert!(output.status.success());
    let report = report(&out);
    assert_eq!(report["findings"].as_array().unwrap().len(), 0, "{}", report["findings"]);
    let sites = report["processes"][0]["native_sites"].as_array().unwrap();
    assert!(!sites.is_empty(), "native tracking produced nothing");
    assert!(sites.iter().all(|s| s["growth"]["verdict"] != "growing"), "{sites:?}");
}

/// An install without the shim: the run goes on, and the report says native tracking is off
/// and why.
#[test]
fn run_without_the_shim_says_native_tracking_is_off_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let install = dir.path().join("bin");
    std::fs::create_dir_all(&install).unwrap();
    for file in [cli_path(), agent_path()] {
        std::fs::copy(&file, install.join(file.file_name().unwrap())).unwrap();
    }
    let out = dir.path().join("run");
    let app = leak_app();
    let mut c = Command::new(install.join("leakscope"));
    c.args(["run", "--interval", "500ms", "--out"]).arg(&out).arg("--");
    c.arg(&app.program).args(&app.leading_args).args(["exit-code"]);
    c.env_remove("LEAKSCOPE_SHIM");
    let output = run_with_timeout(c, Duration::from_secs(120));
    assert_eq!(output.status.code(), Some(3), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout_of(&output), "ready\ndone 20000\n");
    let report = report(&out);
    let native = &report["session"]["native_tracking"];
    assert_eq!(native["enabled"], false, "{native}");
    assert!(native["reason"].as_str().unwrap().contains("libleakscope_shim.so not found"), "{native}");
    let text = std::fs::read_to_string(out.join("report.txt")).unwrap();
    assert!(text.contains("native tracking off"), "{text}");
}

/// A worker that exits by itself: leakscope asked what keeps the leak alive as soon as the
/// suspect was confirmed, so report.txt shows it under the suspect though nobody stopped the run.
#[test]
fn a_worker_that_exits_by_itself_shows_what_kept_its_leak_alive() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = leakscope_run(&out, &["strings", "25"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report = report(&out);
    assert_eq!(report["session"]["stopped_by"], Value::Null, "the worker ended by itself: {}", report["session"]);
    let finding = &report["findings"][0];
    assert_eq!(finding["site"], "LeakApp.StringLeak.RecordAuditLine", "{stderr}");
    let top = &finding["kept_alive_by"][0];
    assert!(top["path"].as_str().unwrap_or("").starts_with("static LeakApp.StringLeak.Retained → "), "{finding:#}");
    assert_eq!(top["finished"], true, "{top}");
    let text = std::fs::read_to_string(out.join("report.txt")).unwrap();
    let suspect =
        text.find("Leak suspect: System.String allocated at LeakApp.StringLeak.RecordAuditLine").expect("the suspect");
    assert!(text[suspect..].contains("kept alive by: static LeakApp.StringLeak.Retained"), "{text}");
}

/// Ctrl-C: the worker is still there, so leakscope asks (again) before stopping it.
#[test]
fn a_run_ended_by_ctrl_c_shows_what_keeps_the_leak_alive() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let app = leak_app();
    let mut c = Command::new(cli_path());
    c.args(["run", "--no-native", "--interval", "500ms", "--out"]).arg(&out).arg("--");
    c.arg(&app.program).args(&app.leading_args).args(["strings", "120"]);
    c.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = c.spawn().expect("spawn leakscope run");
    // Ctrl-C once the suspect is confirmed (its first answer about what keeps it alive is in the
    // recording): a fixed wait let a slow start on a loaded machine end the run before that.
    let recording = out.join("recording.ndjson");
    let confirmed = std::time::Instant::now() + Duration::from_secs(100);
    while !read_records_lenient(&recording).iter().any(|r| r["type"] == "retention") {
        assert!(child.try_wait().unwrap().is_none(), "leakscope ended before the leak was confirmed");
        assert!(std::time::Instant::now() < confirmed, "no retention answer in the recording within 100 s");
        std::thread::sleep(Duration::from_millis(250));
    }
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "leakscope did not stop after Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = report(&out);
    assert_eq!(report["session"]["stopped_by"], "SIGINT (Ctrl-C)", "{}", report["session"]);
    let text = std::fs::read_to_string(out.join("report.txt")).unwrap();
    let suspect =
        text.find("Leak suspect: System.String allocated at LeakApp.StringLeak.RecordAuditLine").expect("the suspect");
    assert!(text[suspect..].contains("kept alive by: static LeakApp.StringLeak.Retained"), "{text}");
}
