//! `leakscope soak` on SoakApp, run to the end (or stopped with SIGINT) and read back: shared by
//! the soak and soak_gate tests, which each start their soaks at once and assert on the results.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Build, DotnetApp, cli_path, dotnet_app, wait_with_deadline};

/// A finished soak: its exit code, what it printed on stderr, and its report.json.
pub struct SoakRun {
    pub out: PathBuf,
    pub code: Option<i32>,
    pub stderr: String,
    pub report: Value,
    /// From the start of `leakscope soak` to its end.
    pub wall: Duration,
}

impl SoakRun {
    /// The `soak` section of report.json.
    pub fn soak(&self) -> &Value {
        &self.report["soak"]
    }

    /// A file the soak wrote into its output directory.
    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}\n{}", self.summary()))
    }

    pub fn subject(&self, id: &str) -> &Value {
        self.soak()["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no subject {id} in {}:\n{}", self.out.display(), self.summary()))
    }

    /// The ids of the subjects that fail the soak (breaking a rule, not known in the baseline).
    pub fn failing(&self) -> Vec<String> {
        self.soak()["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["failed_rules"].as_array().is_some_and(|r| !r.is_empty()) && s["known_in_baseline"] != true)
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// What to print when an assertion fails: where, the headline, the first verdicts and the
    /// end of stderr.
    pub fn summary(&self) -> String {
        let mut o = format!("{}: exit {:?}; {}\n", self.out.display(), self.code, self.soak()["headline"]);
        for s in self.soak()["subjects"].as_array().map(Vec::as_slice).unwrap_or(&[]).iter().take(12) {
            o.push_str(&format!("  {} {}: {}\n", s["verdict"], s["id"], s["evidence"]));
        }
        o.push_str(
            &self.stderr.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"),
        );
        o
    }
}

pub fn soak_app() -> DotnetApp {
    dotnet_app("SoakApp", Build::FrameworkDependent)
}

/// `leakscope soak --plain --out DIR ARGS… -- dotnet SoakApp.dll SCENARIO`, with workstation GC
/// and the libraries leakscope finds itself (not the caller's `LEAKSCOPE_AGENT`/`_SHIM`).
pub fn soak_app_command<S: AsRef<std::ffi::OsStr>>(out: &Path, scenario: &str, args: &[S]) -> Command {
    let app = soak_app();
    let mut c = Command::new(cli_path());
    c.args(["soak", "--plain", "--out"]).arg(out).args(args);
    c.arg("--").arg(&app.program).args(&app.leading_args).arg(scenario);
    c.env("DOTNET_CLI_TELEMETRY_OPTOUT", "1")
        .env_remove("LEAKSCOPE_AGENT")
        .env_remove("LEAKSCOPE_SHIM")
        .env_remove("DOTNET_gcServer");
    c
}

/// Runs a soak to the end (or sends SIGINT after `interrupt_after`), failing the test when it
/// takes longer than `timeout`, and reads its report (null when there is none).
pub fn run_soak(mut c: Command, out: &Path, timeout: Duration, interrupt_after: Option<Duration>) -> SoakRun {
    let started = Instant::now();
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn leakscope soak");
    let mut stderr_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    if let Some(after) = interrupt_after {
        while started.elapsed() < after {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGINT);
        }
    }
    let status = wait_with_deadline(&mut child, timeout)
        .unwrap_or_else(|| panic!("leakscope soak did not finish within {timeout:?}"));
    let stderr = reader.join().unwrap();
    let report = std::fs::read_to_string(out.join("report.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    SoakRun { out: out.to_path_buf(), code: status.code(), stderr, report, wall: started.elapsed() }
}
