//! `leakscope ps`: the .NET processes this user can see, their runtime, and whether leakscope
//! is already inside them.

use crate::cli::PsArgs;
use crate::commands::print_stdout;
use crate::diagnostics_ipc::{self, ProcessInfo};
use crate::error::CliResult;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct DotnetProcess {
    pub pid: u32,
    /// The runtime's product version, when its diagnostics socket answered.
    pub runtime: Option<String>,
    pub command_line: String,
    /// `startup` (loaded by its environment), `attached` (by a running `leakscope attach` or
    /// `snapshot`), `orphaned` (attached by a session that is gone), `idle` (loaded earlier,
    /// detached since), or `no`.
    pub agent: &'static str,
    pub shim: bool,
    /// The diagnostics socket, or why there is none.
    pub diagnostics: Result<String, String>,
}

pub fn ps(args: PsArgs) -> CliResult<i32> {
    let processes: Vec<DotnetProcess> = diagnostics_ipc::dotnet_pids().into_iter().map(describe).collect();
    if args.json {
        print_stdout(&(serde_json::to_string_pretty(&processes).unwrap_or_default() + "\n"));
        return Ok(0);
    }
    if processes.is_empty() {
        print_stdout(
            "no .NET processes found (only processes this user may inspect are listed; run as their user, or root, to see others)\n",
        );
        return Ok(0);
    }
    let mut out = format!("{:>8}  {:<22}  {:<9}  {:<5}  COMMAND\n", "PID", "RUNTIME", "LEAKSCOPE", "SHIM");
    for p in &processes {
        let runtime = match (&p.runtime, &p.diagnostics) {
            (Some(v), _) => v.split('+').next().unwrap_or(v).to_string(),
            (None, Err(why)) => format!("? ({why})"),
            (None, Ok(_)) => "?".to_string(),
        };
        out.push_str(&format!(
            "{:>8}  {:<22}  {:<9}  {:<5}  {}\n",
            p.pid,
            truncate(&runtime, 22),
            p.agent,
            if p.shim { "yes" } else { "no" },
            p.command_line
        ));
    }
    out.push_str("\nattach to one with: leakscope attach PID\n");
    print_stdout(&out);
    Ok(0)
}

pub fn describe(pid: u32) -> DotnetProcess {
    let socket = diagnostics_ipc::find_socket(pid);
    let info: Option<ProcessInfo> = socket.as_ref().and_then(|s| diagnostics_ipc::process_info(s).ok());
    let command_line =
        info.as_ref().map(|i| i.command_line.clone()).filter(|c| !c.is_empty()).unwrap_or_else(|| proc_cmdline(pid));
    // Another process's words: shown escaped, never acted on by the terminal.
    let clean = |s: &str| crate::untrusted::clean(s).into_owned();
    DotnetProcess {
        pid,
        runtime: info.as_ref().map(|i| clean(&i.runtime_version)).filter(|v| !v.is_empty()),
        command_line: clean(&command_line),
        agent: agent_state(pid),
        shim: diagnostics_ipc::maps_contain(pid, "libleakscope_shim.so"),
        diagnostics: socket
            .map(|s| s.shown().display().to_string())
            .ok_or_else(|| "no diagnostics socket (DOTNET_EnableDiagnostics=0?)".to_string()),
    }
}

/// Whether the agent is in the process, and how it came. The runtime keeps the library mapped
/// after a detach, so "mapped" alone does not mean "profiling": an agent that is working has its
/// thread (`leakscope-agent`). An attached one is `attached` while the `leakscope attach` or
/// `snapshot` that loaded it runs, `orphaned` once that is gone (it then detaches itself after
/// its orphan timeout).
pub fn agent_state(pid: u32) -> &'static str {
    if !diagnostics_ipc::maps_contain(pid, "libleakscope_agent.so") {
        return "no";
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let at_startup = environ
        .split(|&b| b == 0)
        .any(|kv| kv.starts_with(b"CORECLR_PROFILER_PATH") && kv.windows(9).any(|w| w == b"leakscope"));
    if at_startup {
        "startup"
    } else if !agent_thread_running(pid) {
        "idle"
    } else if !crate::attach_places::live_sessions(pid).is_empty() {
        "attached"
    } else {
        "orphaned"
    }
}

/// Whether the agent's own thread is alive in `pid` (it ends when the agent detaches).
pub fn agent_thread_running(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks
        .flatten()
        .any(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == "leakscope-agent"))
}

fn proc_cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n - 1).collect::<String>() + "…" }
}
