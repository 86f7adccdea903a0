//! `--pprof` read by the real `go tool pprof` (Debian's golang-go): a leaking .NET worker under
//! the real agent and shim, then `report --pprof` and `snapshot --pprof`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use integration_tests::*;
use serde_json::Value;

fn leak_app() -> DotnetApp {
    dotnet_app("LeakApp", Build::FrameworkDependent)
}

/// `go`, installed by `scripts/setup.sh --with-test-tools`. Fails (never skips) without it.
fn go() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("go")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/lib/go/bin/go"), PathBuf::from("/usr/bin/go")])
        .find(|p| p.is_file())
        .expect("`go` is missing: install Debian's golang-go (scripts/setup.sh --with-test-tools)")
}

/// `go tool pprof ARGS… PROFILE`, its stdout; panics unless it succeeds.
fn pprof(args: &[&str], profile: &Path, scratch: &Path) -> String {
    let mut c = Command::new(go());
    c.args(["tool", "pprof"]).args(args).arg(profile);
    // pprof keeps fetched profiles under $HOME/pprof: a private home, not the user's.
    c.env("HOME", scratch).env("PPROF_TMPDIR", scratch).env("TMPDIR", scratch);
    let out = run_with_timeout(c, Duration::from_secs(120));
    assert!(out.status.success(), "go tool pprof {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    stdout_of(&out)
}

/// The function names of `pprof -top`'s rows, highest flat first.
fn top_functions(top: &str) -> Vec<String> {
    top.lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(5).map(str::to_string))
        .collect()
}

/// Sum of one sample type over every sample of `pprof -raw`'s listing.
fn raw_total(raw: &str, sample_type: &str) -> i64 {
    let mut lines = raw.lines().skip_while(|l| l.trim() != "Samples:").skip(1);
    let header = lines.next().expect("a sample-types header");
    let column = header
        .split_whitespace()
        .position(|t| t.starts_with(&format!("{sample_type}/")))
        .unwrap_or_else(|| panic!("no {sample_type} in {header}"));
    lines
        .take_while(|l| !l.starts_with("Locations"))
        .filter(|l| l.contains(':') && !l.trim_start().starts_with(|c: char| c.is_alphabetic()))
        .map(|l| l.split_whitespace().nth(column).unwrap().trim_end_matches(':').parse::<i64>().unwrap())
        .sum()
}

#[test]
fn report_pprof_lists_the_leaking_site_first_with_the_report_total() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let app = leak_app();
    // With the shim: native stacks go into the profile too.
    let mut c = Command::new(cli_path());
    c.args(["run", "--interval", "500ms", "--out"]).arg(&out).arg("--");
    c.arg(&app.program).args(&app.leading_args).args(["strings", "12"]);
    c.env("TMPDIR", dir.path()).env("XDG_RUNTIME_DIR", dir.path());
    let run = run_with_timeout(c, Duration::from_secs(180));
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    // Re-render the same recording, once, into report.json and the profile: the same moment.
    let profile = dir.path().join("heap.pb.gz");
    let mut c = Command::new(cli_path());
    c.args(["report"]).arg(&out).arg("--pprof").arg(&profile);
    let rendered = run_with_timeout(c, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&rendered.stderr);
    assert!(stderr.contains("pprof profile of"), "{stderr}");
    let gz = std::fs::read(&profile).expect("the profile is written");
    assert_eq!(&gz[..2], [0x1f, 0x8b], "gzipped");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let finding = &report["findings"][0];
    assert_eq!(finding["site"], "LeakApp.StringLeak.RecordAuditLine", "{}", report["findings"]);

    let top = pprof(&["-top"], &profile, dir.path());
    assert!(top.contains("Type: inuse_space"), "{top}");
    let functions = top_functions(&top);
    assert_eq!(functions.first().map(String::as_str), Some("LeakApp.StringLeak.RecordAuditLine"), "{top}");
    // report.txt names the same site first.
    let text = std::fs::read_to_string(out.join("report.txt")).unwrap();
    assert!(text.contains("Leak suspect: System.String allocated at LeakApp.StringLeak.RecordAuditLine"), "{text}");

    // File and line reach pprof: the site's line, as report.json gives it.
    let lines = pprof(&["-top", "-lines"], &profile, dir.path());
    let location = finding["location"].as_str().unwrap();
    assert!(location.starts_with("Program.cs:"), "{finding}");
    let first_row = lines.lines().skip_while(|l| !l.trim_start().starts_with("flat")).nth(1).unwrap();
    assert!(
        first_row.contains("LeakApp.StringLeak.RecordAuditLine") && first_row.contains(location),
        "{first_row} should name {location}:\n{lines}"
    );

    // Managed and native stacks are both kept, with their labels.
    let raw = pprof(&["-raw"], &profile, dir.path());
    assert!(raw.contains("kind:[managed]") && raw.contains("kind:[native]"), "{raw}");
    assert!(raw.contains("type:[System.String]"), "{raw}");
    assert!(raw.contains("growth_space/bytes"), "a leak has a slope: {raw}");

    // The profile's total equals the sites of report.json (every site is listed there here).
    let mut report_total = 0u64;
    for p in report["processes"].as_array().unwrap() {
        for (kind, total) in [("managed_sites", "managed_sites_total"), ("native_sites", "native_sites_total")] {
            let sites = p[kind].as_array().unwrap();
            assert_eq!(sites.len() as u64, p[total].as_u64().unwrap(), "report.json lists every {kind}");
            report_total += sites.iter().map(|s| s["live_bytes"].as_u64().unwrap()).sum::<u64>();
        }
    }
    assert!(report["processes"][0]["native_sites_total"].as_u64().unwrap() > 0, "the shim reported native sites");
    let profile_total = raw_total(&raw, "inuse_space") as f64;
    let report_total = report_total as f64;
    assert!(
        (profile_total - report_total).abs() <= 0.10 * report_total,
        "profile inuse_space {profile_total} vs report.json {report_total}"
    );
    // And the leaking site's growth per hour is its slope per minute × 60.
    let leak_growth = finding["bytes_per_min"].as_f64().unwrap() * 60.0;
    assert!(raw_total(&raw, "growth_space") as f64 >= 0.9 * leak_growth, "{raw}");

    // Owner-only, and never written through a link planted at the path.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&profile).unwrap().permissions().mode() & 0o777, 0o600);
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    let planted = dir.path().join("planted.pb.gz");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let mut c = Command::new(cli_path());
    c.args(["report"]).arg(&out).arg("--pprof").arg(&planted);
    let refused = run_with_timeout(c, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("could not write") && stderr.contains("planted.pb.gz"), "{stderr}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    assert!(std::fs::symlink_metadata(&planted).unwrap().file_type().is_symlink());
}

#[test]
fn snapshot_pprof_of_a_running_leak_lists_the_leaking_site_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = leak_app().command();
    c.args(["strings", "120"]);
    without_profiler_env(&mut c);
    let mut worker = Running::start(c);
    worker.wait_for_line("ready", Duration::from_secs(60));

    let profile = dir.path().join("snap.pb.gz");
    let pid = worker.pid().to_string();
    let mut c = Command::new(cli_path());
    c.args(["snapshot", &pid, "--sample", "5s", "--json", "-o"]).arg(dir.path().join("snap.ndjson"));
    c.arg("--pprof").arg(&profile);
    c.env("TMPDIR", dir.path()).env("XDG_RUNTIME_DIR", dir.path());
    let snap = run_with_timeout(c, Duration::from_secs(180));
    assert!(snap.status.success(), "{}", String::from_utf8_lossy(&snap.stderr));
    drop(worker);

    let top = pprof(&["-top"], &profile, dir.path());
    let functions = top_functions(&top);
    assert_eq!(functions.first().map(String::as_str), Some("LeakApp.StringLeak.RecordAuditLine"), "{top}");
    let raw = pprof(&["-raw"], &profile, dir.path());
    assert!(raw.contains("type:[System.String]") && raw.contains(&format!("pid:[{pid}]")), "{raw}");
    assert!(raw_total(&raw, "inuse_space") > 1_000_000, "megabytes leaked in 5 s: {raw}");
}
