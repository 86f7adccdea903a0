//! `native`: unmanaged survivors, every interval, from the shim.

use serde::{Deserialize, Serialize};

use super::Num;

/// One native call site with live sampled allocations.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct NativeSite {
    pub site: String,
    pub stack: Option<u64>,
    pub samples: Option<Num>,
    pub allocs: Option<Num>,
    pub bytes: Option<Num>,
    /// Anonymous mapped bytes attributed to the site, when non-zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mmap_bytes: Option<Num>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct NativeSummary {
    pub seq: Option<u64>,
    pub t_ms: Option<Num>,
    pub unix_ms: Option<Num>,
    /// How `live_bytes` and `live_allocs` were obtained: `exact` (every call counted) or
    /// `sampled` (estimated from the live samples; the shim's default). Absent from producers
    /// older than the field, whose totals were always exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totals: Option<String>,
    pub live_bytes: Option<Num>,
    /// The standard error of `live_bytes` when it is estimated from the samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_bytes_se: Option<Num>,
    pub live_allocs: Option<Num>,
    pub total_allocs: Option<Num>,
    pub total_frees: Option<Num>,
    pub mmap_bytes: Option<Num>,
    pub sampling_mean_bytes: Option<Num>,
    pub dropped: Option<Num>,
    pub rss: Option<Num>,
    /// Bytes allocated since the start, all of them (not only live).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alloc_bytes_total: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mmap_regions: Option<Num>,
    /// Samples in the live table, and threads seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_samples: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<Num>,
    pub sites: Vec<NativeSite>,
}
