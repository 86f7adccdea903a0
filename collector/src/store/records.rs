//! Applying records to a producer: each `summary`, `retained`, `census` and `native` record
//! updates the producer's site series and soak series, within the caps and the memory budget
//! (a full producer makes room by evicting its smallest absent series).

use super::caps::{
    MAX_DEGRADED_KEPT, MAX_FULL_GCS_KEPT, MAX_GC_REASONS, MAX_GENS, MAX_RECENT_GCS, MAX_SERIES_PER_PRODUCER,
    capped_location,
};
use super::producer::{NativeTotals, Observation, Producer, SiteKey};
use super::series::{SERIES_BYTES, SeriesPoint};
use super::series::{SiteLatest, SiteSeries};
use super::soak_series::RetainedSite;
use super::soak_series::SOAK_SERIES_BYTES;
use crate::budget::Budget;
use crate::protocol::{Census, NativeSummary, Retained, Summary};
use std::collections::HashMap;

impl Producer {
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

    pub(super) fn apply_summary(&mut self, s: Summary, budget: &Budget) {
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
    pub(super) fn apply_retained(&mut self, r: Retained, budget: &Budget) {
        let unix_ms = r.unix_ms.map(|n| n.u64());
        let Some(t) = self.record_time(r.t_ms.map(|n| n.u64()), unix_ms) else {
            return;
        };
        let start_unix_ms = self.hello.as_ref().and_then(|h| h.start_unix_ms).map(|n| n.u64());
        let t_unix_ms = unix_ms.or_else(|| start_unix_ms.map(|s| s.saturating_add(t)));
        let t = t as f64;
        if self.soak.live_retained_time().is_some_and(|last| t <= last) {
            self.out_of_order += 1;
            return;
        }
        self.soak.retained_records += 1;
        self.soak.last_full_gc_unix_ms = t_unix_ms;
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
    pub(super) fn apply_census(&mut self, c: Census, budget: &Budget) {
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
                self.soak.types.insert(name.clone(), super::soak_series::TypeSeries { charge, ..Default::default() });
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

    pub(super) fn apply_native(&mut self, n: NativeSummary, budget: &Budget) {
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
            sampled: n.totals.as_deref() == Some("sampled"),
            live_samples: n.live_samples.map(|v| v.u64()),
            live_bytes: n.live_bytes.map(|v| v.u64()),
            live_bytes_se: n.live_bytes_se.map(|v| v.u64()),
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
