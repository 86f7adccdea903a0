//! Collector state: one [`Producer`] per (source, pid), each with its stacks, latest counters
//! and a bounded time series per site.
//!
//! Memory stays bounded on long runs and against hostile producers: series are compacted
//! (older points merged pairwise) past [`MAX_SERIES_POINTS`], sites and stacks per producer are
//! capped, status messages are kept as the most recent few plus a count, at most
//! [`MAX_PRODUCERS`] producers are kept per session, and everything kept is charged to one
//! memory budget for the session ([`crate::budget`]). What a cap drops is counted and reported.

use crate::analysis::Point;
use crate::budget::{Budget, Charge};
use crate::protocol::{
    AgentHealth, Bye, Census, Envelope, GcStats, HeapSizes, Hello, NativeSummary, ProducerKey, Record, Retained, Skip,
    Source, Summary,
};
use crate::soak::data::{RetainedSite, SoakData};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// Points kept per series before the older two thirds are merged pairwise. At a 5 s interval
/// this is 40 minutes at full resolution, then progressively coarser history.
pub const MAX_SERIES_POINTS: usize = 480;
/// Sites tracked per producer; beyond it the smallest absent series are evicted.
pub const MAX_SERIES_PER_PRODUCER: usize = 4000;
/// Distinct stacks kept per producer.
pub const MAX_STACKS_PER_PRODUCER: usize = 200_000;
const MAX_STATUS_KEPT: usize = 50;
const MAX_FULL_GCS_KEPT: usize = 10_000;
const MAX_DEGRADED_KEPT: usize = 20;
const MAX_SKIP_EXAMPLES: usize = 5;
const MAX_NOTES: usize = 100;
/// PROTOCOL.md: a summary lists at most this many sites unless the hello's config says otherwise.
const DEFAULT_MAX_SITES: usize = 1000;
/// Producers (the agent or the shim of one process) per session: a fleet of 64 workers with
/// both on one `listen`. Records of more are dropped, counted and reported (pids are
/// self-declared); the store's memory budget is shared by all of them.
pub const MAX_PRODUCERS: usize = 128;
/// Entries kept of the lists and maps of a producer's latest state that the protocol bounds
/// but a stranger might not (GC generations, recent GCs, GC reasons, hello settings).
const MAX_GENS: usize = 8;
const MAX_RECENT_GCS: usize = 256;
const MAX_GC_REASONS: usize = 64;
const MAX_CONFIG_ENTRIES: usize = 64;
/// Longest `File:line` kept for a site.
const MAX_LOCATION_BYTES: usize = 512;
/// What a producer holds beyond its series, stacks and latest records (which are charged to the
/// budget): its latest counters, the fixed soak series, status messages and `agent.degraded`
/// sentences at their caps. Bounded by this times [`MAX_PRODUCERS`] (about 30 MiB).
pub const PRODUCER_BYTES: usize = std::mem::size_of::<Producer>()
    + 10 * SOAK_SERIES_BYTES
    + (MAX_STATUS_KEPT + MAX_DEGRADED_KEPT) * (crate::untrusted::MAX_TEXT_BYTES + 64)
    + MAX_FULL_GCS_KEPT * 8
    + MAX_RECENT_GCS * 96;
/// A live series at its largest: its points' capacity, then compaction keeps it there.
const SERIES_BYTES: usize = (MAX_SERIES_POINTS.next_power_of_two()) * std::mem::size_of::<SeriesPoint>();
const SOAK_SERIES_BYTES: usize =
    crate::soak::data::SOAK_SERIES_POINTS.next_power_of_two() * std::mem::size_of::<SeriesPoint>();

/// What keeping one more series costs: its points at their largest, its names, a location.
fn series_cost(points: usize, names: &[&str]) -> usize {
    points + 256 + MAX_LOCATION_BYTES + names.iter().map(|n| n.len()).sum::<usize>()
}

fn capped_location(l: Option<String>) -> Option<String> {
    l.filter(|l| !l.is_empty()).map(|mut l| {
        if l.len() > MAX_LOCATION_BYTES {
            let mut end = MAX_LOCATION_BYTES;
            while !l.is_char_boundary(end) {
                end -= 1;
            }
            l.truncate(end);
            l.push('…');
        }
        l
    })
}

/// A resolved call stack, innermost first, with `File:line` per frame where known.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stack {
    pub frames: Vec<String>,
    pub lines: Vec<Option<String>>,
    /// Held by the producer's table and by the series naming it; given back with the last one.
    pub charge: Charge,
}

impl Stack {
    pub fn line(&self, i: usize) -> Option<&str> {
        self.lines.get(i).and_then(|l| l.as_deref())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesPoint {
    pub t_ms: f64,
    pub bytes: f64,
    /// Objects (managed) or allocations (native).
    pub count: f64,
    /// Managed: the site's samples collected so far (cumulative; NaN when the agent did not say).
    pub collected: f64,
}

/// What a site looked like in the latest record that listed it.
#[derive(Debug, Clone, Default)]
pub struct SiteLatest {
    pub bytes: f64,
    pub count: f64,
    pub samples: f64,
    pub age_gcs: Option<f64>,
    pub gens: Vec<u64>,
    /// Managed: samples collected so far (cumulative), when the agent says.
    pub collected: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct SiteSeries {
    /// Managed type; `None` for native sites.
    pub type_name: Option<String>,
    pub site: String,
    pub stack_id: Option<u64>,
    pub frames: Option<Arc<Stack>>,
    /// `File:line` of the call site, when the producer knows it.
    pub location: Option<String>,
    points: Vec<SeriesPoint>,
    pub peak_bytes: f64,
    pub latest: SiteLatest,
    /// Listed in the most recent record of its producer.
    pub present: bool,
    _charge: Charge,
}

impl SiteSeries {
    fn new(type_name: Option<String>, site: String) -> Self {
        SiteSeries {
            type_name,
            site,
            stack_id: None,
            frames: None,
            location: None,
            points: Vec::new(),
            peak_bytes: 0.0,
            latest: SiteLatest::default(),
            present: false,
            _charge: Charge::default(),
        }
    }

    pub fn points(&self) -> &[SeriesPoint] {
        &self.points
    }

    pub fn analysis_points(&self) -> Vec<Point> {
        self.points.iter().map(|p| Point { t_ms: p.t_ms, bytes: p.bytes }).collect()
    }

    /// `Type @ site` for managed sites, the site alone for native ones.
    pub fn label(&self) -> String {
        site_label(self.type_name.as_deref(), &self.site, self.location.as_deref())
    }

    fn push(&mut self, p: SeriesPoint) {
        if let Some(last) = self.points.last() {
            if p.t_ms <= last.t_ms {
                return;
            }
        }
        self.peak_bytes = self.peak_bytes.max(p.bytes);
        self.points.push(p);
        if self.points.len() >= MAX_SERIES_POINTS {
            compact(&mut self.points);
        }
    }
}

/// `Type @ Ns.Class.Method (File.cs:42)`; native sites have no type and carry their module.
pub fn site_label(type_name: Option<&str>, site: &str, location: Option<&str>) -> String {
    let mut label = match type_name {
        Some(t) => format!("{t} @ {site}"),
        None => site.to_string(),
    };
    if let Some(loc) = location {
        label.push_str(&format!(" ({loc})"));
    }
    label
}

/// Merges the oldest two thirds pairwise (averaging), keeping recent points at full resolution.
pub(crate) fn compact(points: &mut Vec<SeriesPoint>) {
    let old = points.len() * 2 / 3;
    let old = old - old % 2;
    let merged: Vec<SeriesPoint> = points[..old]
        .chunks(2)
        .map(|pair| {
            let n = pair.len() as f64;
            SeriesPoint {
                t_ms: pair.iter().map(|p| p.t_ms).sum::<f64>() / n,
                bytes: pair.iter().map(|p| p.bytes).sum::<f64>() / n,
                count: pair.iter().map(|p| p.count).sum::<f64>() / n,
                collected: pair.iter().map(|p| p.collected).sum::<f64>() / n,
            }
        })
        .collect();
    points.splice(..old, merged);
}

#[derive(Debug, Clone, Default)]
pub struct NativeTotals {
    pub live_bytes: Option<u64>,
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

type SiteKey = (String, String);

/// One site as listed in one record.
struct Observation {
    key: SiteKey,
    type_name: Option<String>,
    stack: Option<u64>,
    location: Option<String>,
    latest: SiteLatest,
}

/// Retention records kept per producer (each asked for at most every half minute or so).
const RETENTION_HISTORY: usize = 64;

#[derive(Debug, Clone)]
pub struct Producer {
    pub key: ProducerKey,
    pub hello: Option<Hello>,
    pub hellos: u32,
    pub connection: Connection,
    stacks: HashMap<u64, Arc<Stack>>,
    pub stacks_dropped: u64,
    pub gc: Option<GcStats>,
    pub heap: Option<HeapSizes>,
    pub rss: Option<u64>,
    pub health: Option<AgentHealth>,
    pub native: Option<NativeTotals>,
    sites: HashMap<SiteKey, SiteSeries>,
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
    full_gc_times: VecDeque<u64>,
    last_gen2_count: Option<u64>,
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
    hello_charge: Charge,
    retention_charge: Charge,
    retention_history_charges: VecDeque<Charge>,
    peek_charge: Charge,
}

impl Producer {
    fn new(key: ProducerKey) -> Self {
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
    fn charge_series(&mut self, budget: &Budget, points: usize, names: &[&str]) -> Option<Charge> {
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

    fn max_sites_per_record(&self) -> usize {
        self.hello
            .as_ref()
            .and_then(|h| h.config.as_ref())
            .and_then(|c| c.get("max_sites"))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .unwrap_or(DEFAULT_MAX_SITES)
    }

    fn record_time(&mut self, t_ms: Option<u64>, unix_ms: Option<u64>) -> Option<u64> {
        let t = t_ms.or_else(|| {
            let start = self.hello.as_ref()?.start_unix_ms?.u64();
            Some(unix_ms?.saturating_sub(start))
        })?;
        if let Some(u) = unix_ms {
            self.last_unix_ms = Some(u);
        }
        Some(t)
    }

    /// Adds one observation per listed site (duplicates summed), and a zero for sites that were
    /// listed before but not now, unless the record is full (absent may then mean "ranked out").
    fn add_observations(&mut self, t: Option<u64>, observed: Vec<Observation>, budget: &Budget) {
        let Some(t) = t else { return };
        if let Some(last) = self.last_t_ms {
            if t <= last {
                self.out_of_order += 1;
                return;
            }
        }
        self.first_t_ms.get_or_insert(t);
        self.last_t_ms = Some(t);
        let record_full = observed.len() >= self.max_sites_per_record();
        let mut merged: HashMap<SiteKey, Observation> = HashMap::new();
        for obs in observed {
            match merged.get_mut(&obs.key) {
                Some(acc) => {
                    acc.latest.bytes += obs.latest.bytes;
                    acc.latest.count += obs.latest.count;
                    acc.latest.samples += obs.latest.samples;
                    acc.latest.collected = acc.latest.collected.zip(obs.latest.collected).map(|(a, b)| a + b);
                }
                None => {
                    merged.insert(obs.key.clone(), obs);
                }
            }
        }
        let t = t as f64;
        for series in self.sites.values_mut() {
            series.present = false;
        }
        for (key, obs) in merged {
            if !self.sites.contains_key(&key) {
                if !self.make_room() {
                    continue;
                }
                let Some(charge) = self.charge_series(budget, SERIES_BYTES, &[&key.0, &key.1]) else {
                    continue;
                };
                let mut series = SiteSeries::new(obs.type_name.clone(), key.1.clone());
                series._charge = charge;
                self.sites.insert(key.clone(), series);
            }
            let Observation { stack, location, latest, .. } = obs;
            let frames = stack.and_then(|id| self.stacks.get(&id).cloned());
            let Some(series) = self.sites.get_mut(&key) else {
                continue;
            };
            if stack.is_some() {
                series.stack_id = stack;
            }
            if frames.is_some() {
                series.frames = frames;
            }
            if location.is_some() {
                series.location = location;
            }
            let collected = latest.collected.unwrap_or(f64::NAN);
            series.push(SeriesPoint { t_ms: t, bytes: latest.bytes, count: latest.count, collected });
            series.latest = latest;
            series.present = true;
        }
        if !record_full {
            for series in self.sites.values_mut().filter(|s| !s.present) {
                series.latest = SiteLatest::default();
                series.push(SeriesPoint { t_ms: t, bytes: 0.0, count: 0.0, collected: f64::NAN });
            }
        }
    }

    /// Evicts the absent series with the smallest peak; false if every series is present.
    fn make_room(&mut self) -> bool {
        if self.sites.len() < MAX_SERIES_PER_PRODUCER {
            return true;
        }
        let victim = self
            .sites
            .iter()
            .filter(|(_, s)| !s.present)
            .min_by(|a, b| a.1.peak_bytes.total_cmp(&b.1.peak_bytes))
            .map(|(k, _)| k.clone());
        match victim {
            Some(k) => {
                self.sites.remove(&k);
                self.series_evicted += 1;
                true
            }
            None => {
                self.series_evicted += 1;
                false
            }
        }
    }

    fn apply_summary(&mut self, s: Summary, budget: &Budget) {
        self.reports += 1;
        let t = self.record_time(s.t_ms.map(|n| n.u64()), s.unix_ms.map(|n| n.u64()));
        let gen2 = s.gc.as_ref().and_then(|g| g.count.get(2)).map(|n| n.u64());
        if let (Some(now), Some(t)) = (gen2, t) {
            if self.last_gen2_count.is_some_and(|before| now > before) {
                if self.full_gc_times.len() >= MAX_FULL_GCS_KEPT {
                    self.full_gc_times.pop_front();
                }
                self.full_gc_times.push_back(t);
            }
            self.last_gen2_count = Some(now);
        }
        if let Some(t) = t {
            let t = t as f64;
            if let Some(rss) = s.rss {
                self.soak.rss.push(t, rss.0, 0.0);
            }
            if let Some(h) = &s.heap {
                self.soak.heap.push(t, h.total(), 0.0);
                for (series, v) in self.soak.gens.iter_mut().zip([h.gen0, h.gen1, h.gen2, h.loh, h.poh]) {
                    series.push(t, v.map(|n| n.0).unwrap_or(0.0), 0.0);
                }
            }
        }
        if let Some(induced) = s.gc.as_ref().and_then(|g| g.induced) {
            self.soak.induced_gcs = induced.u64();
        }
        if let Some(mut gc) = s.gc {
            gc.count.truncate(MAX_GENS);
            gc.recent.truncate(MAX_RECENT_GCS);
            for e in &mut gc.recent {
                e.after.truncate(MAX_GENS);
            }
            if gc.reasons.len() > MAX_GC_REASONS {
                gc.reasons = std::mem::take(&mut gc.reasons).into_iter().take(MAX_GC_REASONS).collect();
            }
            self.gc = Some(gc);
        }
        if s.heap.is_some() {
            self.heap = s.heap;
        }
        if let Some(rss) = s.rss {
            self.rss = Some(rss.u64());
        }
        if let Some(health) = s.agent {
            if let Some(d) = health.degraded.as_ref().filter(|d| !d.is_empty()) {
                if !self.degraded_seen.contains(d) && self.degraded_seen.len() < MAX_DEGRADED_KEPT {
                    self.degraded_seen.push(d.clone());
                }
            }
            self.health = Some(health);
        }
        let observed = s
            .sites
            .into_iter()
            .map(|site| {
                let latest = SiteLatest {
                    bytes: site.bytes.map(|n| n.0).unwrap_or(0.0),
                    count: site.objects.map(|n| n.0).unwrap_or(0.0),
                    samples: site.samples.map(|n| n.0).unwrap_or(0.0),
                    age_gcs: site.age_gcs.map(|n| n.0),
                    gens: site.gens.iter().take(MAX_GENS).map(|n| n.u64()).collect(),
                    collected: site.collected.map(|n| n.0),
                };
                Observation {
                    key: (site.type_name.clone(), site.site),
                    type_name: Some(site.type_name),
                    stack: site.stack,
                    location: capped_location(site.location),
                    latest,
                }
            })
            .collect();
        self.add_observations(t, observed, budget);
    }

    /// A `retained` record: one point per (type, site) listed, and a zero for sites listed
    /// before but not now (unless the record is full, when absent may mean "ranked out").
    fn apply_retained(&mut self, r: Retained, budget: &Budget) {
        let Some(t) = self.record_time(r.t_ms.map(|n| n.u64()), r.unix_ms.map(|n| n.u64())) else {
            return;
        };
        let t = t as f64;
        if self.soak.live_retained_time().is_some_and(|last| t <= last) {
            self.out_of_order += 1;
            return;
        }
        self.soak.retained_records += 1;
        self.soak.retained_times.push(t, 0.0, 0.0);
        let record_full = r.sites.len() >= self.max_sites_per_record();
        let mut merged: HashMap<SiteKey, (crate::protocol::ManagedSite, f64, f64, f64)> = HashMap::new();
        for site in r.sites {
            let key = (site.type_name.clone(), site.site.clone());
            let bytes = site.bytes.map(|n| n.0).unwrap_or(0.0);
            let count = site.objects.map(|n| n.0).unwrap_or(0.0);
            let samples = site.samples.map(|n| n.0).unwrap_or(0.0);
            match merged.get_mut(&key) {
                Some(acc) => {
                    acc.1 += bytes;
                    acc.2 += count;
                    acc.3 += samples;
                }
                None => {
                    merged.insert(key, (site, bytes, count, samples));
                }
            }
        }
        for s in self.soak.retained.values_mut() {
            s.present = false;
        }
        for (key, (site, bytes, count, samples)) in merged {
            if !self.soak.retained.contains_key(&key) {
                if !self.soak.room_for_site() {
                    continue;
                }
                let Some(charge) = self.charge_series(budget, SOAK_SERIES_BYTES, &[&key.0, &key.1, &key.0, &key.1])
                else {
                    continue;
                };
                self.soak.retained.insert(
                    key.clone(),
                    RetainedSite {
                        type_name: site.type_name.clone(),
                        site: site.site.clone(),
                        location: None,
                        stack_id: None,
                        frames: None,
                        series: Default::default(),
                        samples: 0.0,
                        present: false,
                        charge,
                    },
                );
            }
            let frames = site.stack.and_then(|id| self.stacks.get(&id).cloned());
            let Some(entry) = self.soak.retained.get_mut(&key) else {
                continue;
            };
            if site.stack.is_some() {
                entry.stack_id = site.stack;
            }
            if frames.is_some() {
                entry.frames = frames;
            }
            if let Some(loc) = capped_location(site.location) {
                entry.location = Some(loc);
            }
            entry.series.push(t, bytes, count);
            entry.samples = samples;
            entry.present = true;
        }
        if !record_full {
            for s in self.soak.retained.values_mut().filter(|s| !s.present) {
                s.samples = 0.0;
                s.series.push(t, 0.0, 0.0);
            }
        }
        self.soak.set_retained_time(t);
    }

    /// A `census` record: exact bytes and objects per type; types listed before and absent now
    /// are at zero when the census is complete (nothing was summed into `other`).
    fn apply_census(&mut self, c: Census, budget: &Budget) {
        let Some(t) = self.record_time(c.t_ms.map(|n| n.u64()), c.unix_ms.map(|n| n.u64())) else {
            return;
        };
        let t = t as f64;
        if !self.soak.live.push(t, c.bytes.map(|n| n.0).unwrap_or(0.0), c.objects.map(|n| n.0).unwrap_or(0.0)) {
            self.out_of_order += 1;
            return;
        }
        if self.soak.census_records == 0 {
            self.soak.censuses_complete = true;
        }
        self.soak.census_records += 1;
        if let Some(p) = c.pause_ms {
            self.soak.census_pause_ms_total += p.0;
            self.soak.census_pause_ms_max = self.soak.census_pause_ms_max.max(p.0);
        }
        self.soak.census_unreadable += c.unreadable.map(|n| n.u64()).unwrap_or(0);
        let complete = c.other.as_ref().and_then(|o| o.types).map(|n| n.u64() == 0).unwrap_or(true);
        for s in self.soak.types.values_mut() {
            s.present = false;
        }
        let mut merged: HashMap<String, (f64, f64)> = HashMap::new();
        for ty in c.types {
            let acc = merged.entry(ty.type_name).or_insert((0.0, 0.0));
            acc.0 += ty.bytes.map(|n| n.0).unwrap_or(0.0);
            acc.1 += ty.count.map(|n| n.0).unwrap_or(0.0);
        }
        for (name, (bytes, count)) in merged {
            if !self.soak.types.contains_key(&name) {
                if !self.soak.room_for_type() {
                    continue;
                }
                let Some(charge) = self.charge_series(budget, SOAK_SERIES_BYTES, &[&name, &name]) else {
                    continue;
                };
                self.soak.types.insert(name.clone(), crate::soak::data::TypeSeries { charge, ..Default::default() });
            }
            let Some(entry) = self.soak.types.get_mut(&name) else {
                continue;
            };
            entry.series.push(t, bytes, count);
            entry.present = true;
        }
        if !complete {
            self.soak.censuses_complete = false;
        }
        if complete {
            for s in self.soak.types.values_mut().filter(|s| !s.present) {
                s.series.push(t, 0.0, 0.0);
            }
        }
    }

    fn apply_native(&mut self, n: NativeSummary, budget: &Budget) {
        self.reports += 1;
        let t = self.record_time(n.t_ms.map(|v| v.u64()), n.unix_ms.map(|v| v.u64()));
        if let Some(rss) = n.rss {
            self.rss = Some(rss.u64());
        }
        if let (Some(t), Some(live)) = (t, n.live_bytes) {
            let t = t as f64;
            self.soak.native_live.push(t, live.0, n.live_allocs.map(|v| v.0).unwrap_or(0.0));
            if let Some(rss) = n.rss {
                self.soak.rss.push(t, rss.0, 0.0);
            }
        }
        self.native = Some(NativeTotals {
            live_bytes: n.live_bytes.map(|v| v.u64()),
            live_allocs: n.live_allocs.map(|v| v.u64()),
            total_allocs: n.total_allocs.map(|v| v.u64()),
            total_frees: n.total_frees.map(|v| v.u64()),
            mmap_bytes: n.mmap_bytes.map(|v| v.u64()),
            sampling_mean_bytes: n.sampling_mean_bytes.map(|v| v.u64()),
            dropped: n.dropped.map(|v| v.u64()),
        });
        let observed = n
            .sites
            .into_iter()
            .map(|site| {
                let latest = SiteLatest {
                    bytes: site.bytes.map(|v| v.0).unwrap_or(0.0),
                    count: site.allocs.map(|v| v.0).unwrap_or(0.0),
                    samples: site.samples.map(|v| v.0).unwrap_or(0.0),
                    age_gcs: None,
                    gens: Vec::new(),
                    collected: None,
                };
                Observation {
                    key: (String::new(), site.site),
                    type_name: None,
                    stack: site.stack,
                    location: None,
                    latest,
                }
            })
            .collect();
        self.add_observations(t, observed, budget);
    }
}

/// Counters over every line read, so the report can say what was skipped and why.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct InputStats {
    pub lines: u64,
    pub records: u64,
    pub empty: u64,
    pub not_json: u64,
    pub malformed: u64,
    pub unknown_version: u64,
    pub unknown_type: u64,
    pub unknown_source: u64,
    /// Longer than the protocol's 4 MiB limit: discarded.
    pub oversize: u64,
    /// Incomplete last line of a connection that closed, or of a file at its end.
    pub truncated: u64,
    /// The first few skipped lines, described.
    pub examples: Vec<String>,
}

impl InputStats {
    pub fn skipped(&self) -> u64 {
        self.not_json
            + self.malformed
            + self.unknown_version
            + self.unknown_type
            + self.unknown_source
            + self.oversize
            + self.truncated
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Note {
    pub level: String,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Store {
    producers: BTreeMap<ProducerKey, Producer>,
    pub input: InputStats,
    /// The collector's own observations (disconnects, truncations), most recent last.
    pub notes: VecDeque<Note>,
    /// Bumped whenever series change, so views recompute analysis only when needed.
    pub data_version: u64,
    /// The session's memory budget for what producers send.
    pub budget: Budget,
    /// Records of producers beyond [`MAX_PRODUCERS`], dropped.
    pub refused: Refused,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Refused {
    /// Records dropped.
    pub records: u64,
    /// Producers refused (each counted once while there are few; then records tell).
    pub pids: Vec<u32>,
    /// Why the first one was refused.
    pub reason: Option<String>,
}

/// An agent and a shim of the same process, side by side.
#[derive(Debug, Clone, Copy)]
pub struct ProcessView<'a> {
    pub pid: u32,
    pub agent: Option<&'a Producer>,
    pub shim: Option<&'a Producer>,
}

impl ProcessView<'_> {
    pub fn cmdline(&self) -> Option<&str> {
        self.agent.and_then(|p| p.cmdline()).or_else(|| self.shim.and_then(|p| p.cmdline()))
    }

    pub fn rss(&self) -> Option<u64> {
        let agent = self.agent.and_then(|p| p.rss.map(|r| (p.last_t_ms, r)));
        let shim = self.shim.and_then(|p| p.rss.map(|r| (p.last_t_ms, r)));
        match (agent, shim) {
            (Some(a), Some(s)) => Some(if s.0 > a.0 { s.1 } else { a.1 }),
            (a, s) => a.or(s).map(|x| x.1),
        }
    }
}

impl Store {
    pub fn new() -> Self {
        Store::default()
    }

    /// A store with a memory budget other than the default (tests, small machines).
    pub fn with_budget(limit: usize) -> Self {
        Store { budget: Budget::new(limit), ..Store::default() }
    }

    /// Parses and applies one line. Returns the producer it came from, if it was a record.
    pub fn ingest_line(&mut self, line: &[u8]) -> Option<ProducerKey> {
        self.input.lines += 1;
        match crate::protocol::parse_line(line) {
            Ok(env) => {
                self.input.records += 1;
                let key = env.key;
                self.apply(env);
                Some(key)
            }
            Err(skip) => {
                self.count_skip(&skip);
                None
            }
        }
    }

    fn count_skip(&mut self, skip: &Skip) {
        let i = &mut self.input;
        match skip {
            Skip::Empty => {
                i.empty += 1;
                return;
            }
            // Ours (a `capture` line in a recording): nothing the producers got wrong.
            Skip::Collector => return,
            Skip::NotJson(_) => i.not_json += 1,
            Skip::Malformed(_) => i.malformed += 1,
            Skip::UnknownVersion(_) => i.unknown_version += 1,
            Skip::UnknownType(_) => i.unknown_type += 1,
            Skip::UnknownSource(_) => i.unknown_source += 1,
        }
        if i.examples.len() < MAX_SKIP_EXAMPLES {
            i.examples.push(format!("line {}: {skip}", i.lines));
        }
    }

    pub fn count_oversize(&mut self) {
        self.input.lines += 1;
        self.input.oversize += 1;
        if self.input.examples.len() < MAX_SKIP_EXAMPLES {
            self.input.examples.push(format!("line {}: longer than 4 MiB, discarded", self.input.lines));
        }
    }

    pub fn count_truncated(&mut self, bytes: usize, whose: &str) {
        self.input.truncated += 1;
        self.note("warn", format!("{whose} ended in the middle of a line ({bytes} bytes dropped)"));
    }

    pub fn note(&mut self, level: &str, message: impl Into<String>) {
        if self.notes.len() >= MAX_NOTES {
            self.notes.pop_front();
        }
        self.notes.push_back(Note { level: level.to_string(), message: message.into() });
    }

    pub fn apply(&mut self, env: Envelope) {
        let Envelope { key, record, approx_bytes } = env;
        if !self.producers.contains_key(&key) {
            // A producer's own state is bounded (PRODUCER_BYTES); their number is capped here,
            // outside the budget, so a flood of data never locks out the session's processes.
            if self.producers.len() >= MAX_PRODUCERS {
                let r = &mut self.refused;
                r.records += 1;
                if r.pids.len() < 5 && !r.pids.contains(&key.pid) {
                    r.pids.push(key.pid);
                }
                r.reason.get_or_insert_with(|| format!("at most {MAX_PRODUCERS} producers are kept per session"));
                return;
            }
            self.producers.insert(key, Producer::new(key));
        }
        let budget = self.budget.clone();
        let Some(producer) = self.producers.get_mut(&key) else {
            return;
        };
        match record {
            Record::Hello(mut h) => {
                // Only a few settings are ever read; a stranger's hello may carry thousands.
                match h.config.as_mut() {
                    Some(serde_json::Value::Object(map)) if map.len() > MAX_CONFIG_ENTRIES => {
                        *map = std::mem::take(map).into_iter().take(MAX_CONFIG_ENTRIES).collect();
                    }
                    Some(serde_json::Value::Object(_)) | None => {}
                    Some(_) => h.config = None,
                }
                // A new connection or file segment: stack ids are re-sent and may be reused.
                producer.stacks.clear();
                producer.hellos += 1;
                producer.connection = Connection::Open;
                producer.bye = None;
                // Soak mode said in the hello's settings (agents since hello carried them), not
                // only in a status line.
                let period = h.config.as_ref().and_then(|c| c.get("induce_full_gc_ms")).and_then(|v| v.as_u64());
                if let (Some(ms), None) = (period, &producer.soak.announced) {
                    producer.soak.announced = Some(format!("soak mode: inducing a full blocking GC every {ms} ms"));
                }
                match budget.charge(approx_bytes) {
                    Some(c) => {
                        producer.hello_charge = c;
                        producer.hello = Some(*h);
                    }
                    None => producer.budget_dropped += 1,
                }
            }
            Record::Stack(s) => {
                if producer.stacks.len() < MAX_STACKS_PER_PRODUCER || producer.stacks.contains_key(&s.id) {
                    match budget.charge(approx_bytes) {
                        Some(charge) => {
                            producer.stacks.insert(s.id, Arc::new(Stack { frames: s.frames, lines: s.lines, charge }));
                        }
                        None => {
                            producer.stacks_dropped += 1;
                            producer.budget_dropped += 1;
                        }
                    }
                } else {
                    producer.stacks_dropped += 1;
                }
            }
            Record::Summary(s) => {
                producer.apply_summary(*s, &budget);
                self.data_version += 1;
            }
            Record::Native(n) => {
                producer.apply_native(*n, &budget);
                self.data_version += 1;
            }
            Record::Retained(r) => {
                producer.apply_retained(*r, &budget);
                self.data_version += 1;
            }
            Record::Census(c) => {
                producer.apply_census(*c, &budget);
                self.data_version += 1;
            }
            Record::Retention(r) => match budget.charge(approx_bytes) {
                Some(c) => {
                    // The history (which path grows) holds a copy, charged on its own.
                    if producer.retention_history.len() >= RETENTION_HISTORY {
                        producer.retention_history.pop_front();
                        producer.retention_history_charges.pop_front();
                    }
                    match budget.charge(approx_bytes) {
                        Some(kept) => {
                            producer.retention_history.push_back(r.clone());
                            producer.retention_history_charges.push_back(kept);
                        }
                        None => producer.budget_dropped += 1,
                    }
                    producer.retention_charge = c;
                    producer.retention = Some(r);
                    self.data_version += 1;
                }
                None => producer.budget_dropped += 1,
            },
            Record::Peek(p) => match budget.charge(approx_bytes) {
                Some(c) => {
                    producer.peek_charge = c;
                    producer.peek = Some(p);
                    self.data_version += 1;
                }
                None => producer.budget_dropped += 1,
            },
            Record::Status(s) => {
                producer.soak.note_status(&s.message);
                producer.status_total += 1;
                if producer.statuses.len() >= MAX_STATUS_KEPT {
                    producer.statuses.pop_front();
                }
                producer.statuses.push_back(StatusEntry {
                    level: s.level.unwrap_or_else(|| "info".to_string()),
                    message: s.message,
                    t_ms: s.t_ms.map(|n| n.u64()).or(producer.last_t_ms),
                });
            }
            Record::Bye(b) => {
                producer.connection = Connection::SaidBye;
                producer.bye = Some(b);
            }
        }
    }

    /// The connection that carried this producer closed. Without a `bye` first, the producer
    /// was lost (crash, SIGKILL, or the process ended before the agent could say goodbye).
    pub fn producer_disconnected(&mut self, key: ProducerKey) {
        let mut lost = false;
        if let Some(p) = self.producers.get_mut(&key) {
            if p.connection == Connection::Open {
                p.connection = Connection::Lost;
                lost = true;
            }
        }
        if lost {
            self.note("warn", format!("{} of pid {} disconnected without saying bye", key.source.as_str(), key.pid));
        }
    }

    pub fn producers(&self) -> impl Iterator<Item = &Producer> {
        self.producers.values()
    }

    pub fn producer(&self, key: &ProducerKey) -> Option<&Producer> {
        self.producers.get(key)
    }

    pub fn has_source(&self, source: Source) -> bool {
        self.producers.keys().any(|k| k.source == source)
    }

    /// Producers grouped by process, in pid order.
    pub fn processes(&self) -> Vec<ProcessView<'_>> {
        let mut by_pid: BTreeMap<u32, ProcessView<'_>> = BTreeMap::new();
        for p in self.producers.values() {
            let view = by_pid.entry(p.key.pid).or_insert(ProcessView { pid: p.key.pid, agent: None, shim: None });
            match p.key.source {
                Source::Agent => view.agent = Some(p),
                Source::Shim => view.shim = Some(p),
            }
        }
        by_pid.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(pid: u32, t: u64, sites: &[(&str, &str, u64)]) -> String {
        let sites: Vec<String> = sites
            .iter()
            .map(|(ty, site, bytes)| {
                format!(
                    r#"{{"type_name":"{ty}","site":"{site}","stack":1,"samples":1,"objects":{},"bytes":{bytes}}}"#,
                    bytes / 100
                )
            })
            .collect();
        format!(
            r#"{{"v":1,"type":"summary","source":"agent","pid":{pid},"t_ms":{t},"rss":1000,"heap":{{"gen2":5}},"sites":[{}]}}"#,
            sites.join(",")
        )
    }

    #[test]
    fn summaries_build_series_and_absent_sites_drop_to_zero() {
        let mut store = Store::new();
        store.ingest_line(br#"{"v":1,"type":"hello","source":"agent","pid":1,"interval_ms":1000}"#);
        store.ingest_line(br#"{"v":1,"type":"stack","source":"agent","pid":1,"id":1,"frames":["A.B.C","A.B.Main"]}"#);
        store.ingest_line(summary(1, 1000, &[("T", "S", 100), ("U", "V", 50)]).as_bytes());
        store.ingest_line(summary(1, 2000, &[("T", "S", 200), ("T", "S", 5)]).as_bytes());
        let p = store.producer(&ProducerKey { pid: 1, source: Source::Agent }).unwrap();
        let mut sites: Vec<&SiteSeries> = p.sites().collect();
        sites.sort_by(|a, b| a.site.cmp(&b.site));
        assert_eq!(
            sites[0].points().iter().map(|p| p.bytes).collect::<Vec<_>>(),
            [100.0, 205.0],
            "duplicates are summed"
        );
        assert_eq!(sites[1].points().iter().map(|p| p.bytes).collect::<Vec<_>>(), [50.0, 0.0], "absent → zero");
        assert_eq!(sites[0].frames.as_ref().unwrap().frames[0], "A.B.C");
        assert_eq!(p.rss, Some(1000));
        assert_eq!(store.data_version, 2);
    }

    #[test]
    fn full_gcs_are_counted_when_the_gen2_count_rises() {
        let mut store = Store::new();
        for (t, gen2) in [(1000, 0), (2000, 0), (3000, 1), (4000, 1), (5000, 3), (6000, 3)] {
            store.ingest_line(
                format!(
                    r#"{{"v":1,"type":"summary","source":"agent","pid":1,"t_ms":{t},"gc":{{"count":[9,9,{gen2}]}}}}"#
                )
                .as_bytes(),
            );
        }
        let p = store.producer(&ProducerKey { pid: 1, source: Source::Agent }).unwrap();
        assert_eq!(p.full_gcs_between(0.0, 10_000.0), 2, "two summaries saw the count go up");
        assert_eq!(p.full_gcs_between(3500.0, 10_000.0), 1);
    }

    #[test]
    fn out_of_order_and_duplicate_times_are_ignored_for_series() {
        let mut store = Store::new();
        store.ingest_line(summary(1, 2000, &[("T", "S", 100)]).as_bytes());
        store.ingest_line(summary(1, 2000, &[("T", "S", 999)]).as_bytes());
        store.ingest_line(summary(1, 1000, &[("T", "S", 999)]).as_bytes());
        let p = store.producer(&ProducerKey { pid: 1, source: Source::Agent }).unwrap();
        assert_eq!(p.out_of_order, 2);
        assert_eq!(p.sites().next().unwrap().points().len(), 1);
    }

    #[test]
    fn series_stay_bounded_and_keep_their_shape() {
        let mut s = SiteSeries::new(None, "x".into());
        for i in 0..10_000u64 {
            s.push(SeriesPoint { t_ms: i as f64 * 1000.0, bytes: i as f64, count: 0.0, collected: f64::NAN });
        }
        assert!(s.points().len() < MAX_SERIES_POINTS);
        assert!(s.points().windows(2).all(|w| w[0].t_ms < w[1].t_ms), "time stays sorted");
        let last = s.points().last().unwrap();
        assert_eq!(last.bytes, 9999.0, "the newest point is kept exactly");
        // Averaging pairs of a line keeps it a line: slope preserved.
        let g = crate::analysis::theil_sen(&s.analysis_points(), None).unwrap();
        assert!((g.slope - 0.001).abs() < 1e-9);
        assert_eq!(s.peak_bytes, 9999.0);
    }

    #[test]
    fn site_count_per_producer_is_capped() {
        let mut store = Store::new();
        for batch in 0..(MAX_SERIES_PER_PRODUCER / 500 + 2) {
            let sites: Vec<(String, String, u64)> =
                (0..500).map(|i| ("T".to_string(), format!("site{batch}_{i}"), 1000)).collect();
            let refs: Vec<(&str, &str, u64)> = sites.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), *c)).collect();
            store.ingest_line(summary(1, 1000 * (batch as u64 + 1), &refs).as_bytes());
        }
        let p = store.producer(&ProducerKey { pid: 1, source: Source::Agent }).unwrap();
        assert!(p.site_count() <= MAX_SERIES_PER_PRODUCER);
        assert!(p.series_evicted > 0);
    }

    #[test]
    fn skipped_lines_are_counted_with_examples_and_bye_and_disconnect_tracked() {
        let mut store = Store::new();
        store.ingest_line(b"not json");
        store.ingest_line(b"");
        store.ingest_line(br#"{"v":9,"type":"hello","source":"agent","pid":1}"#);
        store.ingest_line(br#"{"v":1,"type":"hello","source":"agent","pid":1}"#);
        store.ingest_line(br#"{"v":1,"type":"hello","source":"shim","pid":2}"#);
        store.ingest_line(br#"{"v":1,"type":"bye","source":"agent","pid":1,"reason":"runtime shutdown"}"#);
        store.producer_disconnected(ProducerKey { pid: 1, source: Source::Agent });
        store.producer_disconnected(ProducerKey { pid: 2, source: Source::Shim });
        assert_eq!(store.input.lines, 6);
        assert_eq!(store.input.not_json, 1);
        assert_eq!(store.input.empty, 1);
        assert_eq!(store.input.unknown_version, 1);
        assert_eq!(store.input.examples.len(), 2);
        let agent = store.producer(&ProducerKey { pid: 1, source: Source::Agent }).unwrap();
        assert_eq!(agent.connection, Connection::SaidBye);
        let shim = store.producer(&ProducerKey { pid: 2, source: Source::Shim }).unwrap();
        assert_eq!(shim.connection, Connection::Lost);
        assert_eq!(store.notes.len(), 1);
        assert_eq!(store.processes().len(), 2);
    }

    #[test]
    fn producers_beyond_the_cap_are_dropped_counted_and_said() {
        let mut store = Store::new();
        for pid in 1..=1000u32 {
            store.ingest_line(
                format!(r#"{{"v":1,"type":"hello","source":"agent","pid":{pid},"cmdline":"w"}}"#).as_bytes(),
            );
            store.ingest_line(summary(pid, 1000, &[("T", "S", 100)]).as_bytes());
        }
        assert_eq!(store.producers().count(), MAX_PRODUCERS);
        assert_eq!(store.refused.records, 2 * (1000 - MAX_PRODUCERS as u64));
        assert_eq!(store.refused.pids.len(), 5);
        let said = crate::report::bounds_messages(&store).join("\n");
        assert!(said.contains("at most 128 producers"), "{said}");
    }

    #[test]
    fn the_memory_budget_caps_series_and_stacks_and_gives_back_what_is_evicted() {
        let limit = 4 << 20;
        let mut store = Store::with_budget(limit);
        let big_frame = "F".repeat(3000);
        for round in 0..200u64 {
            let frames: Vec<String> = (0..100).map(|_| format!("\"{big_frame}\"")).collect();
            store.ingest_line(
                format!(
                    r#"{{"v":1,"type":"stack","source":"agent","pid":1,"id":{round},"frames":[{}]}}"#,
                    frames.join(",")
                )
                .as_bytes(),
            );
            let sites: Vec<(String, String, u64)> =
                (0..50).map(|i| (format!("T{round}"), format!("S{i}"), 100)).collect();
            let sites: Vec<(&str, &str, u64)> = sites.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), *c)).collect();
            store.ingest_line(summary(1, 1000 + round, &sites).as_bytes());
            assert!(store.budget.held() <= limit);
        }
        let key = ProducerKey { pid: 1, source: Source::Agent };
        let p = store.producer(&key).unwrap();
        assert!(p.budget_dropped > 0, "the budget ran out");
        assert!(p.site_count() > 0);
        let said = crate::report::bounds_messages(&store).join("\n");
        assert!(said.contains("memory budget"), "{said}");
        // A new connection's hello drops the stack table: its bytes come back unless a series
        // still names the stack.
        let before = store.budget.held();
        store.ingest_line(br#"{"v":1,"type":"hello","source":"agent","pid":1}"#);
        assert!(store.budget.held() < before);
        drop(store);
    }

    #[test]
    fn long_and_hostile_names_are_capped_and_escaped_before_they_are_kept() {
        let mut store = Store::new();
        let long = "N".repeat(100_000);
        store.ingest_line(summary(1, 1000, &[(&long, "\\u001b]0;pwned\\u0007", 100)]).as_bytes());
        let key = ProducerKey { pid: 1, source: Source::Agent };
        let site = store.producer(&key).unwrap().sites().next().unwrap();
        assert!(site.type_name.as_ref().unwrap().len() <= crate::untrusted::MAX_TEXT_BYTES + 4);
        assert_eq!(site.site, "\\x1b]0;pwned\\x07");
    }
}
