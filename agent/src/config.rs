//! The agent's settings, read once from `LEAKSCOPE_*` environment variables.
//!
//! A bad value never stops the host: it is replaced by the default and reported (in the log and
//! as a `status` record) so the user sees what was ignored.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

// Durations use the one grammar of the protocol crate (`500ms`, `5s`, `2m`, `1h30m`, `1.5h`,
// bare seconds), with the same meaning as in the collector and the shim.
pub use leakscope_protocol::units::{UnitError, parse_duration};

#[derive(Clone, Debug)]
pub struct Config {
    /// Unix stream socket of a listening collector.
    pub socket: Option<PathBuf>,
    /// File to append records to.
    pub output: Option<PathBuf>,
    pub interval: Duration,
    pub log_file: Option<PathBuf>,
    pub log_level: tracing::Level,
    /// Most sampled objects tracked at once; beyond it new samples are counted, not tracked.
    pub max_tracked: usize,
    /// Ceiling on the agent's own heap; beyond it new samples are counted, not tracked.
    pub memory_limit_bytes: usize,
    /// Most samples a second the allocating threads walk stacks for; beyond it samples are
    /// thinned at random (0 = never thin).
    pub max_samples_per_sec: usize,
    /// Most (type, site) rows per summary.
    pub max_sites: usize,
    /// Deepest managed stack captured per sample.
    pub stack_depth: usize,
    /// How the allocating thread captures a sample's stack (`LEAKSCOPE_STACK_CAPTURE`).
    pub stack_capture: StackCapture,
    /// Frames whose type name starts with one of these are framework code, not call sites.
    pub framework_prefixes: Vec<String>,
    /// Soak mode: the agent induces a full blocking GC this often.
    pub induce_full_gc: Option<Duration>,
    /// With induced full GCs: also count the whole heap by type after each (.NET 9+).
    pub census: bool,
    /// Exact mode (`LEAKSCOPE_EXACT`): follow every allocation of suspect types.
    pub exact: Exact,
    /// With induced full GCs: also report the retention paths of these types after each
    /// (`LEAKSCOPE_RETENTION`).
    pub retention: Vec<String>,
    /// `LEAKSCOPE_SERVICE`: the service this worker belongs to, sent in `hello` so a fleet's
    /// metrics can be labelled by it (the collector falls back to the entry assembly).
    pub service: Option<String>,
    /// Whether `peek` may send string contents (`LEAKSCOPE_PEEK_STRINGS`): only the worker's
    /// owner decides, never the collector that asks.
    pub peek_strings: PeekStrings,
    /// Attached agents only: detach after this long without a collector
    /// (`LEAKSCOPE_ORPHAN_TIMEOUT`).
    pub orphan_timeout: Duration,
    /// Fault injection for tests (`LEAKSCOPE_TEST_WALK_DELAY_US`): every object a heap walk
    /// visits costs this many extra microseconds, so a test can catch a walk in progress.
    pub test_walk_delay_us: usize,
    /// Fault injection for tests (`LEAKSCOPE_TEST_WALK_REFUSALS`): the first this many heap
    /// walks are refused as the runtime refuses them early in start-up.
    pub test_walk_refusals: usize,
    /// Benchmarks only (`LEAKSCOPE_BENCH_AB_PHASE_MS`): allocation sampling goes on and off in
    /// phases of this many ms, each on or off at random, so one process measures its own cost
    /// (0 = never; `pipeline/duty_cycle.rs`).
    pub bench_ab_phase_ms: usize,
}

/// `LEAKSCOPE_PEEK_STRINGS`: may string contents leave the process in a `peek`?
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PeekStrings {
    /// Not said: lengths only.
    #[default]
    NotAllowed,
    /// `1`: the owner allows them (the worker's environment, or `leakscope snapshot
    /// --peek-strings` attaching as the owner or root).
    Allowed,
    /// `0` in the worker's environment: never, not even for an attaching `snapshot`.
    Forbidden,
}

impl PeekStrings {
    /// From the worker's environment and, for an attach, the attaching CLI's client data
    /// (which only the process's owner or root can send: the runtime's diagnostics socket is
    /// theirs alone). A `0` anywhere wins.
    pub fn decide(environment: Option<bool>, attach: Option<bool>) -> PeekStrings {
        match (environment, attach) {
            (Some(false), _) | (_, Some(false)) => PeekStrings::Forbidden,
            (Some(true), _) | (_, Some(true)) => PeekStrings::Allowed,
            _ => PeekStrings::NotAllowed,
        }
    }

    /// Why string contents are withheld, with how to allow them; `None` when they are allowed.
    pub fn withheld_because(self) -> Option<&'static str> {
        match self {
            PeekStrings::Allowed => None,
            PeekStrings::NotAllowed => Some(
                "string contents are withheld: this worker's owner has not allowed them (start the worker with \
                 LEAKSCOPE_PEEK_STRINGS=1, or let its owner or root attach with `leakscope snapshot --peek-strings`)",
            ),
            PeekStrings::Forbidden => Some(
                "string contents are withheld: this worker's environment sets LEAKSCOPE_PEEK_STRINGS=0, which forbids \
                 them to every collector, an attaching `snapshot` included (restart it without that to allow them)",
            ),
        }
    }
}

/// `LEAKSCOPE_STACK_CAPTURE`: how a sample's stack is captured on the allocating thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StackCapture {
    /// Return addresses from the frame-record chain, resolved on the agent thread; samples
    /// whose chain cannot be trusted fall back to `DoStackSnapshot`.
    #[default]
    Frames,
    /// `DoStackSnapshot` for every sample (the runtime's unwinder: slower, the reference).
    Snapshot,
    /// Both for every sample the walk completes, compared on the agent thread and counted in
    /// the summary (`agent.stack_check`): for testing and diagnosis.
    Check,
}

impl StackCapture {
    pub fn name(self) -> &'static str {
        match self {
            StackCapture::Frames => "frames",
            StackCapture::Snapshot => "snapshot",
            StackCapture::Check => "check",
        }
    }
}

/// `LEAKSCOPE_EXACT`: which types get every allocation followed (through `ObjectAllocated`,
/// which must be switched on at startup and slows every allocation in the process).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Exact {
    #[default]
    Off,
    /// Types whose live count the census sees rising several times in a row.
    Auto,
    /// These types (full names as leakscope prints them), once the census or a sample meets them;
    /// and, as with `Auto`, types the census sees rising.
    Types(Vec<String>),
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: None,
            output: None,
            interval: Duration::from_secs(5),
            log_file: None,
            log_level: tracing::Level::WARN,
            max_tracked: 100_000,
            memory_limit_bytes: 64 << 20,
            max_samples_per_sec: 2000,
            max_sites: 1000,
            stack_depth: 64,
            stack_capture: StackCapture::Frames,
            framework_prefixes: ["System.", "Microsoft.", "Internal.", "Interop"].map(String::from).to_vec(),
            induce_full_gc: None,
            census: true,
            exact: Exact::Off,
            retention: Vec::new(),
            service: None,
            peek_strings: PeekStrings::NotAllowed,
            orphan_timeout: Duration::from_secs(60),
            test_walk_delay_us: 0,
            test_walk_refusals: 0,
            bench_ab_phase_ms: 0,
        }
    }
}

/// The result of reading the environment: settings, plus one sentence per ignored value.
pub struct Loaded {
    pub config: Config,
    pub problems: Vec<String>,
    /// `LEAKSCOPE_ENABLED=0`: the user asked the agent to stay out.
    pub disabled_by_user: bool,
}

/// Most characters of `LEAKSCOPE_SERVICE` kept: it becomes a metrics label.
pub const MAX_SERVICE_CHARS: usize = 128;

/// `LEAKSCOPE_SERVICE`, trimmed, without control characters, at most [`MAX_SERVICE_CHARS`].
fn service_name(v: &str) -> String {
    v.trim().chars().filter(|c| !c.is_control()).take(MAX_SERVICE_CHARS).collect()
}

/// Longest path the agent accepts for a file (Linux's `PATH_MAX`).
const MAX_PATH_BYTES: usize = 4096;
/// Longest path a Unix socket address can hold (`sun_path` less its NUL).
const MAX_SOCKET_PATH_BYTES: usize = 107;
/// Most entries a list setting keeps (type names, framework prefixes).
const MAX_LIST_ENTRIES: usize = 256;
/// Longest value quoted whole in a problem message; longer ones are cut (their size is given).
const MAX_SHOWN_CHARS: usize = 64;

/// Reads the settings through `get`, which returns a variable's raw value. Any value, of any
/// size or bytes, either is used or falls back to its default with a sentence in `problems`:
/// reading never panics and never prints.
pub fn from_lookup(get: impl Fn(&str) -> Option<OsString>) -> Loaded {
    let mut c = Config::default();
    let mut problems = Vec::new();
    // Settings other than paths are text: non-UTF-8 bytes are a reported problem.
    let text = |name: &str, problems: &mut Vec<String>| -> Option<String> {
        let raw = get(name)?;
        match raw.into_string() {
            Ok(v) => Some(v),
            Err(raw) => {
                problems.push(format!("{name}={} is not valid UTF-8; using the default", shown(&raw)));
                None
            }
        }
    };
    let non_empty = |name: &str, problems: &mut Vec<String>| text(name, problems).filter(|v| !v.trim().is_empty());

    c.socket = path(&get, &mut problems, "LEAKSCOPE_SOCKET", MAX_SOCKET_PATH_BYTES);
    c.output = path(&get, &mut problems, "LEAKSCOPE_OUTPUT", MAX_PATH_BYTES);
    c.log_file = path(&get, &mut problems, "LEAKSCOPE_LOG", MAX_PATH_BYTES);
    if c.log_file.is_some() {
        c.log_level = tracing::Level::INFO;
    }
    if let Some(v) = non_empty("LEAKSCOPE_LOG_LEVEL", &mut problems) {
        match v.trim().to_ascii_lowercase().as_str() {
            "error" => c.log_level = tracing::Level::ERROR,
            "warn" | "warning" => c.log_level = tracing::Level::WARN,
            "info" => c.log_level = tracing::Level::INFO,
            "debug" => c.log_level = tracing::Level::DEBUG,
            "trace" => c.log_level = tracing::Level::TRACE,
            _ => problems.push(format!(
                "LEAKSCOPE_LOG_LEVEL={} is not one of error, warn, info, debug, trace; using {}",
                shown(&v),
                c.log_level
            )),
        }
    }
    if let Some(v) = non_empty("LEAKSCOPE_INTERVAL", &mut problems) {
        match parse_duration(&v) {
            Ok(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(3600) => c.interval = d,
            result => problems.push(format!(
                "LEAKSCOPE_INTERVAL={} is not a duration between 100ms and 1h (e.g. 5s, 500ms){}; using 5s",
                shown(&v),
                why(&result)
            )),
        }
    }
    if let Some(v) = non_empty("LEAKSCOPE_INDUCE_FULL_GC", &mut problems) {
        match parse_duration(&v) {
            Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(24 * 3600) => c.induce_full_gc = Some(d),
            result => problems.push(format!(
                "LEAKSCOPE_INDUCE_FULL_GC={} is not a duration between 1s and 24h (e.g. 30s){}; not inducing GCs",
                shown(&v),
                why(&result)
            )),
        }
    }
    let mut number = |name: &str, min: usize, max: usize, slot: &mut usize| {
        if let Some(v) = text(name, &mut problems) {
            match v.trim().replace('_', "").parse::<usize>() {
                Ok(n) if (min..=max).contains(&n) => *slot = n,
                _ => problems
                    .push(format!("{name}={} is not a whole number from {min} to {max}; using {slot}", shown(&v))),
            }
        }
    };
    number("LEAKSCOPE_MAX_TRACKED", 100, 50_000_000, &mut c.max_tracked);
    let mut memory_mb = c.memory_limit_bytes >> 20;
    number("LEAKSCOPE_MEMORY_LIMIT_MB", 8, 1 << 20, &mut memory_mb);
    c.memory_limit_bytes = memory_mb << 20;
    number("LEAKSCOPE_MAX_SAMPLES_PER_SEC", 0, 10_000_000, &mut c.max_samples_per_sec);
    number("LEAKSCOPE_MAX_SITES", 1, 1_000_000, &mut c.max_sites);
    number("LEAKSCOPE_STACK_DEPTH", 1, 1024, &mut c.stack_depth);
    number("LEAKSCOPE_TEST_WALK_DELAY_US", 0, 10_000, &mut c.test_walk_delay_us);
    number("LEAKSCOPE_TEST_WALK_REFUSALS", 0, 1000, &mut c.test_walk_refusals);
    number("LEAKSCOPE_BENCH_AB_PHASE_MS", 0, 60_000, &mut c.bench_ab_phase_ms);
    if let Some(v) = non_empty("LEAKSCOPE_STACK_CAPTURE", &mut problems) {
        match v.trim().to_ascii_lowercase().as_str() {
            "frames" => c.stack_capture = StackCapture::Frames,
            "snapshot" => c.stack_capture = StackCapture::Snapshot,
            "check" => c.stack_capture = StackCapture::Check,
            _ => problems
                .push(format!("LEAKSCOPE_STACK_CAPTURE={} is not frames, snapshot or check; using frames", shown(&v))),
        }
    }
    if let Some(v) = text("LEAKSCOPE_FRAMEWORK_PREFIXES", &mut problems) {
        c.framework_prefixes = list(&v, "LEAKSCOPE_FRAMEWORK_PREFIXES", &mut problems);
    }

    if let Some(v) = non_empty("LEAKSCOPE_CENSUS", &mut problems) {
        match v.trim().to_ascii_lowercase().as_str() {
            "0" | "false" | "no" | "off" => c.census = false,
            "1" | "true" | "yes" | "on" => c.census = true,
            _ => problems.push(format!("LEAKSCOPE_CENSUS={} is not 0/1/true/false; using {}", shown(&v), c.census)),
        }
    }
    if let Some(v) = non_empty("LEAKSCOPE_EXACT", &mut problems) {
        let t = v.trim();
        c.exact = match t.to_ascii_lowercase().as_str() {
            "0" | "false" | "no" | "off" => Exact::Off,
            "1" | "true" | "yes" | "on" | "auto" => Exact::Auto,
            _ => Exact::Types(list(t, "LEAKSCOPE_EXACT", &mut problems)),
        };
        if c.exact != Exact::Off && c.induce_full_gc.is_none() {
            problems.push(format!(
                "LEAKSCOPE_EXACT={} aims at the types a census sees growing, and censuses need \
                 LEAKSCOPE_INDUCE_FULL_GC: only types named in LEAKSCOPE_EXACT that samples meet will be aimed at",
                shown(&v)
            ));
        }
    }
    if let Some(v) = non_empty("LEAKSCOPE_RETENTION", &mut problems) {
        c.retention = list(&v, "LEAKSCOPE_RETENTION", &mut problems);
    }
    if let Some(v) = non_empty("LEAKSCOPE_SERVICE", &mut problems) {
        c.service = Some(service_name(&v));
    }
    let peek_raw = non_empty("LEAKSCOPE_PEEK_STRINGS", &mut problems);
    let peek_strings =
        switch(&|_: &str| peek_raw.clone(), &mut problems, "LEAKSCOPE_PEEK_STRINGS", "not allowing string contents");
    c.peek_strings = PeekStrings::decide(peek_strings, None);
    if let Some(v) = non_empty("LEAKSCOPE_ORPHAN_TIMEOUT", &mut problems) {
        match parse_duration(&v) {
            Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(24 * 3600) => c.orphan_timeout = d,
            result => problems.push(format!(
                "LEAKSCOPE_ORPHAN_TIMEOUT={} is not a duration between 1s and 24h (e.g. 60s){}; using 60s",
                shown(&v),
                why(&result)
            )),
        }
    }
    let disabled_by_user = match non_empty("LEAKSCOPE_ENABLED", &mut problems).map(|v| v.trim().to_ascii_lowercase()) {
        None => false,
        Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => true,
        Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => false,
        Some(v) => {
            problems.push(format!("LEAKSCOPE_ENABLED={} is not 0/1/true/false; staying enabled", shown(&v)));
            false
        }
    };
    Loaded { config: c, problems, disabled_by_user }
}

/// A path setting: any bytes (Linux paths need not be UTF-8), but not longer than the system
/// can use; blank means unset.
fn path(
    get: &impl Fn(&str) -> Option<OsString>,
    problems: &mut Vec<String>,
    name: &str,
    max_bytes: usize,
) -> Option<PathBuf> {
    let raw = get(name)?;
    if raw.to_string_lossy().trim().is_empty() {
        return None;
    }
    if raw.as_bytes().len() > max_bytes || raw.as_bytes().contains(&0) {
        problems.push(format!("{name}={} is not a usable path (at most {max_bytes} bytes); ignoring it", shown(&raw)));
        return None;
    }
    Some(PathBuf::from(raw))
}

/// A comma-separated list, trimmed, blanks dropped, at most [`MAX_LIST_ENTRIES`] entries.
fn list(value: &str, name: &str, problems: &mut Vec<String>) -> Vec<String> {
    let mut entries: Vec<String> =
        value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    if entries.len() > MAX_LIST_ENTRIES {
        problems.push(format!("{name} lists {} entries; keeping the first {MAX_LIST_ENTRIES}", entries.len()));
        entries.truncate(MAX_LIST_ENTRIES);
    }
    entries
}

/// A value as a problem message quotes it: whole when short, else its start and its size.
pub fn shown(value: impl AsRef<OsStr>) -> String {
    let raw = value.as_ref();
    let text = raw.to_string_lossy();
    let chars = text.chars().count();
    if chars <= MAX_SHOWN_CHARS {
        return format!("{text:?}");
    }
    let start: String = text.chars().take(MAX_SHOWN_CHARS).collect();
    format!("{start:?}… ({} bytes)", raw.as_bytes().len())
}

/// A yes/no setting: `Some(true)` for 1/true/yes/on, `Some(false)` for 0/false/no/off, `None`
/// when unset or unreadable (reported, with what happens instead).
pub fn switch(
    get: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
    name: &str,
    otherwise: &str,
) -> Option<bool> {
    let v = get(name)?;
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => {
            problems.push(format!("{name}={v:?} is not 0/1/true/false; {otherwise}"));
            None
        }
    }
}

/// `: <why>` when the grammar refused the value; nothing when it parsed but is out of range.
fn why<T>(result: &Result<T, UnitError>) -> String {
    result.as_ref().err().map(|e| format!(": {e}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Loaded {
        let map: HashMap<String, OsString> = pairs.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        from_lookup(|k| map.get(k).cloned())
    }

    /// Every variable the agent reads.
    const VARIABLES: &[&str] = &[
        "LEAKSCOPE_SOCKET",
        "LEAKSCOPE_OUTPUT",
        "LEAKSCOPE_LOG",
        "LEAKSCOPE_LOG_LEVEL",
        "LEAKSCOPE_INTERVAL",
        "LEAKSCOPE_INDUCE_FULL_GC",
        "LEAKSCOPE_MAX_TRACKED",
        "LEAKSCOPE_MEMORY_LIMIT_MB",
        "LEAKSCOPE_MAX_SAMPLES_PER_SEC",
        "LEAKSCOPE_MAX_SITES",
        "LEAKSCOPE_STACK_DEPTH",
        "LEAKSCOPE_TEST_WALK_DELAY_US",
        "LEAKSCOPE_TEST_WALK_REFUSALS",
        "LEAKSCOPE_FRAMEWORK_PREFIXES",
        "LEAKSCOPE_CENSUS",
        "LEAKSCOPE_EXACT",
        "LEAKSCOPE_RETENTION",
        "LEAKSCOPE_ENABLED",
    ];

    /// Values that once panicked or misread: huge, negative, not-a-number, endless, not UTF-8.
    fn extreme_values() -> Vec<OsString> {
        use std::os::unix::ffi::OsStringExt;
        vec![
            OsString::from("100000000000000000000000"),
            OsString::from("1e400"),
            OsString::from("-1"),
            OsString::from("NaN"),
            OsString::from("inf"),
            OsString::from("18446744073709551616"),
            OsString::from("x".repeat(10_000)),
            OsString::from(",".repeat(10_000)),
            OsString::from_vec(vec![0xff, 0xfe, b'5', b's', 0x80]),
        ]
    }
    #[test]
    fn extreme_values_of_every_variable_fall_back_without_panicking() {
        for value in extreme_values() {
            for name in VARIABLES {
                let loaded = from_lookup(|k| (k == *name).then(|| value.clone()));
                let c = &loaded.config;
                assert_eq!(c.interval, Duration::from_secs(5), "{name}");
                assert!((100..=50_000_000).contains(&c.max_tracked), "{name}");
                assert!(c.memory_limit_bytes >= 8 << 20, "{name}");
                assert!(c.framework_prefixes.len() <= MAX_LIST_ENTRIES, "{name}");
                for problem in &loaded.problems {
                    assert!(problem.len() < 400, "{name}: problem too long ({} bytes)", problem.len());
                }
            }
        }
        // Numbers out of range and text that is not a number are reported, naming the variable.
        for name in ["LEAKSCOPE_INTERVAL", "LEAKSCOPE_MAX_TRACKED", "LEAKSCOPE_INDUCE_FULL_GC", "LEAKSCOPE_STACK_DEPTH"]
        {
            for value in ["100000000000000000000000", "-1", "NaN", "inf"] {
                let l = load(&[(name, value)]);
                assert!(l.problems.iter().any(|p| p.contains(name)), "{name}={value} not reported: {:?}", l.problems);
            }
        }
        assert_eq!(parse_duration("100000000000000000000000"), Err(UnitError::TooLarge));
        assert_eq!(parse_duration("1e400"), Err(UnitError::UnknownDurationUnit));
    }

    #[test]
    fn paths_may_be_any_bytes_but_not_longer_than_the_system_takes() {
        use std::os::unix::ffi::OsStringExt;
        let odd = OsString::from_vec(b"/tmp/caf\xe9.ndjson".to_vec());
        let l = from_lookup(|k| (k == "LEAKSCOPE_OUTPUT").then(|| odd.clone()));
        assert_eq!(l.config.output.as_deref().map(|p| p.as_os_str()), Some(odd.as_os_str()));
        assert!(l.problems.is_empty());
        let long = OsString::from(format!("/tmp/{}", "s".repeat(200)));
        let l = from_lookup(|k| (k == "LEAKSCOPE_SOCKET").then(|| long.clone()));
        assert!(l.config.socket.is_none());
        assert!(l.problems[0].contains("LEAKSCOPE_SOCKET") && l.problems[0].contains("bytes)"), "{:?}", l.problems);
    }

    #[test]
    fn long_values_are_quoted_cut_with_their_size() {
        let v = "y".repeat(10_000);
        let s = shown(&v);
        assert!(s.len() < 100 && s.ends_with("(10000 bytes)"), "{s}");
        assert_eq!(shown("5s"), "\"5s\"");
    }

    #[test]
    fn durations_accept_common_spellings() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("soon"), Err(UnitError::NotANumber));
        assert_eq!(parse_duration("-3s"), Err(UnitError::Negative));
        // The variable is named, the value quoted, and the grammar says what was wrong.
        let l = load(&[("LEAKSCOPE_INDUCE_FULL_GC", "30 fortnights")]);
        assert!(l.config.induce_full_gc.is_none());
        assert!(
            l.problems.iter().any(
                |p| p.contains("LEAKSCOPE_INDUCE_FULL_GC=\"30 fortnights\"") && p.contains("unknown duration unit")
            ),
            "{:?}",
            l.problems
        );
    }

    #[test]
    fn exact_mode_reads_auto_off_and_type_lists() {
        assert_eq!(load(&[]).config.exact, Exact::Off);
        let auto = load(&[("LEAKSCOPE_EXACT", "auto"), ("LEAKSCOPE_INDUCE_FULL_GC", "10s")]);
        assert_eq!((auto.config.exact, auto.problems.len()), (Exact::Auto, 0));
        let list = load(&[("LEAKSCOPE_EXACT", "App.Session, App.Order ,")]);
        assert_eq!(list.config.exact, Exact::Types(vec!["App.Session".into(), "App.Order".into()]));
        assert_eq!(list.problems.len(), 1, "no census points: said so");
    }

    #[test]
    fn garbage_values_fall_back_to_defaults_and_are_reported() {
        let l = load(&[
            ("LEAKSCOPE_INTERVAL", "banana"),
            ("LEAKSCOPE_MAX_TRACKED", "-5"),
            ("LEAKSCOPE_LOG_LEVEL", "loud"),
            ("LEAKSCOPE_STACK_DEPTH", "0"),
            ("LEAKSCOPE_STACK_CAPTURE", "unwind"),
        ]);
        assert_eq!(l.config.interval, Duration::from_secs(5));
        assert_eq!(l.config.max_tracked, 100_000);
        assert_eq!(l.config.stack_depth, 64);
        assert_eq!(l.config.stack_capture, StackCapture::Frames);
        assert_eq!(l.problems.len(), 5, "{:?}", l.problems);
        for name in [
            "LEAKSCOPE_INTERVAL",
            "LEAKSCOPE_MAX_TRACKED",
            "LEAKSCOPE_LOG_LEVEL",
            "LEAKSCOPE_STACK_DEPTH",
            "LEAKSCOPE_STACK_CAPTURE",
        ] {
            assert!(l.problems.iter().any(|p| p.contains(name)), "{name} not reported");
        }
    }

    #[test]
    fn peek_strings_need_a_yes_and_a_no_anywhere_wins() {
        assert_eq!(load(&[]).config.peek_strings, PeekStrings::NotAllowed);
        assert_eq!(load(&[("LEAKSCOPE_PEEK_STRINGS", "1")]).config.peek_strings, PeekStrings::Allowed);
        assert_eq!(load(&[("LEAKSCOPE_PEEK_STRINGS", "off")]).config.peek_strings, PeekStrings::Forbidden);
        let odd = load(&[("LEAKSCOPE_PEEK_STRINGS", "please")]);
        assert_eq!((odd.config.peek_strings, odd.problems.len()), (PeekStrings::NotAllowed, 1));
        assert_eq!(PeekStrings::decide(None, Some(true)), PeekStrings::Allowed);
        assert_eq!(PeekStrings::decide(Some(false), Some(true)), PeekStrings::Forbidden);
        assert!(PeekStrings::Forbidden.withheld_because().unwrap().contains("LEAKSCOPE_PEEK_STRINGS=0"));
        assert!(PeekStrings::Allowed.withheld_because().is_none());
    }

    #[test]
    fn orphan_timeout_defaults_to_a_minute_and_reads_durations() {
        assert_eq!(load(&[]).config.orphan_timeout, Duration::from_secs(60));
        assert_eq!(load(&[("LEAKSCOPE_ORPHAN_TIMEOUT", "5s")]).config.orphan_timeout, Duration::from_secs(5));
        let bad = load(&[("LEAKSCOPE_ORPHAN_TIMEOUT", "0s")]);
        assert_eq!((bad.config.orphan_timeout, bad.problems.len()), (Duration::from_secs(60), 1));
    }

    #[test]
    fn good_values_are_used() {
        let l = load(&[
            ("LEAKSCOPE_INTERVAL", "250ms"),
            ("LEAKSCOPE_MAX_TRACKED", "200_000"),
            ("LEAKSCOPE_SOCKET", "/tmp/x.sock"),
            ("LEAKSCOPE_ENABLED", "0"),
        ]);
        assert!(l.problems.is_empty());
        assert_eq!(l.config.interval, Duration::from_millis(250));
        assert_eq!(l.config.max_tracked, 200_000);
        assert_eq!(l.config.socket.as_deref(), Some(std::path::Path::new("/tmp/x.sock")));
        assert!(l.disabled_by_user);
    }

    #[test]
    fn service_name_is_trimmed_cleaned_and_bounded() {
        assert_eq!(load(&[]).config.service, None);
        assert_eq!(load(&[("LEAKSCOPE_SERVICE", "  ")]).config.service, None);
        let l = load(&[("LEAKSCOPE_SERVICE", " orders-api\n\u{1b}[31m ")]);
        assert_eq!(l.config.service.as_deref(), Some("orders-api[31m"));
        let long = "s".repeat(500);
        let l = load(&[("LEAKSCOPE_SERVICE", long.as_str())]);
        assert_eq!(l.config.service.map(|s| s.len()), Some(MAX_SERVICE_CHARS));
    }
}
