//! Configuration, read once from the environment the constructor receives.
//!
//! Every value that does not parse falls back to its default with a warning
//! (logged, and sent as a `status` record once an output is up).

use crate::log::Level;

pub(crate) const DEFAULT_INTERVAL_MS: u64 = 5000;
pub(crate) const DEFAULT_MEAN_BYTES: u64 = 256 * 1024;
/// 32768 samples cover ~8 GiB of live native memory at the default mean;
/// the live table for it is 1.5 MiB (resident: see live.rs).
pub(crate) const DEFAULT_MAX_TRACKED: usize = 32_768;
pub(crate) const DEFAULT_MAX_SITES: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    /// `LEAKSCOPE_NATIVE` (default on).
    pub(crate) enabled: bool,
    pub(crate) socket: Option<String>,
    pub(crate) output: Option<String>,
    pub(crate) log: Option<String>,
    pub(crate) log_level: Level,
    pub(crate) interval_ms: u64,
    /// `LEAKSCOPE_NATIVE_SAMPLE_BYTES`: Poisson mean, in bytes.
    pub(crate) mean_bytes: u64,
    /// `LEAKSCOPE_NATIVE_MAX_TRACKED`: live-sample table capacity.
    pub(crate) max_tracked: usize,
    /// `LEAKSCOPE_NATIVE_STACK_DEPTH`: frames captured per sample.
    pub(crate) max_depth: usize,
    /// `LEAKSCOPE_MAX_SITES`: sites per `native` record.
    pub(crate) max_sites: usize,
    /// `LEAKSCOPE_NATIVE_MMAP`: track anonymous mmap/munmap/mremap.
    pub(crate) track_mmap: bool,
    /// `LEAKSCOPE_NATIVE_TOTALS=exact`: count every call for exact totals (else the totals are
    /// estimated from the samples, and the common route counts nothing).
    pub(crate) exact_totals: bool,
    /// Directory of the .NET perf map (`DOTNET_PerfMapJitDumpPath`, else /tmp).
    pub(crate) perf_map_dir: String,
    /// `LEAKSCOPE_SERVICE`: the worker's service name for fleet metrics (sent in `hello`).
    pub(crate) service: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            socket: None,
            output: None,
            log: None,
            log_level: Level::Info,
            interval_ms: DEFAULT_INTERVAL_MS,
            mean_bytes: DEFAULT_MEAN_BYTES,
            max_tracked: DEFAULT_MAX_TRACKED,
            max_depth: crate::frame_walk::MAX_DEPTH,
            max_sites: DEFAULT_MAX_SITES,
            track_mmap: true,
            exact_totals: false,
            perf_map_dir: "/tmp".to_string(),
            service: None,
        }
    }
}

// Durations and sizes use the one grammar of the protocol crate: decimal units (`1MB` =
// 10^6 bytes), binary only when spelled `KiB`/`MiB`/`GiB`. Its parsers never allocate, which
// matters here: this runs in the constructor, before the hooks may call into anything.
use leakscope_protocol::units::{parse_bytes, parse_duration_ms};

pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" | "" => Some(true),
        "0" | "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

fn parse_level(s: &str) -> Option<Level> {
    match s.trim().to_ascii_lowercase().as_str() {
        "debug" | "trace" => Some(Level::Debug),
        "info" => Some(Level::Info),
        "warn" | "warning" => Some(Level::Warn),
        "error" => Some(Level::Error),
        _ => None,
    }
}

/// `: <why>` when the grammar refused the value; nothing when it parsed but is out of range.
fn why(error: Option<leakscope_protocol::units::UnitError>) -> String {
    error.map(|e| format!(": {e}")).unwrap_or_default()
}

/// Longest value quoted whole in a warning; longer ones are cut (their size is given).
const MAX_SHOWN_CHARS: usize = 64;
/// Longest path accepted for a file (`PATH_MAX`) and for a Unix socket (`sun_path` less NUL).
const MAX_PATH_BYTES: usize = 4096;
const MAX_SOCKET_PATH_BYTES: usize = 107;

/// A value as a warning quotes it: whole when short, else its start and its size.
pub(crate) fn shown(v: &str) -> String {
    if v.chars().count() <= MAX_SHOWN_CHARS {
        return format!("{v:?}");
    }
    let start: String = v.chars().take(MAX_SHOWN_CHARS).collect();
    format!("{start:?}… ({} bytes)", v.len())
}

/// Builds the configuration from a variable lookup (raw bytes, as the
/// environment holds them). Returns the warnings to report for values that
/// were ignored. Any value, of any size or bytes, is either used or replaced
/// by its default with a warning: nothing here panics or prints.
pub(crate) fn from_lookup<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> (Config, Vec<String>) {
    let mut c = Config::default();
    let mut warnings = Vec::new();
    let text = |k: &str, warnings: &mut Vec<String>| -> Option<&'a str> {
        let raw = get(k)?;
        match core::str::from_utf8(raw) {
            Ok(v) => Some(v),
            Err(_) => {
                let lossy = String::from_utf8_lossy(raw);
                warnings.push(format!("{k}={} is not valid UTF-8; using the default", shown(&lossy)));
                None
            }
        }
    };
    let path = |k: &str, max: usize, warnings: &mut Vec<String>| -> Option<String> {
        let v = text(k, warnings)?.trim();
        if v.is_empty() {
            return None;
        }
        if v.len() > max {
            warnings.push(format!("{k}={} is longer than a usable path ({max} bytes); ignoring it", shown(v)));
            return None;
        }
        Some(v.to_string())
    };

    if let Some(v) = text("LEAKSCOPE_NATIVE", &mut warnings) {
        match parse_bool(v) {
            Some(b) => c.enabled = b,
            None => warnings.push(format!("LEAKSCOPE_NATIVE={} is not 0/1/on/off; native tracking stays on", shown(v))),
        }
    }
    c.socket = path("LEAKSCOPE_SOCKET", MAX_SOCKET_PATH_BYTES, &mut warnings);
    c.output = path("LEAKSCOPE_OUTPUT", MAX_PATH_BYTES, &mut warnings);
    if c.socket.is_some() && c.output.is_some() {
        warnings.push("both LEAKSCOPE_SOCKET and LEAKSCOPE_OUTPUT are set; using the socket".to_string());
        c.output = None;
    }
    c.log = path("LEAKSCOPE_LOG", MAX_PATH_BYTES, &mut warnings);
    if let Some(v) = text("LEAKSCOPE_LOG_LEVEL", &mut warnings) {
        match parse_level(v) {
            Some(l) => c.log_level = l,
            None => warnings.push(format!("LEAKSCOPE_LOG_LEVEL={} is not debug/info/warn/error; using info", shown(v))),
        }
    }
    if let Some(v) = text("LEAKSCOPE_INTERVAL", &mut warnings) {
        match parse_duration_ms(v) {
            Ok(ms) if (100..=3_600_000).contains(&ms) => c.interval_ms = ms,
            result => warnings.push(format!(
                "LEAKSCOPE_INTERVAL={} is not a duration between 100ms and 1h (e.g. 5s, 500ms, 2){}; using {}ms",
                shown(v),
                why(result.err()),
                DEFAULT_INTERVAL_MS
            )),
        }
    }
    if let Some(v) = text("LEAKSCOPE_NATIVE_SAMPLE_BYTES", &mut warnings) {
        match parse_bytes(v) {
            Ok(b) if (1..=1 << 30).contains(&b) => c.mean_bytes = b,
            result => warnings.push(format!(
                "LEAKSCOPE_NATIVE_SAMPLE_BYTES={} is not a byte size between 1 and 1GiB (e.g. 262144, 256KiB, 1MB){}; using {}",
                shown(v),
                why(result.err()),
                DEFAULT_MEAN_BYTES
            )),
        }
    }
    if let Some(v) = text("LEAKSCOPE_NATIVE_MAX_TRACKED", &mut warnings) {
        match v.trim().parse::<usize>() {
            Ok(n) if (1000..=10_000_000).contains(&n) => c.max_tracked = n,
            _ => warnings.push(format!(
                "LEAKSCOPE_NATIVE_MAX_TRACKED={} is not a count between 1000 and 10000000; using {}",
                shown(v),
                DEFAULT_MAX_TRACKED
            )),
        }
    }
    if let Some(v) = text("LEAKSCOPE_NATIVE_STACK_DEPTH", &mut warnings) {
        match v.trim().parse::<usize>() {
            Ok(n) if (1..=crate::frame_walk::MAX_DEPTH).contains(&n) => c.max_depth = n,
            _ => warnings.push(format!(
                "LEAKSCOPE_NATIVE_STACK_DEPTH={} is not between 1 and {}; using {}",
                shown(v),
                crate::frame_walk::MAX_DEPTH,
                crate::frame_walk::MAX_DEPTH
            )),
        }
    }
    if let Some(v) = text("LEAKSCOPE_MAX_SITES", &mut warnings) {
        match v.trim().parse::<usize>() {
            Ok(n) if (1..=1_000_000).contains(&n) => c.max_sites = n,
            _ => warnings.push(format!(
                "LEAKSCOPE_MAX_SITES={} is not a count between 1 and 1000000; using {DEFAULT_MAX_SITES}",
                shown(v)
            )),
        }
    }
    if let Some(v) = text("LEAKSCOPE_NATIVE_TOTALS", &mut warnings) {
        match v.trim().to_ascii_lowercase().as_str() {
            "exact" => c.exact_totals = true,
            "sampled" => c.exact_totals = false,
            _ => warnings.push(format!(
                "LEAKSCOPE_NATIVE_TOTALS={} is not `exact` or `sampled`; totals are estimated from the samples (sampled)",
                shown(v)
            )),
        }
    }
    if let Some(v) = text("LEAKSCOPE_NATIVE_MMAP", &mut warnings) {
        match parse_bool(v) {
            Some(b) => c.track_mmap = b,
            None => warnings.push(format!("LEAKSCOPE_NATIVE_MMAP={} is not 0/1; mmap tracking stays on", shown(v))),
        }
    }
    if let Some(d) = path("DOTNET_PerfMapJitDumpPath", MAX_PATH_BYTES, &mut warnings) {
        c.perf_map_dir = d;
    }
    // Same cleaning as the agent's: it becomes a metrics label.
    c.service = text("LEAKSCOPE_SERVICE", &mut warnings)
        .map(|v| v.trim().chars().filter(|ch| !ch.is_control()).take(128).collect::<String>())
        .filter(|v| !v.is_empty());
    (c, warnings)
}

/// Looks `key` up in a NULL-terminated `envp` array of `KEY=VALUE` strings.
///
/// # Safety
/// `envp` must be null or a valid NULL-terminated array of C strings that
/// outlive `'a`.
pub(crate) unsafe fn env_lookup<'a>(envp: *const *const libc::c_char, key: &str) -> Option<&'a [u8]> {
    if envp.is_null() {
        return None;
    }
    let mut i = 0;
    loop {
        // SAFETY: `envp` is NULL-terminated (contract); we stop at the NULL.
        let p = unsafe { *envp.add(i) };
        if p.is_null() {
            return None;
        }
        // SAFETY: each entry is a valid C string (contract).
        let bytes = unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes();
        if let Some(rest) = bytes.strip_prefix(key.as_bytes()) {
            if let Some(val) = rest.strip_prefix(b"=") {
                return Some(val);
            }
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> (Config, Vec<String>) {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let m: &'static HashMap<String, String> = Box::leak(Box::new(m));
        from_lookup(|k| m.get(k).map(|v| v.as_bytes()))
    }

    /// Every variable the shim reads.
    const VARIABLES: &[&str] = &[
        "LEAKSCOPE_NATIVE",
        "LEAKSCOPE_SOCKET",
        "LEAKSCOPE_OUTPUT",
        "LEAKSCOPE_LOG",
        "LEAKSCOPE_LOG_LEVEL",
        "LEAKSCOPE_INTERVAL",
        "LEAKSCOPE_NATIVE_SAMPLE_BYTES",
        "LEAKSCOPE_NATIVE_MAX_TRACKED",
        "LEAKSCOPE_NATIVE_STACK_DEPTH",
        "LEAKSCOPE_MAX_SITES",
        "LEAKSCOPE_NATIVE_MMAP",
        "LEAKSCOPE_NATIVE_TOTALS",
        "DOTNET_PerfMapJitDumpPath",
    ];

    #[test]
    fn extreme_values_of_every_variable_fall_back_and_are_reported_briefly() {
        let long = "x".repeat(10_000);
        let values: Vec<&[u8]> = vec![
            b"100000000000000000000000",
            b"1e400",
            b"-1",
            b"NaN",
            b"inf",
            b"18446744073709551616",
            long.as_bytes(),
            b"\xff\xfe5s\x80",
        ];
        for value in &values {
            for name in VARIABLES {
                let (c, w) = from_lookup(|k| (k == *name).then_some(*value));
                assert_eq!(c.interval_ms, DEFAULT_INTERVAL_MS, "{name}");
                assert_eq!(c.mean_bytes, DEFAULT_MEAN_BYTES, "{name}");
                assert!(!c.exact_totals, "{name}");
                assert_eq!(c.max_tracked, DEFAULT_MAX_TRACKED, "{name}");
                for m in &w {
                    assert!(m.len() < 300, "{name}: warning too long ({} bytes)", m.len());
                }
            }
        }
        for name in
            ["LEAKSCOPE_INTERVAL", "LEAKSCOPE_NATIVE_SAMPLE_BYTES", "LEAKSCOPE_NATIVE_MAX_TRACKED", "LEAKSCOPE_LOG"]
        {
            let (_, w) = from_lookup(|k| (k == name).then_some(&b"\xff\xfe"[..]));
            assert!(w.iter().any(|m| m.contains(name) && m.contains("UTF-8")), "{name}: {w:?}");
        }
        for (name, value) in
            [("LEAKSCOPE_INTERVAL", "100000000000000000000000"), ("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "NaN")]
        {
            let (_, w) = from_lookup(|k| (k == name).then_some(value.as_bytes()));
            assert!(w.iter().any(|m| m.contains(name)), "{name}: {w:?}");
        }
        let (c, w) = from_lookup(|k| (k == "LEAKSCOPE_SOCKET").then_some(long.as_bytes()));
        assert!(c.socket.is_none() && w[0].contains("(10000 bytes)"), "{w:?}");
    }

    #[test]
    fn intervals_and_sample_sizes_use_the_one_grammar() {
        let interval = |v: &str| cfg(&[("LEAKSCOPE_INTERVAL", v)]).0.interval_ms;
        assert_eq!(interval("5s"), 5000);
        assert_eq!(interval("500ms"), 500);
        assert_eq!(interval("2"), 2000);
        assert_eq!(interval("1.5s"), 1500);
        assert_eq!(interval("2m"), 120_000);
        assert_eq!(interval("1m30s"), 90_000);
        let mean = |v: &str| cfg(&[("LEAKSCOPE_NATIVE_SAMPLE_BYTES", v)]).0.mean_bytes;
        assert_eq!(mean("65536"), 65536);
        // Decimal unless spelled binary: `1MB` is 10^6 bytes here as in soak rules.
        assert_eq!(mean("64k"), 64_000);
        assert_eq!(mean("64kB"), 64_000);
        assert_eq!(mean("64KiB"), 65536);
        assert_eq!(mean("1MiB"), 1 << 20);
        assert_eq!(mean("1MB"), 1_000_000);
        assert_eq!(mean("1.5m"), 1_500_000);
        assert_eq!(mean("1GiB"), 1 << 30);
    }

    #[test]
    fn bad_sizes_and_durations_say_why_and_keep_the_default() {
        for (name, value, why) in [
            ("LEAKSCOPE_INTERVAL", "banana", "not a number"),
            ("LEAKSCOPE_INTERVAL", "-1s", "negative"),
            ("LEAKSCOPE_INTERVAL", "5 fortnights", "unknown duration unit"),
            ("LEAKSCOPE_INTERVAL", "10ms", "between 100ms and 1h"),
            ("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "-5", "negative"),
            ("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "lots", "not a number"),
            ("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "10 parsecs", "KiB, MiB"),
            ("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "99999999999999999999999", "too large"),
            ("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "1.1GiB", "between 1 and 1GiB"),
            ("LEAKSCOPE_NATIVE_SAMPLE_BYTES", " ", "empty"),
        ] {
            let (c, w) = cfg(&[(name, value)]);
            assert_eq!((c.interval_ms, c.mean_bytes), (DEFAULT_INTERVAL_MS, DEFAULT_MEAN_BYTES), "{name}={value}");
            assert!(w.len() == 1 && w[0].contains(name) && w[0].contains(why), "{name}={value}: {w:?}");
        }
    }

    #[test]
    fn defaults_and_bad_values() {
        let (c, w) = cfg(&[]);
        assert_eq!(c, Config::default());
        assert!(w.is_empty());
        let (c, w) = cfg(&[
            ("LEAKSCOPE_INTERVAL", "banana"),
            ("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "-5"),
            ("LEAKSCOPE_NATIVE_MAX_TRACKED", "3"),
            ("LEAKSCOPE_NATIVE", "maybe"),
        ]);
        assert_eq!(c.interval_ms, DEFAULT_INTERVAL_MS);
        assert_eq!(c.mean_bytes, DEFAULT_MEAN_BYTES);
        assert_eq!(c.max_tracked, DEFAULT_MAX_TRACKED);
        assert!(c.enabled);
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w.iter().any(|m| m.contains("LEAKSCOPE_INTERVAL=\"banana\"")));
    }

    #[test]
    fn good_values() {
        let (c, w) = cfg(&[
            ("LEAKSCOPE_INTERVAL", "250ms"),
            ("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "64KiB"),
            ("LEAKSCOPE_NATIVE", "0"),
            ("LEAKSCOPE_OUTPUT", "/tmp/x.ndjson"),
            ("LEAKSCOPE_NATIVE_STACK_DEPTH", "8"),
        ]);
        assert!(w.is_empty());
        assert_eq!(c.interval_ms, 250);
        assert_eq!(c.mean_bytes, 65536);
        assert!(!c.enabled);
        assert_eq!(c.output.as_deref(), Some("/tmp/x.ndjson"));
        assert_eq!(c.max_depth, 8);
        assert_eq!(c.service, None);
        let (c, _) = cfg(&[("LEAKSCOPE_SERVICE", " billing\u{7} ")]);
        assert_eq!(c.service.as_deref(), Some("billing"));
    }
}
