//! Absurd values in every `LEAKSCOPE_*` variable the agent and the shim read: huge numbers,
//! `-1`, `NaN`, `inf`, 10 kB strings and bytes that are not UTF-8. The worker's stdout and stderr
//! must be byte for byte what they are without leakscope, its exit code the same, and every
//! value that was ignored must be reported (log and status record). Once,
//! `LEAKSCOPE_INTERVAL=100000000000000000000000` panicked before the agent's panic hook was in
//! place and printed a Rust panic and a backtrace, twice, on the worker's stderr.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use integration_tests::*;

fn extreme_values() -> Vec<(&'static str, OsString)> {
    vec![
        ("a huge number", OsString::from("100000000000000000000000")),
        ("-1", OsString::from("-1")),
        ("NaN", OsString::from("NaN")),
        ("inf", OsString::from("inf")),
        ("10 kB", OsString::from("x".repeat(10_000))),
        ("not UTF-8", OsString::from_vec(vec![0xff, 0xfe, b'5', b's', 0x80])),
    ]
}

/// Every variable the agent reads besides its three paths.
const AGENT_SETTINGS: &[&str] = &[
    "LEAKSCOPE_LOG_LEVEL",
    "LEAKSCOPE_INTERVAL",
    "LEAKSCOPE_INDUCE_FULL_GC",
    "LEAKSCOPE_MAX_TRACKED",
    "LEAKSCOPE_MEMORY_LIMIT_MB",
    "LEAKSCOPE_MAX_SAMPLES_PER_SEC",
    "LEAKSCOPE_MAX_SITES",
    "LEAKSCOPE_STACK_DEPTH",
    "LEAKSCOPE_TEST_WALK_DELAY_US",
    "LEAKSCOPE_TEST_WALK_REFUSALS",
    "LEAKSCOPE_FRAMEWORK_PREFIXES",
    "LEAKSCOPE_CENSUS",
    "LEAKSCOPE_EXACT",
    "LEAKSCOPE_RETENTION",
    "LEAKSCOPE_ENABLED",
];

/// Of those, the ones that take any text (lists): no absurd value is invalid for them.
const AGENT_FREE_TEXT: &[&str] = &["LEAKSCOPE_FRAMEWORK_PREFIXES", "LEAKSCOPE_EXACT", "LEAKSCOPE_RETENTION"];

const PATHS: &[&str] = &["LEAKSCOPE_SOCKET", "LEAKSCOPE_OUTPUT", "LEAKSCOPE_LOG"];

/// Every variable the shim reads besides its three paths.
const SHIM_SETTINGS: &[&str] = &[
    "LEAKSCOPE_NATIVE",
    "LEAKSCOPE_LOG_LEVEL",
    "LEAKSCOPE_INTERVAL",
    "LEAKSCOPE_NATIVE_SAMPLE_BYTES",
    "LEAKSCOPE_NATIVE_MAX_TRACKED",
    "LEAKSCOPE_NATIVE_STACK_DEPTH",
    "LEAKSCOPE_MAX_SITES",
    "LEAKSCOPE_NATIVE_MMAP",
    "DOTNET_PerfMapJitDumpPath",
];

/// Of those, the one that takes any text (a path).
const SHIM_FREE_TEXT: &[&str] = &["DOTNET_PerfMapJitDumpPath"];

/// The settings whose every absurd value is invalid: all but the free-text ones.
fn checked<'a>(settings: &[&'a str], free_text: &[&str]) -> Vec<&'a str> {
    settings.iter().copied().filter(|name| !free_text.contains(name)).collect()
}

/// Gives every variable in `names` the same value.
fn set_all<'a>(c: &mut Command, names: impl IntoIterator<Item = &'a &'a str>, value: &OsString) {
    for name in names {
        c.env(name, value);
    }
}

/// The lines of a log, none when it is missing.
fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(String::from).collect()
}

fn assert_same(out: &Output, baseline: &Output, case: &str) {
    assert_eq!(out.status.code(), baseline.status.code(), "{case}: exit code changed");
    assert_eq!(out.stdout, baseline.stdout, "{case}: stdout changed: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.stderr, baseline.stderr, "{case}: stderr changed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Each checked variable is named in some report line, and no line is long.
fn assert_reported(lines: &[String], names: &[&str], case: &str) {
    for name in names {
        assert!(lines.iter().any(|l| l.contains(&format!("{name}="))), "{case}: {name} not reported in {lines:#?}");
    }
    for line in lines {
        assert!(line.len() < 600, "{case}: a report line of {} bytes: the value must be cut short", line.len());
    }
}

// ------------------------------------------------------------------ agent --

fn heap_app() -> DotnetApp {
    dotnet_app("HeapApp", Build::FrameworkDependent)
}

fn app_command(cwd: &Path) -> Command {
    let mut c = heap_app().command();
    c.args(["hold", "1", "2"]).current_dir(cwd);
    without_profiler_env(&mut c);
    c
}

fn profiler(c: &mut Command) -> &mut Command {
    c.env("CORECLR_ENABLE_PROFILING", "1")
        .env("CORECLR_PROFILER", AGENT_CLSID)
        .env("CORECLR_PROFILER_PATH", agent_path())
}

#[test]
fn absurd_agent_settings_change_nothing_the_worker_prints_and_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = run_with_timeout(app_command(dir.path()), Duration::from_secs(60));
    assert!(baseline.status.success(), "{baseline:?}");
    for (what, value) in extreme_values() {
        // Every setting absurd; the paths sound, so what is ignored can be read back.
        let case = format!("agent settings = {what}");
        let run = tempfile::tempdir().unwrap();
        let mut collector = Collector::listen(&run.path().join("collector.sock"));
        let log = run.path().join("agent.log");
        let mut c = app_command(run.path());
        profiler(&mut c).env("LEAKSCOPE_SOCKET", &collector.socket).env("LEAKSCOPE_LOG", &log);
        set_all(&mut c, AGENT_SETTINGS, &value);
        let out = run_with_timeout(c, Duration::from_secs(120));
        assert_same(&out, &baseline, &case);
        collector.wait_for("the agent's hello", Duration::from_secs(30), |r| r["type"] == "hello");
        let statuses = collector.statuses(Duration::from_millis(500));
        let agent_checked = checked(AGENT_SETTINGS, AGENT_FREE_TEXT);
        assert_reported(&statuses, &agent_checked, &case);
        assert_reported(&log_lines(&log), &agent_checked, &format!("{case} (log)"));

        // The paths absurd too: nothing may reach the worker's stdout or stderr either.
        let case = format!("agent paths = {what}");
        let run = tempfile::tempdir().unwrap();
        let mut c = app_command(run.path());
        profiler(&mut c);
        set_all(&mut c, AGENT_SETTINGS.iter().chain(PATHS), &value);
        let out = run_with_timeout(c, Duration::from_secs(120));
        assert_same(&out, &baseline, &case);
    }
}

// ------------------------------------------------------------------- shim --

#[test]
fn absurd_shim_settings_change_nothing_the_program_prints_and_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let program = compile_c("hello", "cc", dir.path());
    let command = |cwd: &Path| {
        let mut c = Command::new(&program);
        c.arg("x").current_dir(cwd).env_remove("LD_PRELOAD");
        c
    };
    let baseline = run_with_timeout(command(dir.path()), Duration::from_secs(30));
    assert_eq!(baseline.status.code(), Some(3));
    for (what, value) in extreme_values() {
        let case = format!("shim settings = {what}");
        let run = tempfile::tempdir().unwrap();
        let output = run.path().join("native.ndjson");
        let log = run.path().join("shim.log");
        let mut c = command(run.path());
        c.env("LD_PRELOAD", shim_path()).env("LEAKSCOPE_OUTPUT", &output).env("LEAKSCOPE_LOG", &log);
        set_all(&mut c, SHIM_SETTINGS, &value);
        let out = run_with_timeout(c, Duration::from_secs(30));
        assert_same(&out, &baseline, &case);
        let records = read_records(&output);
        let statuses: Vec<String> =
            of_type(&records, "status").iter().filter_map(|s| s["message"].as_str().map(String::from)).collect();
        let shim_checked = checked(SHIM_SETTINGS, SHIM_FREE_TEXT);
        assert_reported(&statuses, &shim_checked, &case);
        let hello = of_type(&records, "hello")[0];
        assert_eq!(hello["interval_ms"], 5000, "{case}: defaults in force");
        assert_reported(&log_lines(&log), &shim_checked, &format!("{case} (log)"));

        let case = format!("shim paths = {what}");
        let run = tempfile::tempdir().unwrap();
        let mut c = command(run.path());
        c.env("LD_PRELOAD", shim_path());
        set_all(&mut c, SHIM_SETTINGS.iter().chain(PATHS), &value);
        let out = run_with_timeout(c, Duration::from_secs(30));
        assert_same(&out, &baseline, &case);
    }
}
