//! The hot path: what runs on the runtime's threads, inside its callbacks.
//!
//! For a sampled allocation: make a weak handle to the object, read the allocating thread's
//! managed return addresses from its frame records (`frame_walk.rs`; `DoStackSnapshot` when
//! the chain cannot be trusted), and queue the record for the agent's own thread. Nothing here
//! resolves names, takes a lock shared with the agent thread, or blocks: when the queue is full
//! the sample is dropped and counted.
//!
//! Also what the GC's own reports leave for retention paths and the census, recorded on the GC's
//! thread with the runtime suspended: its roots (`root_references.rs`, from `RootReferences2`),
//! its heap dump over EventPipe (`heap_dump.rs`), and where it left the heap (`gc_extents.rs`).
//! The agent thread arms them and takes what they kept.

pub mod exact;
pub mod frame_walk;
pub mod gc_extents;
pub mod heap_dump;
pub mod root_references;
pub mod stack_snapshot;
pub mod striped;
pub mod verdicts;

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crossbeam_channel::{Sender, TrySendError};

use crate::clr::events::{self, AllocationEvent, GcStart, HeapKind, HeapStats};
use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{ClassID, EventPipeProvider, ModuleID, ObjectHandleID, ObjectID};
use crate::config::StackCapture;
pub use stack_snapshot::Frame;

/// Slots of the frame walk's verdict table (2^16: 512 KiB, up to 49 152 return addresses).
pub const VERDICT_TABLE_BITS: u32 = 16;
/// Longest a module unload waits for the agent thread to resolve what was captured before it.
const UNLOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Which runtime event feeds the allocation samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// .NET 10+: Bernoulli sampling per byte, mean one sample per 100 KiB.
    AllocationSampled,
    /// Older runtimes: one event per ~100 KB allocated, describing the last object.
    AllocationTick,
}

impl Sampling {
    pub fn name(self) -> &'static str {
        match self {
            Sampling::AllocationSampled => "AllocationSampled",
            Sampling::AllocationTick => "AllocationTick",
        }
    }
}

/// One sampled allocation, as captured on the allocating thread.
#[derive(Debug)]
pub struct Sample {
    pub class: ClassID,
    pub size: u64,
    pub heap: HeapKind,
    /// AllocationTick only: bytes this sample stands for.
    pub amount_since_last: u64,
    pub handle: ObjectHandleID,
    /// Number of the most recent GC when the object was allocated.
    pub born_after_gc: u32,
    /// The thinning in force when it was taken (after delivery, times the duty cycle of
    /// allocation sampling): it stands for this many samples.
    pub keep_one_in: u32,
    /// Exact mode: one allocation of an aimed-at type, standing for itself (times `keep_one_in`).
    pub exact: bool,
    /// Managed frames, innermost first. Frames from the frame walk carry only their return
    /// address (`function` 0): the agent thread resolves them.
    pub frames: Vec<Frame>,
    /// Return addresses the frame walk did not know (the sample fell back to DoStackSnapshot):
    /// for the agent thread to classify.
    pub unknown_returns: Vec<usize>,
    /// `LEAKSCOPE_STACK_CAPTURE=check`: DoStackSnapshot's frames for the same sample.
    pub check: Option<Vec<Frame>>,
}

/// Everything the callbacks hand to the agent thread.
#[derive(Debug)]
pub enum Event {
    Sample(Sample),
    GcStart(GcStart),
    GcEnd {
        count: u32,
        depth: u32,
    },
    HeapStats(HeapStats),
    SuspendBegin {
        at_ns: u64,
    },
    RestartEnd {
        at_ns: u64,
    },
    /// A module is unloading: resolve everything queued before this, forget code addresses,
    /// then acknowledge number `ticket` (`Unloads::done`).
    ModuleUnloading {
        module: ModuleID,
        ticket: u64,
    },
    /// Sent by `Shutdown`: flush and stop.
    Stop,
}

/// Counters the hot path updates and the agent thread reports.
#[derive(Default)]
pub struct Counters {
    /// Bumped on every runtime sample, by every allocating thread: striped.
    pub samples: striped::Striped,
    pub dropped_queue_full: AtomicU64,
    pub dropped_budget: AtomicU64,
    /// Samples skipped by thinning (see `Capture::keep_one_in`).
    pub thinned: striped::Striped,
    pub handle_failures: AtomicU64,
    pub stack_failures: AtomicU64,
    /// Samples queued or tracked; the budget check reads it without locking.
    pub tracked: AtomicU64,
    pub last_gc: AtomicU32,
    /// Time spent creating handles and walking stacks on the allocating threads.
    pub handle_ns: AtomicU64,
    pub stack_ns: AtomicU64,
    /// Samples whose stack came from the frame walk, and those that fell back to DoStackSnapshot.
    pub walked: AtomicU64,
    pub fell_back: AtomicU64,
    /// Time spent in DoStackSnapshot (fallbacks and checks).
    pub snapshot_ns: AtomicU64,
    /// Exact mode: allocations of aimed-at types seen, and those skipped by its own thinning.
    pub exact_allocations: AtomicU64,
    pub exact_thinned: AtomicU64,
    /// Runtime events skipped because their version or size is not the layout the agent
    /// knows (their fields are never read).
    pub bad_events: AtomicU64,
}

/// Everything the hot path needs, owned by the agent.
pub struct Capture {
    pub sampling: Sampling,
    pub queue: Sender<Event>,
    pub counters: Counters,
    pub max_tracked: u64,
    pub memory_limit_bytes: usize,
    pub stack_depth: usize,
    pub stack_capture: StackCapture,
    /// What the frame walk knows about return addresses (written by the agent thread).
    pub verdicts: verdicts::Verdicts,
    pub unloads: Unloads,
    pub providers: ProviderFilter,
    /// Follow one runtime sample in this many; the agent thread raises it when samples arrive
    /// faster than `LEAKSCOPE_MAX_SAMPLES_PER_SEC`, and lowers it again when they slow down.
    pub keep_one_in: AtomicU32,
    /// Allocation sampling is on in one time window in this many, chosen at random
    /// (`pipeline/duty_cycle.rs`): a sample taken in an on-window stands for this many more.
    pub window_one_in: AtomicU32,
    /// Exact mode: the types whose every allocation is followed (empty: exact mode idle).
    pub aim: exact::Aim,
    /// Exact mode's own thinning, for aimed-at types allocated faster than the sample limit.
    pub exact_keep_one_in: AtomicU32,
}

/// Module unloads, numbered: the unloading thread waits until the agent thread has handled its
/// number.
#[derive(Default)]
pub struct Unloads {
    pub requested: AtomicU64,
    pub done: AtomicU64,
}

/// A per-thread random draw for thinning, without locks or allocation.
mod thinning {
    use std::cell::Cell;

    thread_local! {
        // Const-initialised and free of destructors: safe on any thread at any time.
        static STATE: Cell<u64> = const { Cell::new(0) };
    }

    /// True with probability 1 / `one_in`.
    pub fn keep(one_in: u32) -> bool {
        STATE.with(|state| {
            let mut x = state.get();
            if x == 0 {
                // Seed from this thread's stack address and the clock.
                let local = 0u8;
                x = (&local as *const u8 as u64) ^ super::monotonic_ns() ^ 0x9E37_79B9_7F4A_7C15;
            }
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            state.set(x);
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % one_in as u64 == 0
        })
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn keeps_about_one_in_n() {
            let kept = (0..100_000).filter(|_| super::keep(8)).count();
            assert!((11_500..13_500).contains(&kept), "{kept}");
        }
    }
}

/// Remembers which EventPipe provider handle is the runtime's. Other providers (EventPipe's
/// own ProcessInfo at session end, for one) reuse the same event ids with other payloads.
#[derive(Default)]
pub struct ProviderFilter {
    runtime: AtomicUsize,
    others: [AtomicUsize; 8],
}

impl ProviderFilter {
    fn is_runtime(&self, info: &ProfilerInfo, provider: EventPipeProvider) -> bool {
        if provider == 0 {
            return false;
        }
        if self.runtime.load(Ordering::Relaxed) == provider {
            return true;
        }
        if self.others.iter().any(|o| o.load(Ordering::Relaxed) == provider) {
            return false;
        }
        // First event from this provider: ask its name once.
        let is_runtime = info.event_pipe_provider_name(provider).is_ok_and(|n| n == events::RUNTIME_PROVIDER);
        if is_runtime {
            self.runtime.store(provider, Ordering::Relaxed);
        } else if let Some(slot) = self.others.iter().find(|o| o.load(Ordering::Relaxed) == 0) {
            let _ = slot.compare_exchange(0, provider, Ordering::Relaxed, Ordering::Relaxed);
        }
        is_runtime
    }
}

impl Capture {
    /// Entry for every EventPipe event of the runtime provider.
    /// `frame`: the frame record of the callback's entry trampoline, where a stack walk starts.
    pub fn on_event(
        &self,
        info: &ProfilerInfo,
        provider: EventPipeProvider,
        id: u32,
        version: u32,
        payload: &[u8],
        frame: usize,
    ) {
        if self.providers.is_runtime(info, provider) {
            self.on_runtime_event(info, id, version, payload, frame);
        }
    }

    fn on_runtime_event(&self, info: &ProfilerInfo, id: u32, version: u32, payload: &[u8], frame: usize) {
        // A parser says None when the event's version or size is not one it knows: skipped,
        // and counted (the summary reports it).
        let parsed = match id {
            events::id::ALLOCATION_SAMPLED if self.sampling == Sampling::AllocationSampled => {
                events::parse_allocation_sampled(version, payload).map(|e| self.on_allocation(info, e, frame))
            }
            events::id::GC_ALLOCATION_TICK if self.sampling == Sampling::AllocationTick => {
                // Versions before 4 carry no address: nothing to follow, not a malformed event.
                if version < 4 {
                    return;
                }
                events::parse_allocation_tick(version, payload).map(|e| self.on_allocation(info, e, frame))
            }
            events::id::GC_START => events::parse_gc_start(version, payload).map(|start| {
                self.counters.last_gc.store(start.count, Ordering::Relaxed);
                self.send(Event::GcStart(start));
            }),
            events::id::GC_END => {
                events::parse_gc_end(version, payload).map(|(count, depth)| self.send(Event::GcEnd { count, depth }))
            }
            events::id::GC_HEAP_STATS => {
                events::parse_heap_stats(version, payload).map(|stats| self.send(Event::HeapStats(stats)))
            }
            // No payload fields are read from these two.
            events::id::GC_SUSPEND_EE_BEGIN => {
                self.send(Event::SuspendBegin { at_ns: monotonic_ns() });
                Some(())
            }
            events::id::GC_RESTART_EE_END => {
                self.send(Event::RestartEnd { at_ns: monotonic_ns() });
                Some(())
            }
            // A heap dump the retention search asked for (roots with background GC on); its
            // parser checks every count against the payload's size.
            heap_dump::id::GC_BULK_NODE | heap_dump::id::GC_BULK_ROOT_EDGE | heap_dump::id::GC_BULK_ROOT_CWT_EDGE => {
                heap_dump::RECORDER.on_event(id, payload, self.counters.last_gc.load(Ordering::Relaxed));
                Some(())
            }
            _ => Some(()),
        };
        if parsed.is_none() {
            self.counters.bad_events.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_allocation(&self, info: &ProfilerInfo, e: AllocationEvent, frame: usize) {
        if e.address == 0 || e.type_id == 0 {
            return;
        }
        // An aimed-at type is followed allocation by allocation in `on_object_allocated`; a
        // sample of it here would count it twice.
        if !self.aim.is_empty() && self.aim.contains(e.type_id) {
            return;
        }
        self.counters.samples.fetch_add(1, Ordering::Relaxed);
        // Thinning: under a very high allocation rate, follow one sample in `keep_one_in` (chosen
        // at random) so the time spent here stays within budget; the kept ones weigh that much more.
        let keep_one_in = self.keep_one_in.load(Ordering::Relaxed).max(1);
        if keep_one_in > 1 && !thinning::keep(keep_one_in) {
            self.counters.thinned.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if !self.within_budget() {
            return;
        }
        // The event fires before the allocator stores the object's MethodTable. Storing it now
        // (the same value the runtime writes a moment later) keeps the object well-formed for
        // anything that looks at it through the new handle.
        // SAFETY: `address` is the start of an object the runtime has just carved out of the GC
        // heap for this thread; its first word is the MethodTable slot, which is either still
        // zero or already equal to `type_id`. No other thread can see the object yet.
        unsafe {
            let method_table = e.address as *mut usize;
            if method_table.read_volatile() == 0 {
                method_table.write_volatile(e.type_id);
            }
        }
        let weight = keep_one_in.saturating_mul(self.window_one_in.load(Ordering::Relaxed).max(1));
        self.follow(info, e.address, e.type_id, e.size, e.heap, e.amount_since_last, weight, false, frame);
    }

    /// `ObjectAllocated` (exact mode only): every allocation in the process comes through here
    /// while some type is aimed at, so anything else returns after a scan of a few atomics.
    pub fn on_object_allocated(&self, info: &ProfilerInfo, object: ObjectID, class: ClassID, frame: usize) {
        if object == 0 || !self.aim.contains(class) {
            return;
        }
        self.counters.exact_allocations.fetch_add(1, Ordering::Relaxed);
        let keep_one_in = self.exact_keep_one_in.load(Ordering::Relaxed).max(1);
        if keep_one_in > 1 && !thinning::keep(keep_one_in) {
            self.counters.exact_thinned.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if !self.within_budget() {
            return;
        }
        // Inside ObjectAllocated the thread is in cooperative mode: the object can be sized.
        let size = info.object_size(object).map(|s| s as u64).unwrap_or(0);
        let heap = if size >= LARGE_OBJECT_BYTES { HeapKind::Large } else { HeapKind::Small };
        self.follow(info, object, class, size, heap, 0, keep_one_in, true, frame);
    }

    fn within_budget(&self) -> bool {
        if self.counters.tracked.load(Ordering::Relaxed) >= self.max_tracked
            || crate::memory::allocated_bytes() >= self.memory_limit_bytes
        {
            self.counters.dropped_budget.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Weak handle, stack walk, queue: what following one allocation costs.
    #[allow(clippy::too_many_arguments)]
    fn follow(
        &self,
        info: &ProfilerInfo,
        object: ObjectID,
        class: ClassID,
        size: u64,
        heap: HeapKind,
        amount_since_last: u64,
        keep_one_in: u32,
        exact: bool,
        frame: usize,
    ) {
        let t0 = monotonic_ns();
        let handle = match info.create_weak_handle(object) {
            Ok(h) => h,
            Err(_) => {
                self.counters.handle_failures.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let t1 = monotonic_ns();
        let (frames, unknown_returns, check) = self.capture_stack(info, frame);
        let t2 = monotonic_ns();
        self.counters.handle_ns.fetch_add(t1 - t0, Ordering::Relaxed);
        self.counters.stack_ns.fetch_add(t2 - t1, Ordering::Relaxed);
        if frames.is_empty() {
            self.counters.stack_failures.fetch_add(1, Ordering::Relaxed);
        }
        let sample = Sample {
            class,
            size,
            heap,
            amount_since_last,
            handle,
            born_after_gc: self.counters.last_gc.load(Ordering::Relaxed),
            keep_one_in,
            exact,
            frames,
            unknown_returns,
            check,
        };
        self.counters.tracked.fetch_add(1, Ordering::Relaxed);
        if let Err(TrySendError::Full(Event::Sample(s)) | TrySendError::Disconnected(Event::Sample(s))) =
            self.queue.try_send(Event::Sample(sample))
        {
            self.counters.tracked.fetch_sub(1, Ordering::Relaxed);
            self.counters.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
            let _ = info.destroy_handle(s.handle);
        }
    }

    /// The allocating thread's managed frames: from the frame walk when it completes, else
    /// from DoStackSnapshot (with the addresses the walk did not know, for the agent thread).
    fn capture_stack(&self, info: &ProfilerInfo, frame: usize) -> (Vec<Frame>, Vec<usize>, Option<Vec<Frame>>) {
        if self.stack_capture != StackCapture::Snapshot && frame != 0 {
            let mut walk = frame_walk::Walk::new();
            frame_walk::walk(&self.verdicts, frame, self.stack_depth, &mut walk);
            let unknown = walk.unknown().to_vec();
            if walk.complete {
                self.counters.walked.fetch_add(1, Ordering::Relaxed);
                let frames = walk.returns().iter().map(|&ip| Frame { function: 0, ip }).collect();
                let check = (self.stack_capture == StackCapture::Check).then(|| self.snapshot(info));
                return (frames, unknown, check);
            }
            self.counters.fell_back.fetch_add(1, Ordering::Relaxed);
            return (self.snapshot(info), unknown, None);
        }
        (self.snapshot(info), Vec::new(), None)
    }

    fn snapshot(&self, info: &ProfilerInfo) -> Vec<Frame> {
        let t0 = monotonic_ns();
        let frames = stack_snapshot::capture_current_thread(info, self.stack_depth);
        self.counters.snapshot_ns.fetch_add(monotonic_ns() - t0, Ordering::Relaxed);
        frames
    }

    /// `ModuleUnloadStarted`: waits (bounded) until the agent thread has resolved every sample
    /// captured before, while the module's code is still there, and forgotten its addresses.
    pub fn on_module_unloading(&self, module: ModuleID) {
        let ticket = self.unloads.requested.fetch_add(1, Ordering::AcqRel) + 1;
        if self.queue.try_send(Event::ModuleUnloading { module, ticket }).is_err() {
            return;
        }
        let deadline = std::time::Instant::now() + UNLOAD_WAIT;
        while self.unloads.done.load(Ordering::Acquire) < ticket && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    fn send(&self, event: Event) {
        // GC events are few; if the queue is full the agent thread is far behind and one lost
        // GC notice only blurs a counter.
        let _ = self.queue.try_send(event);
    }
}

/// Objects this large go to the large object heap.
const LARGE_OBJECT_BYTES: u64 = 85_000;

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
