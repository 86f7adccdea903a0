//! The agent's lifecycle: `Initialize` decides whether and how to run, builds the [`Agent`] and
//! starts the agent thread (`pipeline`); `Shutdown` flushes.

use std::collections::HashMap;
use std::ffi::{OsString, c_void};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};
use parking_lot::Mutex;

use crate::agent::{AGENT, Agent, get, start_session};
use crate::capture::{Capture, Counters, Event, Sampling};
use crate::clr::events::{keyword, level};
use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::*;
use crate::config::{self, Config};
use crate::output::{Batch, Sink, records};

/// Events the callbacks may queue before the agent thread catches up. At the default sampling
/// rate that is over a second of allocation at a gigabyte per second.
const QUEUE_CAPACITY: usize = 1 << 14;
/// How long `Shutdown` waits for the last summary before letting the runtime go on.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How the runtime is loading us.
pub enum Start {
    /// `Initialize`, at process start, configured by `LEAKSCOPE_*` variables.
    Startup,
    /// `InitializeForAttach`: the running process's environment predates us, so the attaching
    /// CLI passes the settings as client data, `KEY=VALUE` lines that override the variables.
    Attach { client_data: Vec<u8> },
}

fn settings_from_client_data(data: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(data)
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("LEAKSCOPE_"))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect()
}

/// Minimum `ICorProfilerInfo` version: 13 brings the weak handles survival tracking needs (.NET 7+).
const MIN_INFO_VERSION: u32 = 13;

/// `ICorProfilerCallback::Initialize` / `InitializeForAttach`. Returns `S_OK` when the agent
/// runs, or `CORPROF_E_PROFILER_CANCEL_ACTIVATION` when it declines (the host runs on
/// unprofiled).
///
/// # Safety
/// `unknown` must be NULL or the IUnknown the runtime passed to `Initialize[ForAttach]`.
pub unsafe fn initialize(unknown: *mut c_void, start: Start) -> HRESULT {
    // First of all: no panic of ours may reach the host's stderr, not even while reading settings.
    crate::log::install_panic_hook();
    let started = Instant::now();
    let (attached, overrides) = match start {
        Start::Startup => (false, HashMap::new()),
        Start::Attach { client_data } => (true, settings_from_client_data(&client_data)),
    };
    let loaded = config::from_lookup(|name| overrides.get(name).map(OsString::from).or_else(|| std::env::var_os(name)));
    crate::log::install(&loaded.config);
    tracing::info!(
        "leakscope agent {} {} pid {}",
        env!("CARGO_PKG_VERSION"),
        if attached { "attaching to" } else { "loading into" },
        std::process::id()
    );
    if get().is_some() && crate::switch::is_active() {
        tracing::warn!("already profiling this process; declining a second load");
        return CORPROF_E_PROFILER_CANCEL_ACTIVATION;
    }
    let mut loaded = loaded;
    if attached {
        // The worker's own environment may forbid string contents; the attaching CLI (its owner
        // or root, the only ones the diagnostics socket lets in) may allow them.
        let environment = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        let client = |name: &str| overrides.get(name).cloned();
        let mut ignored = Vec::new();
        loaded.config.peek_strings = config::PeekStrings::decide(
            config::switch(&environment, &mut ignored, "LEAKSCOPE_PEEK_STRINGS", ""),
            config::switch(&client, &mut ignored, "LEAKSCOPE_PEEK_STRINGS", ""),
        );
    }
    if attached && loaded.config.exact != config::Exact::Off {
        loaded.config.exact = config::Exact::Off;
        loaded.problems.push(
            "LEAKSCOPE_EXACT needs the agent loaded at startup (the runtime only lets ObjectAllocated be switched on \
             in Initialize): exact mode is off for this attach"
                .to_string(),
        );
    }
    for problem in &loaded.problems {
        tracing::warn!("{problem}");
    }
    let config = loaded.config;
    crate::pipeline::heap_walk::set_test_delay_us(config.test_walk_delay_us);
    crate::pipeline::heap_walk::set_test_refusals(config.test_walk_refusals);
    if loaded.disabled_by_user {
        tracing::info!("LEAKSCOPE_ENABLED is off: not profiling");
        return CORPROF_E_PROFILER_CANCEL_ACTIVATION;
    }
    if config.socket.is_none() && config.output.is_none() {
        tracing::warn!(
            "neither LEAKSCOPE_SOCKET nor LEAKSCOPE_OUTPUT is set, so there is nowhere to report to: not profiling \
             (run the app under `leakscope run`, or see `leakscope env`)"
        );
        return CORPROF_E_PROFILER_CANCEL_ACTIVATION;
    }
    if unknown.is_null() {
        return decline(&config, "the runtime passed no ICorProfilerInfo");
    }
    // SAFETY: `unknown` is non-NULL and, per this function's contract, the runtime's IUnknown.
    let Some(info) = (unsafe { ProfilerInfo::query(unknown, MIN_INFO_VERSION) }) else {
        return decline(
            &config,
            "this runtime does not offer ICorProfilerInfo13 (weak handles), which needs .NET 7 or later",
        );
    };
    let runtime = info.runtime_version().unwrap_or_default();
    let sampling = if runtime.major >= 10 { Sampling::AllocationSampled } else { Sampling::AllocationTick };
    tracing::info!("runtime {runtime}, ICorProfilerInfo{}, sampling with {}", info.version(), sampling.name());

    // Exact mode must ask for ObjectAllocated now or never; the callbacks themselves stay off
    // until a type is aimed at (`Agent::follow_every_allocation`).
    // Class loads: generic instantiations, whose statics retention paths name. Module unloads:
    // the frame walk's knowledge of code addresses must be dropped then.
    let base_mask = monitor::ENABLE_STACK_SNAPSHOT
        | monitor::CLASS_LOADS
        | monitor::MODULE_LOADS
        | if config.exact != config::Exact::Off { monitor::ENABLE_OBJECT_ALLOCATED } else { 0 };
    // BASIC_GC: the runtime keeps its generation bounds up to date at every GC (else
    // GetGenerationBounds answers E_FAIL), so a retention search can leave out what was
    // allocated since the last GC. Its two callbacks per GC are ignored. Not vital: without it
    // the search only counts fresh garbage too (and says so).
    let base_high = match info.set_event_mask2(base_mask, high_monitor::EVENT_PIPE | high_monitor::BASIC_GC) {
        Ok(()) => high_monitor::EVENT_PIPE | high_monitor::BASIC_GC,
        Err(hr) => {
            tracing::info!("generation bounds not kept up to date: SetEventMask2 with BASIC_GC failed ({hr:#x})");
            if let Err(hr) = info.set_event_mask2(base_mask, high_monitor::EVENT_PIPE) {
                return decline(&config, &format!("SetEventMask2 failed ({hr:#x})"));
            }
            high_monitor::EVENT_PIPE
        }
    };

    let (queue, events) = bounded(QUEUE_CAPACITY);
    let (done_tx, done) = bounded(1);
    let capture = Capture {
        sampling,
        queue,
        counters: Counters::default(),
        max_tracked: config.max_tracked as u64,
        memory_limit_bytes: config.memory_limit_bytes,
        stack_depth: config.stack_depth,
        stack_capture: config.stack_capture,
        verdicts: crate::capture::verdicts::Verdicts::new(crate::capture::VERDICT_TABLE_BITS),
        unloads: Default::default(),
        providers: Default::default(),
        keep_one_in: std::sync::atomic::AtomicU32::new(1),
        window_one_in: std::sync::atomic::AtomicU32::new(1),
        aim: Default::default(),
        exact_keep_one_in: std::sync::atomic::AtomicU32::new(1),
    };
    let agent = Agent {
        info,
        config,
        runtime,
        capture,
        startup_problems: loaded.problems,
        base_mask,
        base_high,
        started,
        start_unix_ms: crate::pipeline::unix_ms(),
        attached,
        session: Mutex::new(None),
        sampling_session: Mutex::new(None),
        done,
    };
    let agent: &'static Agent = Box::leak(Box::new(agent));
    AGENT.store(agent as *const Agent as *mut Agent, Ordering::Release);
    run(agent, events, done_tx)
}

fn run(agent: &'static Agent, events: Receiver<Event>, done: crossbeam_channel::Sender<()>) -> HRESULT {
    if let Err(e) = crate::pipeline::spawn(agent, events, done) {
        return decline(&agent.config, &format!("cannot start the agent thread: {e}"));
    }
    crate::switch::activate();
    let (keywords, level) = match agent.capture.sampling {
        // Allocation sampling gets a session of its own, so that it can be switched off and on.
        Sampling::AllocationSampled => (keyword::GC, level::INFORMATIONAL),
        // AllocationTick is only emitted at Verbose.
        Sampling::AllocationTick => (keyword::GC, level::VERBOSE),
    };
    let started = start_session(&agent.info, keywords, level).and_then(|session| {
        *agent.session.lock() = Some(session);
        if agent.capture.sampling == Sampling::AllocationSampled {
            agent.set_allocation_sampling(true)?;
        }
        Ok(())
    });
    match started {
        Ok(()) => S_OK,
        Err(hr) => {
            agent.stop_session();
            crate::switch::disable(format!("cannot start the in-process EventPipe session ({hr:#x})"));
            let _ = agent.capture.queue.try_send(Event::Stop);
            CORPROF_E_PROFILER_CANCEL_ACTIVATION
        }
    }
}

/// Declines to profile, telling the collector why (best effort, bounded by short timeouts).
fn decline(config: &Config, why: &str) -> HRESULT {
    tracing::warn!("not profiling: {why}");
    let mut sink = Sink::new(config.socket.as_deref(), config.output.as_deref());
    let hello = records::line("hello", &serde_json::json!({ "version": env!("CARGO_PKG_VERSION"), "mode": "off" }));
    let message = format!("leakscope agent is not profiling this process: {why}");
    let status = records::line("status", &records::status("error", &message));
    sink.deliver(&Batch { hello: &hello, statuses: &[], stacks: &[], payload: &status }, &mut |_| String::new());
    CORPROF_E_PROFILER_CANCEL_ACTIVATION
}

/// After the agent thread's grace, how long `Shutdown` waits for calls of ours still inside the
/// runtime to come back.
const LEAVE_GRACE: Duration = Duration::from_secs(2);

/// `ICorProfilerCallback::Shutdown`: stop the session, flush a final summary, release handles.
/// Returns only once no call of ours is inside the runtime (or, if one never comes back, after a
/// bounded wait, saying so), since the runtime tears itself down right after.
pub fn shutdown() {
    let Some(agent) = get() else { return };
    // A walk in progress gives up at its next object; nothing new is started.
    crate::stop::request_shutdown();
    agent.stop_session();
    crate::switch::deactivate();
    if agent.capture.queue.send_timeout(Event::Stop, Duration::from_millis(500)).is_ok()
        && agent.done.recv_timeout(SHUTDOWN_GRACE).is_err()
    {
        tracing::warn!("agent thread did not finish within {SHUTDOWN_GRACE:?}; shutting down without it");
    }
    let waited = Instant::now();
    if crate::clr::gate::RUNTIME.close_and_wait(LEAVE_GRACE) {
        tracing::info!(
            "agent shut down (no call of ours left inside the runtime; waited {:?} for it)",
            waited.elapsed()
        );
    } else {
        tracing::warn!(
            "{} call(s) of the agent still inside the runtime after {LEAVE_GRACE:?}; letting the runtime shut down",
            crate::clr::gate::RUNTIME.inside()
        );
    }
}
