//! One producer's state (an agent or a shim of one process): its hello, latest counters,
//! stacks, site series, soak series, retention and peek records, and its share of the memory
//! budget. How each record changes it is in `records`.

use super::caps::{DEFAULT_MAX_SITES, series_cost};
use super::series::{SiteLatest, SiteSeries, Stack};
use super::soak_series::SoakData;
use crate::budget::{Budget, Charge};
use crate::protocol::{AgentHealth, Bye, GcStats, HeapSizes, Hello, ProducerKey};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct NativeTotals {
    /// `live_bytes` and `live_allocs` were estimated from the samples (the shim's default),
    /// not counted call by call.
    pub sampled: bool,
    /// Live samples behind the estimate.
    pub live_samples: Option<u64>,
    pub live_bytes: Option<u64>,
    /// The standard error of a sampled `live_bytes`.
    pub live_bytes_se: Option<u64>,
    pub live_allocs: Option<u64>,
    pub total_allocs: Option<u64>,
    pub total_frees: Option<u64>,
    pub mmap_bytes: Option<u64>,
    pub sampling_mean_bytes: Option<u64>,
    pub dropped: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct StatusEntry {
    pub level: String,
    pub message: String,
    pub t_ms: Option<u64>,
    /// What the status says will not come (PROTOCOL.md `status`).
    pub unavailable: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// Seen in a file, or over a connection that is still open.
    Open,
    /// Said `bye`.
    SaidBye,
    /// Its connection closed without `bye` (crash, kill, or the process exited abruptly).
    Lost,
}

pub(super) type SiteKey = (String, String);

/// One site as listed in one record.
pub(super) struct Observation {
    pub(super) key: SiteKey,
    pub(super) type_name: Option<String>,
    pub(super) stack: Option<u64>,
    pub(super) location: Option<String>,
    pub(super) latest: SiteLatest,
}

/// Retention records kept per producer (each asked for at most every half minute or so).
pub(super) const RETENTION_HISTORY: usize = 64;

#[derive(Debug, Clone)]
pub struct Producer {
    pub key: ProducerKey,
    pub hello: Option<Hello>,
    pub hellos: u32,
    pub connection: Connection,
    pub(super) stacks: HashMap<u64, Arc<Stack>>,
    pub stacks_dropped: u64,
    pub gc: Option<GcStats>,
    pub heap: Option<HeapSizes>,
    pub rss: Option<u64>,
    pub health: Option<AgentHealth>,
    pub native: Option<NativeTotals>,
    pub(super) sites: HashMap<SiteKey, SiteSeries>,
    pub series_evicted: u64,
    /// `summary`/`native` records received.
    pub reports: u64,
    pub first_t_ms: Option<u64>,
    pub last_t_ms: Option<u64>,
    pub last_unix_ms: Option<u64>,
    pub out_of_order: u64,
    pub bye: Option<Bye>,
    pub statuses: VecDeque<StatusEntry>,
    pub status_total: u64,
    /// Distinct `agent.degraded` sentences seen, in order.
    pub degraded_seen: Vec<String>,
    /// Producer times of the summaries in which the gen2 (full) GC count went up: only growth
    /// that survives full GCs is surely not garbage waiting for one.
    pub(super) full_gc_times: VecDeque<u64>,
    pub(super) last_gen2_count: Option<u64>,
    /// Soak series: census, retained, RSS/heap, native totals.
    pub soak: SoakData,
    /// The latest `retention` record.
    pub retention: Option<Box<crate::protocol::Retention>>,
    /// The retention records so far, oldest first (bounded): which path of a type grows.
    pub retention_history: VecDeque<Box<crate::protocol::Retention>>,
    /// The latest `peek` record.
    pub peek: Option<Box<crate::protocol::Peek>>,
    /// Series, stacks and records dropped because the session's memory budget was full.
    pub budget_dropped: u64,
    /// This producer's share of the memory budget: its hello, its latest retention and peek
    /// records (series and stacks carry their own).
    pub(super) hello_charge: Charge,
    pub(super) retention_charge: Charge,
    pub(super) retention_history_charges: VecDeque<Charge>,
    pub(super) peek_charge: Charge,
}

impl Producer {
    pub(super) fn new(key: ProducerKey) -> Self {
        Producer {
            key,
            hello: None,
            hellos: 0,
            connection: Connection::Open,
            stacks: HashMap::new(),
            stacks_dropped: 0,
            gc: None,
            heap: None,
            rss: None,
            health: None,
            native: None,
            sites: HashMap::new(),
            series_evicted: 0,
            reports: 0,
            first_t_ms: None,
            last_t_ms: None,
            last_unix_ms: None,
            out_of_order: 0,
            bye: None,
            statuses: VecDeque::new(),
            status_total: 0,
            degraded_seen: Vec::new(),
            full_gc_times: VecDeque::new(),
            last_gen2_count: None,
            soak: SoakData::default(),
            retention: None,
            retention_history: VecDeque::new(),
            peek: None,
            budget_dropped: 0,
            hello_charge: Charge::default(),
            retention_charge: Charge::default(),
            retention_history_charges: VecDeque::new(),
            peek_charge: Charge::default(),
        }
    }

    /// Charges a new series, or counts it dropped.
    pub(super) fn charge_series(&mut self, budget: &Budget, points: usize, names: &[&str]) -> Option<Charge> {
        let charge = budget.charge(series_cost(points, names));
        if charge.is_none() {
            self.budget_dropped += 1;
        }
        charge
    }

    pub fn sites(&self) -> impl Iterator<Item = &SiteSeries> {
        self.sites.values()
    }

    pub fn site_count(&self) -> usize {
        self.sites.len()
    }

    pub fn stack(&self, id: u64) -> Option<&Arc<Stack>> {
        self.stacks.get(&id)
    }

    /// Frames of a site: captured when first seen, else resolved now.
    pub fn frames_of(&self, s: &SiteSeries) -> Option<Arc<Stack>> {
        s.frames.clone().or_else(|| s.stack_id.and_then(|id| self.stacks.get(&id).cloned()))
    }

    /// Producer times (ms) of the summaries that saw a full (gen2) GC, oldest first.
    pub fn full_gc_times_ms(&self) -> Vec<f64> {
        self.full_gc_times.iter().map(|t| *t as f64).collect()
    }

    /// Full (gen2) GCs seen between these producer times, inclusive.
    pub fn full_gcs_between(&self, start_ms: f64, end_ms: f64) -> u64 {
        self.full_gc_times.iter().filter(|t| (**t as f64) >= start_ms && (**t as f64) <= end_ms).count() as u64
    }

    pub fn interval_ms(&self) -> Option<u64> {
        self.hello.as_ref().and_then(|h| h.interval_ms).map(|n| n.u64()).filter(|v| *v > 0)
    }

    pub fn cmdline(&self) -> Option<&str> {
        self.hello.as_ref().and_then(|h| h.cmdline.as_deref())
    }

    pub fn duration_ms(&self) -> u64 {
        match (self.first_t_ms, self.last_t_ms) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => 0,
        }
    }

    pub(super) fn max_sites_per_record(&self) -> usize {
        self.hello
            .as_ref()
            .and_then(|h| h.config.as_ref())
            .and_then(|c| c.get("max_sites"))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .unwrap_or(DEFAULT_MAX_SITES)
    }

    pub(super) fn record_time(&mut self, t_ms: Option<u64>, unix_ms: Option<u64>) -> Option<u64> {
        let t = t_ms.or_else(|| {
            let start = self.hello.as_ref()?.start_unix_ms?.u64();
            Some(unix_ms?.saturating_sub(start))
        })?;
        if let Some(u) = unix_ms {
            self.last_unix_ms = Some(u);
        }
        Some(t)
    }
}
