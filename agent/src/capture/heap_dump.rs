//! GC roots with background GC on: the runtime's own heap dump over EventPipe.
//!
//! `RootReferences2` needs `COR_PRF_MONITOR_GC`, which the runtime refuses after startup while
//! background GC is on (the default). What `dotnet-gcdump` uses works in every configuration: a
//! session that enables the runtime provider's GCHeapCollect keyword makes the runtime induce a
//! full blocking GC, and with the GCHeapDump keyword that GC lists its roots (`GCBulkRootEdge`:
//! stack frames with their method, GC handles with their flags, the finalizer queue;
//! `GCBulkRootConditionalWeakTableElementEdge`: dependent handles) and then every object and
//! reference (`GCBulkNode`/`GCBulkEdge`, which only the node count is taken from here).
//!
//! The session is started on a short-lived thread of our own: the runtime turns the thread that
//! enables GCHeapCollect into a managed thread to run the GC on it, and the agent thread must
//! stay unmanaged for its own `ICorProfilerInfo` calls. The events arrive synchronously
//! (`EventPipeEventDelivered`) on the GC's thread with the runtime suspended: the callback only
//! copies root records into a bounded vector behind a `try_lock`, never waiting.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::clr::events::{self, level};
use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{EventPipeProviderConfig, HRESULT, ObjectID, to_utf16z};

/// Event ids of the heap dump (provider `Microsoft-Windows-DotNETRuntime`).
pub mod id {
    pub const GC_BULK_ROOT_EDGE: u32 = 16;
    pub const GC_BULK_ROOT_CWT_EDGE: u32 = 17;
    pub const GC_BULK_NODE: u32 = 18;
    pub const GC_BULK_EDGE: u32 = 19;
    pub const GC_BULK_ROOT_STATIC_VAR: u32 = 38;
}

/// Keywords: the heap dump's events, and the request for the GC that produces them.
pub mod keyword {
    pub const GC_HEAP_DUMP: u64 = 0x10_0000;
    pub const GC_HEAP_COLLECT: u64 = 0x80_0000;
}

/// `GCRootKind` of a root edge.
pub mod kind {
    pub const STACK: u8 = 0;
    pub const FINALIZER: u8 = 1;
    pub const HANDLE: u8 = 2;
    pub const OLDER: u8 = 3;
    pub const SIZED_REF: u8 = 4;
    pub const OVERFLOW: u8 = 5;
    pub const DEPENDENT_HANDLE: u8 = 6;
}

/// `GCRootFlag` bits of a root edge.
pub mod flag {
    pub const PINNING: u32 = 0x1;
    pub const WEAK_REF: u32 = 0x2;
    pub const INTERIOR: u32 = 0x4;
    pub const REF_COUNTED: u32 = 0x8;
}

/// Most roots kept from one dump; further ones are counted.
pub const MAX_ROOTS: usize = 1 << 20;

/// One root: the object, what holds it (`kind`, `flags`) and the runtime's id of the holder
/// (a stack frame's method as a FunctionID, a handle's address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DumpRoot {
    pub object: ObjectID,
    pub kind: u8,
    pub flags: u32,
    pub id: usize,
}

#[derive(Default)]
struct State {
    roots: Vec<DumpRoot>,
    /// Dependent handles: (key, value) — the value lives as long as the key does.
    dependent: Vec<(ObjectID, ObjectID)>,
    dropped: u64,
}

pub struct HeapDumpRecorder {
    armed: AtomicBool,
    state: Mutex<State>,
    /// Objects the dump listed (GCBulkNode counts).
    nodes: AtomicU64,
    /// The GC the dump came from (its number when the first root arrived).
    gc: AtomicU32,
    /// Root records lost to a contended lock or a malformed event.
    lost: AtomicU64,
}

pub static RECORDER: HeapDumpRecorder = HeapDumpRecorder {
    armed: AtomicBool::new(false),
    state: Mutex::new(State { roots: Vec::new(), dependent: Vec::new(), dropped: 0 }),
    nodes: AtomicU64::new(0),
    gc: AtomicU32::new(0),
    lost: AtomicU64::new(0),
};

impl HeapDumpRecorder {
    pub fn armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    /// From the runtime provider's events while armed (a GC thread, runtime suspended); `gc`
    /// is the number of the latest GC.
    pub fn on_event(&self, event: u32, payload: &[u8], gc: u32) {
        if !self.armed() {
            return;
        }
        self.gc.store(gc, Ordering::Relaxed);
        match event {
            id::GC_BULK_NODE => {
                if let Some((count, _)) = bulk_header(payload) {
                    self.nodes.fetch_add(count as u64, Ordering::Relaxed);
                }
            }
            id::GC_BULK_ROOT_EDGE => self.record(payload, parse_root_edges),
            id::GC_BULK_ROOT_CWT_EDGE => self.record(payload, parse_dependent_edges),
            _ => {}
        }
    }

    fn record(&self, payload: &[u8], parse: fn(&[u8], &mut State) -> Option<()>) {
        let Some(mut state) = self.state.try_lock() else {
            self.lost.fetch_add(bulk_header(payload).map_or(1, |(c, _)| c as u64), Ordering::Relaxed);
            return;
        };
        if parse(payload, &mut state).is_none() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn arm(&self) {
        *self.state.lock() = State::default();
        self.nodes.store(0, Ordering::Relaxed);
        self.lost.store(0, Ordering::Relaxed);
        self.armed.store(true, Ordering::Release);
    }

    fn disarm(&self) -> Dumped {
        self.armed.store(false, Ordering::Release);
        let state = std::mem::take(&mut *self.state.lock());
        Dumped {
            roots: state.roots,
            dependent: state.dependent,
            dropped: state.dropped,
            lost: self.lost.swap(0, Ordering::Relaxed),
            nodes: self.nodes.swap(0, Ordering::Relaxed),
            gc: self.gc.load(Ordering::Relaxed),
            elapsed: Duration::ZERO,
        }
    }
}

/// `Index` (u32), `Count` (u32), `ClrInstanceID` (u16), then `Count` values.
fn bulk_header(payload: &[u8]) -> Option<(u32, &[u8])> {
    let count = u32::from_le_bytes(payload.get(4..8)?.try_into().ok()?);
    Some((count, payload.get(10..)?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// `GCBulkRootEdge` values: RootedNodeAddress (pointer), GCRootKind (u8), GCRootFlag (u32),
/// GCRootID (pointer): 21 bytes each, packed.
fn parse_root_edges(payload: &[u8], state: &mut State) -> Option<()> {
    const SIZE: usize = 8 + 1 + 4 + 8;
    let (count, values) = bulk_header(payload)?;
    for i in 0..count as usize {
        let v = values.get(i * SIZE..(i + 1) * SIZE)?;
        let root = DumpRoot {
            object: u64_at(v, 0)? as ObjectID,
            kind: v[8],
            flags: u32_at(v, 9)?,
            id: u64_at(v, 13)? as usize,
        };
        // A weak reference keeps nothing alive.
        if root.object == 0 || root.flags & flag::WEAK_REF != 0 {
            continue;
        }
        if state.roots.len() >= MAX_ROOTS {
            state.dropped += 1;
        } else {
            state.roots.push(root);
        }
    }
    Some(())
}

/// `GCBulkRootConditionalWeakTableElementEdge` values: GCKeyNodeID, GCValueNodeID, GCRootID
/// (three pointers).
fn parse_dependent_edges(payload: &[u8], state: &mut State) -> Option<()> {
    const SIZE: usize = 24;
    let (count, values) = bulk_header(payload)?;
    for i in 0..count as usize {
        let v = values.get(i * SIZE..(i + 1) * SIZE)?;
        let (key, value) = (u64_at(v, 0)? as ObjectID, u64_at(v, 8)? as ObjectID);
        if key == 0 || value == 0 {
            continue;
        }
        if state.dependent.len() >= MAX_ROOTS {
            state.dropped += 1;
        } else {
            state.dependent.push((key, value));
        }
    }
    Some(())
}

/// What one heap dump reported.
#[derive(Debug, Default)]
pub struct Dumped {
    pub roots: Vec<DumpRoot>,
    pub dependent: Vec<(ObjectID, ObjectID)>,
    /// Past [`MAX_ROOTS`].
    pub dropped: u64,
    /// Lost to a contended lock or a malformed event.
    pub lost: u64,
    /// Objects the runtime listed.
    pub nodes: u64,
    /// The GC that dumped them.
    pub gc: u32,
    /// From asking to the session's end (the induced GC and the dump).
    pub elapsed: Duration,
}

/// Why no dump came.
#[derive(Debug)]
pub enum DumpError {
    Start(HRESULT),
    Thread(String),
    /// The session started but no GC dump arrived within the wait.
    NoDump,
}

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DumpError::Start(hr) => write!(f, "the runtime would not start a heap-dump session ({hr:#x})"),
            DumpError::Thread(e) => write!(f, "cannot start a thread for the heap dump: {e}"),
            DumpError::NoDump => write!(f, "the runtime did not dump its heap"),
        }
    }
}

/// Has the runtime induce a full blocking GC that reports its roots (and lists the heap), and
/// returns them. Call on the agent thread; blocks until the GC is over (or `wait` passes).
pub fn collect(info: &'static ProfilerInfo, wait: Duration) -> Result<Dumped, DumpError> {
    let started = Instant::now();
    RECORDER.arm();
    let provider = to_utf16z(events::RUNTIME_PROVIDER);
    let (tx, rx) = crossbeam_channel::bounded::<Result<(), HRESULT>>(1);
    // The runtime turns this thread into a managed thread and runs the GC on it. The GC and its
    // dump run while the session starts, and the session is stopped here too: stopping it would
    // turn the agent thread into a runtime thread (`clr/own_thread.rs`).
    let spawned = std::thread::Builder::new().name("leakscope-heapdump".into()).spawn(move || {
        let config = EventPipeProviderConfig {
            provider_name: provider.as_ptr(),
            keywords: keyword::GC_HEAP_DUMP | keyword::GC_HEAP_COLLECT,
            logging_level: level::INFORMATIONAL,
            filter_data: std::ptr::null(),
        };
        let started = info.event_pipe_start_session(std::slice::from_ref(&config));
        if let Ok(session) = started {
            if let Err(hr) = info.event_pipe_stop_session(session) {
                tracing::warn!("cannot stop the heap-dump session ({hr:#x})");
            }
        }
        let _ = tx.send(started.map(|_| ()));
    });
    let result = match spawned {
        Err(e) => Err(DumpError::Thread(e.to_string())),
        Ok(thread) => match rx.recv_timeout(wait) {
            Ok(Ok(())) => {
                let _ = thread.join();
                Ok(())
            }
            Ok(Err(hr)) => Err(DumpError::Start(hr)),
            Err(_) => Err(DumpError::NoDump),
        },
    };
    let mut dumped = RECORDER.disarm();
    dumped.elapsed = started.elapsed();
    result?;
    if dumped.nodes == 0 && dumped.roots.is_empty() {
        return Err(DumpError::NoDump);
    }
    Ok(dumped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(values: &[u8], count: u32) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&count.to_le_bytes());
        p.extend_from_slice(&7u16.to_le_bytes());
        p.extend_from_slice(values);
        p
    }

    fn root_value(object: u64, kind: u8, flags: u32, id: u64) -> Vec<u8> {
        let mut v = object.to_le_bytes().to_vec();
        v.push(kind);
        v.extend_from_slice(&flags.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
        v
    }

    #[test]
    fn root_edges_parse_and_weak_ones_are_left_out() {
        let mut values = root_value(0x1000, kind::STACK, 0, 0xF00);
        values.extend(root_value(0x2000, kind::HANDLE, flag::WEAK_REF, 0xA0));
        values.extend(root_value(0x3000, kind::HANDLE, flag::PINNING, 0xB0));
        let mut state = State::default();
        assert!(parse_root_edges(&bulk(&values, 3), &mut state).is_some());
        assert_eq!(
            state.roots,
            [
                DumpRoot { object: 0x1000, kind: kind::STACK, flags: 0, id: 0xF00 },
                DumpRoot { object: 0x3000, kind: kind::HANDLE, flags: flag::PINNING, id: 0xB0 },
            ]
        );
        // A count larger than the payload is malformed: what fits is kept, and it says so.
        assert!(parse_root_edges(&bulk(&values, 4), &mut State::default()).is_none());
    }

    #[test]
    fn dependent_edges_parse() {
        let mut values = Vec::new();
        for (k, v) in [(0x10u64, 0x20u64), (0, 0x30)] {
            values.extend_from_slice(&k.to_le_bytes());
            values.extend_from_slice(&v.to_le_bytes());
            values.extend_from_slice(&0x99u64.to_le_bytes());
        }
        let mut state = State::default();
        assert!(parse_dependent_edges(&bulk(&values, 2), &mut state).is_some());
        assert_eq!(state.dependent, [(0x10, 0x20)]);
    }
}
