//! `hello`: the first line of every connection and file segment.

use serde::{Deserialize, Serialize};

use super::Num;

/// `hello`. Producers send the fields that are theirs (`runtime` and `attached`: the agent;
/// `mean_bytes`, `native`, `preload`: the shim); a field a producer has no value for is left out.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Hello {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_unix_ms: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampling: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_bytes: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// Shim: `"on"`, or `"off"` when it disabled itself, with `native_reason` saying why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native_reason: Option<String>,
    /// `LEAKSCOPE_SERVICE` of the worker, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Agent: loaded into the running process by `leakscope attach`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached: Option<bool>,
    /// Shim: its own path (`LD_PRELOAD`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preload: Option<String>,
}

/// The agent's `hello.config`: how it was set up.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct AgentConfig {
    pub max_tracked: u64,
    pub memory_limit_bytes: u64,
    pub stack_depth: u64,
    /// `frames`, `snapshot` or `check` (`LEAKSCOPE_STACK_CAPTURE`).
    pub stack_capture: String,
    pub log: String,
    /// Soak mode: the induced full GC's period (`null` when off).
    pub induce_full_gc_ms: Option<u64>,
    /// With soak mode: a census after each induced GC.
    pub census: bool,
    /// `off`, `auto`, or the type names of `LEAKSCOPE_EXACT`.
    pub exact: String,
    /// `LEAKSCOPE_RETENTION`'s types (retention after each soak census).
    pub retention: Vec<String>,
    /// Which roots retention paths can start from in this mode, and which they cannot name.
    pub retention_roots: RetentionRootKinds,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct RetentionRootKinds {
    pub named: Vec<String>,
    pub not_named: Vec<String>,
}

/// The shim's `hello.config`: how it was set up. Its contract is these fields and no other.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShimConfig {
    pub max_tracked: u64,
    pub max_depth: u64,
    pub max_sites: u64,
    pub track_mmap: bool,
    /// `malloc_usable_size`, or `chunk header (verified)` when glibc's chunk header is read.
    pub usable_size: String,
    /// Memory of the live-sample table, bytes.
    pub table_bytes: u64,
    /// `exact` (every call counted) or `sampled` (live totals estimated from the samples; the
    /// default). Absent from shims older than the field, whose totals were always exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totals: Option<String>,
}

impl Hello {
    /// The shim's own reason when it announced that native tracking is off.
    pub fn native_off_reason(&self) -> Option<String> {
        (self.native.as_deref() == Some("off"))
            .then(|| self.native_reason.clone().unwrap_or_else(|| "no reason given".to_string()))
    }
}
