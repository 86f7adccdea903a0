//! What the pipeline sends: the `hello` line, the periodic `summary`, statuses (kept for replay
//! to a collector that connects late), and any payload preceded by the stacks it names.

use std::sync::atomic::Ordering;

use super::{Pipeline, gc_stats, retention, unix_ms};
use crate::agent::Agent;
use crate::output::Batch;
use crate::output::records::{
    self, AgentConfig, AgentHealth, Exact, GcStats, HeapSizes, Hello, ManagedSite, Num, SamplingWindows, StackCapture,
    StackCheckSite, StackRecord, Summary,
};

/// Statuses kept to replay to a collector that connects late.
pub(super) const STATUS_REPLAY: usize = 32;

pub(super) fn hello_line(agent: &Agent) -> String {
    let cmdline = std::fs::read("/proc/self/cmdline")
        .map(|b| {
            b.split(|&c| c == 0).filter(|s| !s.is_empty()).map(String::from_utf8_lossy).collect::<Vec<_>>().join(" ")
        })
        .unwrap_or_default();
    records::line(
        "hello",
        &Hello {
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            cmdline: Some(cmdline),
            start_unix_ms: Num::some(agent.start_unix_ms),
            interval_ms: Num::some(agent.config.interval.as_millis() as u64),
            runtime: Some(agent.runtime.to_string()),
            sampling: Some(agent.capture.sampling.name().to_string()),
            mode: Some("sampled".to_string()),
            attached: Some(agent.attached),
            service: agent.config.service.clone(),
            config: serde_json::to_value(AgentConfig {
                max_tracked: agent.config.max_tracked as u64,
                memory_limit_bytes: agent.config.memory_limit_bytes as u64,
                stack_depth: agent.config.stack_depth as u64,
                stack_capture: agent.config.stack_capture.name().to_string(),
                log: crate::log::path(&agent.config).display().to_string(),
                induce_full_gc_ms: agent.config.induce_full_gc.map(|d| d.as_millis() as u64),
                census: agent.config.census,
                exact: match &agent.config.exact {
                    crate::config::Exact::Off => "off".to_string(),
                    crate::config::Exact::Auto => "auto".to_string(),
                    crate::config::Exact::Types(names) => names.join(","),
                },
                retention: agent.config.retention.clone(),
                retention_roots: retention::root_kinds::capabilities(agent.attached, agent.info.version()),
            })
            .ok(),
            ..Hello::default()
        },
    )
}

/// CPU time of the calling thread (the agent's), milliseconds.
pub(super) fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; the clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

impl Pipeline<'_> {
    /// Site rows of samples born before GC `born_before` that are alive now.
    pub(super) fn site_records(&mut self, born_before: u32) -> (Vec<ManagedSite>, Vec<u32>) {
        let rows = self.survivors.rows(&self.stacks, born_before);
        let mut sites = Vec::with_capacity(rows.len().min(self.agent.config.max_sites));
        let mut stack_ids = Vec::new();
        for row in rows.into_iter().take(self.agent.config.max_sites) {
            stack_ids.push(row.stack);
            sites.push(ManagedSite {
                type_name: self.names.class(row.class).to_string(),
                site: row.site.to_string(),
                location: self.stacks.get(row.stack).site_line.as_deref().map(str::to_string),
                stack: Some(row.stack.into()),
                samples: Num::some(row.samples),
                objects: Num::some(row.objects.round() as u64),
                bytes: Num::some(row.bytes.round() as u64),
                age_gcs: Num::some((row.mean_age_gcs * 10.0).round() / 10.0),
                gens: row.generations.iter().map(|&n| n.into()).collect(),
                collected: row.collected.map(Num::from),
            });
        }
        (sites, stack_ids)
    }

    pub(super) fn heap_record(&self) -> HeapSizes {
        let heap = &self.gc.heap;
        HeapSizes {
            gen0: Num::some(heap.gen0),
            gen1: Num::some(heap.gen1),
            gen2: Num::some(heap.gen2),
            loh: Num::some(heap.loh),
            poh: Num::some(heap.poh),
        }
    }

    /// Sends a payload, preceded by any stacks it names that the destination has not seen.
    pub(super) fn deliver(&mut self, payload: &str, stack_ids: &[u32]) {
        let stacks = &self.stacks;
        self.sink.deliver(
            &Batch { hello: &self.hello, statuses: &self.statuses, stacks: stack_ids, payload },
            &mut |id| {
                let stack = stacks.get(id);
                let record = StackRecord {
                    id: id.into(),
                    frames: stack.frames.iter().map(|f| f.to_string()).collect(),
                    lines: stack.lines.iter().map(|l| l.as_deref().map(str::to_string)).collect(),
                };
                records::line("stack", &record)
            },
        );
    }

    pub(super) fn status(&mut self, level: &'static str, message: &str) {
        self.status_record(&records::status(level, message));
    }

    /// A status kept for later connections too (replayed with the hello).
    pub(super) fn status_record(&mut self, body: &records::Status) {
        let line = records::line("status", body);
        self.statuses.push(line.clone());
        if self.statuses.len() > STATUS_REPLAY {
            self.statuses.remove(0);
        }
        self.sink
            .deliver(&Batch { hello: &self.hello, statuses: &[], stacks: &[], payload: &line }, &mut |_| String::new());
    }

    pub(super) fn publish(&mut self) {
        let agent = self.agent;
        let counters = &agent.capture.counters;
        let dropped_budget = counters.dropped_budget.load(Ordering::Relaxed);
        if dropped_budget > 0 && !self.budget_reported {
            self.budget_reported = true;
            let message = format!(
                "tracking budget reached ({} samples or {} MB of agent memory): further samples are counted, not tracked; \
                 raise LEAKSCOPE_MAX_TRACKED / LEAKSCOPE_MEMORY_LIMIT_MB to track more",
                agent.config.max_tracked,
                agent.config.memory_limit_bytes >> 20
            );
            tracing::warn!("{message}");
            self.status("warn", &message);
        }
        let bad_events = counters.bad_events.load(Ordering::Relaxed);
        if bad_events > 0 && !self.bad_events_reported {
            self.bad_events_reported = true;
            let message = format!(
                "{bad_events} runtime event(s) had a version or size the agent does not know and were skipped \
                 (counted in agent.bad_events); samples or GC counters may be missing"
            );
            tracing::warn!("{message}");
            self.status("warn", &message);
        }
        let sync_refused = crate::clr::own_thread::refused();
        let thread_known = crate::clr::own_thread::known_to_runtime(&agent.info);
        if (thread_known || sync_refused > 0) && !self.thread_known_reported {
            self.thread_known_reported = true;
            let message = format!(
                "the runtime has come to know the agent thread and refuses its synchronous profiling calls ({sync_refused} \
                 so far, counted in agent.sync_refused): names, source lines or stack classification may be missing"
            );
            tracing::warn!("{message}");
            self.status("warn", &message);
        }
        let (sites, stack_ids) = self.site_records(self.history.completed);
        let dropped_queue = counters.dropped_queue_full.load(Ordering::Relaxed);
        // Mean cost, in microseconds, of the samples the allocating threads actually followed.
        let followed = counters
            .samples
            .load(Ordering::Relaxed)
            .saturating_sub(counters.thinned.load(Ordering::Relaxed) + dropped_budget)
            .max(1);
        let per_followed_sample_us = |ns: u64| (ns as f64 / followed as f64 / 10.0).round() / 100.0;
        let degraded = crate::switch::disabled_reason().or_else(|| self.sink.problem());
        self.seq += 1;
        let summary = Summary {
            seq: Some(self.seq),
            t_ms: Num::some(agent.elapsed_ms()),
            unix_ms: Num::some(unix_ms()),
            gc: Some(GcStats {
                count: self.gc.by_generation.iter().map(|&n| n.into()).collect(),
                induced: Num::some(self.gc.induced),
                pause_ms_total: Num::some(self.gc.pause_ns_total as f64 / 1e6),
                pause_ms_max: Num::some(self.gc.pause_ns_max as f64 / 1e6),
                reasons: self.gc.reasons.iter().map(|(&reason, &n)| (reason.to_string(), n.into())).collect(),
                recent: self.gc.take_recent().iter().map(gc_stats::Collection::entry).collect(),
            }),
            heap: Some(self.heap_record()),
            rss: Num::some(gc_stats::resident_bytes()),
            agent: Some(AgentHealth {
                tracked: Num::some(self.survivors.count()),
                young: Num::some(self.survivors.young(self.history.completed)),
                max_tracked: Num::some(agent.config.max_tracked),
                samples: Num::some(counters.samples.load(Ordering::Relaxed)),
                dropped: Num::some(dropped_budget + dropped_queue),
                dropped_budget: Num::some(dropped_budget),
                dropped_queue: Num::some(dropped_queue),
                thinned: Num::some(counters.thinned.load(Ordering::Relaxed)),
                keep_one_in: Num::some(agent.capture.keep_one_in.load(Ordering::Relaxed)),
                sampling_windows: Some(SamplingWindows {
                    one_in: self.duty.one_in(),
                    switches: self.duty.switches,
                    switch_ms: self.duty.switch_time.as_secs_f64() * 1e3,
                }),
                handle_failures: Num::some(counters.handle_failures.load(Ordering::Relaxed)),
                stack_failures: Num::some(counters.stack_failures.load(Ordering::Relaxed)),
                sync_refused: Num::some(sync_refused),
                thread_known_to_runtime: Some(thread_known),
                stacks: Num::some(self.stacks.count()),
                memory_bytes: Num::some(crate::memory::allocated_bytes()),
                memory_limit_bytes: Num::some(agent.config.memory_limit_bytes),
                sweep_ms: Num::some(self.last_sweep.as_secs_f64() * 1e3),
                thread_cpu_ms: Num::some(thread_cpu_ms()),
                capture_us_per_sample: Num::some(per_followed_sample_us(
                    counters.handle_ns.load(Ordering::Relaxed) + counters.stack_ns.load(Ordering::Relaxed),
                )),
                stack_us_per_sample: Num::some(per_followed_sample_us(counters.stack_ns.load(Ordering::Relaxed))),
                bad_events: Num::some(counters.bad_events.load(Ordering::Relaxed)),
                stack_capture: Some(self.stack_capture_record()),
                degraded,
                exact: (agent.config.exact != crate::config::Exact::Off).then(|| Exact {
                    aimed: self.aiming.aimed().iter().map(|&c| self.names.class(c).to_string()).collect(),
                    allocations: counters.exact_allocations.load(Ordering::Relaxed),
                    thinned: counters.exact_thinned.load(Ordering::Relaxed),
                    keep_one_in: agent.capture.exact_keep_one_in.load(Ordering::Relaxed),
                }),
            }),
            sites,
        };
        let payload = records::line("summary", &summary);
        self.deliver(&payload, &stack_ids);
        self.report_output_problems();
    }

    /// Tells the collector (through whatever output still works) about a destination that has
    /// just failed or a log file that was refused, once each.
    pub(super) fn report_output_problems(&mut self) {
        for problem in self.sink.take_new_problems() {
            self.status("warn", &problem);
        }
        if !self.log_problem_reported {
            if let Some(problem) = crate::log::problem() {
                self.log_problem_reported = true;
                self.status("warn", &problem);
            }
        }
    }

    pub(super) fn stack_capture_record(&self) -> StackCapture {
        let capture = &self.agent.capture;
        let counters = &capture.counters;
        let (walked, fell_back) = (counters.walked.load(Ordering::Relaxed), counters.fell_back.load(Ordering::Relaxed));
        let snapshots = match capture.stack_capture {
            crate::config::StackCapture::Frames => fell_back,
            crate::config::StackCapture::Snapshot => counters.samples.load(Ordering::Relaxed),
            crate::config::StackCapture::Check => fell_back + walked,
        };
        StackCapture {
            mode: capture.stack_capture.name().to_string(),
            walked,
            fell_back,
            snapshot_us: (counters.snapshot_ns.load(Ordering::Relaxed) as f64 / snapshots.max(1) as f64 / 10.0).round()
                / 100.0,
            learnt: self.ips.learnt,
            refused: self.ips.refused,
            unloads: self.code_unloads,
            check: (capture.stack_capture == crate::config::StackCapture::Check).then(|| {
                let mut check = self.stack_check.clone();
                let mut sites: Vec<_> = self
                    .stack_check_sites
                    .iter()
                    .map(|(site, &(compared, agreed))| StackCheckSite { site: site.to_string(), compared, agreed })
                    .collect();
                sites.sort_by(|a, b| b.compared.cmp(&a.compared).then_with(|| a.site.cmp(&b.site)));
                sites.truncate(64);
                check.by_site = sites;
                check
            }),
        }
    }
}
