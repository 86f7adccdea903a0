//! `leakscope demo`: build the bundled leaky worker (collector/demo/) in a cache directory and
//! run it under leakscope for under a minute, then say what was found.

use crate::cli::DemoArgs;
use crate::commands::print_stderr;
use crate::commands::run::{TargetSpec, resolve_libraries, run_target};
use crate::error::{CliError, CliResult};
use crate::files::Dir;
use crate::locate;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The demo's sources, embedded so `leakscope demo` works from any directory.
const SOURCES: &[(&str, &str)] = &[
    ("Demo.csproj", include_str!("../../demo/Demo.csproj")),
    ("Program.cs", include_str!("../../demo/Program.cs")),
    ("FakeQueue.cs", include_str!("../../demo/FakeQueue.cs")),
    ("OrderWorker.cs", include_str!("../../demo/OrderWorker.cs")),
    ("PriceCache.cs", include_str!("../../demo/PriceCache.cs")),
    ("OrderAudit.cs", include_str!("../../demo/OrderAudit.cs")),
];
/// Where the planted leak is; the demo checks that it was found.
const PLANTED_SITE: &str = "Demo.OrderAudit.Record";
const BUILT_STAMP: &str = ".leakscope-built";

pub fn demo(args: DemoArgs) -> CliResult<i32> {
    // Check the prerequisites before spending time on a build.
    resolve_libraries(&args.libs)?;
    let dotnet = find_dotnet().ok_or_else(dotnet_missing)?;
    // The build is run, so its directory must be this user's alone (the cache may be in /tmp).
    let cache = Dir::private(&locate::cache_dir())
        .and_then(|c| c.private_subdir(&format!("demo-{:016x}", sources_hash())))
        .map_err(|e| e.to_cli("cannot use the cache directory"))?;
    let dir = cache.path().to_path_buf();
    let dll = build(&dotnet, &cache, args.rebuild)?;

    print_stderr(&format!(
        "leakscope demo: running the demo worker for {} (it leaks in Demo.OrderAudit.Record; churn and a bounded cache are decoys)\n",
        crate::units::format_duration(args.duration)
    ));
    let outcome = run_target(TargetSpec {
        argv: vec![dotnet.display().to_string(), dll.display().to_string()],
        out: args.out,
        interval: args.interval,
        duration: Some(args.duration),
        plain: args.plain,
        libs: args.libs,
        mode: "demo",
        out_prefix: "leakscope-demo",
        extra_env: Vec::new(),
        soak: None,
        ask_paths: true,
        capture: None,
    })?;

    let findings = &outcome.report.findings;
    let agent_seen = outcome.report.processes.iter().any(|p| p.agent.is_some());
    let mut o = String::new();
    if let Some(found) = findings.iter().find(|f| f.site == PLANTED_SITE) {
        o.push_str(&format!(
            "\nleakscope demo: found the planted leak: {} @ {}, {}.\n",
            found.type_name.as_deref().unwrap_or("?"),
            found.site,
            crate::units::format_rate_per_min(found.bytes_per_min)
        ));
        o.push_str(&format!(
            "  The code: {}/OrderAudit.cs appends every order to a static list nobody trims.\n",
            dir.display()
        ));
        o.push_str("  The price cache (plateaus) and the per-message churn were not flagged.\n");
        o.push_str(&format!(
            "  Try it on your service: leakscope run -- dotnet YourWorker.dll   (report in {})\n",
            outcome.out_dir.display()
        ));
    } else if agent_seen {
        o.push_str(&format!(
            "\nleakscope demo: no verdict on the planted leak ({PLANTED_SITE}) in {}: \
             run longer with `leakscope demo --duration 2m`.\n",
            crate::units::format_duration(args.duration)
        ));
    } else {
        o.push_str(
            "\nleakscope demo: the agent never connected, so there is nothing to show (see the messages above).\n",
        );
    }
    print_stderr(&o);
    Ok(outcome.exit_code)
}

/// FNV-1a over the embedded sources: a new leakscope with new demo sources builds afresh.
fn sources_hash() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, text) in SOURCES {
        for b in name.bytes().chain([0]).chain(text.bytes()).chain([0]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

fn find_dotnet() -> Option<PathBuf> {
    if let Some(p) = locate::find_on_path("dotnet") {
        return Some(p);
    }
    let candidates = [
        std::env::var_os("DOTNET_ROOT").map(|r| PathBuf::from(r).join("dotnet")),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".dotnet").join("dotnet")),
        Some(PathBuf::from("/usr/share/dotnet/dotnet")),
        Some(PathBuf::from("/usr/lib/dotnet/dotnet")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

fn dotnet_missing() -> CliError {
    CliError::usage("`dotnet` not found: the demo is a .NET 10 program and needs the .NET SDK to build it")
        .hint("install the .NET 10 SDK: https://learn.microsoft.com/dotnet/core/install/linux")
        .hint("for example: curl -sSL https://dot.net/v1/dotnet-install.sh | bash -s -- --channel 10.0, then add ~/.dotnet to PATH")
        .hint("or set DOTNET_ROOT to an existing installation")
}

/// Writes the sources into `dir` and builds them once; later runs reuse the build.
fn build(dotnet: &Path, cache: &Dir, rebuild: bool) -> CliResult<PathBuf> {
    let dir = cache.path();
    let bin = dir.join("bin");
    let dll = bin.join("Demo.dll");
    if !rebuild && bin.join(BUILT_STAMP).is_file() && dll.is_file() {
        return Ok(dll);
    }
    for sub in ["bin", "obj"] {
        let _ = std::fs::remove_dir_all(dir.join(sub));
    }
    for (name, text) in SOURCES {
        cache.write_file(name, text.as_bytes()).map_err(|e| e.to_cli("cannot write"))?;
    }
    print_stderr(&format!("leakscope demo: building the demo worker in {} (first run only) …\n", dir.display()));
    let log_path = dir.join("build.log");
    let log = cache.create_file("build.log").map_err(|e| e.to_cli("cannot create"))?;
    let log_err = log.try_clone().map_err(|e| CliError::io("cannot open the build log", e))?;
    let mut cmd = Command::new(dotnet);
    cmd.current_dir(dir)
        .args([
            "build",
            "Demo.csproj",
            "-c",
            "Release",
            "-o",
            "bin",
            "--nologo",
            "-nodeReuse:false",
            "-p:UseSharedCompilation=false",
        ])
        .env("DOTNET_CLI_TELEMETRY_OPTOUT", "1")
        .env("DOTNET_NOLOGO", "1")
        .env("DOTNET_SKIP_FIRST_TIME_EXPERIENCE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    // The build itself must not be profiled, whatever the user's shell has set.
    for var in [
        "CORECLR_ENABLE_PROFILING",
        "CORECLR_PROFILER",
        "CORECLR_PROFILER_PATH",
        "LD_PRELOAD",
        "LEAKSCOPE_SOCKET",
        "LEAKSCOPE_OUTPUT",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().map_err(|e| CliError::new(format!("cannot run {}: {e}", dotnet.display())))?;
    if !status.success() || !dll.is_file() {
        let tail = crate::session::tail_lines(&log_path, 12);
        let mut err = CliError::new(format!("building the demo worker failed (full log: {})", log_path.display()));
        for line in tail.iter().filter(|l| l.contains("error") || l.contains("Error")).take(5) {
            err = err.hint(format!("dotnet: {}", line.trim()));
        }
        return Err(err
            .hint("the demo targets net10.0: `dotnet --list-sdks` must show a 10.x SDK")
            .hint("retry with `leakscope demo --rebuild`"));
    }
    let _ = std::fs::write(bin.join(BUILT_STAMP), b"ok\n");
    Ok(dll)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_demo_contains_the_planted_leak_and_targets_net10() {
        let audit = SOURCES.iter().find(|(n, _)| *n == "OrderAudit.cs").unwrap().1;
        assert!(audit.contains("public static void Record(Order order)"));
        assert!(audit.contains("NoInlining"), "Record must stay a frame of its own");
        let proj = SOURCES.iter().find(|(n, _)| *n == "Demo.csproj").unwrap().1;
        assert!(proj.contains("<TargetFramework>net10.0</TargetFramework>"));
        assert_ne!(sources_hash(), 0);
    }

    #[test]
    fn a_missing_dotnet_says_how_to_install_it() {
        let e = dotnet_missing();
        assert_eq!(e.exit_code, crate::error::EXIT_USAGE);
        assert!(e.message.contains("`dotnet` not found"));
        assert!(e.hints.iter().any(|h| h.contains("dotnet-install.sh")));
        assert!(e.hints.iter().any(|h| h.contains("learn.microsoft.com/dotnet/core/install/linux")));
    }
}
