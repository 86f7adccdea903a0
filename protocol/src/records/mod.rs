//! The record types of the wire format (docs/PROTOCOL.md), one per record kind.
//!
//! Reading is tolerant by design: a producer runs inside someone else's process and may be a
//! different version, crash mid-line or be a stranger writing to the socket. [`decode`] turns
//! any JSON value into a record or a [`Skip`] reason; nothing here panics on input. Unknown
//! fields are ignored (the contract within a version) and numbers are accepted as integers or
//! floats ([`Num`]). [`unknown_fields`] is the strict check for producers' own tests: it lists
//! the fields of a line that its record type does not know.
//!
//! Layers: `num` at the bottom; one module per record kind over it; this module's decoding on top.

mod capture;
mod census;
mod hello;
mod lines;
mod native;
mod num;
mod peek;
mod retention;
mod summary;

pub use capture::{Breach, Capture};
pub use census::{Census, CensusOther, CensusType};
pub use hello::{AgentConfig, Hello, RetentionRootKinds, ShimConfig};
pub use lines::{
    Bye, StackRecord, Status, UNAVAILABLE_CENSUS, UNAVAILABLE_CENSUS_REQUEST, census_given_up, census_not_coming,
};
pub use native::{NativeSite, NativeSummary};
pub use num::Num;
pub use peek::{Peek, PeekField, PeekInstance, PeekType};
pub use retention::{
    RetainedSize, Retention, RetentionOther, RetentionPath, RetentionRoot, RetentionRoots, RetentionStatics,
    RetentionStep, RetentionType, RetentionWalk,
};
pub use summary::{
    AgentHealth, Exact, GcEntry, GcStats, HeapSizes, Learnt, ManagedSite, Retained, SamplingWindows, StackCapture,
    StackCheck, StackCheckSite, Summary,
};

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::version::{PROTOCOL_VERSION, SOURCE_AGENT, SOURCE_COLLECTOR, SOURCE_SHIM};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Agent,
    Shim,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Agent => SOURCE_AGENT,
            Source::Shim => SOURCE_SHIM,
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

/// Turns one line's JSON value into the producer it came from and its record. Never panics.
pub fn decode(value: serde_json::Value) -> Result<(ProducerKey, Record), Skip> {
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
        Some(SOURCE_AGENT) => Source::Agent,
        Some(SOURCE_SHIM) => Source::Shim,
        Some(SOURCE_COLLECTOR) => return Err(Skip::Collector),
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
    Ok((ProducerKey { pid, source }, record))
}

/// Decodes the collector's own `capture` line (which [`decode`] skips as [`Skip::Collector`]).
pub fn decode_capture(value: serde_json::Value) -> Result<Capture, Skip> {
    match value.get("type").and_then(|t| t.as_str()) {
        Some("capture") => typed(value),
        _ => Err(Skip::Malformed("not a `capture` record".to_string())),
    }
}

impl Record {
    /// The record written back as JSON (its body, without `v`, `type`, `source` and `pid`).
    pub fn to_value(&self) -> serde_json::Value {
        let v = match self {
            Record::Hello(r) => serde_json::to_value(r),
            Record::Stack(r) => serde_json::to_value(r),
            Record::Summary(r) => serde_json::to_value(r),
            Record::Native(r) => serde_json::to_value(r),
            Record::Retained(r) => serde_json::to_value(r),
            Record::Census(r) => serde_json::to_value(r),
            Record::Retention(r) => serde_json::to_value(r),
            Record::Peek(r) => serde_json::to_value(r),
            Record::Status(r) => serde_json::to_value(r),
            Record::Bye(r) => serde_json::to_value(r),
        };
        v.unwrap_or_default()
    }
}

/// The strict reading, for a producer's tests where its contract is "these fields and no other":
/// the paths (`sites[0].mmap_bytes`) of the fields of `line` that its record type does not know,
/// i.e. that decoding and writing back lost. `hello.config` is free-form here (see [`ShimConfig`]).
pub fn unknown_fields(line: &str) -> Result<Vec<String>, Skip> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| Skip::NotJson(e.to_string()))?;
    let (_, record) = decode(value.clone())?;
    let mut known = record.to_value();
    if let (Some(known), Some(original)) = (known.as_object_mut(), value.as_object()) {
        for envelope in ["v", "type", "source", "pid"] {
            if let Some(v) = original.get(envelope) {
                known.insert(envelope.to_string(), v.clone());
            }
        }
    }
    let mut unknown = Vec::new();
    missing_keys(&value, &known, String::new(), &mut unknown);
    Ok(unknown)
}

fn missing_keys(original: &serde_json::Value, known: &serde_json::Value, at: String, out: &mut Vec<String>) {
    use serde_json::Value;
    match (original, known) {
        (Value::Object(o), Value::Object(k)) => {
            for (key, value) in o {
                let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
                match k.get(key) {
                    None => out.push(path),
                    Some(_) if path == "config" => {} // free-form per producer
                    Some(kv) => missing_keys(value, kv, path, out),
                }
            }
        }
        (Value::Array(o), Value::Array(k)) => {
            for (i, (ov, kv)) in o.iter().zip(k).enumerate() {
                missing_keys(ov, kv, format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// One line as a producer writes it: `v`, `type`, `source` and `pid`, then the record's own
/// fields, and a newline. A record that cannot be encoded becomes a `status` error saying so.
pub fn encode_line<T: Serialize>(kind: &str, source: &str, pid: u32, body: &T) -> String {
    #[derive(Serialize)]
    struct Line<'a, T> {
        v: u64,
        #[serde(rename = "type")]
        kind: &'a str,
        source: &'a str,
        pid: u32,
        #[serde(flatten)]
        body: &'a T,
    }
    let line = Line { v: PROTOCOL_VERSION, kind, source, pid, body };
    let mut s = serde_json::to_string(&line).unwrap_or_else(|e| {
        let error =
            Status { level: Some("error".into()), message: format!("cannot encode {kind}: {e}"), ..Status::default() };
        serde_json::to_string(&Line { v: PROTOCOL_VERSION, kind: "status", source, pid, body: &error })
            .unwrap_or_default()
    });
    s.push('\n');
    s
}

/// Reads an optional sub-object of a record, or `None` when it does not have the expected shape:
/// a part only some readers use must not cost the whole record (what a newer producer sends).
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

fn typed<T: for<'de> Deserialize<'de>>(value: serde_json::Value) -> Result<T, Skip> {
    serde_json::from_value(value).map_err(|e| Skip::Malformed(short_error(&e)))
}

/// A serde error cut to 160 bytes: it may quote producer text.
pub fn short_error(e: &serde_json::Error) -> String {
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
