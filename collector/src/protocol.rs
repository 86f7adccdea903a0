//! The wire protocol v1 (docs/PROTOCOL.md) as read by the collector.
//!
//! Parsing is tolerant by design: a producer runs inside someone else's process and may be a
//! different version, crash mid-line or be a stranger writing to our socket. Every line yields
//! either a record or a [`Skip`] reason that the store counts; nothing here panics on input.
//! Unknown fields are ignored; numbers are accepted as integers or floats.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub const PROTOCOL_VERSION: u64 = 1;
/// Longest line a producer may send (PROTOCOL.md); longer ones are discarded and counted.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Agent,
    Shim,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Agent => "agent",
            Source::Shim => "shim",
        }
    }
}

/// State is kept per producer: one agent and/or one shim per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProducerKey {
    pub pid: u32,
    pub source: Source,
}

#[derive(Debug, Clone)]
pub struct Envelope {
    pub key: ProducerKey,
    pub record: Record,
    /// An estimate from above of the memory the record holds (what keeping it costs).
    pub approx_bytes: usize,
}

#[derive(Debug, Clone)]
pub enum Record {
    Hello(Box<Hello>),
    Stack(StackRecord),
    Summary(Box<Summary>),
    Native(Box<NativeSummary>),
    /// What survived a full GC (sampled survivors born before it), soak mode's comparable points.
    Retained(Box<Retained>),
    /// Exact live objects and bytes by type, counted right after an induced full GC.
    Census(Box<Census>),
    /// What keeps instances of given types alive: paths from roots, by shape.
    Retention(Box<Retention>),
    /// A few instances of given types with their fields' values.
    Peek(Box<Peek>),
    Status(Status),
    Bye(Bye),
}

/// Why a line did not become a record. Counted, never fatal.
#[derive(Debug, Clone, PartialEq)]
pub enum Skip {
    Empty,
    NotJson(String),
    /// Valid JSON, but not a record we can use (missing or ill-typed field).
    Malformed(String),
    UnknownVersion(u64),
    UnknownType(String),
    UnknownSource(String),
    /// A line the collector itself wrote into the recording (`capture`): not a producer's.
    Collector,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Empty => write!(f, "empty line"),
            Skip::NotJson(e) => write!(f, "not JSON ({e})"),
            Skip::Malformed(e) => write!(f, "malformed record ({e})"),
            Skip::UnknownVersion(v) => write!(f, "unknown protocol version {v}"),
            Skip::UnknownType(t) => write!(f, "unknown record type `{t}`"),
            Skip::UnknownSource(s) => write!(f, "unknown source `{s}`"),
            Skip::Collector => write!(f, "the collector's own record"),
        }
    }
}

/// A non-negative number that may arrive as an integer or a float; negatives clamp to 0.
/// Written back as an integer when it is whole (byte counts stay `48500000`, not `48500000.0`).
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Num(pub f64);

impl Serialize for Num {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53
        if self.0.fract() == 0.0 && self.0.abs() < EXACT_INTEGER_LIMIT {
            s.serialize_u64(self.0 as u64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

impl Num {
    pub fn u64(self) -> u64 {
        if self.0.is_finite() && self.0 > 0.0 { self.0.round() as u64 } else { 0 }
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NumVisitor;
        impl Visitor<'_> for NumVisitor {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                Ok(Num(v.max(0) as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                Ok(Num(if v.is_finite() { v.max(0.0) } else { 0.0 }))
            }
        }
        d.deserialize_any(NumVisitor)
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Hello {
    pub version: Option<String>,
    pub cmdline: Option<String>,
    pub start_unix_ms: Option<Num>,
    pub interval_ms: Option<Num>,
    pub runtime: Option<String>,
    pub sampling: Option<String>,
    pub mode: Option<String>,
    pub mean_bytes: Option<Num>,
    pub config: Option<serde_json::Value>,
    /// Shim: `"on"`, or `"off"` when it disabled itself, with `native_reason` saying why.
    pub native: Option<String>,
    pub native_reason: Option<String>,
    /// `LEAKSCOPE_SERVICE` of the worker, when set.
    pub service: Option<String>,
}

impl Hello {
    /// The shim's own reason when it announced that native tracking is off.
    pub fn native_off_reason(&self) -> Option<String> {
        (self.native.as_deref() == Some("off"))
            .then(|| self.native_reason.clone().unwrap_or_else(|| "no reason given".to_string()))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct StackRecord {
    pub id: u64,
    #[serde(default)]
    pub frames: Vec<String>,
    /// `File:line` per frame where known (optional).
    #[serde(default)]
    pub lines: Vec<Option<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct GcStats {
    pub count: Vec<Num>,
    pub induced: Option<Num>,
    pub pause_ms_total: Option<Num>,
    pub pause_ms_max: Option<Num>,
    pub reasons: BTreeMap<String, Num>,
    /// The collections since the previous summary (kept for the soak charts, not re-exported).
    #[serde(skip_serializing)]
    pub recent: Vec<GcEntry>,
}

/// One collection listed in `summary.gc.recent`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct GcEntry {
    pub n: Option<u64>,
    #[serde(rename = "gen")]
    pub generation: Option<u64>,
    pub reason: Option<String>,
    pub background: Option<bool>,
    pub pause_ms: Option<Num>,
    /// Generation sizes after it: gen0, gen1, gen2, LOH, POH.
    pub after: Vec<Num>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct HeapSizes {
    pub gen0: Option<Num>,
    pub gen1: Option<Num>,
    pub gen2: Option<Num>,
    pub loh: Option<Num>,
    pub poh: Option<Num>,
}

impl HeapSizes {
    pub fn total(&self) -> f64 {
        [self.gen0, self.gen1, self.gen2, self.loh, self.poh].iter().flatten().map(|n| n.0).sum()
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct AgentHealth {
    pub tracked: Option<Num>,
    pub max_tracked: Option<Num>,
    pub dropped: Option<Num>,
    pub samples: Option<Num>,
    pub memory_bytes: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<Num>,
    pub degraded: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ManagedSite {
    pub type_name: String,
    pub site: String,
    /// The call site's `File:line`, when the agent knows it.
    pub location: Option<String>,
    pub stack: Option<u64>,
    pub samples: Option<Num>,
    pub objects: Option<Num>,
    pub bytes: Option<Num>,
    pub age_gcs: Option<Num>,
    pub gens: Vec<Num>,
    /// Samples of this pair the GC has collected since the agent started (cumulative).
    pub collected: Option<Num>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Summary {
    pub seq: Option<u64>,
    pub t_ms: Option<Num>,
    pub unix_ms: Option<Num>,
    pub gc: Option<GcStats>,
    pub heap: Option<HeapSizes>,
    pub rss: Option<Num>,
    pub agent: Option<AgentHealth>,
    pub sites: Vec<ManagedSite>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NativeSite {
    pub site: String,
    pub stack: Option<u64>,
    pub samples: Option<Num>,
    pub allocs: Option<Num>,
    pub bytes: Option<Num>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NativeSummary {
    pub seq: Option<u64>,
    pub t_ms: Option<Num>,
    pub unix_ms: Option<Num>,
    pub live_bytes: Option<Num>,
    pub live_allocs: Option<Num>,
    pub total_allocs: Option<Num>,
    pub total_frees: Option<Num>,
    pub mmap_bytes: Option<Num>,
    pub sampling_mean_bytes: Option<Num>,
    pub dropped: Option<Num>,
    pub rss: Option<Num>,
    pub sites: Vec<NativeSite>,
}

/// `retained`: sampled objects born before a full GC and alive after it, grouped like
/// `summary.sites`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Retained {
    pub gc: Option<u64>,
    pub t_ms: Option<Num>,
    pub unix_ms: Option<Num>,
    pub heap: Option<HeapSizes>,
    pub sites: Vec<ManagedSite>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CensusType {
    pub type_name: String,
    pub count: Option<Num>,
    pub bytes: Option<Num>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CensusOther {
    pub types: Option<Num>,
    pub count: Option<Num>,
    pub bytes: Option<Num>,
}

/// `census`: every live object counted by type on the whole heap after an induced full GC.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Census {
    pub gc: Option<u64>,
    pub t_ms: Option<Num>,
    pub unix_ms: Option<Num>,
    pub pause_ms: Option<Num>,
    /// The induced full GC before the walk (agents since the census gained it).
    pub gc_ms: Option<Num>,
    pub objects: Option<Num>,
    pub bytes: Option<Num>,
    pub unreadable: Option<Num>,
    pub heap: Option<HeapSizes>,
    pub types: Vec<CensusType>,
    pub other: Option<CensusOther>,
}

/// `retention`: for each requested type, the shapes of the reference chains that keep its
/// instances alive, from a root (a named static field, a stack frame, a handle…).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Retention {
    pub gc: Option<u64>,
    pub t_ms: Option<Num>,
    pub unix_ms: Option<Num>,
    pub elapsed_ms: Option<Num>,
    /// All the walks' pauses together; `max_pause_ms` the longest one.
    pub pause_ms: Option<Num>,
    pub max_pause_ms: Option<Num>,
    pub walks: Vec<RetentionWalk>,
    pub objects: Option<Num>,
    pub followed: Option<Num>,
    pub samples: Option<Num>,
    pub memory_bytes: Option<Num>,
    pub memory_budget_bytes: Option<Num>,
    pub time_budget_ms: Option<Num>,
    pub truncated: bool,
    pub truncated_by: Vec<String>,
    /// When truncated: how far the search got and what budget it would have needed.
    pub cut_short: Option<String>,
    pub roots: Option<RetentionRoots>,
    pub error: Option<String>,
    pub types: Vec<RetentionType>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RetentionWalk {
    pub pause_ms: Option<Num>,
    pub objects: Option<Num>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RetentionRoots {
    pub reported: bool,
    /// `heap-dump` or `gc-callbacks`.
    pub source: Option<String>,
    pub pause_ms: Option<Num>,
    pub why: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RetentionType {
    pub type_name: String,
    pub matched: Vec<String>,
    pub instances: Option<Num>,
    pub bytes: Option<Num>,
    /// Instances the search's first walk met: the population its paths' estimates add up to.
    pub walked: Option<Num>,
    /// Instances followed (all, or a sample); path counts are then estimates.
    pub sampled: Option<Num>,
    /// Estimated instances whose path the search could not finish.
    pub unknown: Option<Num>,
    pub unreached: Option<Num>,
    pub paths: Vec<RetentionPath>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RetentionPath {
    pub root: RetentionRoot,
    pub steps: Vec<RetentionStep>,
    pub instances: Option<Num>,
    pub bytes: Option<Num>,
    pub sampled: Option<Num>,
    pub retained: Option<RetainedSize>,
}

/// What the path's first object of the application's own keeps alive by itself.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RetainedSize {
    pub step: Option<i64>,
    pub type_name: String,
    pub bytes_per_instance: Option<Num>,
    pub bytes: Option<Num>,
    pub measured: Option<Num>,
    pub lower_bound: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RetentionRoot {
    pub kind: String,
    pub name: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RetentionStep {
    pub type_name: String,
    pub field: Option<String>,
    pub repeated: bool,
}

/// `peek`: a few instances of each requested type, with their fields' values as the agent
/// rendered them (numbers, `null`, `"<Type>"`, `"System.Byte[1024]"`, `"<string, 9 chars>"`,
/// or a string's contents when asked for).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Peek {
    pub gc: Option<u64>,
    pub t_ms: Option<Num>,
    pub pause_ms: Option<Num>,
    pub strings: bool,
    /// String contents were asked for but the worker's owner has not allowed them: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strings_withheld: Option<String>,
    pub error: Option<String>,
    pub types: Vec<PeekType>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct PeekType {
    pub type_name: String,
    pub matched: Vec<String>,
    pub instances: Option<Num>,
    pub samples: Vec<PeekInstance>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct PeekInstance {
    pub type_name: String,
    pub size: Option<Num>,
    pub fields: Vec<PeekField>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct PeekField {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: serde_json::Value,
}

impl Retention {
    /// The paths found for `type_name` (asked for by that name, or matched by it), most
    /// instances first.
    pub fn paths_for<'a>(&'a self, type_name: &'a str) -> impl Iterator<Item = &'a RetentionPath> + 'a {
        self.types
            .iter()
            .filter(move |t| t.type_name == type_name || t.matched.iter().any(|m| m == type_name))
            .flat_map(|t| t.paths.iter())
    }
}

impl Retention {
    /// The entry of the type asked for as `type_name` (or that matched it).
    pub fn type_entry(&self, type_name: &str) -> Option<&RetentionType> {
        self.types.iter().find(|t| t.type_name == type_name || t.matched.iter().any(|m| m == type_name))
    }
}

impl RetentionPath {
    /// Whether the search finished this path (its root is known, not cut short).
    pub fn finished(&self) -> bool {
        self.root.kind != "unknown"
    }

    /// `static LeakApp.Clock.Tick → System.EventHandler → System.Object[] (_invocationList) → …`;
    /// a path a budget cut short: `unknown (walk cut short: …) → …`.
    pub fn render(&self) -> String {
        let root = match (&self.root.name, &self.root.detail) {
            (Some(name), Some(detail)) if detail.starts_with("named by the type") => {
                format!("{} {name} (named by its type)", self.root.kind)
            }
            (Some(name), _) if self.root.kind == "stack" => format!("stack frame of {name}"),
            (Some(name), _) if self.root.kind == "thread-static" => format!("thread static {name}"),
            (Some(name), _) => format!("{} {name}", self.root.kind),
            (None, Some(detail)) if self.root.kind == "other" => format!("({detail})"),
            (None, Some(detail)) if self.root.kind == "unknown" => format!("unknown ({detail})"),
            (None, Some(detail)) if self.root.kind == "handle" => format!("{detail} handle"),
            _ => self.root.kind.clone(),
        };
        let mut out = root;
        for step in &self.steps {
            out.push_str(" → ");
            out.push_str(&step.type_name);
            if let Some(field) = &step.field {
                out.push_str(&format!(" ({field})"));
            }
            if step.repeated {
                out.push_str(" ×n");
            }
        }
        out
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Status {
    pub level: Option<String>,
    pub message: String,
    pub t_ms: Option<Num>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Bye {
    pub t_ms: Option<Num>,
    pub reason: Option<String>,
}

/// Parses one line (without its newline). Never panics.
pub fn parse_line(line: &[u8]) -> Result<Envelope, Skip> {
    let trimmed = trim_ascii(line);
    if trimmed.is_empty() {
        return Err(Skip::Empty);
    }
    let mut value: serde_json::Value = serde_json::from_slice(trimmed).map_err(|e| Skip::NotJson(short_error(&e)))?;
    // Producer text is untrusted: escaped and length-capped here, once, for every output.
    let approx_bytes = crate::untrusted::clean_value(&mut value);
    let serde_json::Value::Object(ref obj) = value else {
        return Err(Skip::Malformed("not a JSON object".to_string()));
    };
    let version = match obj.get("v") {
        Some(v) => v.as_u64().ok_or_else(|| Skip::Malformed("`v` is not an integer".to_string()))?,
        None => return Err(Skip::Malformed("missing `v`".to_string())),
    };
    if version != PROTOCOL_VERSION {
        return Err(Skip::UnknownVersion(version));
    }
    let kind = obj
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| Skip::Malformed("missing `type`".to_string()))?
        .to_string();
    let source = match obj.get("source").and_then(|s| s.as_str()) {
        Some("agent") => Source::Agent,
        Some("shim") => Source::Shim,
        Some("collector") => return Err(Skip::Collector),
        Some(other) => return Err(Skip::UnknownSource(other.to_string())),
        None => return Err(Skip::Malformed("missing `source`".to_string())),
    };
    let pid = obj
        .get("pid")
        .and_then(|p| p.as_u64())
        .filter(|p| *p <= u32::MAX as u64)
        .ok_or_else(|| Skip::Malformed("missing or invalid `pid`".to_string()))? as u32;
    let record = match kind.as_str() {
        "hello" => Record::Hello(Box::new(typed(value)?)),
        "stack" => Record::Stack(typed(value)?),
        "summary" => Record::Summary(Box::new(typed(value)?)),
        "native" => Record::Native(Box::new(typed(value)?)),
        "retained" => Record::Retained(Box::new(typed(value)?)),
        "census" => Record::Census(Box::new(typed(value)?)),
        "retention" => Record::Retention(Box::new(typed(value)?)),
        "peek" => Record::Peek(Box::new(typed(value)?)),
        "status" => Record::Status(typed(value)?),
        "bye" => Record::Bye(typed(value)?),
        _ => return Err(Skip::UnknownType(kind)),
    };
    Ok(Envelope { key: ProducerKey { pid, source }, record, approx_bytes })
}

fn typed<T: for<'de> Deserialize<'de>>(value: serde_json::Value) -> Result<T, Skip> {
    serde_json::from_value(value).map_err(|e| Skip::Malformed(short_error(&e)))
}

fn short_error(e: &serde_json::Error) -> String {
    let mut s = e.to_string();
    if s.len() > 160 {
        let mut cut = 160;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn trim_ascii(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if first.is_ascii_whitespace() {
            b = rest
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if last.is_ascii_whitespace() {
            b = rest
        } else {
            break;
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = r#"{"v":1,"type":"summary","source":"agent","pid":4242,"seq":12,"t_ms":60012,"unix_ms":1795000060012,
 "gc":{"count":[40,12,3],"induced":1,"pause_ms_total":31.5,"pause_ms_max":4.2,
       "reasons":{"AllocSmall":50,"Induced":1}},
 "heap":{"gen0":1048576,"gen1":2097152,"gen2":73400320,"loh":1000000,"poh":8192},
 "rss":182452224,
 "agent":{"tracked":2311,"max_tracked":100000,"dropped":0,"samples":5120,"memory_bytes":3145728,
          "degraded":null},
 "sites":[{"type_name":"System.String","site":"Demo.Worker.LeakOne","stack":17,
           "samples":812,"objects":1503000,"bytes":84700000,"age_gcs":31.2,
           "gens":[0,0,812,0,0]}]}"#;

    fn one_line(s: &str) -> Vec<u8> {
        s.replace('\n', " ").into_bytes()
    }

    #[test]
    fn parses_the_documented_summary_example() {
        let env = parse_line(&one_line(SUMMARY)).unwrap();
        assert_eq!(env.key, ProducerKey { pid: 4242, source: Source::Agent });
        let Record::Summary(s) = env.record else { panic!("not a summary") };
        assert_eq!(s.t_ms.unwrap().u64(), 60012);
        assert_eq!(s.gc.as_ref().unwrap().count.len(), 3);
        assert_eq!(s.heap.as_ref().unwrap().gen2.unwrap().u64(), 73_400_320);
        assert_eq!(s.agent.as_ref().unwrap().degraded, None);
        assert_eq!(s.sites[0].site, "Demo.Worker.LeakOne");
        assert_eq!(s.sites[0].bytes.unwrap().u64(), 84_700_000);
    }

    #[test]
    fn parses_every_documented_record_kind() {
        let lines = [
            r#"{"v":1,"type":"hello","source":"agent","pid":4242,"version":"0.1.0","cmdline":"dotnet Worker.dll","start_unix_ms":1795000000000,"interval_ms":5000,"runtime":"10.0.12","sampling":"AllocationSampled","mode":"sampled","config":{"max_tracked":100000}}"#,
            r#"{"v":1,"type":"stack","source":"agent","pid":4242,"id":17,"frames":["Demo.Worker.LeakOne","Demo.Worker.Run","Demo.Program.Main"]}"#,
            r#"{"v":1,"type":"native","source":"shim","pid":4242,"seq":12,"t_ms":60010,"unix_ms":1795000060010,"live_bytes":52428800,"live_allocs":10240,"total_allocs":9000000,"total_frees":8989760,"mmap_bytes":4194304,"sampling_mean_bytes":524288,"dropped":0,"sites":[{"site":"leak_from_here (leaky+0x1139)","stack":3,"samples":100,"allocs":100,"bytes":52428800}]}"#,
            r#"{"v":1,"type":"status","source":"agent","pid":4242,"level":"warn","message":"tracking budget full"}"#,
            r#"{"v":1,"type":"bye","source":"agent","pid":4242,"t_ms":93000,"reason":"runtime shutdown"}"#,
        ];
        let kinds: Vec<&str> = lines
            .iter()
            .map(|l| match parse_line(l.as_bytes()).unwrap().record {
                Record::Hello(h) => {
                    assert_eq!(h.interval_ms.unwrap().u64(), 5000);
                    "hello"
                }
                Record::Stack(s) => {
                    assert_eq!(s.frames.len(), 3);
                    "stack"
                }
                Record::Native(n) => {
                    assert_eq!(n.sites[0].bytes.unwrap().u64(), 52_428_800);
                    "native"
                }
                Record::Status(s) => {
                    assert_eq!(s.level.as_deref(), Some("warn"));
                    "status"
                }
                Record::Bye(b) => {
                    assert_eq!(b.reason.as_deref(), Some("runtime shutdown"));
                    "bye"
                }
                Record::Summary(_) => "summary",
                Record::Retained(_) => "retained",
                Record::Census(_) => "census",
                Record::Retention(_) => "retention",
                Record::Peek(_) => "peek",
            })
            .collect();
        assert_eq!(kinds, ["hello", "stack", "native", "status", "bye"]);
    }

    #[test]
    fn parses_the_documented_retained_and_census_examples() {
        let retained = r#"{"v":1,"type":"retained","source":"agent","pid":4242,"gc":57,"t_ms":61000,"unix_ms":1795000061000,
 "heap":{"gen0":0,"gen1":400,"gen2":73400320,"loh":1000000,"poh":8192},
 "sites":[{"type_name":"System.String","site":"Demo.Worker.LeakOne","location":"Worker.cs:42","stack":17,
           "samples":800,"objects":1500000,"bytes":84000000,"age_gcs":30.5,"gens":[0,0,800,0,0]}]}"#;
        let Record::Retained(r) = parse_line(&one_line(retained)).unwrap().record else { panic!("not retained") };
        assert_eq!(r.gc, Some(57));
        assert_eq!(r.t_ms.unwrap().u64(), 61000);
        assert_eq!(r.sites[0].location.as_deref(), Some("Worker.cs:42"));
        assert_eq!(r.sites[0].bytes.unwrap().u64(), 84_000_000);
        let census = r#"{"v":1,"type":"census","source":"agent","pid":4242,"gc":57,"t_ms":61000,"unix_ms":1795000061000,
 "pause_ms":45.2,"objects":293681,"bytes":42258228,"unreadable":0,
 "heap":{"gen0":0,"gen1":400,"gen2":41000000,"loh":1000000,"poh":8192},
 "types":[{"type_name":"System.String","count":291542,"bytes":37861182}],
 "other":{"types":0,"count":0,"bytes":0}}"#;
        let Record::Census(c) = parse_line(&one_line(census)).unwrap().record else { panic!("not census") };
        assert_eq!(c.bytes.unwrap().u64(), 42_258_228);
        assert_eq!(c.types[0].count.unwrap().u64(), 291_542);
        assert_eq!(c.other.unwrap().types.unwrap().u64(), 0);
        assert!((c.pause_ms.unwrap().0 - 45.2).abs() < 1e-9);
        // `gc.recent` is read (for the soak charts) but not written back into report.json.
        let summary = br#"{"v":1,"type":"summary","source":"agent","pid":1,"t_ms":5,"gc":{"count":[1,0,1],"recent":[{"n":55,"gen":2,"reason":"Induced","background":false,"pause_ms":3.1,"after":[0,400,73400320,1000000,8192]}]}}"#;
        let Record::Summary(s) = parse_line(summary).unwrap().record else { panic!() };
        let gc = s.gc.unwrap();
        assert_eq!(gc.recent[0].generation, Some(2));
        assert_eq!(gc.recent[0].after[2].u64(), 73_400_320);
        assert!(!serde_json::to_string(&gc).unwrap().contains("recent"));
    }

    #[test]
    fn bad_lines_are_classified_not_fatal() {
        type Case<'a> = (&'a [u8], fn(&Skip) -> bool);
        let cases: &[Case<'_>] = &[
            (b"", |s| *s == Skip::Empty),
            (b"   \r", |s| *s == Skip::Empty),
            (b"garbage", |s| matches!(s, Skip::NotJson(_))),
            (b"{\"v\":1,\"type\":\"summ", |s| matches!(s, Skip::NotJson(_))),
            (b"\xff\xfe{}", |s| matches!(s, Skip::NotJson(_))),
            (b"[1,2]", |s| matches!(s, Skip::Malformed(_))),
            (b"{\"type\":\"hello\"}", |s| matches!(s, Skip::Malformed(_))),
            (b"{\"v\":2,\"type\":\"hello\",\"source\":\"agent\",\"pid\":1}", |s| *s == Skip::UnknownVersion(2)),
            (
                b"{\"v\":1,\"type\":\"heapdump\",\"source\":\"agent\",\"pid\":1}",
                |s| matches!(s, Skip::UnknownType(t) if t == "heapdump"),
            ),
            (b"{\"v\":1,\"type\":\"hello\",\"source\":\"jvm\",\"pid\":1}", |s| matches!(s, Skip::UnknownSource(_))),
            (b"{\"v\":1,\"type\":\"hello\",\"source\":\"agent\",\"pid\":-1}", |s| matches!(s, Skip::Malformed(_))),
            (b"{\"v\":1,\"type\":\"summary\",\"source\":\"agent\",\"pid\":1,\"rss\":\"big\"}", |s| {
                matches!(s, Skip::Malformed(_))
            }),
            (b"{\"v\":1,\"type\":\"stack\",\"source\":\"agent\",\"pid\":1}", |s| matches!(s, Skip::Malformed(_))),
        ];
        for (line, check) in cases {
            let got = parse_line(line).unwrap_err();
            assert!(check(&got), "line {:?} gave {:?}", String::from_utf8_lossy(line), got);
        }
    }

    #[test]
    fn numbers_are_lenient_and_unknown_fields_ignored() {
        let line = br#"{"v":1,"type":"summary","source":"agent","pid":7,"t_ms":1000.6,"rss":-5,"future_field":{"x":1},
            "sites":[{"type_name":"T","site":"S","bytes":1.5e6,"objects":null,"new":"x"}]}"#;
        let env = parse_line(&one_line(std::str::from_utf8(line).unwrap())).unwrap();
        let Record::Summary(s) = env.record else { panic!() };
        assert_eq!(s.t_ms.unwrap().u64(), 1001);
        assert_eq!(s.rss.unwrap().u64(), 0);
        assert_eq!(s.sites[0].bytes.unwrap().u64(), 1_500_000);
        assert!(s.sites[0].objects.is_none());
        assert_eq!(serde_json::to_string(&[Num(48_500_000.0), Num(31.5)]).unwrap(), "[48500000,31.5]");
    }

    /// A thread static's root reads as one, with its thread; a static and a stack frame as before.
    #[test]
    fn root_kinds_render_as_words() {
        let path = |kind: &str, name: &str| RetentionPath {
            root: RetentionRoot { kind: kind.into(), name: Some(name.into()), detail: None },
            steps: vec![RetentionStep { type_name: "LeakApp.Note".into(), ..Default::default() }],
            ..Default::default()
        };
        assert_eq!(
            path("thread-static", "LeakApp.NoteKeeper.t_notes (thread 0x7bfe)").render(),
            "thread static LeakApp.NoteKeeper.t_notes (thread 0x7bfe) → LeakApp.Note"
        );
        assert_eq!(path("static", "LeakApp.Clock.Tick").render(), "static LeakApp.Clock.Tick → LeakApp.Note");
        assert_eq!(path("stack", "LeakApp.Run").render(), "stack frame of LeakApp.Run → LeakApp.Note");
    }
}
