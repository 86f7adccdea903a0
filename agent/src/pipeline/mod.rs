//! The agent's own thread: turns raw samples into named, aggregated survivor tables and sends
//! a summary every interval.
//!
//! It is the only place that resolves names, checks handles, and does I/O. It is a thread the
//! profiler created, so the runtime lets it call the Info methods at any time, as long as it does
//! not come to know the thread (`clr/own_thread.rs`); it never runs managed code and is never
//! suspended by the GC.
//!
//! This file owns the `Pipeline` state and its loop: taking in the callbacks' events, tracking
//! samples, sweeping the dead, and leaving (shutdown, detach, out of memory). The rest of the
//! thread's work is in `commands` (the collector's requests), `soak` (induced full GCs, census,
//! retained and retention reports), `exact` (exact mode), `thinning` (the sample budget) and
//! `publish` (hello, summary, statuses).

pub mod census;
pub mod code_versions;
mod commands;
mod courtesy;
pub mod duty_cycle;
pub mod exact;
pub mod gate;
pub mod gc_stats;
pub mod heap_walk;
pub mod ip_resolve;
pub mod lines;
pub mod names;
pub mod native_code;
pub mod peek;
pub mod perf_map;
pub mod prologue;
mod publish;
pub mod retention;
mod soak;
pub mod stack_table;
pub mod survivors;
mod thinning;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::agent::Agent;
use crate::capture::{Event, Sample};
use crate::output::Sink;
use crate::output::records::{self, Bye, Num, StackCheck};
use gc_stats::GcStats;
use ip_resolve::IpResolver;
use lines::Lines;
use names::{ClrRuntime, Names};
use stack_table::Stacks;
use survivors::{GcHistory, Survivors, Tracked};

use commands::{Command, Pausing, requested_types};
use publish::hello_line;

/// How long the runtime should wait, after our detach request, before unloading the library:
/// ample time for this thread to return.
const DETACH_GRACE_MS: u32 = 2000;
/// How often the agent thread looks at the queue.
const POLL: Duration = Duration::from_millis(20);

struct Pipeline<'a> {
    agent: &'static Agent,
    events: Receiver<Event>,
    names: Names<ClrRuntime<'a>>,
    lines: Lines<'a>,
    ips: IpResolver<'a>,
    stack_check: StackCheck,
    /// `check` mode, per DoStackSnapshot call site: (compared, agreed).
    stack_check_sites: std::collections::HashMap<std::sync::Arc<str>, (u64, u64)>,
    /// Modules unloaded while running (collectible assemblies).
    code_unloads: u64,
    /// The module of every function seen in a stack, recorded when first seen (while its code is
    /// certainly loaded), so that an unload can tell its functions without asking the runtime
    /// about functions whose code may be gone.
    function_modules: rustc_hash::FxHashMap<crate::clr::types::FunctionID, Option<crate::clr::types::ModuleID>>,
    stacks: Stacks,
    survivors: Survivors,
    gc: GcStats,
    history: GcHistory,
    sink: Sink,
    hello: String,
    statuses: Vec<String>,
    seq: u64,
    last_sweep: Duration,
    swept_at_gc: u32,
    /// A full GC has ended and its survivors are not reported yet.
    full_gc_to_report: Option<u32>,
    last_retained_report: Option<Instant>,
    /// Why the census is given up for good (said in a status, and again to whoever asks).
    census_unavailable: Option<String>,
    /// Why the latest census was not taken, when it may be taken later (a commanded one is
    /// tried again).
    census_missed: Option<String>,
    /// Census walks refused in a row.
    census_failures: u32,
    /// Located statics and field layouts, kept between retention requests.
    retention: retention::Retention,
    thinning_window: Instant,
    thinning_samples: u64,
    /// The first rate has been measured (until then thinning is re-decided sooner).
    thinning_measured: bool,
    /// .NET 10: allocation sampling switched on in some windows only, when thinning is needed.
    duty: duty_cycle::DutyCycle,
    thinning_reported: bool,
    budget_reported: bool,
    /// Exact mode: which types to follow allocation by allocation.
    aiming: exact::Aiming,
    exact_allocations: u64,
    /// How long the latest induced full GC took.
    forced_gc: Duration,
    /// Spaces the collector's pausing commands and refuses a flood.
    gate: gate::Gate<Pausing>,
    /// Keeps warnings about ignored command lines to one a second.
    ignored: gate::Quiet,
    /// When a collector was last connected (attached agents detach after
    /// `LEAKSCOPE_ORPHAN_TIMEOUT` without one).
    collector_seen: Instant,
    /// The log file's problem (a refused path) has been sent as a status.
    log_problem_reported: bool,
    /// Malformed runtime events have been mentioned in a status.
    bad_events_reported: bool,
    /// That the runtime knows this thread (and refuses its synchronous calls) has been said in a
    /// status.
    thread_known_reported: bool,
}

/// Starts the agent thread. `done` is signalled when it has flushed and stopped.
pub fn spawn(agent: &'static Agent, events: Receiver<Event>, done: Sender<()>) -> std::io::Result<()> {
    std::thread::Builder::new().name("leakscope-agent".into()).spawn(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(agent, events)));
        if let Err(panic) = outcome {
            crate::switch::disable(format!("panic on the agent thread: {}", crate::switch::panic_message(&*panic)));
        }
        let _ = done.send(());
    })?;
    Ok(())
}

fn run(agent: &'static Agent, events: Receiver<Event>) {
    crate::clr::own_thread::mark();
    courtesy::give_way_to_the_application();
    if let Err(hr) = agent.info.initialize_current_thread() {
        tracing::warn!("InitializeCurrentThread failed: {hr:#x}");
    }
    let config = &agent.config;
    let mut p = Pipeline {
        agent,
        events,
        names: Names::new(ClrRuntime::new(&agent.info), config.framework_prefixes.clone()),
        lines: Lines::new(&agent.info),
        ips: IpResolver::new(&agent.info),
        stack_check: StackCheck::default(),
        code_unloads: 0,
        function_modules: Default::default(),
        stack_check_sites: Default::default(),
        stacks: Stacks::default(),
        survivors: Survivors::default(),
        gc: GcStats::default(),
        history: GcHistory::default(),
        sink: Sink::new(config.socket.as_deref(), config.output.as_deref()),
        hello: hello_line(agent),
        statuses: Vec::new(),
        seq: 0,
        last_sweep: Duration::ZERO,
        swept_at_gc: 0,
        full_gc_to_report: None,
        last_retained_report: None,
        census_unavailable: None,
        census_missed: None,
        census_failures: 0,
        retention: retention::Retention::default(),
        thinning_window: Instant::now(),
        thinning_samples: 0,
        thinning_measured: false,
        duty: duty_cycle::DutyCycle::new().with_bench_phases(config.bench_ab_phase_ms),
        thinning_reported: false,
        budget_reported: false,
        aiming: exact::Aiming::new(match &config.exact {
            crate::config::Exact::Types(names) => names.clone(),
            _ => Vec::new(),
        }),
        exact_allocations: 0,
        forced_gc: Duration::ZERO,
        gate: gate::Gate::default(),
        ignored: gate::Quiet::default(),
        collector_seen: Instant::now(),
        log_problem_reported: false,
        bad_events_reported: false,
        thread_known_reported: false,
    };
    for problem in &agent.startup_problems {
        p.status("warn", problem);
    }
    // First contact right away, so the collector knows the agent is alive.
    p.publish();

    if let Some(every) = config.induce_full_gc {
        p.status("info", &format!(
            "soak mode: inducing a full blocking GC every {:.0?} so that what survives is still referenced, not merely uncollected",
            every
        ));
    }
    let mut next_tick = Instant::now() + config.interval;
    let mut next_induced = config.induce_full_gc.map(|every| Instant::now() + every);
    loop {
        // Shutdown also queues a Stop, but the queue may be full.
        if p.drain() || crate::stop::shutting_down() {
            break;
        }
        if let Some(size) = crate::memory::failure() {
            p.out_of_memory(size);
            return;
        }
        // The queue is empty: everything up to now is applied.
        p.report_retained_after_full_gc();
        if let (Some(due), Some(every)) = (next_induced, config.induce_full_gc) {
            if Instant::now() >= due {
                next_induced = Some(Instant::now() + every);
                if p.full_gc_then_census(config.census) {
                    break;
                }
            }
        }
        p.adjust_thinning();
        if p.agent.capture.sampling == crate::capture::Sampling::AllocationSampled {
            if let Some(problem) = p.duty.tick(p.agent) {
                tracing::warn!("{problem}");
                p.status("warn", &problem);
            }
        }
        match p.take_commands() {
            Command::Continue => {}
            Command::Stop => break,
            Command::Detach => {
                p.detach("detaching on request: tracking stops, the application runs on", "detached");
                return;
            }
        }
        if p.orphaned() {
            let message = format!(
                "no collector for {:.0?} (LEAKSCOPE_ORPHAN_TIMEOUT): detaching; tracking stops, the application runs on",
                config.orphan_timeout
            );
            tracing::warn!("{message}");
            p.detach(&message, "orphaned");
            return;
        }
        if Instant::now() >= next_tick {
            p.sweep();
            p.publish();
            next_tick = Instant::now() + config.interval;
        }
        // Poll rather than block on the queue: a thread parked on the channel would make every
        // callback that queues an event pay for waking it (a futex call and a context switch).
        let wake = next_induced.map_or(next_tick, |t| t.min(next_tick)).min(Instant::now() + POLL);
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
    // Shutdown: what the callbacks queued before it, a last summary, and goodbye.
    let _ = p.drain();
    p.finish("runtime shutdown");
}

impl Pipeline<'_> {
    /// Stops tracking, flushes, releases every handle, and asks the runtime to unload us. The
    /// application runs on as if leakscope had never come. Returns with nothing of ours left
    /// running on this thread but the way out.
    fn detach(&mut self, message: &str, reason: &str) {
        let agent = self.agent;
        self.status("info", message);
        agent.stop_session();
        crate::switch::deactivate();
        // Whatever the callbacks queued before they went quiet.
        let _ = self.drain();
        self.finish(reason);
        // No thread of ours may be left in the library when the runtime unloads it.
        crate::clr::own_thread::end_spare_thread();
        match agent.info.request_profiler_detach(DETACH_GRACE_MS) {
            Ok(()) => tracing::info!("detach requested; the runtime unloads leakscope once no callback is running"),
            Err(hr) => tracing::warn!("the runtime refused to detach ({hr:#x}); leakscope stays loaded but idle"),
        }
    }

    /// An attached agent whose collector has been gone (or never came) for
    /// `LEAKSCOPE_ORPHAN_TIMEOUT`: nobody will ever tell it to detach, so it should go by itself.
    /// An agent loaded at startup stays: a `listen` may come later.
    fn orphaned(&mut self) -> bool {
        match self.sink.collector_connected() {
            Some(true) => {
                self.collector_seen = Instant::now();
                false
            }
            Some(false) => self.agent.attached && self.collector_seen.elapsed() >= self.agent.config.orphan_timeout,
            None => false,
        }
    }

    /// The system refused the agent memory (served from the emergency reserve, see
    /// `memory.rs`): the callbacks are already off; stop tracking, say why, flush and release
    /// everything, and end this thread. The application runs on as if leakscope had gone.
    fn out_of_memory(&mut self, size: usize) {
        let message = format!(
            "out of memory: the system refused the agent an allocation of {size} bytes; the agent has turned \
             itself off (the application runs on, unaffected)"
        );
        crate::switch::disable(message.clone());
        self.status("error", &message);
        self.agent.stop_session();
        let _ = self.drain();
        self.finish("out of memory");
    }

    /// A last survival check and summary, `bye`, and every handle released.
    fn finish(&mut self, reason: &str) {
        self.sweep();
        self.publish();
        let bye =
            records::line("bye", &Bye { t_ms: Num::some(self.agent.elapsed_ms()), reason: Some(reason.to_string()) });
        self.deliver(&bye, &[]);
        let info = &self.agent.info;
        self.survivors.clear(|h| {
            let _ = info.destroy_handle(h);
        });
        self.agent.capture.counters.tracked.store(0, Ordering::Relaxed);
    }

    /// Applies every queued event; true when told to stop (or the senders are gone).
    fn drain(&mut self) -> bool {
        loop {
            match self.events.try_recv() {
                Ok(Event::Stop) | Err(TryRecvError::Disconnected) => return true,
                Ok(event) => self.apply(event),
                Err(TryRecvError::Empty) => return false,
            }
        }
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Sample(sample) => self.track(sample),
            Event::GcStart(start) => {
                self.gc.on_start(start);
                self.history.record(start.count, start.depth);
            }
            Event::GcEnd { count, depth } => {
                self.history.finished(count, depth);
                if depth >= 2 {
                    self.full_gc_to_report = Some(count);
                }
            }
            Event::HeapStats(stats) => self.gc.on_heap_stats(stats),
            Event::SuspendBegin { at_ns } => self.gc.on_suspend_begin(at_ns),
            Event::RestartEnd { at_ns } => self.gc.on_restart_end(at_ns),
            Event::ModuleUnloading { module, ticket } => {
                // Everything queued before this is applied: forget what code addresses meant.
                tracing::debug!("module {module:#x} unloading: forgetting its code addresses");
                let modules = &self.function_modules;
                let in_module = |f: crate::clr::types::FunctionID| modules.get(&f) == Some(&Some(module));
                self.ips.forget_module(&self.agent.capture.verdicts, module, in_module);
                self.stacks.forget_module(in_module);
                self.lines.forget_module(module, in_module);
                self.names.forget_module(module, in_module);
                self.function_modules.retain(|_, m| *m != Some(module));
                self.code_unloads += 1;
                self.agent.capture.unloads.done.fetch_max(ticket, Ordering::AcqRel);
            }
            Event::Stop => {}
        }
        // Keep within the tracking budget: sweep early rather than drop samples.
        let counters = &self.agent.capture.counters;
        if counters.tracked.load(Ordering::Relaxed) * 10 >= self.agent.capture.max_tracked * 9
            && self.swept_at_gc != self.history.completed
        {
            // Only a GC can have freed samples, so at most one early sweep per GC.
            self.sweep();
        }
    }

    fn track(&mut self, sample: Sample) {
        let Sample {
            class,
            size,
            heap,
            amount_since_last,
            handle,
            born_after_gc,
            keep_one_in,
            exact,
            mut frames,
            unknown_returns,
            check,
        } = sample;
        self.ips.learn(&self.agent.capture.verdicts, &unknown_returns);
        // Most samples repeat a stack already seen: found by its return addresses, it needs no
        // resolving (check mode compares every sample's functions, so it always resolves).
        let walk = if check.is_some() { stack_table::Walk::NotWalked } else { self.stacks.known_walk(&frames) };
        if !matches!(walk, stack_table::Walk::Known(_)) {
            self.ips.resolve(&mut frames);
            self.note_modules(&frames);
        }
        if let Some(reference) = check {
            self.note_modules(&reference);
            self.check_stack(&frames, reference);
        }
        if let crate::config::Exact::Types(_) = &self.agent.config.exact {
            if !exact && !self.agent.capture.aim.is_full() {
                let name = self.names.class(class);
                if let Some(suspect) = self.aiming.named(class, &name) {
                    self.aim_at(suspect);
                }
            }
        }
        if !exact && self.aiming.counts_only_exact(class) {
            // The sample that named the type, or one queued before the aim.
            let _ = self.agent.info.destroy_handle(handle);
            self.agent.capture.counters.tracked.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let stack = self.stacks.intern_sample(walk, frames, &mut self.names, Some(&mut self.lines));
        let (weight_objects, weight_bytes) = if exact {
            (1.0, size as f64)
        } else {
            survivors::weights(self.agent.capture.sampling, size, amount_since_last)
        };
        let (weight_objects, weight_bytes) = (weight_objects * keep_one_in as f64, weight_bytes * keep_one_in as f64);
        let generation = survivors::initial_generation(heap);
        self.survivors.add(Tracked {
            handle,
            class,
            stack,
            weight_objects,
            weight_bytes,
            born_after_gc,
            generation,
            generation_as_of_gc: born_after_gc,
        });
    }

    /// Records the module of functions seen for the first time (see `function_modules`).
    fn note_modules(&mut self, frames: &[crate::capture::Frame]) {
        let info = &self.agent.info;
        for frame in frames {
            self.function_modules
                .entry(frame.function)
                .or_insert_with(|| info.function_info(frame.function).ok().map(|i| i.module));
        }
    }

    /// `LEAKSCOPE_STACK_CAPTURE=check`: compares the frame walk's stack with DoStackSnapshot's
    /// for the same sample, by call site and by whole stack (functions in order).
    fn check_stack(&mut self, walked: &[crate::capture::Frame], reference: Vec<crate::capture::Frame>) {
        let site = |p: &mut Self, frames: &[crate::capture::Frame]| {
            let names: Vec<_> = frames.iter().map(|f| p.names.function(f.function)).collect();
            names.iter().find(|n| !n.is_framework).or(names.first()).map(|n| n.display.clone())
        };
        let (a, b) = (site(self, walked), site(self, &reference));
        let same_stack =
            walked.len() == reference.len() && walked.iter().zip(&reference).all(|(x, y)| x.function == y.function);
        self.stack_check.compared += 1;
        self.stack_check.site_agreed += u64::from(a == b);
        if let Some(site) = &b {
            let entry = self.stack_check_sites.entry(site.clone()).or_default();
            entry.0 += 1;
            entry.1 += u64::from(a == b);
        }
        self.stack_check.stack_agreed += u64::from(same_stack);
        if a != b || !same_stack {
            let render = |p: &mut Self, frames: &[crate::capture::Frame]| {
                frames
                    .iter()
                    .map(|f| format!("{}@{:#x}", p.names.function(f.function).display, f.ip))
                    .collect::<Vec<_>>()
                    .join(" < ")
            };
            let (x, y) = (render(self, walked), render(self, &reference));
            tracing::info!(
                "stack check: {} walked [{x}] vs DoStackSnapshot [{y}]",
                if a == b { "stack differs" } else { "SITE DIFFERS" }
            );
        }
    }

    /// Drops the samples the GC has collected and releases their handles.
    fn sweep(&mut self) {
        let started = Instant::now();
        let info = &self.agent.info;
        self.survivors.sweep(
            &self.history,
            |h| info.object_from_handle(h).map(|o| o != 0).unwrap_or(false),
            |h| {
                let _ = info.destroy_handle(h);
            },
        );
        self.agent.capture.counters.tracked.store(self.survivors.count() as u64, Ordering::Relaxed);
        self.last_sweep = started.elapsed();
        self.swept_at_gc = self.history.completed;
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
