//! Retention paths: for the requested types, which chains of references from GC roots keep
//! their instances alive, aggregated by shape (`static LeakApp.Clock.Tick` → `EventHandler` →
//! `Object[]` → `EventHandler` → `Subscriber`, 5000 instances).
//!
//! Right after an induced full GC (everything left is reachable) the agent locates the static
//! fields ([`statics`]), walks the heap into a compact graph with the runtime suspended
//! ([`graph`], reading the statics' values in the same suspension), then, with the application
//! running again, searches it from the roots and counts instances per path ([`paths`]), and
//! names types and fields ([`fields`]). Memory and time are bounded; a budget that stops the
//! work is reported, never exceeded. Needs `EnumerateGCHeapObjects` (.NET 9+).

pub mod fields;
pub mod graph;
pub mod paths;
pub mod roots;
pub mod statics;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::agent::Agent;
use crate::clr::types::{CORPROF_E_CONCURRENT_GC_NOT_PROFILABLE, ClassID, FunctionID, HRESULT, root};
use crate::output::records::*;
use graph::{AtSuspension, Limit};
use paths::{ARRAY_ELEMENT, ELIDED, Roots, Signatures};
use statics::{Slot, Statics};

const DEFAULT_MAX_PATHS: usize = 5;
const MAX_PATHS: usize = 100;
const MAX_TYPES: usize = 64;
const DEFAULT_TIME_BUDGET: Duration = Duration::from_secs(10);
/// Least memory worth starting a walk with.
const MIN_BUDGET: usize = 1 << 20;

/// What the collector asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub types: Vec<String>,
    pub max_paths: usize,
    pub time_budget: Duration,
    /// At most this much memory, within the agent's own limit.
    pub memory_budget: Option<usize>,
}

impl Request {
    pub fn new(types: Vec<String>) -> Request {
        Request { types, max_paths: DEFAULT_MAX_PATHS, time_budget: DEFAULT_TIME_BUDGET, memory_budget: None }
    }

    /// `{"cmd":"retention","types":["A","B"],"max_paths":5,"max_ms":10000,"max_memory_mb":64}`.
    pub fn from_command(command: &serde_json::Value) -> Result<Request, String> {
        let types = super::requested_types(command, "retention", MAX_TYPES)?;
        let mut request = Request::new(types);
        if let Some(n) = command.get("max_paths").and_then(|v| v.as_u64()) {
            request.max_paths = (n as usize).clamp(1, MAX_PATHS);
        }
        if let Some(ms) = command.get("max_ms").and_then(|v| v.as_u64()) {
            request.time_budget = Duration::from_millis(ms.clamp(100, 600_000));
        }
        if let Some(mb) = command.get("max_memory_mb").and_then(|v| v.as_u64()) {
            request.memory_budget = Some((mb.clamp(1, 1 << 20) as usize) << 20);
        }
        Ok(request)
    }
}

/// What persists between requests: located statics, field layouts, the heap's last size.
#[derive(Default)]
pub struct Retention {
    statics: Statics,
    pub fields: fields::FieldNames,
    expected_objects: usize,
}

/// Reads the statics' values during the walk's suspension, if no GC ran since they were
/// located (a GC may have moved their storage).
struct SlotReader<'a> {
    slots: &'a mut [Slot],
    gc_counter: &'a AtomicU32,
    located_at_gc: u32,
    stale: bool,
}

impl AtSuspension for SlotReader<'_> {
    fn suspended(&mut self) {
        if self.gc_counter.load(Ordering::SeqCst) != self.located_at_gc {
            self.stale = true;
            return;
        }
        for slot in self.slots.iter_mut() {
            // SAFETY: the runtime gave this address for a static field of an initialised class
            // and no GC has run since (checked above, with the runtime now suspended), so it
            // is still the field's storage and holds an object reference or null.
            slot.value = unsafe { (slot.address as *const usize).read_volatile() };
        }
    }
}

/// Names for classes and methods, from the pipeline's caches.
pub trait Namer {
    fn class(&mut self, class: ClassID) -> Arc<str>;
    fn function(&mut self, function: FunctionID) -> Arc<str>;
}

impl<R: crate::pipeline::names::Runtime> Namer for crate::pipeline::names::Names<R> {
    fn class(&mut self, class: ClassID) -> Arc<str> {
        crate::pipeline::names::Names::class(self, class)
    }
    fn function(&mut self, function: FunctionID) -> Arc<str> {
        crate::pipeline::names::Names::function(self, function).display
    }
}

impl Retention {
    /// Walks the heap and reports the paths to the requested types. Call on the agent thread
    /// right after a full GC (numbered `gc`); `gc_roots` says whether [`roots::arm`] had the
    /// runtime report that GC's roots.
    pub fn run(
        &mut self,
        agent: &Agent,
        request: &Request,
        gc: u32,
        gc_roots: Result<(), HRESULT>,
        names: &mut dyn Namer,
        is_framework: &dyn Fn(&str) -> bool,
    ) -> RetentionRecord {
        let started = Instant::now();
        let deadline = started + request.time_budget;
        let baseline = crate::memory::allocated_bytes();
        let room = agent.config.memory_limit_bytes.saturating_sub(baseline);
        let budget = request.memory_budget.map_or(room, |b| b.min(room));
        let mut record = RetentionRecord {
            gc,
            t_ms: agent.elapsed_ms(),
            unix_ms: crate::pipeline::unix_ms(),
            elapsed_ms: 0.0,
            pause_ms: 0.0,
            objects: 0,
            references: 0,
            memory_bytes: 0,
            memory_budget_bytes: budget,
            time_budget_ms: request.time_budget.as_millis() as u64,
            truncated: false,
            truncated_by: Vec::new(),
            statics: RetentionStatics { fields: 0, with_value: 0, stale: false },
            roots: RetentionRoots { reported: false, count: 0, why: None },
            error: None,
            types: Vec::new(),
        };
        if budget < MIN_BUDGET {
            record.error = Some(format!(
                "no memory left for the object graph: the agent uses {} MB of its {} MB (LEAKSCOPE_MEMORY_LIMIT_MB)",
                baseline >> 20,
                agent.config.memory_limit_bytes >> 20
            ));
            return record;
        }
        let info = &agent.info;
        if info.version() < 15 {
            record.error = Some(format!(
                "cannot walk the heap: this runtime offers ICorProfilerInfo{} and EnumerateGCHeapObjects needs \
                 ICorProfilerInfo15 (.NET 9 or later)",
                info.version()
            ));
            return record;
        }
        let counter = &agent.capture.counters.last_gc;
        let located_at_gc = counter.load(Ordering::SeqCst);
        let mut slots = self.statics.slots(info, &mut |c| names.class(c), is_framework);
        record.statics.fields = slots.len();
        let mut reader = SlotReader { slots: &mut slots, gc_counter: counter, located_at_gc, stale: false };
        let walk_started = Instant::now();
        // An eighth is kept for names, statics and the paths' tables; the graph gets the rest.
        let walked = match graph::walk(info, budget - budget / 8, deadline, self.expected_objects, &mut reader) {
            Ok(w) => w,
            Err(hr) => {
                record.error = Some(format!(
                    "cannot walk the heap (EnumerateGCHeapObjects: {hr:#x}; it needs .NET 9 or later)"
                ));
                record.elapsed_ms = ms(started.elapsed());
                return record;
            }
        };
        let stale = reader.stale;
        record.statics.stale = stale;
        record.statics.with_value = if stale { 0 } else { slots.iter().filter(|s| s.value != 0).count() };
        record.pause_ms = ms(walked.pause);
        let mut peak = crate::memory::allocated_bytes().saturating_sub(baseline);
        let mut graph = walked.graph;
        let mut limits: Vec<Limit> = walked.stopped.into_iter().collect();
        if walked.stopped.is_none() {
            self.expected_objects = graph.nodes.len();
        }
        record.objects = graph.nodes.len() as u64;
        record.references = graph.targets.len() as u64;
        tracing::info!(
            "retention: walked {} objects, {} references, {} classes in {:?} ({} unreadable, stopped: {:?})",
            graph.nodes.len(),
            graph.targets.len(),
            graph.classes.len(),
            walked.pause,
            walked.unreadable,
            walked.stopped
        );

        let phase = Instant::now();
        graph.index();
        let indexed = phase.elapsed();
        let referenced = graph.resolve_edges(deadline);
        let resolved = phase.elapsed();

        // Which classes are requested, and which are arrays (their slots are elements).
        let class_names: Vec<Arc<str>> = graph.classes.iter().map(|&c| names.class(c)).collect();
        let is_array: Vec<bool> = graph.classes.iter().map(|&c| matches!(info.array_info(c), Ok(Some(_)))).collect();
        let mut matched: Vec<Vec<Arc<str>>> = vec![Vec::new(); request.types.len()];
        let target_of_class: Vec<Option<usize>> = class_names
            .iter()
            .map(|name| {
                let t = request.types.iter().position(|wanted| type_matches(wanted, name))?;
                if !matched[t].contains(name) {
                    matched[t].push(name.clone());
                }
                Some(t)
            })
            .collect();

        // Roots: the application's statics first, then the framework's; then the GC's roots
        // (handles, stack frames, finalizer queue), when it reported them for this GC.
        let mut descs: Vec<RetentionRoot> = Vec::new();
        let mut statics_seeds: Vec<(u32, u32, bool)> = Vec::new();
        if !stale {
            for slot in slots.iter().filter(|s| s.value != 0) {
                if let Some(node) = graph.find(slot.value) {
                    let field = &self.statics.fields[slot.field as usize];
                    statics_seeds.push((node, descs.len() as u32, field.framework));
                    descs.push(RetentionRoot { kind: "static", name: Some(field.name.clone()), detail: None });
                }
            }
        }
        statics_seeds.sort_by_key(|&(_, _, framework)| framework);
        let (gc_seeds, gc_roots_record) = self.gc_roots(gc_roots, located_at_gc, stale, &graph, &mut descs, names);
        record.roots = gc_roots_record;
        let fixed = descs.len() as u32;
        descs.push(RetentionRoot {
            kind: "static",
            name: None,
            detail: Some("the runtime's storage for statics, through a field not identified (a generic class's, or a thread static)"),
        });
        descs.push(RetentionRoot {
            kind: "other",
            name: None,
            detail: Some(if record.roots.reported {
                "referenced by no object and not a root the GC reported (a dependent handle's value, or allocated since)"
            } else {
                "referenced by no object: held by a stack frame, a GC handle or the finalizer queue"
            }),
        });
        descs.push(RetentionRoot { kind: "other", name: None, detail: Some("a cycle held from outside the heap") });
        let roots = Roots {
            statics: statics_seeds.iter().map(|&(node, root, _)| (node, root)).collect(),
            gc: gc_seeds,
            storage_root: fixed,
            unreferenced_root: fixed + 1,
            other_root: fixed + 2,
        };
        let mut signatures = Signatures::default();
        // A search cut short by the agent's stop is interrupted, not out of time.
        let cut = || if crate::stop::walk_should_stop() { Limit::Interrupted } else { Limit::Time };
        let tallies = match &referenced {
            Some(referenced) => {
                let tree = paths::search(&graph, referenced, &roots, deadline);
                peak = peak.max(crate::memory::allocated_bytes().saturating_sub(baseline));
                if !tree.complete {
                    limits.push(cut());
                }
                paths::tally(&graph, &tree, &target_of_class, &is_array, request.types.len(), &mut signatures)
            }
            None => {
                limits.push(cut());
                // No search: count the instances, all unreached.
                let mut tallies: Vec<paths::TypeTally> = (0..request.types.len()).map(|_| Default::default()).collect();
                for n in &graph.nodes {
                    if let Some(Some(t)) = target_of_class.get(n.class as usize) {
                        tallies[*t].instances += 1;
                        tallies[*t].bytes += n.size as u64;
                        tallies[*t].unreached += 1;
                    }
                }
                tallies
            }
        };
        peak = peak.max(crate::memory::allocated_bytes().saturating_sub(baseline));
        tracing::info!(
            "retention: statics located in {:?}, indexed by {:?} ({} runs), edges resolved by {:?}, paths counted by {:?} ({} signatures)",
            walk_started - started,
            indexed,
            graph.runs(),
            resolved,
            phase.elapsed(),
            signatures.len()
        );

        for (t, tally) in tallies.into_iter().enumerate() {
            let mut by_path: Vec<(u32, (u64, u64))> = tally.by_path.into_iter().collect();
            by_path.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut listed = Vec::new();
            let mut other = RetentionOther::default();
            for (i, (sig, (instances, bytes))) in by_path.into_iter().enumerate() {
                if i >= request.max_paths {
                    other.paths += 1;
                    other.instances += instances;
                    other.bytes += bytes;
                    continue;
                }
                let entries = signatures.steps(sig);
                let mut steps: Vec<RetentionStep> = Vec::with_capacity(entries.len() + 1);
                for (k, e) in entries.iter().enumerate() {
                    let type_name: Arc<str> =
                        if e.class == ELIDED { "…".into() } else { class_names[e.class as usize].clone() };
                    let field = if k == 0 || e.class == ELIDED {
                        None
                    } else if e.field == ARRAY_ELEMENT {
                        Some(Arc::from("[]"))
                    } else {
                        let previous = entries[k - 1].class;
                        (previous != ELIDED)
                            .then(|| self.fields.name(info, graph.classes[previous as usize], e.field))
                            .flatten()
                    };
                    steps.push(RetentionStep { type_name, field, repeated: e.repeated });
                }
                let ends_in_type = entries.last().is_some_and(|e| e.class != ELIDED && target_of_class[e.class as usize] == Some(t));
                if !ends_in_type {
                    let last = matched[t].first().cloned().unwrap_or_else(|| request.types[t].as_str().into());
                    steps.push(RetentionStep { type_name: last, field: None, repeated: false });
                }
                listed.push(RetentionPath { root: descs[entries[0].field as usize].clone(), steps, instances, bytes });
            }
            record.types.push(RetentionType {
                type_name: request.types[t].clone(),
                matched: std::mem::take(&mut matched[t]),
                instances: tally.instances,
                bytes: tally.bytes,
                unreached: tally.unreached,
                paths: listed,
                other,
            });
        }
        limits.dedup();
        record.truncated = !limits.is_empty();
        record.truncated_by = limits
            .iter()
            .map(|l| match l {
                Limit::Memory => "memory",
                Limit::Time => "time",
                Limit::Interrupted => "interrupted",
            })
            .collect();
        if limits.contains(&Limit::Interrupted) && record.error.is_none() {
            let why = crate::stop::why().unwrap_or_else(|| "the agent was stopped".to_string());
            record.error = Some(format!("the walk was interrupted ({why}): counts and paths cover part of the heap"));
        }
        record.memory_bytes = peak;
        record.elapsed_ms = ms(started.elapsed());
        record
    }
}

impl Retention {
    /// Seeds from the roots the GC reported for the walked GC (handles first, then stack
    /// frames, the finalizer queue, others), each with its description.
    fn gc_roots(
        &mut self,
        armed: Result<(), HRESULT>,
        walked_after_gc: u32,
        stale: bool,
        graph: &graph::Graph,
        descs: &mut Vec<RetentionRoot>,
        names: &mut dyn Namer,
    ) -> (Vec<(u32, u32)>, RetentionRoots) {
        let not = |why: String| (Vec::new(), RetentionRoots { reported: false, count: 0, why: Some(why) });
        if let Err(hr) = armed {
            return not(if hr == CORPROF_E_CONCURRENT_GC_NOT_PROFILABLE {
                "the runtime reports GC roots to a profiler only with background GC off (DOTNET_gcConcurrent=0): \
                 paths a static does not hold start at an object nothing references"
                    .to_string()
            } else {
                format!("the runtime would not report GC roots ({hr:#x})")
            });
        }
        let (gc, reported, dropped) = roots::RECORDER.take();
        if reported.is_empty() {
            return not("the GC reported no roots".to_string());
        }
        if stale || gc != walked_after_gc {
            return not(format!("another GC ran between the root scan (GC {gc}) and the heap walk"));
        }
        let priority = |kind: u32| match kind {
            root::HANDLE => 0,
            root::STACK => 1,
            root::FINALIZER => 2,
            _ => 3,
        };
        let mut seeds: Vec<(u32, u32, u32)> = Vec::new();
        let mut index: std::collections::HashMap<(u32, usize), u32> = std::collections::HashMap::new();
        for r in &reported {
            let Some(node) = graph.find(r.object) else { continue };
            // One description per handle kind, per stack frame's method.
            let key = match r.kind {
                root::STACK => (r.kind, r.id),
                root::HANDLE => (r.kind, (r.flags & root::FLAG_PINNING) as usize),
                kind => (kind, 0),
            };
            let desc = *index.entry(key).or_insert_with(|| {
                descs.push(match r.kind {
                    root::STACK => RetentionRoot {
                        kind: "stack",
                        name: (r.id != 0).then(|| names.function(r.id)),
                        detail: None,
                    },
                    root::HANDLE => RetentionRoot {
                        kind: "handle",
                        name: None,
                        detail: (r.flags & root::FLAG_PINNING != 0).then_some("pinned"),
                    },
                    root::FINALIZER => RetentionRoot { kind: "finalizer", name: None, detail: None },
                    _ => RetentionRoot { kind: "other", name: None, detail: Some("a root the GC reports as other") },
                });
                (descs.len() - 1) as u32
            });
            seeds.push((node, desc, priority(r.kind)));
        }
        seeds.sort_by_key(|&(_, _, p)| p);
        let count = reported.len();
        let why = (dropped > 0).then(|| format!("{dropped} roots were not kept (past {MAX} or reported concurrently)", MAX = roots::MAX_ROOTS));
        (seeds.into_iter().map(|(n, d, _)| (n, d)).collect(), RetentionRoots { reported: true, count, why })
    }
}

/// A requested name matches the runtime's full name, or, for a name without a namespace, its
/// last part (`Subscriber` matches `LeakApp.Subscriber`).
pub fn type_matches(wanted: &str, name: &str) -> bool {
    if wanted == name {
        return true;
    }
    if wanted.contains('.') || name.contains('<') {
        return false;
    }
    name.rsplit('.').next() == Some(wanted)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_defaults_and_clamps() {
        let r = Request::from_command(&serde_json::json!({"cmd":"retention","types":["LeakApp.Subscriber"," ",""]})).unwrap();
        assert_eq!(r, Request::new(vec!["LeakApp.Subscriber".into()]));
        let r = Request::from_command(&serde_json::json!({"cmd":"retention","types":["A"],"max_paths":1000,"max_ms":5,"max_memory_mb":32}))
            .unwrap();
        assert_eq!((r.max_paths, r.time_budget, r.memory_budget), (100, Duration::from_millis(100), Some(32 << 20)));
        assert!(Request::from_command(&serde_json::json!({"cmd":"retention"})).is_err());
        assert!(Request::from_command(&serde_json::json!({"cmd":"retention","types":[]})).is_err());
    }

    #[test]
    fn names_match_fully_or_by_their_last_part() {
        assert!(type_matches("LeakApp.Subscriber", "LeakApp.Subscriber"));
        assert!(type_matches("Subscriber", "LeakApp.Subscriber"));
        assert!(!type_matches("Subscriber", "LeakApp.SubscriberList"));
        assert!(!type_matches("App.Subscriber", "LeakApp.Subscriber"));
        assert!(!type_matches("String>", "System.Collections.Generic.List<System.String>"));
    }
}
