//! The GC's roots, for the paths no static field explains: which stack frame (and method), which
//! kind of GC handle, or the finalizer queue holds the object a path starts from.
//!
//! Asked for only when a search leaves instances whose ancestors nothing on the heap references,
//! and then from the best source the runtime allows: with background GC off, `RootReferences2`
//! around an induced GC ([`roots`](super::roots)); otherwise the runtime's EventPipe heap dump
//! ([`heap_dump`](crate::capture::heap_dump)), which costs a longer pause (the runtime lists the whole
//! heap too) but works in the default configuration. Either way the roots' addresses are those
//! right after that GC; the followed objects are matched to them in a suspension straight after,
//! through their handles, if no other GC ran in between.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::settle::{Csr, still_open};
use super::target::Target;
use super::tracked::{AddrMap, Edge, NONE, Tracked, flag as node_flag};
use crate::capture::heap_dump::{self, flag, kind};
use crate::capture::root_references;
use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{CORPROF_E_CONCURRENT_GC_NOT_PROFILABLE, FunctionID, ObjectID, root};
use crate::output::records::{RetentionRoot, RetentionRootKinds};

/// Which roots this agent can name in its mode (for the hello): the same in every GC mode,
/// since without `RootReferences2` (background GC on) the heap dump names them.
pub fn capabilities(attached: bool, info_version: u32) -> RetentionRootKinds {
    let strings = |kinds: &[&str]| kinds.iter().map(|k| k.to_string()).collect();
    if info_version < 15 {
        return RetentionRootKinds {
            named: Vec::new(),
            not_named: strings(&["any: retention paths need EnumerateGCHeapObjects (.NET 9 or later)"]),
        };
    }
    let mut not_named =
        vec!["thread statics of generic classes (their storage is shown, or the stack frame holding them)"];
    if attached {
        not_named.push("statics of generic classes loaded before the agent attached");
    }
    RetentionRootKinds {
        named: strings(&[
            "static fields (a generic class's by the type it holds)",
            "thread statics, with their thread",
            "stack frames, with their method",
            "GC handles by kind (strong, pinned, ref-counted)",
            "dependent handles (ConditionalWeakTable)",
            "the finalizer queue",
        ]),
        not_named: strings(&not_named),
    }
}

/// What holds a root object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Holder {
    /// A stack frame of this method (0: unknown method).
    Stack(FunctionID),
    Handle {
        pinned: bool,
        ref_counted: bool,
    },
    /// A dependent handle (a `ConditionalWeakTable` entry) whose key is alive.
    Dependent,
    Finalizer,
    Other,
}

impl Holder {
    /// Which roots a path starts from when several hold the same object.
    pub fn priority(self) -> u8 {
        match self {
            Holder::Handle { .. } => 0,
            Holder::Stack(_) => 1,
            Holder::Finalizer => 2,
            Holder::Dependent => 3,
            Holder::Other => 4,
        }
    }

    pub fn describe(self, function_name: &mut dyn FnMut(FunctionID) -> Arc<str>) -> RetentionRoot {
        match self {
            Holder::Stack(f) => {
                let name = (f != 0).then(|| function_name(f));
                RetentionRoot::of("stack", name.as_deref(), None)
            }
            Holder::Handle { pinned, ref_counted } => RetentionRoot::of(
                "handle",
                None,
                Some(if pinned {
                    "pinned"
                } else if ref_counted {
                    "ref-counted (COM)"
                } else {
                    "strong"
                }),
            ),
            Holder::Dependent => RetentionRoot::of(
                "dependent",
                None,
                Some("a dependent handle (ConditionalWeakTable) whose key is alive"),
            ),
            Holder::Finalizer => RetentionRoot::of("finalizer", None, Some("the finalizer queue")),
            Holder::Other => RetentionRoot::of("other", None, Some("a root the GC reports as other")),
        }
    }
}

/// Roots, by object, from one GC.
pub struct Collected {
    pub roots: AddrMap<Holder>,
    pub count: usize,
    pub source: &'static str,
    /// The induced GC (and dump) that reported them.
    pub pause: Duration,
    /// Roots not kept (past the limit, or reported concurrently).
    pub dropped: u64,
    /// The GC they are as of.
    pub gc: u32,
}

fn keep(roots: &mut AddrMap<Holder>, object: ObjectID, holder: Holder) {
    let slot = roots.entry(object).or_insert(holder);
    if holder.priority() < slot.priority() {
        *slot = holder;
    }
}

/// Has the GC report its roots (inducing a full GC). Call on the agent thread.
pub fn collect(info: &'static ProfilerInfo) -> Result<Collected, String> {
    let started = Instant::now();
    match root_references::arm(info) {
        Ok(armed) => {
            let forced = info.force_gc();
            armed.disarm(info);
            forced.map_err(|hr| format!("ForceGC failed ({hr:#x})"))?;
            let (at_gc, reported, dropped) = root_references::RECORDER.take();
            let mut roots = AddrMap::default();
            for r in &reported {
                let holder = match r.kind {
                    root::STACK => Holder::Stack(r.id),
                    root::HANDLE => Holder::Handle { pinned: r.flags & root::FLAG_PINNING != 0, ref_counted: false },
                    root::FINALIZER => Holder::Finalizer,
                    _ => Holder::Other,
                };
                keep(&mut roots, r.object, holder);
            }
            Ok(Collected {
                count: reported.len(),
                roots,
                source: "gc-callbacks",
                pause: started.elapsed(),
                dropped,
                gc: at_gc,
            })
        }
        Err(hr) if hr == CORPROF_E_CONCURRENT_GC_NOT_PROFILABLE => {
            let dumped = heap_dump::collect(info, Duration::from_secs(60)).map_err(|e| e.to_string())?;
            let mut roots = AddrMap::default();
            for r in &dumped.roots {
                let holder = match r.kind {
                    kind::STACK => Holder::Stack(r.id),
                    kind::HANDLE => Holder::Handle {
                        pinned: r.flags & flag::PINNING != 0,
                        ref_counted: r.flags & flag::REF_COUNTED != 0,
                    },
                    kind::FINALIZER => Holder::Finalizer,
                    kind::DEPENDENT_HANDLE => Holder::Dependent,
                    _ => Holder::Other,
                };
                keep(&mut roots, r.object, holder);
            }
            for &(_, value) in &dumped.dependent {
                keep(&mut roots, value, Holder::Dependent);
            }
            Ok(Collected {
                count: dumped.roots.len() + dumped.dependent.len(),
                roots,
                source: "heap-dump",
                pause: dumped.elapsed,
                dropped: dumped.dropped + dumped.lost,
                gc: dumped.gc,
            })
        }
        Err(hr) => Err(format!("the runtime would not report GC roots ({hr:#x})")),
    }
}

/// Marks the followed objects the roots hold (`holders` gets one entry per distinct holder;
/// nodes get its index). In a suspension, after refreshing addresses from handles; None when
/// another GC ran since the roots were reported (their addresses are stale).
pub fn mark(
    info: &ProfilerInfo,
    tracked: &mut Tracked,
    collected: &Collected,
    gc: &std::sync::atomic::AtomicU32,
    holders: &mut Vec<Holder>,
) -> Option<usize> {
    let marked = super::walk::suspended_only(info, || {
        if gc.load(Ordering::SeqCst) != collected.gc {
            return None;
        }
        let mut marked = 0;
        for n in &mut tracked.nodes {
            if n.has(node_flag::DEAD) {
                continue;
            }
            n.addr = if n.handle == 0 { 0 } else { info.object_from_handle(n.handle).unwrap_or(0) };
            if n.addr == 0 {
                n.flags |= node_flag::DEAD;
                continue;
            }
            n.root = NONE;
            if let Some(&holder) = collected.roots.get(&n.addr) {
                let i = holders.iter().position(|&h| h == holder).unwrap_or_else(|| {
                    holders.push(holder);
                    holders.len() - 1
                });
                n.root = i as u32;
                marked += 1;
            }
        }
        Some(marked)
    });
    match marked {
        Ok((m, _)) => {
            tracked.reindex();
            m
        }
        Err(hr) => {
            tracing::warn!("cannot suspend the runtime to match roots ({hr:#x})");
            None
        }
    }
}

/// Per requested type, the sampled instances no static reaches and that are held, as far as
/// the search knows for sure, by objects nothing on the heap references: only the GC's roots
/// can say what holds those.
pub fn wanted(t: &Tracked, targets: &[Target]) -> Vec<u64> {
    let n = t.nodes.len();
    let live: Vec<Edge> = t
        .edges
        .iter()
        .filter(|e| !t.nodes[e.child as usize].has(node_flag::DEAD) && !t.nodes[e.parent as usize].has(node_flag::DEAD))
        .copied()
        .collect();
    let children = Csr::new(n, &live, |e| (e.parent, e.child));
    let reach = |seeds: &mut dyn Iterator<Item = u32>| {
        let mut seen = vec![false; n];
        let mut stack: Vec<u32> = seeds.collect();
        for &s in &stack {
            seen[s as usize] = true;
        }
        while let Some(i) = stack.pop() {
            for &j in children.of(i) {
                if !seen[j as usize] {
                    seen[j as usize] = true;
                    stack.push(j);
                }
            }
        }
        seen
    };
    let live_node = |i: usize| !t.nodes[i].has(node_flag::DEAD);
    let from_statics =
        reach(&mut (0..n).filter(|&i| live_node(i) && t.nodes[i].static_field != NONE).map(|i| i as u32));
    let from_unreferenced = reach(
        &mut (0..n)
            .filter(|&i| {
                let x = &t.nodes[i];
                live_node(i)
                    && x.referrers == 0
                    && x.static_field == NONE
                    && !x.has(node_flag::HOLDS_STATIC)
                    && !still_open(x)
            })
            .map(|i| i as u32),
    );
    targets
        .iter()
        .map(|target| {
            target
                .samples
                .iter()
                .filter(|&&s| live_node(s as usize) && !from_statics[s as usize] && from_unreferenced[s as usize])
                .count() as u64
        })
        .collect()
}
