//! Command-line arguments (clap derive). Usage errors exit with code 2.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "leakscope",
    version,
    about = "Find the call sites whose surviving memory keeps growing in long-running .NET services",
    long_about = "Find the call sites whose surviving memory keeps growing in long-running .NET services.\n\n\
        leakscope runs (or listens to) a .NET process with the leakscope agent (managed survivors by type and \
        allocating call site) and shim (native survivors by call site), shows what grows while it runs, and writes a \
        report when it ends.\n\nStart with `leakscope demo` to see a real finding in a minute.",
    after_help = "Examples:\n  leakscope run -- dotnet Worker.dll\n  leakscope run --duration 30m --out soak1 -- dotnet Worker.dll\n  \
        leakscope soak --duration 30m --fail-on 'growth > 1MB/h' -- dotnet Worker.dll   # exit 0 pass, 1 leak, 2 error\n  \
        leakscope env --socket /run/leakscope.sock     # variables for a worker started elsewhere\n  \
        leakscope listen --socket /run/leakscope.sock\n  leakscope tail /var/log/worker.leakscope.ndjson --follow\n  \
        leakscope report leakscope-20250101-120000/\n  leakscope ps\n  leakscope attach 4242 --duration 10m   # no restart\n  leakscope snapshot 4242 -o before.ndjson; leakscope snapshot 4242 -o after.ndjson; leakscope diff before.ndjson after.ndjson\n  leakscope demo"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch a command with the agent (and shim) enabled, watch it live, write a report when it ends
    Run(RunArgs),
    /// Print the environment variables that enable leakscope on a worker started elsewhere
    Env(EnvArgs),
    /// Receive from agents and shims of processes started elsewhere (see `leakscope env`)
    Listen(ListenArgs),
    /// Render an NDJSON file written with LEAKSCOPE_OUTPUT, optionally following it as it grows
    Tail(TailArgs),
    /// Soak-test a worker: verdict per type and call site (leaking, plateaued, stable,
    /// inconclusive), JSON + JUnit XML + HTML reports, exit 0 pass, 1 leak, 2 error
    Soak(SoakArgs),
    /// Re-render report.txt and report.json from a recording
    Report(ReportArgs),
    /// Build and run a bundled leaky .NET worker and show what leakscope finds (needs `dotnet`)
    Demo(DemoArgs),
    /// List the running .NET processes, their runtime, and whether leakscope is in them
    Ps(PsArgs),
    /// Attach to a running .NET process (no restart), watch it, detach on Ctrl-C
    Attach(AttachArgs),
    /// Detach from a process attached with `leakscope attach` (from another terminal)
    Detach(DetachArgs),
    /// Count a running process's heap by type (exact, like dumpheap -stat) with the call sites
    /// whose allocations survive, into a file for `leakscope diff`; no restart
    Snapshot(SnapshotArgs),
    /// Compare two heap censuses by type, growth first: two snapshots, two recordings, or the
    /// first and last census of one recording
    Diff(DiffArgs),
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The process to count (see `leakscope ps`)
    #[arg(value_name = "PID")]
    pub pid: u32,
    /// Where to write the snapshot (NDJSON) [default: ./leakscope-snapshot-<pid>-<timestamp>.ndjson]
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// How long to sample allocations before counting, so the snapshot can name the call sites
    /// whose allocations survive (0s: the census only)
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = crate::units::parse_duration)]
    pub sample: Duration,
    /// Types to print
    #[arg(long, value_name = "N", default_value_t = 25)]
    pub top: usize,
    /// Also find what keeps these types alive (reference paths from static fields, stacks,
    /// handles); with no TYPE, the types of the top 3 surviving call sites
    #[arg(long, value_name = "TYPE", num_args = 0..)]
    pub paths: Option<Vec<String>>,
    /// Also show a few instances of this type (first, middle and last found on the heap) with
    /// their fields' values, like `dumpobj`; repeat for more types (at most 8)
    #[arg(long, value_name = "TYPE")]
    pub peek: Vec<String>,
    /// With --peek: show string fields' contents (truncated to 64 characters) instead of only
    /// their length; they may hold user data
    #[arg(long, requires = "peek")]
    pub peek_strings: bool,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Also write the sampled surviving allocations as a gzipped pprof profile (for `go tool pprof`)
    #[arg(long, value_name = "FILE")]
    pub pprof: Option<PathBuf>,
    /// The agent library (default: $LEAKSCOPE_AGENT, else next to this executable, else ../lib/)
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// A snapshot, a recording (NDJSON), or an output directory of run/attach/soak
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// The later one; without it, the first and the last census of A are compared
    #[arg(value_name = "B")]
    pub b: Option<PathBuf>,
    /// Types to print (growing types first)
    #[arg(long, value_name = "N", default_value_t = 25)]
    pub top: usize,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The process to attach to (see `leakscope ps`)
    #[arg(value_name = "PID")]
    pub pid: u32,
    /// Directory for recording.ndjson, report.txt, report.json [default: ./leakscope-attach-<timestamp>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// How often the agent reports (e.g. 2s, 500ms, 1m)
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Detach after this long (default: on Ctrl-C)
    #[arg(long, value_name = "DUR", value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,
    /// Soak-style measurement points: the agent induces a full GC this often and counts the heap
    #[arg(long, value_name = "DUR", value_parser = parse_positive_duration)]
    pub gc_every: Option<Duration>,
    /// If this session dies without detaching (kill -9), the agent detaches itself after this
    /// long without a collector (1s–24h)
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_orphan_timeout)]
    pub orphan_timeout: Duration,
    /// One status line per interval instead of the full-screen view
    #[arg(long)]
    pub plain: bool,
    /// The agent library (default: $LEAKSCOPE_AGENT, else next to this executable, else ../lib/)
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
}

fn parse_orphan_timeout(s: &str) -> Result<Duration, String> {
    let d = crate::units::parse_duration(s)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(24 * 3600) {
        return Err("the orphan timeout must be between 1s and 24h".to_string());
    }
    Ok(d)
}

#[derive(Debug, Args)]
pub struct DetachArgs {
    /// The process `leakscope attach` attached to
    #[arg(value_name = "PID")]
    pub pid: u32,
}

#[derive(Debug, Args, Clone)]
pub struct LibraryArgs {
    /// The agent library (default: $LEAKSCOPE_AGENT, else next to this executable, else ../lib/)
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// The shim library (default: $LEAKSCOPE_SHIM, else next to this executable, else ../lib/)
    #[arg(long, value_name = "PATH")]
    pub shim: Option<PathBuf>,
    /// Track managed memory only: no LD_PRELOAD shim
    #[arg(long)]
    pub no_native: bool,
}

#[derive(Debug, Args)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// Directory for recording.ndjson, report.txt, report.json [default: ./leakscope-<timestamp>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// How often producers report (e.g. 2s, 500ms, 1m)
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Stop the target after this long (SIGINT, then SIGTERM, then SIGKILL)
    #[arg(long, value_name = "DUR", value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,
    /// One status line per interval instead of the full-screen view, even on a terminal
    #[arg(long)]
    pub plain: bool,
    /// At --duration's end, do not ask the agent what keeps the growing types alive (a heap
    /// walk of its own: ~0.1 s pause per million objects)
    #[arg(long)]
    pub no_paths: bool,
    #[command(flatten)]
    pub capture: CaptureArgs,
    #[command(flatten)]
    pub libs: LibraryArgs,
    /// The command to run, after `--`
    #[arg(required = true, value_name = "COMMAND", allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
#[command(
    trailing_var_arg = true,
    after_help = "Rules (--fail-on, repeatable): [scope] growth|live >|>= value\n  \
        scope: type:PATTERN, site:PATTERN, native, native:PATTERN, managed, heap, rss (none: every type, site and native subject)\n  \
        default: 'growth > 100kB/h' and 'managed growth > 1MB/h' (the census total, when no type or site breaks a rule)\n  \
        e.g. 'growth > 1MB/h'  'site:MyApp.Orders.* growth > 0'  'native growth > 5MB/h'  'type:MyApp.Session live > 50MB'\n\n\
        Exit codes: 0 pass, 1 a rule is broken (a leak, or a regression against --baseline), 2 inconclusive (too few\n\
        comparable points to judge) or a usage or infrastructure error.\n\
        Files in --out: report.html, report.json, junit.xml, report.txt, recording.ndjson, session.json."
)]
pub struct SoakArgs {
    /// How long to run the worker, e.g. 30m or 2h (Ctrl-C ends early, with a report)
    #[arg(long, value_name = "DUR", value_parser = parse_positive_duration)]
    pub duration: Duration,
    /// Leading time left out of the verdicts (start-up, caches filling) [default: 20% of --duration]
    #[arg(long, value_name = "DUR", value_parser = crate::units::parse_duration)]
    pub warmup: Option<Duration>,
    /// How often the agent induces a full GC and counts the heap by type: the comparable points
    /// [default: chosen from --duration and --warmup so that about 12 follow the warm-up, 2s–30s]
    #[arg(long, value_name = "DUR", value_parser = parse_gc_every)]
    pub gc_every: Option<Duration>,
    /// Start even when the settings cannot give the 8 comparable points a verdict needs (the
    /// soak then ends INCONCLUSIVE, exit 2, unless it finds a leak)
    #[arg(long)]
    pub allow_short: bool,
    /// Fail when this rule is broken (repeatable); given rules replace the defaults
    /// [default: 'growth > 100kB/h', 'managed growth > 1MB/h']
    #[arg(long = "fail-on", value_name = "EXPR")]
    pub fail_on: Vec<String>,
    /// report.json of an earlier soak: known leaks are reported, new or faster ones fail
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Inconclusive verdicts of gated subjects fail too
    #[arg(long)]
    pub strict: bool,
    /// Directory for the reports and the recording [default: ./leakscope-soak-<timestamp>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// How often producers send summaries (the live view, the RSS/heap and native series)
    /// [default: 5s, or the full-GC period when that is shorter]
    #[arg(long, value_name = "DUR", value_parser = parse_interval)]
    pub interval: Option<Duration>,
    /// One progress line at a time instead of the full-screen view, even on a terminal
    #[arg(long)]
    pub plain: bool,
    /// At --duration's end, do not ask the agent what keeps the growing types alive (a heap
    /// walk of its own: ~0.1 s pause per million objects)
    #[arg(long)]
    pub no_paths: bool,
    #[command(flatten)]
    pub libs: LibraryArgs,
    /// The command to run, after `--`
    #[arg(required = true, value_name = "COMMAND", allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Producers connect to this socket [default: $XDG_RUNTIME_DIR/leakscope/leakscope.sock or
    /// $TMPDIR/leakscope-$UID/leakscope.sock, in a directory only you may enter]
    #[arg(long, value_name = "PATH", conflicts_with = "output")]
    pub socket: Option<PathBuf>,
    /// Producers append to this file instead (read it with `leakscope tail FILE --follow`)
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// How often producers report
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_interval)]
    pub interval: Duration,
    #[command(flatten)]
    pub libs: LibraryArgs,
    /// Where the worker finds libleakscope_agent.so and libleakscope_shim.so when that is not
    /// where this leakscope finds them (a volume in a container): used as given, not checked
    #[arg(long, value_name = "DIR", conflicts_with_all = ["agent", "shim"])]
    pub lib_dir: Option<PathBuf>,
    /// The worker's service name in fleet metrics (sets LEAKSCOPE_SERVICE) [default: the entry
    /// assembly, else the command]
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// The worker's command, optional (after `--`): its C library is checked, and for a musl
    /// program (Alpine) the native shim is left out, since preloading it would stop it starting
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Socket to listen on (made 0600) [default: $XDG_RUNTIME_DIR/leakscope/leakscope.sock or
    /// $TMPDIR/leakscope-$UID/leakscope.sock, in a directory only you may enter]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Directory for recording.ndjson, report.txt, report.json [default: ./leakscope-<timestamp>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Stop listening after this long (default: until Ctrl-C)
    #[arg(long, value_name = "DUR", value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,
    /// One status line per interval instead of the full-screen view
    #[arg(long)]
    pub plain: bool,
    /// Serve Prometheus metrics of every connected worker at http://ADDR/metrics: PORT or
    /// :PORT (loopback), 127.0.0.1:9464, or e.g. 0.0.0.0:9464 to be reachable from other hosts
    #[arg(long, value_name = "ADDR", value_parser = crate::metrics::parse_metrics_addr)]
    pub metrics: Option<std::net::SocketAddr>,
    /// With --metrics: sites (managed and native, each) and census types exported per worker;
    /// the rest are counted in leakscope_series_omitted
    #[arg(long, value_name = "N", default_value_t = crate::metrics::DEFAULT_TOP,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub metrics_top: u32,
    #[command(flatten)]
    pub capture: CaptureArgs,
}

/// Collection rules: `--on RULE --capture DIR` (run, listen).
#[derive(Debug, Clone, Args)]
pub struct CaptureArgs {
    /// When a worker breaks this rule, write a snapshot (census, top sites, what keeps the
    /// breaking types alive) into --capture DIR; repeatable; soak's --fail-on grammar, plus a
    /// scope and a size alone, e.g. 'growth > 1MB/h', 'type:MyApp.* growth > 0', 'rss > 2GB'
    #[arg(long = "on", value_name = "RULE")]
    pub on: Vec<String>,
    /// Directory for the snapshots of --on (created owner-only when missing)
    #[arg(long, value_name = "DIR")]
    pub capture: Option<PathBuf>,
    /// At most one snapshot per worker this often
    #[arg(long, value_name = "DUR", default_value = "30m", value_parser = parse_positive_duration)]
    pub capture_every: Duration,
    /// Growth rules judge each worker's data after this much of its own time (start-up, JIT,
    /// caches filling)
    #[arg(long, value_name = "DUR", default_value = "2m", value_parser = crate::units::parse_duration)]
    pub capture_warmup: Duration,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// NDJSON file written by producers with LEAKSCOPE_OUTPUT (or a recording.ndjson)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Keep reading as the file grows (Ctrl-C to stop and print the report)
    #[arg(short, long)]
    pub follow: bool,
    /// Also write report.txt and report.json into this directory
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print report.json instead of the text report
    #[arg(long)]
    pub json: bool,
    /// With --follow: one status line per interval instead of the full-screen view
    #[arg(long)]
    pub plain: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// An output directory of `run`/`listen`/`demo`, or an NDJSON recording file
    #[arg(value_name = "DIR_OR_FILE")]
    pub path: PathBuf,
    /// Write report.txt and report.json here [default: the given directory; nowhere for a file]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print report.json instead of the text report
    #[arg(long)]
    pub json: bool,
    /// Soak recordings: compare with this earlier report.json (fail on regressions)
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Soak recordings: judge with these rules instead of the recorded ones (repeatable)
    #[arg(long = "fail-on", value_name = "EXPR")]
    pub fail_on: Vec<String>,
    /// Also write the surviving allocations as a gzipped pprof profile (for `go tool pprof`)
    #[arg(long, value_name = "FILE")]
    pub pprof: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long to run the demo worker
    #[arg(long, value_name = "DUR", default_value = "50s", value_parser = parse_positive_duration)]
    pub duration: Duration,
    /// How often producers report
    #[arg(long, value_name = "DUR", default_value = "2s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Directory for the recording and reports [default: ./leakscope-demo-<timestamp>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// One status line per interval instead of the full-screen view
    #[arg(long)]
    pub plain: bool,
    /// Rebuild the demo worker even if a build is cached
    #[arg(long)]
    pub rebuild: bool,
    #[command(flatten)]
    pub libs: LibraryArgs,
}

/// 0 for --help/--version, 2 for usage errors (clap's own convention).
pub fn clap_exit_code(err: &clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
        _ => 2,
    }
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = crate::units::parse_duration(s)?;
    if d.is_zero() {
        return Err("must be more than zero".to_string());
    }
    Ok(d)
}

/// The agent accepts induced-GC periods from 1 s to 24 h.
fn parse_gc_every(s: &str) -> Result<Duration, String> {
    let d = crate::units::parse_duration(s)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(24 * 3600) {
        return Err("must be between 1s and 24h".to_string());
    }
    Ok(d)
}

/// Intervals below 100 ms would make the agent work harder than the service; above an hour
/// a leak hunt takes weeks.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = crate::units::parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err("must be between 100ms and 1h".to_string());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(line.split_whitespace())
    }

    #[test]
    fn run_takes_the_command_after_double_dash_including_its_flags() {
        let Command::Run(r) =
            parse("leakscope run --interval 2s --duration 1m -- dotnet Worker.dll --urls x").unwrap().command
        else {
            panic!()
        };
        assert_eq!(r.command, ["dotnet", "Worker.dll", "--urls", "x"]);
        assert_eq!(r.interval, Duration::from_secs(2));
        assert_eq!(r.duration, Some(Duration::from_secs(60)));
        assert!(!r.libs.no_native);
    }

    #[test]
    fn run_without_a_command_or_with_a_bad_interval_is_a_usage_error() {
        assert_eq!(parse("leakscope run").map(|_| ()).map_err(|e| clap_exit_code(&e)).unwrap_err(), 2);
        assert_eq!(
            parse("leakscope run --interval 10ms -- x").map(|_| ()).map_err(|e| clap_exit_code(&e)).unwrap_err(),
            2
        );
        assert_eq!(
            parse("leakscope run --interval soon -- x").map(|_| ()).map_err(|e| clap_exit_code(&e)).unwrap_err(),
            2
        );
        assert_eq!(parse("leakscope frobnicate").map(|_| ()).map_err(|e| clap_exit_code(&e)).unwrap_err(), 2);
    }

    #[test]
    fn env_socket_and_output_are_exclusive() {
        assert!(parse("leakscope env --socket /a --output /b").is_err());
        let Command::Env(e) = parse("leakscope env --output /var/log/x.ndjson --no-native").unwrap().command else {
            panic!()
        };
        assert_eq!(e.output, Some(PathBuf::from("/var/log/x.ndjson")));
        assert!(e.libs.no_native);
        assert!(e.command.is_empty());
    }

    #[test]
    fn env_takes_the_workers_command_after_the_separator() {
        let Command::Env(e) = parse("leakscope env --interval 2s -- ./worker --port 80").unwrap().command else {
            panic!()
        };
        assert_eq!(e.command, ["./worker", "--port", "80"]);
    }

    #[test]
    fn soak_takes_rules_and_the_command() {
        let cli = Cli::try_parse_from([
            "leakscope",
            "soak",
            "--duration",
            "90s",
            "--gc-every",
            "5s",
            "--fail-on",
            "growth > 1MB/h",
            "--fail-on",
            "site:A.B.C growth > 0",
            "--",
            "dotnet",
            "W.dll",
            "--flag",
        ])
        .unwrap();
        let Command::Soak(s) = cli.command else { panic!() };
        assert_eq!(s.duration, Duration::from_secs(90));
        assert_eq!(s.gc_every, Some(Duration::from_secs(5)));
        assert_eq!(s.fail_on, ["growth > 1MB/h", "site:A.B.C growth > 0"]);
        assert_eq!(s.command, ["dotnet", "W.dll", "--flag"]);
        assert!(s.warmup.is_none() && !s.strict);
        let code = |line: &str| parse(line).map(|_| 0).map_err(|e| clap_exit_code(&e)).unwrap_err();
        assert_eq!(code("leakscope soak -- dotnet x"), 2, "--duration is required");
        assert_eq!(code("leakscope soak --duration 1m --gc-every 100ms -- x"), 2);
        assert_eq!(code("leakscope soak --duration 1m"), 2, "a command is required");
    }

    #[test]
    fn tail_report_demo_parse() {
        let Command::Tail(t) = parse("leakscope tail f.ndjson -f --json").unwrap().command else { panic!() };
        assert!(t.follow && t.json);
        let Command::Report(r) = parse("leakscope report out/").unwrap().command else { panic!() };
        assert_eq!(r.path, PathBuf::from("out/"));
        let Command::Demo(d) = parse("leakscope demo").unwrap().command else { panic!() };
        assert_eq!(d.duration, Duration::from_secs(50));
        assert_eq!(d.interval, Duration::from_secs(2));
    }
}
