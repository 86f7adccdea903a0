//! The agent's own thread: turns raw samples into named, aggregated survivor tables and sends
//! a summary every interval.
//!
//! It is the only place that resolves names, checks handles, and does I/O. It is a thread the
//! profiler created, so the runtime lets it call the Info methods at any time; it never runs
//! managed code and is never suspended by the GC.

pub mod aim;
pub mod census;
pub mod duty_cycle;
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
pub mod retention;
pub mod stacks;
pub mod survivors;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::agent::Agent;
use crate::clr::types::ClassID;
use crate::capture::{Event, Sample};
use crate::output::records::{self, *};
use crate::output::{Batch, Sink};
use gc_stats::GcStats;
use ip_resolve::IpResolver;
use lines::Lines;
use names::{ClrRuntime, Names};
use stacks::Stacks;
use survivors::{GcHistory, Survivors, Tracked};

/// How long the runtime should wait, after our detach request, before unloading the library:
/// ample time for this thread to return.
const DETACH_GRACE_MS: u32 = 2000;
/// How often the agent thread looks at the queue.
const POLL: Duration = Duration::from_millis(20);
/// Statuses kept to replay to a collector that connects late.
const STATUS_REPLAY: usize = 32;
/// Events held while a retention search lets the application run between its walks (beyond
/// it, the queue itself fills and drops as it would anyway).
const HELD_EVENTS: usize = 1 << 12;
/// Most types listed in a census (the rest are summed in `other`).
const MAX_CENSUS_TYPES: usize = 5000;
/// Least time between two `retained` reports.
const MIN_RETAINED_SPACING: Duration = Duration::from_millis(500);

struct Pipeline<'a> {
    agent: &'static Agent,
    events: Receiver<Event>,
    names: Names<ClrRuntime<'a>>,
    lines: Lines<'a>,
    ips: IpResolver<'a>,
    stack_check: StackCheckRecord,
    /// `check` mode, per DoStackSnapshot call site: (compared, agreed).
    stack_check_sites: std::collections::HashMap<std::sync::Arc<str>, (u64, u64)>,
    /// Modules unloaded while running (collectible assemblies).
    code_unloads: u64,
    /// The module of every function seen in a stack, recorded when first seen (while its code is
    /// certainly loaded), so that an unload can tell its functions without asking the runtime
    /// about functions whose code may be gone.
    function_modules: std::collections::HashMap<crate::clr::types::FunctionID, Option<crate::clr::types::ModuleID>>,
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
    census_unsupported: bool,
    /// Located statics and field layouts, kept between retention requests.
    retention: retention::Retention,
    thinning_window: Instant,
    thinning_samples: u64,
    /// .NET 10: allocation sampling switched on in some windows only, when thinning is needed.
    duty: duty_cycle::DutyCycle,
    thinning_reported: bool,
    budget_reported: bool,
    /// Exact mode: which types to follow allocation by allocation.
    aiming: aim::Aiming,
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
}

/// Starts the agent thread. `done` is signalled when it has flushed and stopped.
pub fn spawn(agent: &'static Agent, events: Receiver<Event>, done: Sender<()>) -> std::io::Result<()> {
    std::thread::Builder::new().name("leakscope-agent".into()).spawn(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(agent, events)));
        if let Err(panic) = outcome {
            crate::com::guard::disable(format!(
                "panic on the agent thread: {}",
                crate::com::guard::panic_message(&*panic)
            ));
        }
        let _ = done.send(());
    })?;
    Ok(())
}

fn run(agent: &'static Agent, events: Receiver<Event>) {
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
        stack_check: StackCheckRecord::default(),
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
        census_unsupported: false,
        retention: retention::Retention::default(),
        thinning_window: Instant::now(),
        thinning_samples: 0,
        duty: duty_cycle::DutyCycle::new(),
        thinning_reported: false,
        budget_reported: false,
        aiming: aim::Aiming::new(match &config.exact {
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


/// A command that pauses the worker (an induced full GC and a heap walk).
enum Pausing {
    Census,
    Retention(retention::Request),
    Peek(peek::Request),
}

/// What the collector asked for, as far as the loop is concerned.
enum Command {
    Continue,
    Stop,
    Detach,
}

impl Pipeline<'_> {
    /// Keeps the samples the allocating threads pay for under `LEAKSCOPE_MAX_SAMPLES_PER_SEC`:
    /// once a second, from the rate of runtime samples, picks the thinning (a power of two) that
    /// brings the followed ones under the limit, and says so when it starts thinning.
    fn adjust_thinning(&mut self) {
        let limit = self.agent.config.max_samples_per_sec;
        let elapsed = self.thinning_window.elapsed();
        if limit == 0 || elapsed < Duration::from_secs(1) {
            return;
        }
        // Samples arrive only while allocation sampling is on: the rate is per second of that.
        let duty_cycled = self.agent.capture.sampling == crate::capture::Sampling::AllocationSampled;
        let on = if duty_cycled { self.duty.take_on_time() } else { elapsed };
        let counters = &self.agent.capture.counters;
        let samples = counters.samples.load(Ordering::Relaxed);
        self.adjust_exact_thinning(elapsed, limit);
        self.thinning_window = Instant::now();
        if on < 2 * duty_cycle::WINDOW {
            self.duty.give_back(on);
            return; // too little on-time yet to measure the rate by (it comes within ~4 s)
        }
        let rate = (samples - self.thinning_samples) as f64 / on.as_secs_f64();
        self.thinning_samples = samples;
        let keep = self.agent.capture.keep_one_in.load(Ordering::Relaxed);
        let current = keep * self.duty.one_in();
        let next = next_keep_one_in(rate, limit, current);
        if next != current {
            // Skip whole windows for most of it (the runtime then does no sampling work at all),
            // and thin what is delivered by at least 2: twice the on-time halves what the choice
            // of windows adds to the estimates' variance.
            let windows = if duty_cycled { (next / 2).clamp(1, duty_cycle::MAX_ONE_IN) } else { 1 };
            self.duty.set_one_in(windows);
            let keep = next / self.duty.one_in();
            self.agent.capture.keep_one_in.store(keep, Ordering::Relaxed);
            tracing::info!(
                "thinning: following 1 in {next} samples (sampling on in 1 window in {}, then 1 in {keep}; \
                 {rate:.0} samples/s, limit {limit}/s)",
                self.duty.one_in()
            );
            if next > 1 && !self.thinning_reported {
                self.thinning_reported = true;
                self.status(
                    "info",
                    &format!(
                        "allocation rate is high ({rate:.0} samples/s): following 1 sample in {next} to stay within \
                         LEAKSCOPE_MAX_SAMPLES_PER_SEC={limit}; estimates stay unbiased, with wider error"
                    ),
                );
            }
        }
    }

    /// Exact mode has its own thinning: a busy aimed-at type must not make every allocating
    /// thread walk its stack at the full allocation rate.
    fn adjust_exact_thinning(&mut self, elapsed: Duration, limit: usize) {
        let capture = &self.agent.capture;
        if capture.aim.is_empty() {
            return;
        }
        let seen = capture.counters.exact_allocations.load(Ordering::Relaxed);
        let rate = (seen - self.exact_allocations) as f64 / elapsed.as_secs_f64();
        self.exact_allocations = seen;
        let current = capture.exact_keep_one_in.load(Ordering::Relaxed);
        let next = next_keep_one_in(rate, limit, current);
        if next != current {
            capture.exact_keep_one_in.store(next, Ordering::Relaxed);
            tracing::info!("exact mode: following 1 in {next} allocations of aimed-at types ({rate:.0}/s)");
        }
    }

    /// Exact mode: after a census, aims at the types it shows rising again and again (and at
    /// types named in `LEAKSCOPE_EXACT` that it meets).
    fn aim_after_census(&mut self, by_class: &std::collections::HashMap<ClassID, census::TypeTotals>) {
        if self.agent.config.exact == crate::config::Exact::Off {
            return;
        }
        let room = crate::capture::aim::SLOTS.saturating_sub(self.agent.capture.aim.len());
        let mut suspects = self.aiming.after_census(by_class, room);
        if let crate::config::Exact::Types(_) = &self.agent.config.exact {
            for &class in by_class.keys() {
                let name = self.names.class(class);
                suspects.extend(self.aiming.named(class, &name));
            }
        }
        for suspect in suspects {
            self.aim_at(suspect);
        }
    }

    fn aim_at(&mut self, suspect: aim::Suspect) {
        let capture = &self.agent.capture;
        let first = capture.aim.is_empty();
        if !capture.aim.add(suspect.class) {
            return;
        }
        self.aiming.aimed_at(suspect.class);
        if first {
            if let Err(hr) = self.agent.follow_every_allocation() {
                let message = format!("exact mode unavailable: the runtime would not switch ObjectAllocated on ({hr:#x})");
                tracing::warn!("{message}");
                self.status("warn", &message);
                return;
            }
        }
        let name = self.names.class(suspect.class);
        let message = format!("exact mode: following every allocation of {name} ({})", suspect.reason);
        tracing::info!("{message}");
        self.status("info", &message);
    }

    /// Induces a full blocking GC (from this thread, as the API requires), then reports the
    /// census and what survived. True when told to stop meanwhile.
    fn full_gc_then_census(&mut self, census: bool) -> bool {
        let gc_started = Instant::now();
        if let Err(hr) = self.agent.info.force_gc() {
            tracing::warn!("ForceGC failed: {hr:#x}");
            return false;
        }
        // ForceGC returns once the blocking GC is over: the application stood still that long too.
        self.forced_gc = gc_started.elapsed();
        // Take in the induced GC's own events first, so the census and the retained report are
        // stamped with its number.
        if self.drain() {
            return true;
        }
        let by_class = if census { self.take_census() } else { None };
        self.report_retained_after_full_gc();
        if !self.agent.config.retention.is_empty() {
            let request = retention::Request::new(self.agent.config.retention.clone());
            return self.report_retention(&request, by_class.as_ref());
        }
        false
    }

    /// Follows `request`'s types up to their roots (right after a full GC; `census`: the census
    /// of that GC, if one was just taken) and reports the paths. True when told to stop meanwhile.
    fn report_retention(
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
        let mut cx = retention::Context { names: &mut self.names, is_framework: &is_framework, census, idle: &mut idle };
        let record = self.retention.run(self.agent, request, gc, &mut cx);
        for event in held {
            self.apply(event);
        }
        tracing::info!(
            "retention: {} types in {:.1} ms ({} walks, pause {:.1} ms, longest {:.1} ms), {} objects, {} followed, {} KB, truncated by {:?}",
            record.types.len(),
            record.elapsed_ms,
            record.walks.len(),
            record.pause_ms,
            record.max_pause_ms,
            record.objects,
            record.followed,
            record.memory_bytes >> 10,
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

    /// Samples instances of `request`'s types with their fields (right after a full GC).
    fn report_peek(&mut self, request: &peek::Request, strings_withheld: Option<&'static str>) {
        let gc = self.history.completed;
        let info = &self.agent.info;
        // The classes on the heap, named: which of them are asked for.
        let classes: Vec<(ClassID, std::sync::Arc<str>)> = match census::take(info) {
            Ok(c) if c.stopped.is_none() => c.by_class.keys().map(|&class| (class, self.names.class(class))).collect(),
            Ok(_) => {
                tracing::info!("peek abandoned: {}", crate::stop::why().unwrap_or_default());
                return;
            }
            Err(hr) => {
                let record = PeekRecord {
                    gc,
                    t_ms: self.agent.elapsed_ms(),
                    unix_ms: unix_ms(),
                    pause_ms: 0.0,
                    strings: request.strings,
                    strings_withheld,
                    error: Some(format!("cannot walk the heap (EnumerateGCHeapObjects: {hr:#x}; it needs .NET 9 or later)")),
                    types: Vec::new(),
                };
                self.status("warn", "peek unavailable: the runtime cannot walk its heap (.NET 9 or later needed)");
                let payload = records::line("peek", &record);
                self.deliver(&payload, &[]);
                return;
            }
        };
        let t_ms = self.agent.elapsed_ms();
        let mut record = peek::run(info, request, gc, &classes, &mut self.retention.fields, &mut self.names, t_ms);
        record.strings_withheld = strings_withheld;
        tracing::info!(
            "peek: {} types, {} samples, pause {:.1} ms",
            record.types.len(),
            record.types.iter().map(|t| t.samples.len()).sum::<usize>(),
            record.pause_ms
        );
        let payload = records::line("peek", &record);
        self.deliver(&payload, &[]);
    }

    /// Acts on the collector's commands: `{"cmd":"census"}` (full GC, census, retained report),
    /// `{"cmd":"retention","types":[…]}` (full GC, retention paths), `{"cmd":"peek","types":[…]}`
    /// (full GC, sample instances with their fields), `{"cmd":"detach"}` (stop
    /// tracking and unload). The first three pause the worker: they go through the gate, which
    /// spaces them and refuses a flood (`gate.rs`).
    fn take_commands(&mut self) -> Command {
        if let Some(waiting) = self.gate.due(Instant::now()) {
            if self.run_pausing(waiting) {
                return Command::Stop;
            }
        }
        for line in self.sink.poll_commands() {
            let parsed = serde_json::from_str::<serde_json::Value>(&line).ok();
            let cmd = parsed.as_ref().and_then(|v| v.get("cmd").and_then(|c| c.as_str()).map(str::to_string));
            let command = parsed.as_ref().unwrap_or(&serde_json::Value::Null);
            let pausing = match cmd.as_deref() {
                Some("census") => Pausing::Census,
                Some("retention") => match retention::Request::from_command(command) {
                    Ok(request) => Pausing::Retention(request),
                    Err(why) => {
                        self.ignoring(&format!("a retention command: {why}"));
                        continue;
                    }
                },
                Some("peek") => match peek::Request::from_command(command) {
                    Ok(request) => Pausing::Peek(request),
                    Err(why) => {
                        self.ignoring(&format!("a peek command: {why}"));
                        continue;
                    }
                },
                Some("detach") => return Command::Detach,
                _ => {
                    let shown: String = line.chars().take(120).collect();
                    self.ignoring(&format!("an unknown command from the collector: {shown}"));
                    continue;
                }
            };
            let now = Instant::now();
            match self.gate.offer(pausing, now) {
                gate::Offer::Run(pausing) => {
                    if self.run_pausing(pausing) {
                        return Command::Stop;
                    }
                }
                gate::Offer::Queued { runs_in } => {
                    tracing::info!("{} command waits {runs_in:.1?} for its turn (pausing commands are spaced)", cmd.unwrap_or_default());
                }
                gate::Offer::Refused { retry_after } => {
                    let what = cmd.unwrap_or_default();
                    tracing::debug!("refused a {what} command (another one is waiting)");
                    if let Some(notice) = self.gate.notice(retry_after, now) {
                        self.refusal(&what, &notice);
                    }
                }
            }
        }
        Command::Continue
    }

    /// Runs one pausing command; true when told to stop meanwhile.
    fn run_pausing(&mut self, pausing: Pausing) -> bool {
        let started = Instant::now();
        let stop = match pausing {
            Pausing::Census => {
                tracing::info!("census requested by the collector");
                self.full_gc_then_census(true)
            }
            Pausing::Retention(request) => {
                tracing::info!("retention paths requested for {:?}", request.types);
                if let Err(hr) = self.agent.info.force_gc() {
                    tracing::warn!("ForceGC failed: {hr:#x}");
                }
                // The induced GC's own events first, so the record carries its number.
                self.drain() || self.report_retention(&request, None)
            }
            Pausing::Peek(mut request) => {
                tracing::info!("peek requested for {:?}", request.types);
                let withheld = if request.strings { self.agent.config.peek_strings.withheld_because() } else { None };
                if let Some(why) = withheld {
                    request.strings = false;
                    self.command_warning(why);
                }
                if let Err(hr) = self.agent.info.force_gc() {
                    tracing::warn!("ForceGC failed: {hr:#x}");
                }
                let stop = self.drain();
                if !stop {
                    self.report_peek(&request, withheld);
                }
                stop
            }
        };
        self.gate.finished(started, Instant::now());
        stop
    }

    /// Says a command line was ignored, at most once a second (the rest are counted in).
    fn ignoring(&mut self, what: &str) {
        match self.ignored.allow(Instant::now()) {
            Some(0) => self.command_warning(&format!("ignoring {what}")),
            Some(more) => self.command_warning(&format!("ignoring {what} ({more} more ignored since the last notice)")),
            None => tracing::debug!("ignoring {what}"),
        }
    }

    /// A `status` about a command, not kept for replay to later connections.
    fn command_warning(&mut self, message: &str) {
        tracing::warn!("{message}");
        let line = records::line("status", &Status { level: "warn", message });
        self.notify(&line);
    }

    /// Tells the collector a pausing command was refused, and when to try again.
    fn refusal(&mut self, what: &str, notice: &gate::Notice) {
        let retry_after_ms = notice.retry_after.as_millis() as u64;
        let also = if notice.also_refused > 0 {
            format!(" ({} more refused since the last notice)", notice.also_refused)
        } else {
            String::new()
        };
        let message = format!(
            "refused a {what} command: another pausing command is already waiting for its turn. Commands that pause \
             the application (census, retention, peek) run one at a time, spaced by four times the previous one's \
             duration (at least {:?}); retry in {:.1} s{also}",
            gate::MIN_SPACING,
            notice.retry_after.as_secs_f64()
        );
        tracing::warn!("{message}");
        let line = records::line("status", &Refusal { level: "warn", message: &message, refused: what, retry_after_ms });
        self.notify(&line);
    }

    /// Sends one line without keeping it for replay.
    fn notify(&mut self, line: &str) {
        self.sink.deliver(
            &Batch { hello: &self.hello, statuses: &self.statuses, stacks: &[], payload: line },
            &mut |_| String::new(),
        );
    }

    /// Stops tracking, flushes, releases every handle, and asks the runtime to unload us. The
    /// application runs on as if leakscope had never come. Returns with nothing of ours left
    /// running on this thread but the way out.
    fn detach(&mut self, message: &str, reason: &str) {
        let agent = self.agent;
        self.status("info", message);
        agent.stop_session();
        crate::com::guard::deactivate();
        // Whatever the callbacks queued before they went quiet.
        let _ = self.drain();
        self.finish(reason);
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
        crate::com::guard::disable(message.clone());
        self.status("error", &message);
        self.agent.stop_session();
        let _ = self.drain();
        self.finish("out of memory");
    }

    /// A last survival check and summary, `bye`, and every handle released.
    fn finish(&mut self, reason: &str) {
        self.sweep();
        self.publish();
        let bye = records::line("bye", &Bye { t_ms: self.agent.elapsed_ms(), reason });
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
        self.ips.resolve(&mut frames);
        self.note_modules(&frames);
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
        let stack = self.stacks.intern(frames, &mut self.names, Some(&mut self.lines));
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
        let same_stack = walked.len() == reference.len()
            && walked.iter().zip(&reference).all(|(x, y)| x.function == y.function);
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
                frames.iter().map(|f| format!("{}@{:#x}", p.names.function(f.function).display, f.ip)).collect::<Vec<_>>().join(" < ")
            };
            let (x, y) = (render(self, walked), render(self, &reference));
            tracing::info!("stack check: {} walked [{x}] vs DoStackSnapshot [{y}]", if a == b { "stack differs" } else { "SITE DIFFERS" });
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

    /// Right after a full GC everything unreachable is gone, so the samples born before it that
    /// are still alive are what the application really retains: the comparable points a soak
    /// verdict needs. Rate-limited, since some workloads run full GCs back to back.
    fn report_retained_after_full_gc(&mut self) {
        let Some(gc) = self.full_gc_to_report else { return };
        if self.last_retained_report.is_some_and(|t| t.elapsed() < MIN_RETAINED_SPACING) {
            return;
        }
        self.full_gc_to_report = None;
        self.last_retained_report = Some(Instant::now());
        self.sweep();
        let (sites, stack_ids) = self.site_records(gc);
        let record = Retained {
            gc,
            t_ms: self.agent.elapsed_ms(),
            unix_ms: unix_ms(),
            heap: self.heap_record(),
            rss: gc_stats::resident_bytes(),
            sites,
        };
        let payload = records::line("retained", &record);
        self.deliver(&payload, &stack_ids);
    }

    /// Counts every object on the heap by type (right after a full GC) and reports it; returns
    /// the counts by class.
    fn take_census(&mut self) -> Option<std::collections::HashMap<ClassID, census::TypeTotals>> {
        if self.census_unsupported {
            return None;
        }
        match census::take(&self.agent.info) {
            Ok(c) if c.stopped.is_some() => {
                // Part of the heap only: a census that says less than is there is not sent.
                tracing::info!("census abandoned: {:?}", c.stopped);
                None
            }
            Ok(c) => {
                let mut types: Vec<CensusType> = c
                    .by_class
                    .iter()
                    .map(|(&class, t)| CensusType { type_name: self.names.class(class), count: t.count, bytes: t.bytes })
                    .collect();
                types.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.type_name.cmp(&b.type_name)));
                let kept = types.len().min(MAX_CENSUS_TYPES);
                let rest = &types[kept..];
                let other = CensusOther {
                    types: rest.len(),
                    count: rest.iter().map(|t| t.count).sum(),
                    bytes: rest.iter().map(|t| t.bytes).sum(),
                };
                types.truncate(kept);
                let record = CensusRecord {
                    gc: self.history.completed,
                    t_ms: self.agent.elapsed_ms(),
                    unix_ms: unix_ms(),
                    pause_ms: c.pause.as_secs_f64() * 1e3,
                    gc_ms: self.forced_gc.as_secs_f64() * 1e3,
                    rss: gc_stats::resident_bytes(),
                    objects: c.objects,
                    bytes: c.bytes,
                    unreadable: c.unreadable,
                    heap: self.heap_record(),
                    types,
                    other,
                };
                tracing::debug!("census: {} objects, {} bytes, {:?} pause", c.objects, c.bytes, c.pause);
                let payload = records::line("census", &record);
                self.deliver(&payload, &[]);
                self.aim_after_census(&c.by_class);
                Some(c.by_class)
            }
            Err(hr) => {
                self.census_unsupported = true;
                let message = format!(
                    "heap census unavailable on this runtime (EnumerateGCHeapObjects: {hr:#x}; it needs .NET 9+): \
                     soak verdicts use sampled survivors only"
                );
                tracing::warn!("{message}");
                self.status("warn", &message);
                None
            }
        }
    }

    /// Site rows of samples born before GC `born_before` that are alive now.
    fn site_records(&mut self, born_before: u32) -> (Vec<SiteRecord>, Vec<u32>) {
        let rows = self.survivors.rows(&self.stacks, born_before);
        let mut sites = Vec::with_capacity(rows.len().min(self.agent.config.max_sites));
        let mut stack_ids = Vec::new();
        for row in rows.into_iter().take(self.agent.config.max_sites) {
            stack_ids.push(row.stack);
            sites.push(SiteRecord {
                type_name: self.names.class(row.class),
                site: row.site,
                location: self.stacks.get(row.stack).site_line.clone(),
                stack: row.stack,
                samples: row.samples,
                objects: row.objects.round() as u64,
                bytes: row.bytes.round() as u64,
                age_gcs: (row.mean_age_gcs * 10.0).round() / 10.0,
                gens: row.generations,
            });
        }
        (sites, stack_ids)
    }

    fn heap_record(&self) -> HeapRecord {
        HeapRecord {
            gen0: self.gc.heap.gen0,
            gen1: self.gc.heap.gen1,
            gen2: self.gc.heap.gen2,
            loh: self.gc.heap.loh,
            poh: self.gc.heap.poh,
        }
    }

    /// Sends a payload, preceded by any stacks it names that the destination has not seen.
    fn deliver(&mut self, payload: &str, stack_ids: &[u32]) {
        let stacks = &self.stacks;
        self.sink.deliver(
            &Batch { hello: &self.hello, statuses: &self.statuses, stacks: stack_ids, payload },
            &mut |id| {
                let stack = stacks.get(id);
                records::line("stack", &records::Stack { id, frames: &stack.frames, lines: &stack.lines })
            },
        );
    }

    fn status(&mut self, level: &'static str, message: &str) {
        let line = records::line("status", &Status { level, message });
        self.statuses.push(line.clone());
        if self.statuses.len() > STATUS_REPLAY {
            self.statuses.remove(0);
        }
        self.sink.deliver(
            &Batch { hello: &self.hello, statuses: &[], stacks: &[], payload: &line },
            &mut |_| String::new(),
        );
    }

    fn publish(&mut self) {
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
        let (sites, stack_ids) = self.site_records(self.history.completed);
        let dropped_queue = counters.dropped_queue_full.load(Ordering::Relaxed);
        // Mean cost, in microseconds, of the samples the allocating threads actually followed.
        let followed = counters
            .samples
            .load(Ordering::Relaxed)
            .saturating_sub(counters.thinned.load(Ordering::Relaxed) + dropped_budget)
            .max(1);
        let per_followed_sample_us = |ns: u64| (ns as f64 / followed as f64 / 10.0).round() / 100.0;
        let degraded = crate::com::guard::disabled_reason().or_else(|| self.sink.problem());
        self.seq += 1;
        let summary = Summary {
            seq: self.seq,
            t_ms: agent.elapsed_ms(),
            unix_ms: unix_ms(),
            gc: GcRecord {
                count: self.gc.by_generation,
                induced: self.gc.induced,
                pause_ms_total: self.gc.pause_ns_total as f64 / 1e6,
                pause_ms_max: self.gc.pause_ns_max as f64 / 1e6,
                reasons: self.gc.reasons.clone(),
                recent: self.gc.take_recent(),
            },
            heap: self.heap_record(),
            rss: gc_stats::resident_bytes(),
            agent: AgentRecord {
                tracked: self.survivors.count(),
                young: self.survivors.young(self.history.completed),
                max_tracked: agent.config.max_tracked,
                samples: counters.samples.load(Ordering::Relaxed),
                dropped: dropped_budget + dropped_queue,
                dropped_budget,
                dropped_queue,
                thinned: counters.thinned.load(Ordering::Relaxed),
                keep_one_in: agent.capture.keep_one_in.load(Ordering::Relaxed),
                sampling_windows: SamplingWindowsRecord {
                    one_in: self.duty.one_in(),
                    switches: self.duty.switches,
                    switch_ms: self.duty.switch_time.as_secs_f64() * 1e3,
                },
                handle_failures: counters.handle_failures.load(Ordering::Relaxed),
                stack_failures: counters.stack_failures.load(Ordering::Relaxed),
                stacks: self.stacks.count(),
                memory_bytes: crate::memory::allocated_bytes(),
                memory_limit_bytes: agent.config.memory_limit_bytes,
                sweep_ms: self.last_sweep.as_secs_f64() * 1e3,
                thread_cpu_ms: thread_cpu_ms(),
                capture_us_per_sample: per_followed_sample_us(counters.handle_ns.load(Ordering::Relaxed) + counters.stack_ns.load(Ordering::Relaxed)),
                stack_us_per_sample: per_followed_sample_us(counters.stack_ns.load(Ordering::Relaxed)),
                bad_events: counters.bad_events.load(Ordering::Relaxed),
                stack_capture: self.stack_capture_record(),
                degraded,
                exact: (agent.config.exact != crate::config::Exact::Off).then(|| ExactRecord {
                    aimed: self.aiming.aimed().iter().map(|&c| self.names.class(c)).collect(),
                    allocations: counters.exact_allocations.load(Ordering::Relaxed),
                    thinned: counters.exact_thinned.load(Ordering::Relaxed),
                    keep_one_in: agent.capture.exact_keep_one_in.load(Ordering::Relaxed),
                }),
            },
            sites,
        };
        let payload = records::line("summary", &summary);
        self.deliver(&payload, &stack_ids);
        self.report_output_problems();
    }

    /// Tells the collector (through whatever output still works) about a destination that has
    /// just failed or a log file that was refused, once each.
    fn report_output_problems(&mut self) {
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
}

impl Pipeline<'_> {
    fn stack_capture_record(&self) -> StackCaptureRecord {
        let capture = &self.agent.capture;
        let counters = &capture.counters;
        let (walked, fell_back) = (counters.walked.load(Ordering::Relaxed), counters.fell_back.load(Ordering::Relaxed));
        let snapshots = match capture.stack_capture {
            crate::config::StackCapture::Frames => fell_back,
            crate::config::StackCapture::Snapshot => counters.samples.load(Ordering::Relaxed),
            crate::config::StackCapture::Check => fell_back + walked,
        };
        StackCaptureRecord {
            mode: capture.stack_capture.name(),
            walked,
            fell_back,
            snapshot_us: (counters.snapshot_ns.load(Ordering::Relaxed) as f64 / snapshots.max(1) as f64 / 10.0).round() / 100.0,
            learnt: self.ips.learnt,
            refused: self.ips.refused,
            unloads: self.code_unloads,
            check: (capture.stack_capture == crate::config::StackCapture::Check).then(|| {
                let mut check = self.stack_check.clone();
                let mut sites: Vec<_> = self
                    .stack_check_sites
                    .iter()
                    .map(|(site, &(compared, agreed))| StackCheckSite { site: site.clone(), compared, agreed })
                    .collect();
                sites.sort_by(|a, b| b.compared.cmp(&a.compared).then_with(|| a.site.cmp(&b.site)));
                sites.truncate(64);
                check.by_site = sites;
                check
            }),
        }
    }
}

fn hello_line(agent: &Agent) -> String {
    let cmdline = std::fs::read("/proc/self/cmdline")
        .map(|b| b.split(|&c| c == 0).filter(|s| !s.is_empty()).map(String::from_utf8_lossy).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    records::line(
        "hello",
        &Hello {
            version: env!("CARGO_PKG_VERSION"),
            cmdline,
            start_unix_ms: agent.start_unix_ms,
            interval_ms: agent.config.interval.as_millis() as u64,
            runtime: agent.runtime.to_string(),
            sampling: agent.capture.sampling.name(),
            mode: "sampled",
            attached: agent.attached,
            config: HelloConfig {
                max_tracked: agent.config.max_tracked,
                memory_limit_bytes: agent.config.memory_limit_bytes,
                stack_depth: agent.config.stack_depth,
                stack_capture: agent.config.stack_capture.name(),
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
            },
        },
    )
}

/// CPU time of the calling thread (the agent's), milliseconds.
fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; the clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The `"types"` of a command (`retention`, `peek`): non-empty names, trimmed, at most `max`.
fn requested_types(command: &serde_json::Value, cmd: &str, max: usize) -> Result<Vec<String>, String> {
    let types: Vec<String> = command
        .get("types")
        .and_then(|t| t.as_array())
        .ok_or_else(|| format!("{cmd} needs \"types\": a list of type names"))?
        .iter()
        .filter_map(|t| t.as_str())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .take(max)
        .collect();
    if types.is_empty() {
        return Err(format!("{cmd} needs at least one type name in \"types\""));
    }
    Ok(types)
}

/// The thinning that keeps `rate` events a second within `limit` followed ones: a power of two,
/// lowered only once the rate is well under the limit, so it does not flap.
fn next_keep_one_in(rate: f64, limit: usize, current: u32) -> u32 {
    let wanted = ((rate / limit as f64).ceil() as u32).clamp(1, 1024).next_power_of_two();
    if wanted >= current || rate * 2.0 < (limit as f64) * (current as f64) { wanted } else { current }
}
