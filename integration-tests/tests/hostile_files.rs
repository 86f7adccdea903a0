//! Files in shared places, with an attacker who got there first: a symlink to a victim file, a
//! FIFO, or a file of another user at each path the agent and the shim write inside the worker
//! (`LEAKSCOPE_OUTPUT`, `LEAKSCOPE_LOG`, the agent's default `$TMPDIR/leakscope-agent.<pid>.log`).
//! The worker — a real .NET app under the real agent, a real C program under the real shim —
//! must start and end as it does without leakscope (same stdout, stderr and exit code, within a
//! timeout), the victim must be untouched, and the refusal must be said (in the log, and to the
//! collector as a status). Making a file of another user needs root, as CI runs.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use integration_tests::*;

#[derive(Clone, Copy, Debug)]
enum Trap {
    /// A symlink to the victim file.
    Symlink,
    /// A FIFO nobody reads: opening it for writing the ordinary way blocks forever.
    Fifo,
    /// An empty regular file belonging to another user (uid 65534), who could read what is
    /// appended to it.
    Theirs,
}

const TRAPS: [Trap; 3] = [Trap::Symlink, Trap::Fifo, Trap::Theirs];

const VICTIM_TEXT: &str = "the victim's own data\n";

/// A directory with a victim file, where traps are set.
struct Scene {
    dir: tempfile::TempDir,
    victim: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, VICTIM_TEXT).unwrap();
        Scene { dir, victim }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Sets `trap` at `path` (beforehand, as an attacker would).
    fn set(&self, trap: Trap, path: &Path) {
        match trap {
            Trap::Symlink => std::os::unix::fs::symlink(&self.victim, path).unwrap(),
            Trap::Fifo => {
                let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
                assert!(status.success());
            }
            Trap::Theirs => {
                std::fs::write(path, "").unwrap();
                std::os::unix::fs::chown(path, Some(65534), Some(65534))
                    .expect("making a file of another user needs root: run the tests as root (CI does)");
            }
        }
    }

    /// The shell line that sets `trap` at `$TMPDIR/<name>.$$.log` — the pid the worker gets,
    /// since the shell then `exec`s it.
    fn shell_trap(&self, trap: Trap, name: &str) -> String {
        let at = format!("\"$TMPDIR/{name}.$$.log\"");
        match trap {
            Trap::Symlink => format!("ln -s '{}' {at}", self.victim.display()),
            Trap::Fifo => format!("mkfifo {at}"),
            Trap::Theirs => format!(": > {at} && chown 65534:65534 {at}"),
        }
    }

    /// The victim is untouched, and the trap is as it was set: nothing was written through it.
    fn assert_untouched(&self, trap: Trap, path: &Path, case: &str) {
        assert_eq!(std::fs::read_to_string(&self.victim).unwrap(), VICTIM_TEXT, "{case}: the victim was written to");
        let meta = std::fs::symlink_metadata(path)
            .unwrap_or_else(|e| panic!("{case}: the trap at {} is gone: {e}", path.display()));
        match trap {
            Trap::Symlink => assert!(meta.file_type().is_symlink(), "{case}: the symlink was replaced"),
            Trap::Fifo => assert!(meta.file_type().is_fifo(), "{case}: the FIFO was replaced"),
            Trap::Theirs => assert_eq!(meta.len(), 0, "{case}: data was appended to another user's file"),
        }
    }
}

/// What the refusal message says about each trap.
fn says(trap: Trap) -> &'static str {
    match trap {
        Trap::Symlink => "symbolic link",
        Trap::Fifo => "FIFO",
        Trap::Theirs => "belongs to uid 65534",
    }
}

// ------------------------------------------------------------------ agent --

fn heap_app() -> DotnetApp {
    dotnet_app("HeapApp", Build::FrameworkDependent)
}

const APP_ARGS: [&str; 3] = ["hold", "1", "2"];

/// The app as it runs without leakscope.
fn app_baseline() -> Output {
    let mut c = heap_app().command();
    c.args(APP_ARGS);
    without_profiler_env(&mut c);
    let out = run_with_timeout(c, Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
    out
}

/// The agent's variables (without any file), reporting to `collector`.
fn agent_vars(collector: &Collector) -> Vec<(String, String)> {
    vec![
        ("CORECLR_ENABLE_PROFILING".into(), "1".into()),
        ("CORECLR_PROFILER".into(), AGENT_CLSID.into()),
        ("CORECLR_PROFILER_PATH".into(), agent_path().display().to_string()),
        ("LEAKSCOPE_SOCKET".into(), collector.socket.display().to_string()),
        ("LEAKSCOPE_INTERVAL".into(), "300ms".into()),
    ]
}

/// Runs the app under the agent (through `sh -c 'SETUP; exec app'` when `setup` is given, so
/// that a trap can be set at a path naming the worker's pid) and checks it behaved as without.
fn run_app(vars: &[(String, String)], setup: Option<&str>, baseline: &Output, case: &str) {
    let app = heap_app();
    let mut c = match setup {
        Some(setup) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(format!("{setup} && exec \"$@\"")).arg("sh").arg(&app.program).args(&app.leading_args);
            c
        }
        None => app.command(),
    };
    c.args(APP_ARGS).envs(vars.iter().map(|(k, v)| (k, v)));
    let out = run_with_timeout(c, Duration::from_secs(90));
    assert_eq!(out.status.code(), baseline.status.code(), "{case}: exit code changed\n{out:?}");
    assert_eq!(out.stdout, baseline.stdout, "{case}: stdout changed");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&baseline.stderr),
        "{case}: stderr changed"
    );
}

/// Waits for the agent's first summary (it kept working) and for a status that names the
/// refusal.
fn assert_refusal_reported(collector: &mut Collector, trap: Trap, path: &Path, case: &str) {
    collector.wait_for("a summary", Duration::from_secs(30), |r| r["type"] == "summary");
    let statuses = collector.statuses(Duration::from_millis(300));
    let name = path.display().to_string();
    assert!(
        statuses.iter().any(|m| m.contains("refusing") && m.contains(&name) && m.contains(says(trap))),
        "{case}: no status about the refusal of {name}: {statuses:#?}"
    );
}

/// Sets `trap` at `trapped` in `scene`, runs the app under the agent with `extra` variables
/// besides its own, and checks that it ran unchanged, that nothing was written through the
/// trap and that the agent reported the refusal.
fn run_agent_with_trap(
    scene: &Scene,
    trap: Trap,
    trapped: &Path,
    extra: &[(&str, &Path)],
    baseline: &Output,
    case: &str,
) {
    scene.set(trap, trapped);
    let mut collector = Collector::listen(&scene.path("collector.sock"));
    let mut vars = agent_vars(&collector);
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.display().to_string())));
    run_app(&vars, None, baseline, case);
    scene.assert_untouched(trap, trapped, case);
    assert_refusal_reported(&mut collector, trap, trapped, case);
}

#[test]
fn agent_output_trap_is_refused_and_the_worker_runs_unchanged() {
    let baseline = app_baseline();
    for trap in TRAPS {
        let case = format!("LEAKSCOPE_OUTPUT {trap:?}");
        let scene = Scene::new();
        let output = scene.path("out.ndjson");
        let log = scene.path("agent.log");
        let vars = [("LEAKSCOPE_OUTPUT", output.as_path()), ("LEAKSCOPE_LOG", log.as_path())];
        run_agent_with_trap(&scene, trap, &output, &vars, &baseline, &case);
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(log.contains("refusing"), "{case}: the log does not say it:\n{log}");
    }
}

#[test]
fn agent_log_trap_is_refused_and_the_worker_runs_unchanged() {
    let baseline = app_baseline();
    for trap in TRAPS {
        let case = format!("LEAKSCOPE_LOG {trap:?}");
        let scene = Scene::new();
        let log = scene.path("agent.log");
        run_agent_with_trap(&scene, trap, &log, &[("LEAKSCOPE_LOG", log.as_path())], &baseline, &case);
    }
}

/// The default log, `$TMPDIR/leakscope-agent.<pid>.log`, is predictable: squatted before the
/// worker starts. A bad setting makes the agent write a warning there.
#[test]
fn agent_default_log_trap_is_refused_and_the_worker_runs_unchanged() {
    let baseline = app_baseline();
    for trap in TRAPS {
        let case = format!("default log {trap:?}");
        let scene = Scene::new();
        let tmp = scene.path("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let mut collector = Collector::listen(&scene.path("collector.sock"));
        let mut vars = agent_vars(&collector);
        vars.push(("TMPDIR".into(), tmp.display().to_string()));
        vars.push(("LEAKSCOPE_MAX_SITES".into(), "banana".into()));
        run_app(&vars, Some(&scene.shell_trap(trap, "leakscope-agent")), &baseline, &case);
        let hello = collector.wait_for("hello", Duration::from_secs(30), |r| r["type"] == "hello");
        let log = PathBuf::from(hello["config"]["log"].as_str().expect("hello names the log"));
        assert_eq!(log.parent(), Some(tmp.as_path()), "{case}: {hello}");
        scene.assert_untouched(trap, &log, &case);
        assert_refusal_reported(&mut collector, trap, &log, &case);
        let statuses = collector.statuses(Duration::ZERO);
        assert!(
            statuses.iter().any(|m| m.contains("LEAKSCOPE_MAX_SITES")),
            "{case}: the bad value is still reported: {statuses:#?}"
        );
    }
}

// ------------------------------------------------------------------- shim --

/// `hello.c` prints two fixed lines and exits with 3.
fn c_program(scene: &Scene) -> PathBuf {
    compile_c("hello", "cc", scene.dir.path())
}

fn run_c(program: &Path, vars: &[(String, String)], case: &str) -> Output {
    let mut c = Command::new(program);
    c.arg("x").env_remove("LD_PRELOAD").envs(vars.iter().map(|(k, v)| (k, v)));
    let out = run_with_timeout(c, Duration::from_secs(30));
    eprintln!("{case}: {:?}", out.status);
    out
}

fn assert_same(out: &Output, baseline: &Output, case: &str) {
    assert_eq!(out.status.code(), baseline.status.code(), "{case}: exit code changed");
    assert_eq!(out.stdout, baseline.stdout, "{case}: stdout changed");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{case}: the shim wrote to stderr");
}

/// Which of the shim's two files the attacker squats.
#[derive(Clone, Copy)]
enum ShimFile {
    Output,
    Log,
}

/// A run of the C program under the shim, writing to `native.ndjson` and logging to `shim.log`
/// in a fresh scene, with `trap` set at one of the two.
struct ShimRun {
    output: PathBuf,
    log: PathBuf,
    /// Holds the files until the checks are done.
    _scene: Scene,
}

/// Runs the program with and without the shim, `trap` set at `trapped`, and checks that it ran
/// unchanged and that nothing was written through the trap.
fn run_shim_with_trap(trap: Trap, trapped: ShimFile, case: &str) -> ShimRun {
    let scene = Scene::new();
    let program = c_program(&scene);
    let baseline = run_c(&program, &[], "baseline");
    let output = scene.path("native.ndjson");
    let log = scene.path("shim.log");
    let at = match trapped {
        ShimFile::Output => &output,
        ShimFile::Log => &log,
    };
    scene.set(trap, at);
    let vars = vec![
        ("LD_PRELOAD".to_string(), shim_path().display().to_string()),
        ("LEAKSCOPE_OUTPUT".to_string(), output.display().to_string()),
        ("LEAKSCOPE_LOG".to_string(), log.display().to_string()),
    ];
    let out = run_c(&program, &vars, case);
    assert_same(&out, &baseline, case);
    scene.assert_untouched(trap, at, case);
    ShimRun { output, log, _scene: scene }
}

#[test]
fn shim_output_trap_is_refused_and_the_program_runs_unchanged() {
    for trap in TRAPS {
        let case = format!("shim LEAKSCOPE_OUTPUT {trap:?}");
        let run = run_shim_with_trap(trap, ShimFile::Output, &case);
        let log = std::fs::read_to_string(&run.log).unwrap_or_default();
        assert!(
            log.contains(&format!("refusing LEAKSCOPE_OUTPUT={}", run.output.display())) && log.contains(says(trap)),
            "{case}: the log does not say it:\n{log}"
        );
    }
}

#[test]
fn shim_log_trap_is_refused_and_reported_to_the_collector() {
    for trap in TRAPS {
        let case = format!("shim LEAKSCOPE_LOG {trap:?}");
        let run = run_shim_with_trap(trap, ShimFile::Log, &case);
        let records = read_records(&run.output);
        assert!(!of_type(&records, "native").is_empty(), "{case}: native tracking should still work: {records:?}");
        let refused = format!("refusing LEAKSCOPE_LOG={}", run.log.display());
        assert!(
            of_type(&records, "status")
                .iter()
                .any(|s| s["message"].as_str().is_some_and(|m| m.contains(&refused) && m.contains(says(trap)))),
            "{case}: no status about the refused log: {records:#?}"
        );
    }
}

/// The reproduction from the issue: with the shim preloaded and a FIFO at `LEAKSCOPE_OUTPUT`,
/// `/bin/echo hi` hung before its `main`.
#[test]
fn a_fifo_at_the_shims_output_never_holds_up_a_program_start() {
    let scene = Scene::new();
    let fifo = scene.path("out.fifo");
    scene.set(Trap::Fifo, &fifo);
    let mut c = Command::new("/bin/echo");
    c.arg("hi").env("LD_PRELOAD", shim_path()).env("LEAKSCOPE_OUTPUT", &fifo);
    let out = run_with_timeout(c, Duration::from_secs(10));
    assert!(out.status.success());
    assert_eq!(out.stdout, b"hi\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}
