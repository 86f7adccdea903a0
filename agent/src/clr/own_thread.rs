//! The agent thread must stay unknown to the runtime. Most profiling calls are synchronous: the
//! runtime lets them through outside a callback only on a thread it has no thread object for
//! (one the profiler created), and refuses them on any other with
//! `CORPROF_E_UNSUPPORTED_CALL_SEQUENCE`. The agent thread makes all of its calls outside
//! callbacks.
//!
//! Stopping an EventPipe session makes its caller a runtime thread, for good: the runtime sets
//! up a thread object for whoever disables a session (once startup is over). Measured on
//! .NET 10: the first switch of allocation sampling off (`pipeline/duty_cycle.rs`) turned the
//! agent thread into one, in every run of alloc-bench; from then on `GetCodeInfo4` and every
//! other synchronous call it made were refused. Starting a session can do the same (it did, once
//! stops were moved away), and so does `ForceGC` (soak mode's induced GCs did, every time). So
//! the agent thread starts and stops sessions and induces GCs on a spare thread of leakscope's,
//! and waits for it (`profiler_info.rs` sees to it). The spare thread becomes a runtime thread.
//! Heap walks (`EnumerateGCHeapObjects`) run there too: they were refused to the agent thread
//! once it stayed unknown (`pipeline/heap_walk.rs`).
//!
//! Refusals on the agent thread are counted (`agent.sync_refused` in the summary), so that the
//! problem cannot come back unseen.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use super::profiler_info::ProfilerInfo;
use super::types::HRESULT;

/// `CORPROF_E_UNSUPPORTED_CALL_SEQUENCE`: a synchronous call made outside a callback on a thread
/// the runtime knows.
pub const CORPROF_E_UNSUPPORTED_CALL_SEQUENCE: HRESULT = 0x8013_1363_u32 as HRESULT;

thread_local! {
    static OWN: Cell<bool> = const { Cell::new(false) };
}

/// Synchronous calls the runtime refused the agent thread.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Marks the calling thread as the agent thread, whose refused calls are counted.
pub fn mark() {
    OWN.with(|own| own.set(true));
}

/// Takes note of a failed call into the runtime.
pub fn note_failure(hr: HRESULT) {
    if hr == CORPROF_E_UNSUPPORTED_CALL_SEQUENCE && OWN.with(Cell::get) {
        REFUSED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Synchronous calls refused to the agent thread so far.
pub fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// Whether the runtime has a thread object for the calling thread: `GetCurrentThreadID`, an
/// asynchronous call, answers `CORPROF_E_NOT_MANAGED_THREAD` when it has none.
pub fn known_to_runtime(info: &ProfilerInfo) -> bool {
    info.current_thread_id().is_ok()
}

/// Work handed to the spare thread.
type Job = Box<dyn FnOnce() + Send>;

/// The spare thread: started on first need, kept (a thread the runtime has set up once costs
/// nothing more to reuse, while setting up and tearing down one per call tripled what switching
/// allocation sampling costs), and ended by [`end_spare_thread`].
struct Spare {
    jobs: crossbeam_channel::Sender<Job>,
    thread: std::thread::JoinHandle<()>,
}

static SPARE: parking_lot::Mutex<Option<Spare>> = parking_lot::Mutex::new(None);

/// Runs `work` (calls that may make their caller a runtime thread) on the spare thread and waits
/// for it, when called on the agent thread; anywhere else, right here. `None` when the spare
/// thread could not be started or the work panicked: it is then not done, or not finished.
pub fn away_from_agent_thread<R: Send>(what: &str, work: impl FnOnce() -> R + Send) -> Option<R> {
    if !OWN.with(Cell::get) {
        return Some(work());
    }
    let (done, result) = crossbeam_channel::bounded(1);
    let job: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
        let _ = done.send(work());
    });
    // SAFETY: only the lifetime changes, and nothing the job borrows (all of it inside `work`)
    // is used once this function has returned: a job that is not sent is dropped here; a sent
    // one either sends its result, after `work` has been consumed, or is dropped or unwinds on
    // the spare thread, dropping `done`; `recv` below returns only after one of those.
    let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Job>(job) };
    let jobs = {
        let mut spare = SPARE.lock();
        if spare.is_none() {
            match start_spare() {
                Ok(started) => *spare = Some(started),
                Err(e) => {
                    tracing::warn!("cannot start a thread to {what} on: {e}");
                    return None;
                }
            }
        }
        spare.as_ref().map(|s| s.jobs.clone())?
    };
    jobs.send(job).ok()?;
    result.recv().ok()
}

fn start_spare() -> std::io::Result<Spare> {
    let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
    let thread = std::thread::Builder::new().name("leakscope-spare".into()).spawn(move || {
        for job in queue {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                tracing::warn!("a call on the spare thread panicked");
            }
        }
    })?;
    Ok(Spare { jobs, thread })
}

/// Ends the spare thread, if any, and waits for it: before the runtime may unload the library
/// (detach). A later need starts another.
pub fn end_spare_thread() {
    let spare = SPARE.lock().take();
    if let Some(Spare { jobs, thread }) = spare {
        drop(jobs);
        let _ = thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_marked_thread_counts_refusals_and_only_refusals() {
        let before = refused();
        note_failure(CORPROF_E_UNSUPPORTED_CALL_SEQUENCE);
        assert_eq!(refused(), before, "an unmarked thread");
        std::thread::spawn(|| {
            mark();
            note_failure(CORPROF_E_UNSUPPORTED_CALL_SEQUENCE);
            note_failure(crate::clr::types::E_FAIL);
        })
        .join()
        .unwrap();
        assert_eq!(refused(), before + 1);
    }

    #[test]
    fn on_the_agent_thread_the_work_runs_on_the_spare_thread_and_its_result_comes_back() {
        let here = std::thread::current().id();
        assert_eq!(away_from_agent_thread("test", || std::thread::current().id()), Some(here), "not the agent thread");
        std::thread::spawn(|| {
            mark();
            let agent = std::thread::current().id();
            let there = away_from_agent_thread("test", || std::thread::current().id()).unwrap();
            assert_ne!(agent, there);
            let borrowed = [1, 2, 3];
            assert_eq!(away_from_agent_thread("test", || borrowed.iter().sum::<i32>()), Some(6));
            assert_eq!(away_from_agent_thread("test", || std::thread::current().id()), Some(there), "the same spare");
            assert_eq!(away_from_agent_thread("test", || -> i32 { panic!("boom") }), None);
            assert_eq!(away_from_agent_thread("test", || 7), Some(7), "the spare outlives a panicking call");
            end_spare_thread();
            let again = away_from_agent_thread("test", || std::thread::current().id()).unwrap();
            assert_ne!(again, there, "a new spare after the end");
            end_spare_thread();
        })
        .join()
        .unwrap();
    }
}
