//! `leakscope env`: the variables that enable leakscope on a worker started elsewhere.

use crate::cli::EnvArgs;
use crate::commands::print_stdout;
use crate::commands::run::{Libraries, keep_shim_only_for_glibc, resolve_libraries};
use crate::error::{CliError, CliResult};
use crate::launch::{self, Channel};
use crate::locate::{self, AGENT_FILE, SHIM_FILE};
use crate::session_info::NativeTracking;
use crate::shell::shell_quote;
use crate::untrusted::clean;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub fn env(args: EnvArgs) -> CliResult<i32> {
    let mut libs = match &args.lib_dir {
        Some(dir) => libraries_in(dir, args.libs.no_native)?,
        None => resolve_libraries(&args.libs)?,
    };
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
    // The variables are printed as text: a path that is not UTF-8 could not be given back.
    let channel_path = match &channel {
        Channel::Socket(p) | Channel::Output(p) => p,
    };
    for p in [Some(&libs.agent), libs.shim.as_ref(), Some(channel_path)].into_iter().flatten() {
        if p.to_str().is_none() {
            return Err(CliError::usage(format!(
                "{} is not valid UTF-8, so it cannot be printed as a variable",
                p.display()
            ))
            .hint("use a path made of UTF-8 characters"));
        }
    }
    // The worker's own LD_PRELOAD is unknown here: the shell line keeps it, the others cannot.
    let mut vars = launch::profiler_env(&libs.agent, libs.shim.as_deref(), &channel, args.interval, None);
    if let Some(service) = args.service.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        vars.push(("LEAKSCOPE_SERVICE".to_string(), service.to_string()));
    }
    print_stdout(&render(&vars, &channel, libs.native.reason.as_deref()));
    Ok(0)
}

/// `--lib-dir DIR`: the libraries as the worker will see them (a volume in a container), which
/// need not exist here.
fn libraries_in(dir: &Path, no_native: bool) -> CliResult<Libraries> {
    if !dir.is_absolute() {
        return Err(CliError::usage(format!(
            "--lib-dir {} is relative; the worker needs an absolute path",
            dir.display()
        )));
    }
    Ok(Libraries {
        agent: dir.join(AGENT_FILE),
        shim: (!no_native).then(|| dir.join(SHIM_FILE)),
        native: NativeTracking {
            enabled: !no_native,
            reason: no_native.then(|| "turned off with --no-native".to_string()),
        },
    })
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
}

/// The variables as shell `export`s (each value single-quoted, so any character — a space,
/// quote, `$`, backtick or newline — comes back exactly through `sh`), then as commented
/// systemd and Kubernetes hints, escaped so that no value can end a comment line.
pub fn render(vars: &[(String, String)], channel: &Channel, native_off: Option<&str>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# leakscope: put these on the .NET worker's environment, then restart it.");
    match channel {
        Channel::Socket(p) => {
            let _ = writeln!(
                o,
                "# Watch it with: leakscope listen --socket {}",
                clean(&shell_quote(&p.display().to_string()))
            );
            let _ = writeln!(o, "# (start the listener first; the agent retries if it is not there yet)");
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
                clean(&shell_quote(&p.display().to_string()))
            );
        }
    }
    if let Some(reason) = native_off {
        let _ = writeln!(o, "# Native tracking off: {}", clean(reason));
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
            let _ = writeln!(o, "export LD_PRELOAD={}\"${{LD_PRELOAD:+:$LD_PRELOAD}}\"", shell_quote(v));
        } else {
            let _ = writeln!(o, "export {k}={}", shell_quote(v));
        }
    }
    let _ = writeln!(o, "#");
    let _ = writeln!(o, "# systemd: `systemctl edit WORKER.service`, then under [Service]:");
    for (k, v) in vars {
        let _ = writeln!(o, "#   Environment={}", systemd_quote(&format!("{k}={v}")));
    }
    let _ = writeln!(o, "#");
    let _ = writeln!(o, "# Kubernetes: in the container spec (the libraries and the socket/file must be on a volume");
    let _ = writeln!(o, "# mounted at the same path in the pod):");
    let _ = writeln!(o, "#   env:");
    for (k, v) in vars {
        let _ = writeln!(o, "#     - name: {k}");
        let _ = writeln!(o, "#       value: {}", yaml_quote(v));
    }
    o
}

/// A double-quoted systemd value: C-style escapes, and `%` doubled (systemd expands `%x`).
fn systemd_quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '%' => o.push_str("%%"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => o.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A double-quoted YAML scalar.
fn yaml_quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c if c.is_control() => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
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
        assert!(text.contains("export CORECLR_PROFILER='{E3F826A5-7C38-4392-A672-1BB85AF76D18}'\n"));
        assert!(text.contains("export CORECLR_PROFILER_PATH=/opt/leakscope/libleakscope_agent.so\n"));
        assert!(text.contains("export LEAKSCOPE_SOCKET=/run/user/1000/leakscope.sock\n"));
        assert!(text.contains("export LEAKSCOPE_INTERVAL=5000ms\n"));
        assert!(
            text.contains("export LD_PRELOAD=/opt/leakscope/libleakscope_shim.so\"${LD_PRELOAD:+:$LD_PRELOAD}\"\n")
        );
        assert!(text.contains("export DOTNET_PerfMapEnabled=3\n"));
        assert!(text.contains("#   Environment=\"CORECLR_ENABLE_PROFILING=1\""));
        assert!(text.contains("#     - name: LEAKSCOPE_SOCKET"));
        assert!(text.contains("leakscope listen --socket /run/user/1000/leakscope.sock"));
        // Every non-comment line is an export: safe to `eval "$(leakscope env)"`.
        assert!(text.lines().filter(|l| !l.starts_with('#')).all(|l| l.starts_with("export ")));
    }

    #[test]
    fn hostile_values_come_back_exactly_through_sh_and_never_leave_a_comment() {
        let dir = "/tmp/a b/it's \"q\" $(touch /tmp/leakscope-pwned) `id` $HOME %h\nnext\tline\\";
        let channel = Channel::Output(PathBuf::from(format!("{dir}/out.ndjson")));
        let agent = PathBuf::from(format!("{dir}/libleakscope_agent.so"));
        let shim = PathBuf::from(format!("{dir}/libleakscope_shim.so"));
        let vars = launch::profiler_env(&agent, Some(&shim), &channel, Duration::from_secs(5), None);
        let text = render(&vars, &channel, Some("reason with\na newline"));
        // A comment line stays one line: every line is a comment, an export, or the inside of
        // a single-quoted value.
        for line in text.lines() {
            assert!(!line.starts_with("#   Environment") || !line.contains('\n'));
        }
        let script = format!("{text}\nprintf '%s\\0' \"$CORECLR_PROFILER_PATH\" \"$LEAKSCOPE_OUTPUT\" \"$LD_PRELOAD\"");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("LD_PRELOAD", "/usr/lib/other.so")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let got: Vec<&[u8]> = out.stdout.split(|&b| b == 0).collect();
        assert_eq!(got[0], agent.to_str().unwrap().as_bytes());
        assert_eq!(got[1], format!("{dir}/out.ndjson").as_bytes());
        assert_eq!(got[2], format!("{}:/usr/lib/other.so", shim.display()).as_bytes());
        assert!(!Path::new("/tmp/leakscope-pwned").exists());
    }
}
