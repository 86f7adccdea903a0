//! Collection rules (`--on RULE --capture DIR`) with the real CLI, the real agent and real
//! `dotnet` workers: a leaking worker gets exactly one snapshot, a churning one none.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::*;
use serde_json::Value;

/// Producers report this often in these tests.
const INTERVAL_MS: u64 = 500;
/// `--capture-warmup` in these tests.
const WARMUP_MS: u64 = 3000;
/// Comparable points the trend test needs after the warm-up (TrendSettings::min_points) …
const MIN_POINTS: u64 = 8;
/// … and what else may pass before the capture is asked for: the agent's start-up before its
/// first summary, the collector judging every 2 s, and room for a loaded 2-core machine.
const SLACK_MS: u64 = 8000;

fn leak_app() -> DotnetApp {
    dotnet_app("LeakApp", Build::FrameworkDependent)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn snapshots(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// The `capture` records the collector wrote into its recording.
fn capture_records(out: &Path) -> Vec<Value> {
    read_records_lenient(&out.join("recording.ndjson")).into_iter().filter(|r| r["type"] == "capture").collect()
}

/// The one `capture` record of a run that must have written exactly one; `err` is the run's
/// stderr, shown when it did not.
fn the_only_capture(out: &Path, err: &str) -> Value {
    let mut records = capture_records(out);
    assert_eq!(records.len(), 1, "{records:?}\n{err}");
    records.remove(0)
}

/// A snapshot of the leaking worker: its census, the paths of System.String, the rule.
fn assert_leak_snapshot(file: &Path, pid: u32, record: &Value) {
    let lines = read_records(file);
    assert!(lines.iter().all(|r| r["pid"] == pid), "another worker's lines in {}", file.display());
    assert_eq!(of_type(&lines, "hello").len(), 1, "{}", file.display());
    let census = of_type(&lines, "census");
    assert_eq!(census.len(), 1, "one census in the snapshot");
    let types = census[0]["types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["type_name"] == "System.String"), "{}", census[0]);
    let retention = of_type(&lines, "retention");
    assert!(!retention.is_empty(), "no retention answer in {}: {record}", file.display());
    let paths = retention.last().unwrap().to_string();
    assert!(paths.contains("LeakApp.StringLeak.Retained"), "the paths do not name the static list: {paths}");
    assert_eq!(record["rules"], serde_json::json!(["growth > 1MB/h"]), "{record}");
    assert!(record["census"] == true && record["paths"] == true, "{record}");
    let subjects = record["breaches"].to_string();
    assert!(
        subjects.contains("LeakApp.StringLeak.RecordAuditLine") || subjects.contains("type:System.String"),
        "{record}"
    );
    // Rendered too, as `leakscope snapshot` prints it.
    let txt = std::fs::read_to_string(file.with_extension("txt")).unwrap();
    assert!(txt.contains("rules broken:") && txt.contains("growth > 1MB/h"), "{txt}");
    assert!(txt.contains("what keeps System.String alive"), "{txt}");
    assert_eq!(mode(file), 0o600);
    assert_eq!(mode(&file.with_extension("txt")), 0o600);
}

/// When the capture was asked for, after the worker's agent started.
fn asked_after_start_ms(record: &Value, recording: &Path, pid: u32) -> u64 {
    let hellos = read_records_lenient(recording);
    let hello =
        hellos.iter().find(|r| r["type"] == "hello" && r["pid"] == pid && r["source"] == "agent").expect("hello");
    record["asked_unix_ms"].as_u64().unwrap() - hello["start_unix_ms"].as_u64().unwrap()
}

/// One `listen` serves a leaking and a churning worker: exactly one snapshot, of the leaking
/// one, asked for within warm-up + N × interval; the churning one gets none. The census and
/// paths were asked of the leaking worker's agent alone.
#[test]
fn listen_captures_the_leaking_worker_once_and_the_churning_one_never() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("l.sock");
    let out = tmp.path().join("out");
    let captures = tmp.path().join("captures");
    let listen_err = tmp.path().join("listen.err");
    let mut listen = Command::new(cli_path());
    listen
        .args(["listen", "--plain", "--duration", "45s", "--socket"])
        .arg(&socket)
        .arg("--out")
        .arg(&out)
        .args(["--on", "growth > 1MB/h", "--capture"])
        .arg(&captures)
        .args(["--capture-warmup", &format!("{WARMUP_MS}ms")])
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&listen_err).unwrap());
    let mut listen = listen.spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(Instant::now() < until, "listen did not bind: {}", std::fs::read_to_string(&listen_err).unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    let app = leak_app();
    let worker = |scenario: &str| {
        let mut c = Command::new("sh");
        c.args(["-c", "eval \"$(\"$0\" env --no-native --interval 500ms --socket \"$1\")\" && shift && exec \"$@\""]);
        c.arg(cli_path()).arg(&socket).arg(&app.program).args(&app.leading_args).args([scenario, "30"]);
        without_profiler_env(&mut c).env("TMPDIR", tmp.path()).stdout(Stdio::null()).stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    let mut leaking = worker("strings");
    let mut churning = worker("churn");
    let (leak_pid, churn_pid) = (leaking.id(), churning.id());
    for w in [&mut leaking, &mut churning] {
        let status = wait_with_deadline(w, Duration::from_secs(120)).expect("worker overstayed");
        assert!(status.success());
    }
    let status = wait_with_deadline(&mut listen, Duration::from_secs(120)).expect("listen overstayed");
    let err = std::fs::read_to_string(&listen_err).unwrap();
    assert!(status.success(), "{err}");

    assert_eq!(mode(&captures), 0o700, "the capture directory is owner-only");
    let files = snapshots(&captures, "ndjson");
    assert_eq!(files.len(), 1, "exactly one snapshot: {files:?}\n{err}");
    assert!(
        files[0].file_name().unwrap().to_str().unwrap().starts_with(&format!("capture-{leak_pid}-")),
        "the snapshot is not the leaking worker's ({leak_pid}; churn {churn_pid}): {files:?}"
    );
    let record = the_only_capture(&out, &err);
    assert_eq!(record["pid"], leak_pid);
    assert_leak_snapshot(&files[0], leak_pid, &record);
    let asked = asked_after_start_ms(&record, &out.join("recording.ndjson"), leak_pid);
    let bound = WARMUP_MS + MIN_POINTS * INTERVAL_MS + SLACK_MS;
    eprintln!("capture asked {asked} ms after the leaking worker's agent started (bound {bound} ms)");
    assert!(asked <= bound, "asked {asked} ms after start, bound {bound} ms");
    // Announced on stderr; the churning worker's agent was never asked for anything.
    assert!(err.contains(&format!("capture: pid {leak_pid} broke 'growth > 1MB/h'")), "{err}");
    assert!(err.contains(&format!("capture: snapshot of pid {leak_pid} written to")), "{err}");
    assert!(!err.contains(&format!("capture: pid {churn_pid}")), "{err}");
    assert!(!err.contains(&format!("snapshot of pid {churn_pid}")), "{err}");
    let recording = read_records_lenient(&out.join("recording.ndjson"));
    assert!(
        recording.iter().all(|r| !(r["pid"] == churn_pid && r["type"] == "census")),
        "the churning worker was counted"
    );
    // The churning worker ran long enough to be judged: the absence of a snapshot means something.
    let churn_summaries = recording.iter().filter(|r| r["pid"] == churn_pid && r["type"] == "summary").count() as u64;
    assert!(
        churn_summaries >= (WARMUP_MS / INTERVAL_MS) + 3 * MIN_POINTS,
        "{churn_summaries} summaries of the churn worker"
    );
    // Re-rendering the recording takes the capture record as ours, not as a bad line.
    let report = run_with_timeout(
        {
            let mut c = Command::new(cli_path());
            c.args(["report", "--json"]).arg(&out);
            c
        },
        Duration::from_secs(60),
    );
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["input"]["unknown_source"], 0, "{}", report["input"]);
    assert_eq!(report["input"]["examples"], serde_json::json!([]), "{}", report["input"]);
}

fn run_with_rules(
    scenario: &str,
    seconds: &str,
    rules: &[&str],
    extra: &[&str],
) -> (PathBuf, PathBuf, String, tempfile::TempDir) {
    run_with_rules_env(scenario, seconds, rules, extra, &[])
}

fn run_with_rules_env(
    scenario: &str,
    seconds: &str,
    rules: &[&str],
    extra: &[&str],
    env: &[(&str, &str)],
) -> (PathBuf, PathBuf, String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let captures = tmp.path().join("captures");
    let app = leak_app();
    let mut c = Command::new(cli_path());
    c.args(["run", "--no-native", "--interval", "500ms", "--out"]).arg(&out);
    for r in rules {
        c.args(["--on", r]);
    }
    c.arg("--capture").arg(&captures).args(["--capture-warmup", &format!("{WARMUP_MS}ms")]).args(extra);
    c.arg("--").arg(&app.program).args(&app.leading_args).args([scenario, seconds]);
    c.env("TMPDIR", tmp.path()).envs(env.iter().copied());
    let output = run_with_timeout(c, Duration::from_secs(180));
    let err = text(&output.stderr);
    assert!(output.status.success(), "{err}");
    (out, captures, err, tmp)
}

/// `run` takes the same rules: one snapshot of the leaking worker (the size rule it does not
/// break plays no part).
#[test]
fn run_captures_a_leaking_worker_once() {
    let (out, captures, err, _tmp) = run_with_rules("strings", "25", &["growth > 1MB/h", "rss > 20GB"], &[]);
    let files = snapshots(&captures, "ndjson");
    assert_eq!(files.len(), 1, "{files:?}\n{err}");
    let record = the_only_capture(&out, &err);
    let pid = record["pid"].as_u64().unwrap() as u32;
    assert_leak_snapshot(&files[0], pid, &record);
    let asked = asked_after_start_ms(&record, &out.join("recording.ndjson"), pid);
    assert!(asked <= WARMUP_MS + MIN_POINTS * INTERVAL_MS + SLACK_MS, "asked {asked} ms after start");
}

/// A churning worker breaks no growth rule; a size rule (`rss > 1MB`, the grammar's short form)
/// it breaks at once, and stays broken: one snapshot, not one per `--capture-every`.
#[test]
fn run_captures_a_churning_worker_only_for_a_size_rule_and_only_once() {
    let (out, captures, err, _tmp) =
        run_with_rules("churn", "20", &["growth > 1MB/h", "rss > 1MB"], &["--capture-every", "3s"]);
    let files = snapshots(&captures, "ndjson");
    assert_eq!(files.len(), 1, "{files:?}\n{err}");
    let record = the_only_capture(&out, &err);
    assert_eq!(record["rules"], serde_json::json!(["rss > 1MB"]), "{}", record);
    assert_eq!(record["census"], true, "{}", record);
    let lines = read_records(&files[0]);
    assert_eq!(of_type(&lines, "census").len(), 1);
}

/// A size rule breaks at the first summary, a few ms after the agent's load, and the runtime
/// refuses heap walks until it has finished starting (CORPROF_E_RUNTIME_UNINITIALIZED; played here
/// by `LEAKSCOPE_TEST_WALK_REFUSALS`): the agent tries the census again and answers it.
#[test]
fn a_census_asked_for_before_the_runtime_is_ready_is_tried_again_and_answered() {
    let (out, captures, err, _tmp) =
        run_with_rules_env("churn", "12", &["rss > 1MB"], &[], &[("LEAKSCOPE_TEST_WALK_REFUSALS", "3")]);
    let record = the_only_capture(&out, &err);
    assert_eq!(record["census"], true, "{}", record);
    assert_eq!(record["missing"], serde_json::json!([]), "{}", record);
    let files = snapshots(&captures, "ndjson");
    assert_eq!(of_type(&read_records(&files[0]), "census").len(), 1);
    let log = std::fs::read_to_string(out.join("agent.log")).unwrap();
    assert!(log.contains("census requested by the collector: try 4"), "{log}");
}

/// The same refusals with a leaking worker, whose capture asks for paths too: both answers come,
/// in whichever order the agent's gate lets the two requests run.
#[test]
fn a_leak_capture_gets_its_census_and_its_paths_through_refused_walks() {
    let (out, captures, err, _tmp) =
        run_with_rules_env("strings", "25", &["growth > 1MB/h"], &[], &[("LEAKSCOPE_TEST_WALK_REFUSALS", "2")]);
    let record = the_only_capture(&out, &err);
    assert_eq!(record["missing"], serde_json::json!([]), "{}", record);
    let pid = record["pid"].as_u64().unwrap() as u32;
    assert_leak_snapshot(&snapshots(&captures, "ndjson")[0], pid, &record);
    let log = std::fs::read_to_string(out.join("agent.log")).unwrap();
    assert!(log.contains("census not taken"), "{log}");
}

/// A runtime that refuses every walk: after its 20 tries the agent says the census will not come
/// for this request, in a field the collector acts on, and the snapshot is written with why —
/// neither waiting out the two minutes nor the worker's end.
#[test]
fn a_census_refused_at_every_try_is_reported_unavailable_for_that_request() {
    let (out, _captures, err, _tmp) =
        run_with_rules_env("churn", "32", &["rss > 1MB"], &[], &[("LEAKSCOPE_TEST_WALK_REFUSALS", "1000")]);
    let record = the_only_capture(&out, &err);
    assert_eq!(record["census"], false, "{}", record);
    let missing = record["missing"].to_string();
    assert!(missing.contains("census: heap census unavailable for this request"), "{missing}");
    assert!(missing.contains("at each of 20 tries"), "{missing}");
    let waited_ms = record["unix_ms"].as_u64().unwrap() - record["asked_unix_ms"].as_u64().unwrap();
    // The 20 tries take ~20 s (19.4 s measured); the worker runs 32.
    assert!(waited_ms < 30_000, "{waited_ms} ms: waited for the worker's end, not for the agent's answer");
    let recording = read_records_lenient(&out.join("recording.ndjson"));
    let said = recording.iter().filter(|r| r["type"] == "status" && r["unavailable"] == "census_request").count();
    assert_eq!(said, 1, "the agent's status carries `unavailable`");
}

/// A worker that exits before its census could be taken: the snapshot says the agent left, and
/// after how long — not that the full two minutes were waited.
#[test]
fn a_capture_whose_worker_exits_first_says_so_and_after_how_long() {
    let (out, _captures, err, _tmp) =
        run_with_rules_env("churn", "6", &["rss > 1MB"], &[], &[("LEAKSCOPE_TEST_WALK_REFUSALS", "1000")]);
    let record = the_only_capture(&out, &err);
    assert_eq!(record["census"], false, "{}", record);
    let missing = record["missing"].to_string();
    assert!(missing.contains("census: the worker's agent disconnected"), "{missing}");
    assert!(!missing.contains("2m00s"), "{missing}");
    let waited_ms = record["unix_ms"].as_u64().unwrap() - record["asked_unix_ms"].as_u64().unwrap();
    assert!(waited_ms < 60_000, "{waited_ms} ms");
    let log = std::fs::read_to_string(out.join("agent.log")).unwrap();
    assert!(log.contains("census not taken"), "{log}");
}

/// Half a rule, a bad rule, and a capture directory that is a link are refused before anything
/// starts (exit 2), and nothing is written through the link.
#[test]
fn bad_capture_settings_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        let mut c = Command::new(cli_path());
        c.args(args).env("TMPDIR", tmp.path()).env("XDG_RUNTIME_DIR", tmp.path()).current_dir(tmp.path());
        run_with_timeout(c, Duration::from_secs(30))
    };
    let o = cli(&["run", "--on", "growth > 1MB/h", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--on needs --capture DIR"), "{}", text(&o.stderr));
    let o = cli(&["listen", "--capture", "x", "--duration", "1s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--capture needs a rule"), "{}", text(&o.stderr));
    let o = cli(&["listen", "--on", "rss < 2GB", "--capture", "x", "--duration", "1s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("bad --on rule: only `>` and `>=`"), "{}", text(&o.stderr));
    let target = tmp.path().join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let o = cli(&["listen", "--on", "rss > 2GB", "--capture", link.to_str().unwrap(), "--duration", "1s"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("symbolic link"), "{}", text(&o.stderr));
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    // A directory others may write to (they could swap a snapshot) is refused too.
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = cli(&["listen", "--on", "rss > 2GB", "--capture", target.to_str().unwrap(), "--duration", "1s"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("writable by other users"), "{}", text(&o.stderr));
}
