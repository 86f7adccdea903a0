//! `leakscope ps`, `attach` and `detach` against real .NET processes started without any
//! leakscope variables: no restart.

use std::process::Command;
use std::time::Duration;

use integration_tests::*;
use serde_json::Value;

fn leak_app() -> DotnetApp {
    dotnet_app("LeakApp", Build::FrameworkDependent)
}

/// A worker started the ordinary way: no CORECLR_* or LEAKSCOPE_* in its environment.
fn plain_worker(seconds: &str) -> Running {
    let mut c = leak_app().command();
    c.args(["strings", seconds]);
    without_profiler_env(&mut c);
    let mut run = Running::start(c);
    run.wait_for_line("ready", Duration::from_secs(60));
    run
}

fn leakscope(args: &[&str]) -> std::process::Output {
    let mut c = Command::new(cli_path());
    c.args(args);
    run_with_timeout(c, Duration::from_secs(120))
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn attach_for(pid: u32, out: &std::path::Path, seconds: &str) -> (std::process::Output, Value) {
    let output = leakscope(&[
        "attach",
        &pid.to_string(),
        "--interval",
        "1s",
        "--duration",
        seconds,
        "--plain",
        "--out",
        out.to_str().unwrap(),
    ]);
    let report = std::fs::read_to_string(out.join("report.json")).map(|t| serde_json::from_str(&t).unwrap());
    (output, report.unwrap_or(Value::Null))
}

/// A growth verdict needs 8 points after the warm-up: attach for 12 s at a 1 s interval.
fn assert_names_the_leak(report: &Value) {
    let finding = &report["findings"][0];
    assert_eq!(finding["type_name"], "System.String", "{}", report["findings"]);
    assert_eq!(finding["site"], "LeakApp.StringLeak.RecordAuditLine", "{finding}");
}

#[test]
fn ps_lists_dotnet_processes_with_their_runtime_and_nothing_else() {
    let worker = plain_worker("30");
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let output = leakscope(&["ps", "--json"]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(output.status.success());
    let listed: Vec<Value> = serde_json::from_slice(&output.stdout).expect("ps --json");
    let me =
        listed.iter().find(|p| p["pid"] == worker.pid()).unwrap_or_else(|| panic!("worker not listed: {listed:?}"));
    assert!(me["runtime"].as_str().unwrap().starts_with("10.0."), "{me}");
    assert_eq!(me["agent"], "no");
    assert!(me["command_line"].as_str().unwrap().contains("LeakApp.dll"), "{me}");
    assert!(listed.iter().all(|p| p["pid"] != sleeper.id()), "a non-.NET process was listed");
}

/// The motivating case: a worker that cannot be restarted. Attach, find the leak, detach; the
/// worker runs on and ends as it would have; a second attach works too.
#[test]
fn attach_names_the_leak_and_detaching_leaves_the_worker_running() {
    let mut worker = plain_worker("45");
    let pid = worker.pid();
    let dir = tempfile::tempdir().unwrap();

    let (output, report) = attach_for(pid, &dir.path().join("first"), "12s");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_names_the_leak(&report);
    assert!(stderr_of(&output).contains("detached; the process keeps running"), "{}", stderr_of(&output));
    let native = &report["session"]["native_tracking"];
    assert_eq!(native["enabled"], false);
    assert!(native["reason"].as_str().unwrap().contains("LD_PRELOAD"), "{native}");
    assert!(worker.child.try_wait().unwrap().is_none(), "the worker stopped after the detach");

    let (output, report) = attach_for(pid, &dir.path().join("second"), "12s");
    assert_eq!(output.status.code(), Some(0), "second attach: {}", stderr_of(&output));
    assert_names_the_leak(&report);

    let done = worker.wait_for_line("done", Duration::from_secs(90));
    assert!(done.starts_with("done "), "{done}");
    assert!(worker.wait(Duration::from_secs(30)).success(), "the worker's exit code changed");
}

#[test]
fn attach_refuses_gone_foreign_and_non_dotnet_processes_with_exit_code_2() {
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let output = leakscope(&["attach", &gone_pid.to_string()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("no process with pid"), "{}", stderr_of(&output));

    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let output = leakscope(&["attach", &sleeper.id().to_string()]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("not a .NET process"), "{}", stderr_of(&output));

    // A worker of another user: as root, run leakscope as `nobody` against a root-owned worker.
    let worker = plain_worker("30");
    let output = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(cli_path());
        c.args(["attach", &worker.pid().to_string()]).env("HOME", "/tmp");
        run_with_timeout(c, Duration::from_secs(60))
    } else {
        leakscope(&["attach", "1"]) // pid 1 belongs to root
    };
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("belongs to another user"), "{}", stderr_of(&output));
}

/// Container-like targets: another TMPDIR (socket found through the target's environment) and,
/// as root, another mount namespace whose temporary directory is a private tmpfs (its socket and
/// the collector's socket both reached through /proc/PID/root).
#[test]
fn attach_reaches_a_worker_with_its_own_tmpdir_or_mount_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let private_tmp = dir.path().join("worker-tmp");
    std::fs::create_dir_all(&private_tmp).unwrap();
    let app = leak_app();
    let mut c = app.command();
    c.args(["strings", "30"]).env("TMPDIR", &private_tmp);
    let mut worker = Running::start(c);
    worker.wait_for_line("ready", Duration::from_secs(60));
    let (output, report) = attach_for(worker.pid(), &dir.path().join("tmpdir"), "12s");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_names_the_leak(&report);
    drop(worker);

    if !is_root() {
        eprintln!("not root: a private mount namespace cannot be made here; TMPDIR case only");
        return;
    }
    // A tmpfs mounted only inside the worker's mount namespace, as its TMPDIR: from here the
    // directory stays empty, and the worker's sockets are reachable only through /proc/PID/root.
    let ns_tmp = dir.path().join("namespace-tmp");
    std::fs::create_dir_all(&ns_tmp).unwrap();
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"]);
    c.arg(format!(
        "mount -t tmpfs leakscope-test {tmp} && TMPDIR={tmp} exec {} {} strings 30",
        app.program.display(),
        app.leading_args.join(" "),
        tmp = ns_tmp.display()
    ));
    let mut worker = Running::start(c);
    worker.wait_for_line("ready", Duration::from_secs(60));
    let dotnet_pid = worker.pid(); // `exec` keeps the pid
    let visible_here = std::fs::read_dir(&ns_tmp).unwrap().count();
    assert_eq!(visible_here, 0, "the worker's temporary directory should look empty from outside its namespace");
    let (output, report) = attach_for(dotnet_pid, &dir.path().join("mountns"), "12s");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_names_the_leak(&report);
}

/// `leakscope detach PID` from another terminal ends a running `attach`: it detaches, writes its
/// report, and the worker runs on.
#[test]
fn detach_command_ends_an_attach_session_from_another_terminal() {
    let mut worker = plain_worker("40");
    let pid = worker.pid().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("attached");
    let attach_log = dir.path().join("attach.stderr");
    let mut attach = Command::new(cli_path())
        .args(["attach", &pid, "--interval", "1s", "--plain", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&attach_log).unwrap())
        .spawn()
        .unwrap();
    // Attaching (loading the agent into the worker) takes a moment, longer on a loaded machine.
    let waited = std::panic::catch_unwind(|| wait_for_agent_state(worker.pid(), "attached", Duration::from_secs(60)));
    if let Err(why) = waited {
        let attach_state = attach.try_wait().unwrap();
        panic!(
            "{}\nattach: {attach_state:?}; its stderr:\n{}",
            why.downcast_ref::<String>().cloned().unwrap_or_default(),
            std::fs::read_to_string(&attach_log).unwrap_or_default()
        );
    }

    let output = leakscope(&["detach", &pid]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let status = wait_with_deadline(&mut attach, Duration::from_secs(30)).expect("attach ended after detach");
    assert!(status.success());
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["processes"][0]["agent"]["bye_reason"], "detached", "{}", report["processes"][0]["agent"]);
    assert!(worker.child.try_wait().unwrap().is_none(), "the worker stopped");
    let ps = leakscope(&["ps", "--json"]);
    let listed: Vec<Value> = serde_json::from_slice(&ps.stdout).unwrap();
    let me = listed.iter().find(|p| p["pid"] == worker.pid()).expect("worker listed");
    assert_eq!(me["agent"], "idle", "after detach: {me}");

    let output = leakscope(&["detach", &pid]);
    assert_eq!(output.status.code(), Some(2), "detaching twice should be a clear error");
    assert!(worker.wait(Duration::from_secs(60)).success());
}

/// A worker killed without cleaning up leaves its diagnostics socket behind, and once pids wrap
/// (pid_max is 32768 here) a new worker with the same pid shares the name's prefix. `attach` and
/// `ps` must talk to the socket whose key is this worker's start time, not to a dead one.
#[test]
fn attach_and_ps_skip_diagnostics_sockets_left_by_an_earlier_process_with_the_same_pid() {
    let dir = tempfile::tempdir().unwrap();
    let worker_tmp = dir.path().join("worker-tmp");
    std::fs::create_dir_all(&worker_tmp).unwrap();
    let mut c = leak_app().command();
    c.args(["strings", "40"]).env("TMPDIR", &worker_tmp);
    without_profiler_env(&mut c);
    let mut worker = Running::start(c);
    worker.wait_for_line("ready", Duration::from_secs(60));
    let pid = worker.pid();
    // Dead sockets (bound, then closed: connecting is refused), newer than the live one.
    for key in 1..=12 {
        let path = worker_tmp.join(format!("dotnet-diagnostic-{pid}-{key}-socket"));
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    }
    let live: Vec<String> = std::fs::read_dir(&worker_tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dotnet-diagnostic-"))
        .collect();
    assert_eq!(live.len(), 13, "{live:?}");

    let ps = leakscope(&["ps", "--json"]);
    let listed: Vec<Value> = serde_json::from_slice(&ps.stdout).unwrap();
    let me = listed.iter().find(|p| p["pid"] == pid).expect("worker listed");
    assert!(me["runtime"].as_str().is_some_and(|r| r.starts_with("10.0.")), "ps asked a dead socket: {me}");

    let (output, report) = attach_for(pid, &dir.path().join("out"), "12s");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_names_the_leak(&report);
    drop(worker);
}
