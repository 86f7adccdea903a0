//! The running agent's state, shared by the callbacks and the agent thread: the runtime's
//! interface, the settings, the hot path's state (`capture`), and the EventPipe sessions.
//! Built once by `lifecycle.rs`.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Instant;

use crossbeam_channel::Receiver;
use parking_lot::Mutex;

use crate::capture::Capture;
use crate::clr::events::{self, keyword, level};
use crate::clr::profiler_info::{ProfilerInfo, RuntimeVersion};
use crate::clr::types::*;
use crate::config::Config;

pub struct Agent {
    pub info: ProfilerInfo,
    pub config: Config,
    pub runtime: RuntimeVersion,
    pub capture: Capture,
    pub startup_problems: Vec<String>,
    /// The event mask set in `Initialize` (low word).
    pub base_mask: u32,
    /// The high word of the event mask set at startup (`COR_PRF_HIGH_MONITOR`).
    pub base_high: u32,
    pub started: Instant,
    pub start_unix_ms: u64,
    /// Loaded into a running process through the diagnostics port, not at startup.
    pub attached: bool,
    pub(crate) session: Mutex<Option<EventPipeSession>>,
    /// .NET 10: the session of AllocationSampled events alone, switched on and off by the agent
    /// thread (`pipeline/duty_cycle.rs`).
    pub(crate) sampling_session: Mutex<Option<EventPipeSession>>,
    /// Signalled by the agent thread once it has flushed and stopped.
    pub(crate) done: Receiver<()>,
}

/// The running agent. A slot rather than a once-cell: after a detach the runtime may attach
/// leakscope again without unloading the library, and the new agent replaces the old one
/// (which is left in place, not freed, in case a late callback still holds it).
pub(crate) static AGENT: AtomicPtr<Agent> = AtomicPtr::new(std::ptr::null_mut());

pub fn get() -> Option<&'static Agent> {
    let agent = AGENT.load(Ordering::Acquire);
    // SAFETY: the slot only ever holds NULL or a leaked, never-freed `Agent`.
    (!agent.is_null()).then(|| unsafe { &*agent })
}

impl Agent {
    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Exact mode: switches the `ObjectAllocated` callbacks on (only possible when
    /// `ENABLE_OBJECT_ALLOCATED` was asked for at startup).
    pub fn follow_every_allocation(&self) -> Result<(), HRESULT> {
        self.info.set_event_mask2(self.base_mask | monitor::OBJECT_ALLOCATED, self.base_high)
    }

    /// Stops the EventPipe sessions, once.
    pub fn stop_session(&self) {
        if let Some(session) = self.sampling_session.lock().take() {
            let _ = self.info.event_pipe_stop_session(session);
        }
        if let Some(session) = self.session.lock().take() {
            let _ = self.info.event_pipe_stop_session(session);
        }
    }

    /// .NET 10: starts or stops the runtime's allocation sampling (its own session). With it
    /// off the runtime neither draws sampling points nor builds events: its allocations cost
    /// what they cost without leakscope.
    pub fn set_allocation_sampling(&self, on: bool) -> Result<(), HRESULT> {
        let mut session = self.sampling_session.lock();
        match (on, *session) {
            (true, None) => {
                *session = Some(start_session(&self.info, keyword::ALLOCATION_SAMPLING, level::INFORMATIONAL)?)
            }
            (false, Some(id)) => {
                *session = None;
                self.info.event_pipe_stop_session(id)?;
                self.refresh_runtime_keywords();
            }
            _ => {}
        }
        Ok(())
    }
}

impl Agent {
    /// After a session stops, the runtime can go on treating its keywords as enabled: measured
    /// on .NET 10, with the sampling session stopped the allocator still drew a sampling point
    /// (`libm` `log`) at every allocation-context refill, i.e. paid the sampling work in the off
    /// windows too. Starting another session makes the runtime recompute the provider's keywords
    /// from the sessions that remain; this one asks for a keyword bit the runtime does not use,
    /// at Critical, so it delivers nothing, and stops at once. Best effort: if it fails, sampling
    /// is still off, only not as cheap.
    fn refresh_runtime_keywords(&self) {
        match start_session(&self.info, keyword::UNUSED, level::CRITICAL) {
            Ok(session) => {
                if let Err(hr) = self.info.event_pipe_stop_session(session) {
                    tracing::debug!("cannot stop the keyword-refresh session ({hr:#x})");
                }
            }
            Err(hr) => tracing::debug!("cannot start the keyword-refresh session ({hr:#x})"),
        }
    }
}

/// One EventPipe session on the runtime provider with these keywords.
pub(crate) fn start_session(info: &ProfilerInfo, keywords: u64, level: u32) -> Result<EventPipeSession, HRESULT> {
    let provider = to_utf16z(events::RUNTIME_PROVIDER);
    let config = EventPipeProviderConfig {
        provider_name: provider.as_ptr(),
        keywords,
        logging_level: level,
        filter_data: std::ptr::null(),
    };
    let session = info.event_pipe_start_session(std::slice::from_ref(&config))?;
    tracing::debug!("EventPipe session {session:#x} started (keywords {keywords:#x}, level {level})");
    Ok(session)
}
