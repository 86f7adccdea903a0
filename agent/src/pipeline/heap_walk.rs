//! What every walk of the whole heap shares (census, retention graph, peek): the runtime
//! suspends itself for it, so it must be able to stop at any object — at its deadline, when the
//! runtime is shutting down, or when the process is asked to end meanwhile ([`crate::stop`]).

use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::clr::own_thread;
use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{
    CORPROF_E_RUNTIME_UNINITIALIZED, CORPROF_E_SUSPENSION_IN_PROGRESS, E_FAIL, E_NOINTERFACE, E_NOTIMPL, HRESULT,
};
use crate::clr::walks::{ObjectVisitor, on_object};

/// `LEAKSCOPE_TEST_WALK_DELAY_US`, set once at start-up.
static TEST_DELAY_US: AtomicU32 = AtomicU32::new(0);

/// Fault injection for tests: every object a heap walk visits costs `us` extra microseconds,
/// so a test can catch a long walk in progress on an ordinary heap.
pub fn set_test_delay_us(us: usize) {
    TEST_DELAY_US.store(us.min(u32::MAX as usize) as u32, Ordering::Relaxed);
}

/// Fault injection for tests: spends `LEAKSCOPE_TEST_WALK_DELAY_US` (0 unless set) at one
/// object of a walk that does not go through [`Pace`].
pub fn test_delay() {
    let us = TEST_DELAY_US.load(Ordering::Relaxed);
    if us != 0 {
        let until = Instant::now() + Duration::from_micros(us as u64);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
}

/// `LEAKSCOPE_TEST_WALK_REFUSALS`: walks still to refuse.
static TEST_REFUSALS: AtomicU32 = AtomicU32::new(0);

/// Fault injection for tests: the next `n` walks are refused with
/// `CORPROF_E_RUNTIME_UNINITIALIZED`, as the runtime refuses them before it has finished starting.
pub fn set_test_refusals(n: usize) {
    TEST_REFUSALS.store(n.min(u32::MAX as usize) as u32, Ordering::Relaxed);
}

fn test_refusal() -> bool {
    TEST_REFUSALS.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
}

/// A refusal that never passes: the runtime lacks the API (before .NET 9).
pub fn api_missing(hr: HRESULT) -> bool {
    hr == E_NOINTERFACE || hr == E_NOTIMPL
}

/// Why the runtime refused a walk, in words that do not guess: only a missing API means an
/// older runtime.
pub fn refused(hr: HRESULT) -> String {
    if api_missing(hr) {
        return format!("cannot walk the heap (EnumerateGCHeapObjects: {hr:#x}; it needs .NET 9 or later)");
    }
    match hr {
        CORPROF_E_RUNTIME_UNINITIALIZED => format!(
            "cannot walk the heap yet: the runtime has not finished starting (EnumerateGCHeapObjects: {hr:#x}, \
             CORPROF_E_RUNTIME_UNINITIALIZED)"
        ),
        _ => format!("the runtime refused the heap walk (EnumerateGCHeapObjects: {hr:#x})"),
    }
}

/// Why a walk stopped before the end of the heap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Its deadline passed.
    Time,
    /// The runtime is shutting down or the process was asked to end (the reason).
    Interrupted(String),
}

/// Per-object bookkeeping of a walk: call [`Pace::step`] at every object.
pub struct Pace {
    deadline: Option<Instant>,
    delay: Duration,
    visited: u64,
}

impl Pace {
    pub fn new(deadline: Option<Instant>) -> Pace {
        Pace { deadline, delay: Duration::from_micros(TEST_DELAY_US.load(Ordering::Relaxed) as u64), visited: 0 }
    }

    /// None to go on; why to stop. Cheap: two relaxed loads, and the clock every 1024 objects.
    pub fn step(&mut self) -> Option<Stopped> {
        if crate::stop::walk_should_stop() {
            return Some(Stopped::Interrupted(crate::stop::why().unwrap_or_else(|| "stop requested".to_string())));
        }
        if !self.delay.is_zero() {
            let until = Instant::now() + self.delay;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        self.visited += 1;
        if self.visited % 1024 == 0 && self.deadline.is_some_and(|d| Instant::now() > d) {
            return Some(Stopped::Time);
        }
        None
    }
}

/// Walks the heap with `visitor` (`EnumerateGCHeapObjects`; .NET 9+), with the termination
/// signals watched for the length of the suspension. On the spare thread, a thread the runtime
/// knows (`clr/own_thread.rs`): asked from the agent thread once that was kept unknown to the
/// runtime, the call answered `CORPROF_E_SUSPENSION_IN_PROGRESS` for the whole wait below (2 s)
/// in every soak-mode census and retention request of the tests; until then the agent thread had
/// always become known (through `ForceGC`) before its first walk.
pub fn walk<V: ObjectVisitor>(info: &ProfilerInfo, visitor: &mut V) -> Result<(), HRESULT> {
    if test_refusal() {
        return Err(CORPROF_E_RUNTIME_UNINITIALIZED);
    }
    let _signals = crate::stop::SignalWatch::start();
    // An address, to cross to the spare thread; this thread waits for the walk meanwhile.
    let state = visitor as *mut V as usize;
    own_thread::away_from_agent_thread("walk the heap", || {
        // SAFETY: `on_object::<V>` receives `visitor` back; it outlives the synchronous walk and
        // nothing else touches it meanwhile (its owner waits for the walk; a walk refused for a
        // suspension under way visited nothing).
        once_not_suspending(|| unsafe { info.enumerate_gc_heap_objects(on_object::<V>, state as *mut c_void) })
    })
    .unwrap_or(Err(E_FAIL))
}

/// Longest wait for a suspension of the runtime's own (its GC) to end before one of ours.
const SUSPENSION_WAIT: Duration = Duration::from_secs(2);

/// Runs `suspend`, a call that suspends the runtime (`SuspendRuntime`, `EnumerateGCHeapObjects`),
/// again every few milliseconds while the runtime answers `CORPROF_E_SUSPENSION_IN_PROGRESS`: a
/// GC of its own is suspending or has suspended it, and will be over soon. Under load a GC
/// lasts longer and a walk asked for at that moment would otherwise fail, and the request with it.
pub fn once_not_suspending<T>(suspend: impl FnMut() -> Result<T, HRESULT>) -> Result<T, HRESULT> {
    retry_while_suspending(suspend, SUSPENSION_WAIT)
}

fn retry_while_suspending<T>(mut suspend: impl FnMut() -> Result<T, HRESULT>, wait: Duration) -> Result<T, HRESULT> {
    let until = Instant::now() + wait;
    loop {
        match suspend() {
            Err(CORPROF_E_SUSPENSION_IN_PROGRESS) if Instant::now() < until && !crate::stop::walk_should_stop() => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clr::types::E_FAIL;

    /// Only a missing API is put down to an older runtime; a refusal at start-up says to ask again.
    #[test]
    fn a_refused_walk_is_explained_without_guessing() {
        assert!(refused(E_NOINTERFACE).contains(".NET 9 or later"));
        let early = refused(CORPROF_E_RUNTIME_UNINITIALIZED);
        assert!(early.contains("not finished starting") && !early.contains(".NET 9"), "{early}");
        let other = refused(E_FAIL);
        assert!(other.contains("0x80004005") && !other.contains(".NET 9"), "{other}");
    }

    /// A suspension under way is waited out; any other failure is returned at once; one that
    /// lasts past the wait is returned too.
    #[test]
    fn a_suspension_under_way_is_waited_out_other_failures_are_not() {
        let mut calls = 0;
        let got = retry_while_suspending(
            || {
                calls += 1;
                if calls < 3 { Err(CORPROF_E_SUSPENSION_IN_PROGRESS) } else { Ok(7) }
            },
            Duration::from_secs(5),
        );
        assert_eq!((got, calls), (Ok(7), 3));
        let mut calls = 0;
        let got: Result<(), HRESULT> = retry_while_suspending(
            || {
                calls += 1;
                Err(E_FAIL)
            },
            Duration::from_secs(5),
        );
        assert_eq!((got, calls), (Err(E_FAIL), 1));
        let got: Result<(), HRESULT> =
            retry_while_suspending(|| Err(CORPROF_E_SUSPENSION_IN_PROGRESS), Duration::from_millis(30));
        assert_eq!(got, Err(CORPROF_E_SUSPENSION_IN_PROGRESS));
    }
}
