//! The agent's settings, read once from `LEAKSCOPE_*` environment variables.
//!
//! A bad value never stops the host: it is replaced by the default and reported (in the log and
//! as a `status` record) so the user sees what was ignored.

use std::path::PathBuf;
use std::time::Duration;

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
            framework_prefixes: ["System.", "Microsoft.", "Internal.", "Interop"]
                .map(String::from)
                .to_vec(),
            induce_full_gc: None,
            census: true,
            exact: Exact::Off,
            retention: Vec::new(),
            service: None,
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

pub fn from_env() -> Loaded {
    from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
}

pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Loaded {
    let mut c = Config::default();
    let mut problems = Vec::new();
    let non_empty = |name: &str| get(name).filter(|v| !v.trim().is_empty());

    c.socket = non_empty("LEAKSCOPE_SOCKET").map(PathBuf::from);
    c.output = non_empty("LEAKSCOPE_OUTPUT").map(PathBuf::from);
    c.log_file = non_empty("LEAKSCOPE_LOG").map(PathBuf::from);
    if c.log_file.is_some() {
        c.log_level = tracing::Level::INFO;
    }
    if let Some(v) = non_empty("LEAKSCOPE_LOG_LEVEL") {
        match v.trim().to_ascii_lowercase().as_str() {
            "error" => c.log_level = tracing::Level::ERROR,
            "warn" | "warning" => c.log_level = tracing::Level::WARN,
            "info" => c.log_level = tracing::Level::INFO,
            "debug" => c.log_level = tracing::Level::DEBUG,
            "trace" => c.log_level = tracing::Level::TRACE,
            _ => problems.push(format!(
                "LEAKSCOPE_LOG_LEVEL={v:?} is not one of error, warn, info, debug, trace; using {}",
                c.log_level
            )),
        }
    }
    if let Some(v) = non_empty("LEAKSCOPE_INTERVAL") {
        match parse_duration(&v) {
            Some(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(3600) => c.interval = d,
            _ => problems.push(format!(
                "LEAKSCOPE_INTERVAL={v:?} is not a duration between 100ms and 1h (e.g. 5s, 500ms); using 5s"
            )),
        }
    }
    if let Some(v) = non_empty("LEAKSCOPE_INDUCE_FULL_GC") {
        match parse_duration(&v) {
            Some(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(24 * 3600) => c.induce_full_gc = Some(d),
            _ => problems.push(format!(
                "LEAKSCOPE_INDUCE_FULL_GC={v:?} is not a duration between 1s and 24h (e.g. 30s); not inducing GCs"
            )),
        }
    }
    number(&non_empty, &mut problems, "LEAKSCOPE_MAX_TRACKED", 100, 50_000_000, &mut c.max_tracked);
    let mut memory_mb = c.memory_limit_bytes >> 20;
    number(&non_empty, &mut problems, "LEAKSCOPE_MEMORY_LIMIT_MB", 8, 1 << 20, &mut memory_mb);
    c.memory_limit_bytes = memory_mb << 20;
    number(&non_empty, &mut problems, "LEAKSCOPE_MAX_SAMPLES_PER_SEC", 0, 10_000_000, &mut c.max_samples_per_sec);
    number(&non_empty, &mut problems, "LEAKSCOPE_MAX_SITES", 1, 1_000_000, &mut c.max_sites);
    number(&non_empty, &mut problems, "LEAKSCOPE_STACK_DEPTH", 1, 1024, &mut c.stack_depth);
    if let Some(v) = get("LEAKSCOPE_FRAMEWORK_PREFIXES") {
        c.framework_prefixes = v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    }

    if let Some(v) = non_empty("LEAKSCOPE_CENSUS") {
        match v.trim().to_ascii_lowercase().as_str() {
            "0" | "false" | "no" | "off" => c.census = false,
            "1" | "true" | "yes" | "on" => c.census = true,
            _ => problems.push(format!("LEAKSCOPE_CENSUS={v:?} is not 0/1/true/false; using {}", c.census)),
        }
    }
    if let Some(v) = non_empty("LEAKSCOPE_EXACT") {
        let t = v.trim();
        c.exact = match t.to_ascii_lowercase().as_str() {
            "0" | "false" | "no" | "off" => Exact::Off,
            "1" | "true" | "yes" | "on" | "auto" => Exact::Auto,
            _ => Exact::Types(t.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()),
        };
        if c.exact != Exact::Off && c.induce_full_gc.is_none() {
            problems.push(format!(
                "LEAKSCOPE_EXACT={v:?} aims at the types a census sees growing, and censuses need \
                 LEAKSCOPE_INDUCE_FULL_GC: only types named in LEAKSCOPE_EXACT that samples meet will be aimed at"
            ));
        }
    }
    if let Some(v) = non_empty("LEAKSCOPE_RETENTION") {
        c.retention = v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    }
    if let Some(v) = non_empty("LEAKSCOPE_SERVICE") {
        c.service = Some(service_name(&v));
    }
    let disabled_by_user = match non_empty("LEAKSCOPE_ENABLED").map(|v| v.trim().to_ascii_lowercase()) {
        None => false,
        Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => true,
        Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => false,
        Some(v) => {
            problems.push(format!("LEAKSCOPE_ENABLED={v:?} is not 0/1/true/false; staying enabled"));
            false
        }
    };
    Loaded { config: c, problems, disabled_by_user }
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
    name: &str,
    min: usize,
    max: usize,
    slot: &mut usize,
) {
    if let Some(v) = get(name) {
        match v.trim().replace('_', "").parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => *slot = n,
            _ => problems.push(format!("{name}={v:?} is not a whole number from {min} to {max}; using {slot}")),
        }
    }
}

/// `5s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Loaded {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn durations_accept_common_spellings() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5m"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("-3s"), None);
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
        ]);
        assert_eq!(l.config.interval, Duration::from_secs(5));
        assert_eq!(l.config.max_tracked, 100_000);
        assert_eq!(l.config.stack_depth, 64);
        assert_eq!(l.problems.len(), 4, "{:?}", l.problems);
        for name in ["LEAKSCOPE_INTERVAL", "LEAKSCOPE_MAX_TRACKED", "LEAKSCOPE_LOG_LEVEL", "LEAKSCOPE_STACK_DEPTH"] {
            assert!(l.problems.iter().any(|p| p.contains(name)), "{name} not reported");
        }
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
