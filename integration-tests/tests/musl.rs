//! A musl program (what an Alpine image runs). The shim is built against glibc, and a musl
//! process that preloads it does not start at all: musl's loader treats the shim's glibc-only
//! symbols as fatal. `leakscope run` and `leakscope env` must never do that to a worker: the
//! program, built with Debian's musl-gcc (`scripts/setup.sh --with-test-tools` installs it),
//! starts and runs as without leakscope, and native tracking says why it is off.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use integration_tests::*;
use serde_json::Value;

fn run(mut c: Command) -> Output {
    c.env_remove("LD_PRELOAD");
    run_with_timeout(c, Duration::from_secs(60))
}

fn hello(program: &Path) -> Command {
    let mut c = Command::new(program);
    c.arg("x");
    c
}

#[test]
fn run_and_env_never_preload_the_shim_into_a_musl_program_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let musl = compile_c("hello", "musl-gcc", dir.path());
    let baseline = run(hello(&musl));
    assert_eq!(baseline.status.code(), Some(3), "{baseline:?}");

    // The hazard itself: preloaded by hand, the shim stops the musl program from starting.
    let mut preloaded = hello(&musl);
    preloaded.env("LD_PRELOAD", shim_path());
    let broken = run_with_timeout(preloaded, Duration::from_secs(60));
    assert_ne!(broken.status.code(), Some(3), "the musl loader was expected to refuse the glibc shim");
    assert!(broken.stdout.is_empty(), "{broken:?}");

    // `leakscope run -- ./prog`: it starts, runs as without leakscope, and the report says why
    // native tracking is off.
    let out_dir = dir.path().join("run");
    let mut c = Command::new(cli_path());
    c.args(["run", "--interval", "500ms", "--out"]).arg(&out_dir).arg("--").arg(&musl).arg("x");
    let ran = run(c);
    assert_eq!(ran.status.code(), Some(3), "{}", String::from_utf8_lossy(&ran.stderr));
    assert_eq!(ran.stdout, baseline.stdout, "the target's stdout passes through unchanged");
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(stderr.contains("native tracking off") && stderr.contains("musl"), "{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap()).unwrap();
    let native = &report["session"]["native_tracking"];
    assert_eq!(native["enabled"], false, "{native}");
    let reason = native["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("musl") && reason.contains("ld-musl"), "{reason}");

    // `leakscope env -- ./prog`: no LD_PRELOAD, a comment saying why; a shell that applies the
    // printed variables and starts the program gets it running as without leakscope.
    let vars = dir.path().join("vars.sh");
    let mut c = Command::new(cli_path());
    c.args(["env", "--output"]).arg(dir.path().join("worker.ndjson")).arg("--").arg(&musl);
    let env = run(c);
    assert!(env.status.success(), "{env:?}");
    let text = stdout_of(&env);
    assert!(!text.lines().any(|l| l.starts_with("export LD_PRELOAD")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("# Native tracking off:") && l.contains("musl")), "{text}");
    std::fs::write(&vars, &text).unwrap();
    let mut c = Command::new("sh");
    c.arg("-c").arg(r#". "$1" && exec "$2" x"#).arg("sh").arg(&vars).arg(&musl);
    let started = run(c);
    assert_eq!(started.status.code(), Some(3), "{started:?}");
    assert_eq!(started.stdout, baseline.stdout);
    assert_eq!(started.stderr, baseline.stderr);
}

/// The check must not cost glibc programs their native tracking: `env` without a command, or
/// with a glibc one, still preloads the shim (and says to use --no-native for Alpine images).
#[test]
fn glibc_programs_keep_the_shim_and_env_documents_no_native_for_alpine() {
    let dir = tempfile::tempdir().unwrap();
    let glibc = compile_c("hello", "cc", dir.path());
    for command in [vec![], vec![glibc.display().to_string()]] {
        let mut c = Command::new(cli_path());
        c.args(["env", "--output"]).arg(dir.path().join("worker.ndjson"));
        if !command.is_empty() {
            c.arg("--").args(&command);
        }
        let env = run(c);
        let text = stdout_of(&env);
        assert!(text.lines().any(|l| l.starts_with("export LD_PRELOAD=")), "{command:?}: {text}");
        assert!(text.contains("leakscope env --no-native"), "{command:?}: {text}");
    }

    let out_dir = dir.path().join("run");
    let mut c = Command::new(cli_path());
    c.args(["run", "--interval", "500ms", "--out"]).arg(&out_dir).arg("--").arg(&glibc).arg("x");
    let ran = run(c);
    assert_eq!(ran.status.code(), Some(3));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["session"]["native_tracking"]["enabled"], true, "{}", report["session"]);
}
