//! `leakscope env`: the variables that enable leakscope on a worker started elsewhere.

use crate::cli::EnvArgs;
use crate::commands::print_stdout;
use crate::commands::run::{keep_shim_only_for_glibc, resolve_libraries};
use crate::error::CliResult;
use crate::launch::{self, Channel};
use crate::locate::{self, shell_quote};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub fn env(args: EnvArgs) -> CliResult<i32> {
    let mut libs = resolve_libraries(&args.libs)?;
    keep_shim_only_for_glibc(&mut libs, &args.command);
    let channel = match (&args.socket, &args.output) {
        (_, Some(file)) => Channel::Output(absolute(file)),
        (Some(sock), None) => Channel::Socket(absolute(sock)),
        (None, None) => {
            // Claim the owner-only directory now, before a worker is pointed at it.
            let socket = locate::default_listen_socket();
            if let Some(dir) = socket.parent() {
                crate::owner_only::ensure_private_dir(dir)?;
            }
            Channel::Socket(socket)
        }
    };
    // The worker's own LD_PRELOAD is unknown here: the shell line keeps it, the others cannot.
    let vars = launch::profiler_env(
        &libs.agent,
        libs.shim.as_deref(),
        &channel,
        args.interval,
        None,
    );
    print_stdout(&render(&vars, &channel, libs.native.reason.as_deref()));
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
            let _ = writeln!(
                o,
                "# Run the worker and the listener as the same user (uid {}): producers talk only to a",
                crate::owner_only::euid()
            );
            let _ = writeln!(o, "# listener of their own user or root, and it accepts only its own user's and root's.");
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
    } else if vars.iter().any(|(k, _)| k == "LD_PRELOAD") {
        let _ = writeln!(
            o,
            "# The native shim (LD_PRELOAD) needs glibc: for a musl-based image (Alpine) use `leakscope env --no-native`,"
        );
        let _ = writeln!(o, "# or put the worker's command after `--` to have it checked.");
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
        let _ = writeln!(o, "#     - name: {k}");
        let _ = writeln!(o, "#       value: \"{v}\"");
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
