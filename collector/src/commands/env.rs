//! `leakscope env`: the variables that enable leakscope on a worker started elsewhere.

use crate::cli::EnvArgs;
use crate::commands::print_stdout;
use crate::commands::run::resolve_libraries;
use crate::error::{CliError, CliResult};
use crate::launch::{self, Channel};
use crate::locate::{self, AGENT_FILE, SHIM_FILE, shell_quote};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub fn env(args: EnvArgs) -> CliResult<i32> {
    let (agent, shim, native_off) = match &args.lib_dir {
        Some(dir) => {
            if !dir.is_absolute() {
                return Err(CliError::usage(format!(
                    "--lib-dir {} is relative; the worker needs an absolute path",
                    dir.display()
                )));
            }
            let shim = (!args.libs.no_native).then(|| dir.join(SHIM_FILE));
            let off = args.libs.no_native.then(|| "turned off with --no-native".to_string());
            (dir.join(AGENT_FILE), shim, off)
        }
        None => {
            let libs = resolve_libraries(&args.libs)?;
            (libs.agent, libs.shim, libs.native.reason)
        }
    };
    let channel = match (&args.socket, &args.output) {
        (_, Some(file)) => Channel::Output(absolute(file)),
        (Some(sock), None) => Channel::Socket(absolute(sock)),
        (None, None) => Channel::Socket(locate::default_listen_socket()),
    };
    // The worker's own LD_PRELOAD is unknown here: the shell line keeps it, the others cannot.
    let mut vars = launch::profiler_env(&agent, shim.as_deref(), &channel, args.interval, None);
    if let Some(service) = args.service.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        vars.push(("LEAKSCOPE_SERVICE".to_string(), service.to_string()));
    }
    print_stdout(&render(&vars, &channel, native_off.as_deref()));
    Ok(0)
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

pub fn render(vars: &[(String, String)], channel: &Channel, native_off: Option<&str>) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# leakscope: put these on the .NET worker's environment, then restart it."
    );
    match channel {
        Channel::Socket(p) => {
            let _ = writeln!(
                o,
                "# Watch it with: leakscope listen --socket {}",
                shell_quote(&p.display().to_string())
            );
            let _ = writeln!(
                o,
                "# (start the listener first; the agent retries if it is not there yet)"
            );
        }
        Channel::Output(p) => {
            let _ = writeln!(
                o,
                "# Watch it with: leakscope tail {} --follow",
                shell_quote(&p.display().to_string())
            );
        }
    }
    if let Some(reason) = native_off {
        let _ = writeln!(o, "# Native tracking off: {reason}");
    }
    for (k, v) in vars {
        if k == "LD_PRELOAD" {
            // Keep whatever the worker already preloads, after the shim.
            let _ = writeln!(o, "export LD_PRELOAD=\"{v}${{LD_PRELOAD:+:$LD_PRELOAD}}\"");
        } else {
            let _ = writeln!(o, "export {k}={}", shell_quote(v));
        }
    }
    let _ = writeln!(o, "#");
    let _ = writeln!(
        o,
        "# systemd: `systemctl edit WORKER.service`, then under [Service]:"
    );
    for (k, v) in vars {
        let _ = writeln!(o, "#   Environment=\"{k}={v}\"");
    }
    let _ = writeln!(o, "#");
    let _ = writeln!(
        o,
        "# Kubernetes: in the container spec (the libraries and the socket/file must be on a volume"
    );
    let _ = writeln!(o, "# mounted at the same path in the pod):");
    let _ = writeln!(o, "#   env:");
    for (k, v) in vars {
        // A JSON string is a valid YAML double-quoted scalar: quotes and backslashes escaped.
        let quoted = serde_json::to_string(v).unwrap_or_default();
        let _ = writeln!(o, "#     - name: {k}");
        let _ = writeln!(o, "#       value: {quoted}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn env_output_is_sourceable_and_has_systemd_and_kubernetes_hints() {
        let channel = Channel::Socket(PathBuf::from("/run/user/1000/leakscope.sock"));
        let vars = launch::profiler_env(
            Path::new("/opt/leakscope/libleakscope_agent.so"),
            Some(Path::new("/opt/leakscope/libleakscope_shim.so")),
            &channel,
            Duration::from_secs(5),
            None,
        );
        let text = render(&vars, &channel, None);
        assert!(text.contains("export CORECLR_ENABLE_PROFILING=1\n"));
        assert!(
            text.contains("export CORECLR_PROFILER='{E3F826A5-7C38-4392-A672-1BB85AF76D18}'\n")
        );
        assert!(
            text.contains("export CORECLR_PROFILER_PATH=/opt/leakscope/libleakscope_agent.so\n")
        );
        assert!(text.contains("export LEAKSCOPE_SOCKET=/run/user/1000/leakscope.sock\n"));
        assert!(text.contains("export LEAKSCOPE_INTERVAL=5000ms\n"));
        assert!(text.contains(
            "export LD_PRELOAD=\"/opt/leakscope/libleakscope_shim.so${LD_PRELOAD:+:$LD_PRELOAD}\"\n"
        ));
        assert!(text.contains("export DOTNET_PerfMapEnabled=3\n"));
        assert!(text.contains("#   Environment=\"CORECLR_ENABLE_PROFILING=1\""));
        assert!(text.contains("#     - name: LEAKSCOPE_SOCKET"));
        assert!(text.contains("leakscope listen --socket /run/user/1000/leakscope.sock"));
        // Every non-comment line is an export: safe to `eval "$(leakscope env)"`.
        assert!(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .all(|l| l.starts_with("export "))
        );
    }
}
