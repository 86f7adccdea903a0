//! What soak mode needs after a full GC: inducing it, the census of every object by type, the
//! `retained` report of sampled survivors, and retention paths for the configured types.

use std::time::{Duration, Instant};

use crossbeam_channel::TryRecvError;

use super::{POLL, Pipeline, census, gc_stats, heap_walk, retention, unix_ms};
use crate::capture::{Event, gc_extents};
use crate::clr::types::CORPROF_E_RUNTIME_UNINITIALIZED;
use crate::clr::types::ClassID;
use crate::output::records::{self, Census as CensusRecord, CensusOther, CensusType, Num, Retained};

/// Events held while a retention search lets the application run between its walks (beyond
/// it, the queue itself fills and drops as it would anyway).
pub(super) const HELD_EVENTS: usize = 1 << 12;

/// Most types listed in a census (the rest are summed in `other`).
pub(super) const MAX_CENSUS_TYPES: usize = 5000;

/// Census walks the runtime refuses in a row before the census is given up for good.
pub(super) const CENSUS_FAILURES_TO_GIVE_UP: u32 = 5;

/// Least time between two `retained` reports.
pub(super) const MIN_RETAINED_SPACING: Duration = Duration::from_millis(500);

impl Pipeline<'_> {
    /// Induces a full blocking GC (from this thread, as the API requires), then reports the
    /// census and what survived. True when told to stop meanwhile.
    pub(super) fn full_gc_then_census(&mut self, census: bool) -> bool {
        let gc_started = Instant::now();
        if census {
            gc_extents::arm();
        }
        let forced = self.agent.info.force_gc();
        // The GC's own record of where it left the heap: taken before anything else, so that a
        // later GC of the application's does not replace it.
        let as_left = census.then(gc_extents::take);
        if let Err(hr) = forced {
            tracing::warn!("ForceGC failed: {hr:#x}");
            if census {
                self.census_missed = Some(format!("the runtime refused the full GC (ForceGC: {hr:#x})"));
            }
            return false;
        }
        // ForceGC returns once the blocking GC is over: the application stood still that long too.
        self.forced_gc = gc_started.elapsed();
        // Take in the induced GC's own events first, so the census and the retained report are
        // stamped with its number.
        if self.drain() {
            return true;
        }
        let by_class = as_left.and_then(|as_left| self.take_census(as_left));
        self.report_retained_after_full_gc();
        if !self.agent.config.retention.is_empty() {
            let request = retention::Request::new(self.agent.config.retention.clone());
            return self.report_retention(&request, by_class.as_ref());
        }
        false
    }

    /// Follows `request`'s types up to their roots (right after a full GC; `census`: the census
    /// of that GC, if one was just taken) and reports the paths. True when told to stop meanwhile.
    pub(super) fn report_retention(
        &mut self,
        request: &retention::Request,
        census: Option<&std::collections::HashMap<ClassID, census::TypeTotals>>,
    ) -> bool {
        let gc = self.history.completed;
        let prefixes = &self.agent.config.framework_prefixes;
        let is_framework = |name: &str| prefixes.iter().any(|p| name.starts_with(p.as_str()));
        // Between the search's walks the application runs; its events are taken in meanwhile
        // (up to a bound) and applied once the search is over.
        let events = &self.events;
        // Allocated before the request counts its memory, so that it does not count against it.
        let mut held: Vec<Event> = Vec::with_capacity(HELD_EVENTS);
        let mut stop = false;
        let mut idle = |d: Duration| -> bool {
            let until = Instant::now() + d;
            loop {
                while held.len() < HELD_EVENTS {
                    match events.try_recv() {
                        Ok(Event::Stop) | Err(TryRecvError::Disconnected) => {
                            stop = true;
                            return false;
                        }
                        Ok(event) => held.push(event),
                        Err(TryRecvError::Empty) => break,
                    }
                }
                let now = Instant::now();
                if now >= until {
                    return true;
                }
                std::thread::sleep((until - now).min(POLL));
            }
        };
        let mut cx =
            retention::Context { names: &mut self.names, is_framework: &is_framework, census, idle: &mut idle };
        let record = self.retention.run(self.agent, request, gc, &mut cx);
        for event in held {
            self.apply(event);
        }
        tracing::info!(
            "retention: {} types in {:.1} ms ({} walks, pause {:.1} ms, longest {:.1} ms), {} objects, {} followed, {} KB, truncated by {:?}",
            record.types.len(),
            record.elapsed_ms.unwrap_or_default().0,
            record.walks.len(),
            record.pause_ms.unwrap_or_default().0,
            record.max_pause_ms.unwrap_or_default().0,
            record.objects.unwrap_or_default().u64(),
            record.followed.unwrap_or_default().u64(),
            record.memory_bytes.unwrap_or_default().u64() >> 10,
            record.truncated_by
        );
        if let Some(error) = &record.error {
            let message = format!("retention paths unavailable: {error}");
            self.status("warn", &message);
        }
        let payload = records::line("retention", &record);
        self.deliver(&payload, &[]);
        stop
    }

    /// Right after a full GC everything unreachable is gone, so the samples born before it that
    /// are still alive are what the application really retains: the comparable points a soak
    /// verdict needs. Rate-limited, since some workloads run full GCs back to back.
    pub(super) fn report_retained_after_full_gc(&mut self) {
        let Some(gc) = self.full_gc_to_report else { return };
        if self.last_retained_report.is_some_and(|t| t.elapsed() < MIN_RETAINED_SPACING) {
            return;
        }
        self.full_gc_to_report = None;
        self.last_retained_report = Some(Instant::now());
        self.sweep();
        let (sites, stack_ids) = self.site_records(gc);
        let record = Retained {
            gc: Some(gc.into()),
            t_ms: Num::some(self.agent.elapsed_ms()),
            unix_ms: Num::some(unix_ms()),
            heap: Some(self.heap_record()),
            rss: Num::some(gc_stats::resident_bytes()),
            sites,
        };
        let payload = records::line("retained", &record);
        self.deliver(&payload, &stack_ids);
    }

    /// Counts every object on the heap by type (right after a full GC) and reports it; returns
    /// the counts by class.
    pub(super) fn take_census(
        &mut self,
        as_left: gc_extents::Recorded,
    ) -> Option<std::collections::HashMap<ClassID, census::TypeTotals>> {
        if self.census_unavailable.is_some() {
            return None;
        }
        let taken = match as_left {
            gc_extents::Recorded::Extents(extents, _) if !extents.is_empty() => {
                census::take_as_left_by_gc(&self.agent.info, extents).map(|c| (c, true))
            }
            other => {
                tracing::debug!("census counts what was allocated since the GC too: {other:?}");
                census::take(&self.agent.info).map(|c| (c, false))
            }
        };
        match taken {
            Ok((c, _)) if c.stopped.is_some() => {
                // Part of the heap only: a census that says less than is there is not sent.
                tracing::info!("census abandoned: {:?}", c.stopped);
                self.census_missed = Some(format!("the census was abandoned ({:?})", c.stopped));
                None
            }
            Ok((c, as_left)) => {
                self.census_failures = 0;
                self.census_missed = None;
                // (name, count, bytes), largest first.
                let mut types: Vec<(std::sync::Arc<str>, u64, u64)> =
                    c.by_class.iter().map(|(&class, t)| (self.names.class(class), t.count, t.bytes)).collect();
                types.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
                let kept = types.len().min(MAX_CENSUS_TYPES);
                let rest = &types[kept..];
                let other = CensusOther {
                    types: Num::some(rest.len()),
                    count: Num::some(rest.iter().map(|t| t.1).sum::<u64>()),
                    bytes: Num::some(rest.iter().map(|t| t.2).sum::<u64>()),
                };
                types.truncate(kept);
                let record = CensusRecord {
                    gc: Some(self.history.completed.into()),
                    t_ms: Num::some(self.agent.elapsed_ms()),
                    unix_ms: Num::some(unix_ms()),
                    pause_ms: Num::some(c.pause.as_secs_f64() * 1e3),
                    gc_ms: Num::some(self.forced_gc.as_secs_f64() * 1e3),
                    rss: Num::some(gc_stats::resident_bytes()),
                    objects: Num::some(c.objects),
                    bytes: Num::some(c.bytes),
                    unreadable: Num::some(c.unreadable),
                    allocated_since_gc: as_left.then(|| c.allocated_since.into()),
                    heap: Some(self.heap_record()),
                    types: types
                        .into_iter()
                        .map(|(name, count, bytes)| CensusType {
                            type_name: name.to_string(),
                            count: Num::some(count),
                            bytes: Num::some(bytes),
                        })
                        .collect(),
                    other: Some(other),
                };
                tracing::debug!(
                    "census: {} objects, {} bytes, {:?} pause; {} allocated since the GC left out",
                    c.objects,
                    c.bytes,
                    c.pause,
                    c.allocated_since
                );
                let payload = records::line("census", &record);
                self.deliver(&payload, &[]);
                self.aim_after_census(&c.by_class);
                Some(c.by_class)
            }
            Err(hr) if hr == CORPROF_E_RUNTIME_UNINITIALIZED => {
                // Early in start-up (a collector may ask within milliseconds of the load): the
                // runtime says to try again once it has started, so this is no failure.
                let why = heap_walk::refused(hr);
                tracing::info!("heap census not taken: {why}");
                self.census_missed = Some(why);
                None
            }
            Err(hr) => {
                // Without the API (before .NET 9) it never works; any other refusal may pass
                // (this census is skipped), unless it keeps coming.
                self.census_failures += 1;
                let lacking = heap_walk::api_missing(hr);
                if lacking || self.census_failures >= CENSUS_FAILURES_TO_GIVE_UP {
                    // `unavailable: census` tells the collector no census will come (older
                    // collectors look for the words "census unavailable").
                    let message = if lacking {
                        format!(
                            "heap census unavailable on this runtime (EnumerateGCHeapObjects: {hr:#x}; it needs .NET 9+): \
                             soak verdicts use sampled survivors only"
                        )
                    } else {
                        format!(
                            "heap census unavailable: given up after {} refusals in a row (EnumerateGCHeapObjects: {hr:#x}): \
                             soak verdicts use sampled survivors only",
                            self.census_failures
                        )
                    };
                    tracing::warn!("{message}");
                    self.status_record(&records::unavailable(records::UNAVAILABLE_CENSUS, &message));
                    self.census_unavailable = Some(message);
                    self.census_missed = None;
                } else {
                    let why = heap_walk::refused(hr);
                    let message = format!("heap census skipped at this GC: {why}; it is tried again");
                    tracing::warn!("{message}");
                    self.status("warn", &message);
                    self.census_missed = Some(why);
                }
                None
            }
        }
    }
}
