//! Retention paths: for the requested types, which chains of references from GC roots keep
//! their instances alive, aggregated by shape (`static LeakApp.Clock.Tick` → `EventHandler` →
//! `Object[]` → `EventHandler` → `Subscriber`, 5000 instances).
//!
//! This module owns one request from start to record: it runs the steps below in order and
//! turns their results into the `retention` record. Right after an induced full GC (everything
//! left is reachable): a census says which classes the requested types are and how many
//! instances each has; the [search](search) samples the instances ([`target`]) and follows them
//! up to the roots, one heap walk per step ([`settle`] says which are done), keeping only what it
//! follows ([`tracked`]); static fields are located ([`statics`]) and their values read inside
//! each walk's suspension ([`walk`]); a generic class's are named by type ([`generic_statics`]);
//! when some paths end at objects nothing on the heap references, the GC is asked for its roots
//! ([`root_kinds`]); then the followed part of the heap is searched from the roots ([`graph`],
//! [`paths`]) and instances are counted per path, with types and fields named ([`fields`]), and
//! the top paths' retained size measured ([`retained`]). Memory and time are bounded; a budget
//! that stops the work is reported, never exceeded, and a path it cut short is `unknown`
//! (saying why: `cut_short`), never a root. Needs `EnumerateGCHeapObjects` (.NET 9+).

mod cut_short;
pub mod fields;
pub mod generic_statics;
pub mod generics;
pub mod graph;
mod naming;
pub mod paths;
mod request;
pub mod retained;
pub mod root_kinds;
pub mod search;
pub mod settle;
pub mod statics;
pub mod target;
pub mod tracked;
pub mod walk;

pub use naming::{Namer, count, type_matches};
pub use request::Request;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::agent::Agent;
use crate::clr::types::ClassID;
use crate::output::records::{
    Num, RetainedSize, Retention as RetentionRecord, RetentionOther, RetentionPath, RetentionRoot, RetentionRoots,
    RetentionStatics, RetentionStep, RetentionType, RetentionWalk,
};
use crate::pipeline::census::TypeTotals;
use paths::{ARRAY_ELEMENT, ELIDED, Roots, Signatures};
use statics::{Slot, Statics};
use target::Target;
use tracked::{NONE, flag};

/// Least memory worth starting a walk with.
const MIN_BUDGET: usize = 1 << 20;
/// Instances followed per type: all of them up to this many, else a spread-out sample of it.
const SAMPLES_PER_TYPE: u64 = 4096;
/// Instances followed over all the requested types.
const SAMPLES_TOTAL: u64 = 16384;
/// Fewest followed per type, however many types are asked for.
const MIN_SAMPLES_PER_TYPE: u64 = 256;
/// Paths per type whose retained size is measured (the top ones), and instances per path.
const MEASURED_PATHS: usize = 3;
/// A walk this quick means a small heap, where the GC's roots cost little.
const CHEAP_WALK: Duration = Duration::from_millis(100);
const MEASURED_PER_PATH: usize = 16;

/// What persists between requests: located statics, field layouts.
#[derive(Default)]
pub struct Retention {
    statics: Statics,
    pub fields: fields::FieldNames,
    /// Generic classes' statics named by the type they hold.
    generic: generic_statics::ByType,
}

/// What a request needs from the pipeline besides the agent.
pub struct Context<'a> {
    pub names: &'a mut dyn Namer,
    pub is_framework: &'a dyn Fn(&str) -> bool,
    /// The census of this same GC, if one was just taken (else the search takes one).
    pub census: Option<&'a HashMap<ClassID, TypeTotals>>,
    /// Lets the application run for a while between walks (the pipeline takes in events);
    /// false when told to stop.
    pub idle: &'a mut dyn FnMut(Duration) -> bool,
}

/// The search's access to the statics and the pipeline between walks.
struct Host<'a, 'b> {
    agent: &'a Agent,
    statics: &'a mut Statics,
    cx: &'a mut Context<'b>,
    fields_located: usize,
}

impl search::Host for Host<'_, '_> {
    fn locate_statics(&mut self) -> (Vec<Slot>, u32) {
        let names = &mut *self.cx.names;
        let slots = self.statics.slots(&self.agent.info, &mut |c| names.class(c), self.cx.is_framework);
        self.fields_located = slots.len();
        // The GC count after locating: reading the values is safe only if no GC ran since.
        (slots, self.agent.capture.counters.last_gc.load(Ordering::SeqCst))
    }

    fn idle(&mut self, d: Duration) -> bool {
        (self.cx.idle)(d)
    }
}

impl Retention {
    /// Finds the paths to the requested types. Call on the agent thread right after a full GC
    /// (numbered `gc`).
    pub fn run(&mut self, agent: &'static Agent, request: &Request, gc: u32, cx: &mut Context<'_>) -> RetentionRecord {
        let started = Instant::now();
        let deadline = started + request.time_budget;
        let baseline = crate::memory::allocated_bytes();
        let room = agent.config.memory_limit_bytes.saturating_sub(baseline);
        let budget = request.memory_budget.map_or(room, |b| b.min(room));
        let mut gc_roots = RetentionRoots {
            reported: false,
            count: Num::some(0u64),
            source: None,
            pause_ms: Num::some(0.0),
            why: None,
        };
        let mut record = RetentionRecord {
            gc: Some(gc.into()),
            t_ms: Num::some(agent.elapsed_ms()),
            unix_ms: Num::some(crate::pipeline::unix_ms()),
            elapsed_ms: Num::some(0.0),
            pause_ms: Num::some(0.0),
            max_pause_ms: Num::some(0.0),
            walks: Vec::new(),
            objects: Num::some(0u64),
            followed: Num::some(0u64),
            samples: Num::some(0u64),
            memory_bytes: Num::some(0u64),
            memory_budget_bytes: Num::some(budget),
            time_budget_ms: Num::some(request.time_budget.as_millis() as u64),
            truncated: false,
            truncated_by: Vec::new(),
            cut_short: None,
            statics: Some(RetentionStatics::default()),
            roots: Some(gc_roots.clone()),
            error: None,
            types: Vec::new(),
        };
        if budget < MIN_BUDGET {
            record.error = Some(format!(
                "no memory left for the search: the agent uses {} MB of its {} MB (LEAKSCOPE_MEMORY_LIMIT_MB)",
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

        // Which classes the requested types are, and how many instances each has.
        let taken;
        let by_class = match cx.census {
            Some(c) => c,
            None => match crate::pipeline::census::take(info) {
                // The census that finds the instances was cut short: nothing to search from.
                Ok(c) if c.stopped.is_some() => {
                    record.walks.push(walk(c.pause, c.objects, 0, 0));
                    let (label, why) = match c.stopped {
                        Some(crate::pipeline::heap_walk::Stopped::Interrupted(why)) => ("interrupted", why),
                        _ => ("time", "out of time".to_string()),
                    };
                    record.truncated = true;
                    record.truncated_by.push(label.to_string());
                    record.cut_short = Some(format!(
                        "walk cut short: the census that finds the instances stopped after {} objects, {why}",
                        c.objects
                    ));
                    record.pause_ms = Num::some(ms(c.pause));
                    record.max_pause_ms = Num::some(ms(c.pause));
                    record.elapsed_ms = Num::some(ms(started.elapsed()));
                    return record;
                }
                Ok(c) => {
                    record.walks.push(walk(c.pause, c.objects, 0, 0));
                    taken = c.by_class;
                    &taken
                }
                Err(hr) => {
                    record.error = Some(crate::pipeline::heap_walk::refused(hr));
                    record.elapsed_ms = Num::some(ms(started.elapsed()));
                    return record;
                }
            },
        };
        let mut targets: Vec<Target> = request.types.iter().map(|_| Target::default()).collect();
        let mut matched: Vec<Vec<Arc<str>>> = vec![Vec::new(); request.types.len()];
        let mut target_of: tracked::AddrMap<usize> = Default::default();
        let mut classes: Vec<(&ClassID, &TypeTotals)> = by_class.iter().collect();
        classes.sort_by_key(|(c, _)| **c);
        for (&class, totals) in classes {
            let name = cx.names.class(class);
            let Some(t) = request.types.iter().position(|wanted| type_matches(wanted, &name)) else { continue };
            target_of.insert(class, t);
            let target = &mut targets[t];
            target.classes.push(class);
            target.instances += totals.count;
            target.bytes += totals.bytes;
            if !matched[t].contains(&name) {
                matched[t].push(name);
            }
        }
        let no_references = no_references(info, by_class.keys().copied(), &mut *cx.names);
        // The application's own classes (not the framework's, not arrays): their instances the
        // search follows are followed down too, from the start, for their retained size.
        let own_classes: tracked::AddrSet = by_class
            .keys()
            .copied()
            .filter(|&c| {
                let name = cx.names.class(c);
                !(cx.is_framework)(&name) && !name.ends_with(']')
            })
            .collect();
        let per_type =
            (SAMPLES_TOTAL / request.types.len().max(1) as u64).clamp(MIN_SAMPLES_PER_TYPE, SAMPLES_PER_TYPE);
        for t in &mut targets {
            t.stride = t.instances.div_ceil(per_type).max(1);
        }

        // The search: sample, then walk up from the samples.
        let limits = search::Limits {
            deadline,
            max_walks: search::MAX_WALKS,
            gc: &agent.capture.counters.last_gc,
            no_references: &no_references,
            own_classes: &own_classes,
        };
        let mut host = Host { agent, statics: &mut self.statics, cx: &mut *cx, fields_located: 0 };
        let searched = search::run(info, &mut host, &mut targets, &target_of, budget, baseline, &limits);
        let fields_located = host.fields_located;
        let mut searched = match searched {
            Ok(s) => s,
            Err(hr) => {
                record.error = Some(format!("cannot walk the heap in a suspension of its own ({hr:#x})"));
                record.elapsed_ms = Num::some(ms(started.elapsed()));
                return record;
            }
        };
        record.statics = Some(RetentionStatics {
            fields: fields_located as u64,
            with_value: searched.tracked.nodes.iter().filter(|n| n.static_field != NONE).count() as u64,
            stale: !searched.statics_read,
        });
        record.objects = Num::some(searched.heap_objects);
        record.samples = Num::some(targets.iter().map(|t| t.samples.len() as u64).sum::<u64>());

        // A generic class's statics: the runtime gives no address, so what the storage for statics
        // holds is named by its type where exactly one loaded instantiation's field fits.
        let by_type =
            self.generic.name(&mut self.statics, info, &mut searched.tracked, &mut *cx.names, cx.is_framework);

        // Roots other than statics, for paths that end at objects nothing references.
        let mut holders: Vec<root_kinds::Holder> = Vec::new();
        let wanted = root_kinds::wanted(&searched.tracked, &targets);
        let longest = searched.walks.iter().map(|w| w.pause).max().unwrap_or_default();
        // On a big heap the roots cost a pause longer than a walk's (the heap dump lists every
        // object): only for a share of instances worth it.
        let worth = targets
            .iter()
            .zip(&wanted)
            .any(|(t, &w)| w > 0 && (longest < CHEAP_WALK || w * 100 >= t.samples.len() as u64));
        if worth && searched.stopped.is_none() {
            match root_kinds::collect(info) {
                Ok(collected) => {
                    gc_roots.source = Some(collected.source.to_string());
                    gc_roots.pause_ms = Num::some(ms(collected.pause));
                    gc_roots.count = Num::some(collected.count);
                    match root_kinds::mark(
                        info,
                        &mut searched.tracked,
                        &collected,
                        &agent.capture.counters.last_gc,
                        &mut holders,
                    ) {
                        Some(_) => {
                            gc_roots.reported = true;
                            if collected.dropped > 0 {
                                gc_roots.why = Some(format!(
                                    "{} roots were not kept (past the limit or reported concurrently)",
                                    collected.dropped
                                ));
                            }
                        }
                        None => gc_roots.why = Some("another GC ran between the root report and matching it".into()),
                    }
                }
                Err(why) => gc_roots.why = Some(why),
            }
        } else if searched.stopped.is_some() {
            gc_roots.why = Some("not asked for: the search was cut short".into());
        } else if wanted.iter().any(|&w| w > 0) {
            gc_roots.why = Some(format!(
                "not asked for: fewer than 1 % of the sampled instances end at objects nothing references, and on a heap \
                 this size the GC's root report pauses the application longer than a walk ({} sampled instances)",
                wanted.iter().sum::<u64>()
            ));
        }

        // Root descriptions: statics, the GC's roots, then the fixed kinds.
        let mut descs: Vec<RetentionRoot> = Vec::new();
        let mut static_desc: HashMap<u32, u32> = HashMap::new();
        let mut statics_seeds: Vec<(u32, u32, bool)> = Vec::new();
        for (i, n) in searched.tracked.nodes.iter().enumerate() {
            if n.static_field == NONE || n.has(flag::DEAD) {
                continue;
            }
            let field = &self.statics.fields[n.static_field as usize];
            let d = *static_desc.entry(n.static_field).or_insert_with(|| {
                let detail = by_type.contains(&n.static_field).then_some(
                    "named by the type it holds: the runtime gives no address for a generic class's statics",
                );
                let kind = if field.thread.is_some() { "thread-static" } else { "static" };
                descs.push(RetentionRoot::of(kind, Some(&field.name), detail));
                (descs.len() - 1) as u32
            });
            statics_seeds.push((i as u32, d, field.framework));
        }
        statics_seeds.sort_by_key(|&(_, _, framework)| framework);
        let holder_base = descs.len() as u32;
        for h in &holders {
            descs.push(h.describe(&mut |f| cx.names.function(f)));
        }
        let mut gc_seeds: Vec<(u32, u32, u8)> = searched
            .tracked
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.root != NONE && !n.has(flag::DEAD))
            .map(|(i, n)| (i as u32, holder_base + n.root, holders[n.root as usize].priority()))
            .collect();
        gc_seeds.sort_by_key(|&(_, _, p)| p);
        let fixed = descs.len() as u32;
        descs.push(RetentionRoot::of(
            "static",
            None,
            Some("the runtime's storage for statics, through a field not identified"),
        ));
        descs.push(RetentionRoot::of(
            "other",
            None,
            Some(if gc_roots.reported {
                "referenced by no object and not a root the GC reported (a dependent handle's value, or allocated since)"
            } else {
                "referenced by no object: held by a stack frame, a GC handle or the finalizer queue"
            }),
        ));
        let cut_short = cut_short::cut_short(&searched, budget, request.time_budget, started.elapsed());
        descs.push(RetentionRoot::of("unknown", None, Some(&cut_short)));
        descs.push(RetentionRoot::of("other", None, Some("a cycle held from outside the heap")));

        let (graph, referenced) = graph::Graph::from_tracked(&searched.tracked);
        let nodes = &searched.tracked.nodes;
        let roots = Roots {
            statics: statics_seeds.iter().map(|&(node, root, _)| (node, root)).collect(),
            gc: gc_seeds.iter().map(|&(node, root, _)| (node, root)).collect(),
            storage: nodes.iter().map(|n| n.has(flag::HOLDS_STATIC)).collect(),
            open: nodes.iter().map(settle::still_open).collect(),
            storage_root: fixed,
            unreferenced_root: fixed + 1,
            unknown_root: fixed + 2,
            other_root: fixed + 3,
        };
        let tree = paths::search(&graph, &referenced, &roots, deadline.max(Instant::now() + Duration::from_secs(1)));
        let samples: Vec<(u32, usize)> = targets
            .iter()
            .enumerate()
            .flat_map(|(t, target)| target.samples.iter().map(move |&s| (s, t)))
            .filter(|&(s, _)| !nodes[s as usize].has(flag::DEAD))
            .collect();
        let class_names: Vec<Arc<str>> = graph.classes.iter().map(|&c| cx.names.class(c)).collect();
        let is_array: Vec<bool> = graph.classes.iter().map(|&c| matches!(info.array_info(c), Ok(Some(_)))).collect();
        let mut signatures = Signatures::default();
        let (tallies, sig_of) = paths::tally(&graph, &tree, &samples, &is_array, request.types.len(), &mut signatures);

        // Retained size of the first object of the application's own on the top paths.
        let mut top: Vec<(usize, u32)> = Vec::new();
        for (t, tally) in tallies.iter().enumerate() {
            let mut by_path: Vec<(u32, (u64, u64))> = tally.by_path.iter().map(|(&k, &v)| (k, v)).collect();
            by_path.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            // The top paths that hold a fair share of the type (a path of a stray instance or
            // two is not worth walks of its own).
            let floor = (tally.instances / 20).max(1);
            top.extend(
                by_path
                    .iter()
                    .take(MEASURED_PATHS.min(request.max_paths))
                    .filter(|(_, (sampled, _))| *sampled >= floor)
                    .map(|&(sig, _)| (t, sig)),
            );
        }
        // The application's own: not the framework's, and not an array (a container, like the
        // framework's collections).
        let own = |name: &str| !(cx.is_framework)(name) && !name.ends_with(']');
        let is_user = |node: u32| own(&class_names[graph.nodes[node as usize].class as usize]);
        let mut starts: Vec<u32> = Vec::new();
        let mut starts_of: HashMap<(usize, u32), Vec<usize>> = HashMap::new();
        // Per top path: the distinct such objects among all its samples.
        let mut distinct: HashMap<(usize, u32), std::collections::HashSet<u32>> = HashMap::new();
        for (i, &(node, t)) in samples.iter().enumerate() {
            let sig = sig_of[i];
            if !top.contains(&(t, sig)) {
                continue;
            }
            let chain = tree.chain(node);
            let Some(&u) = chain.iter().find(|&&x| is_user(x)).or(chain.first()) else { continue };
            distinct.entry((t, sig)).or_default().insert(u);
            let of = starts_of.entry((t, sig)).or_default();
            if of.len() >= MEASURED_PER_PATH {
                continue;
            }
            let k = starts.iter().position(|&s| s == u).unwrap_or_else(|| {
                starts.push(u);
                starts.len() - 1
            });
            if !of.contains(&k) {
                of.push(k);
            }
        }
        let measured = if starts.is_empty() || searched.stopped.is_some() {
            Vec::new()
        } else {
            let mut host = Host { agent, statics: &mut self.statics, cx: &mut *cx, fields_located: 0 };
            let last_pause = searched.walks.last().map_or(Duration::ZERO, |w| w.pause);
            match retained::measure(info, &mut host, &mut searched, &starts, &limits, last_pause) {
                Ok(m) => m,
                Err(hr) => {
                    tracing::warn!("retained size: cannot walk ({hr:#x})");
                    Vec::new()
                }
            }
        };

        for (t, tally) in tallies.into_iter().enumerate() {
            let target = &targets[t];
            // Each sampled instance stands for this many of those the sampling walk met: over
            // all the samples taken, including those collected since (they stood for instances
            // that died too, not for the others). Bytes scale alike (each instance had the same
            // chance to be sampled, whatever its size).
            let taken = target.samples.len() as u64;
            let scale = target.scale();
            let byte_scale = scale;
            let mut by_path: Vec<(u32, (u64, u64))> = tally.by_path.into_iter().collect();
            by_path.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut listed = Vec::new();
            let mut other = RetentionOther::default();
            let mut unknown = 0u64;
            for (i, (sig, (sampled, bytes))) in by_path.into_iter().enumerate() {
                let entries = signatures.steps(sig);
                let instances = target.estimate(sampled);
                let bytes = (bytes as f64 * byte_scale).round() as u64;
                if entries[0].field == fixed + 2 {
                    unknown += instances;
                }
                if i >= request.max_paths {
                    other.paths += 1;
                    other.instances += instances;
                    other.bytes += bytes;
                    continue;
                }
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
                    steps.push(RetentionStep {
                        type_name: type_name.to_string(),
                        field: field.as_deref().map(str::to_string),
                        repeated: e.repeated,
                    });
                }
                let ends_in_type = entries
                    .last()
                    .is_some_and(|e| e.class != ELIDED && target.classes.contains(&graph.classes[e.class as usize]));
                if !ends_in_type {
                    let last = matched[t].first().cloned().unwrap_or_else(|| request.types[t].as_str().into());
                    steps.push(RetentionStep { type_name: last.to_string(), field: None, repeated: false });
                }
                let retained = starts_of.get(&(t, sig)).filter(|_| !measured.is_empty()).map(|of| {
                    // The step of the first type of the application's own (else the root's object).
                    let step = entries
                        .iter()
                        .position(|e| e.class != ELIDED && own(&class_names[e.class as usize]))
                        .unwrap_or(0);
                    let total: u64 = of.iter().map(|&k| measured[k].bytes).sum();
                    let per = total / of.len().max(1) as u64;
                    // About one such object per sampled instance: as many as the instances;
                    // shared ones (a list at the root): the sample saw them all.
                    let seen = distinct.get(&(t, sig)).map_or(0, |d| d.len() as u64);
                    let objects = if seen * 2 >= sampled { (seen as f64 * scale).round() as u64 } else { seen };
                    RetainedSize {
                        step: Some(step as i64),
                        type_name: steps.get(step).map_or_else(|| "?".into(), |s| s.type_name.clone()),
                        bytes_per_instance: Num::some(per),
                        bytes: Num::some(per * objects),
                        measured: Num::some(of.len()),
                        lower_bound: of.iter().any(|&k| measured[k].lower_bound),
                    }
                });
                listed.push(RetentionPath {
                    root: descs[entries[0].field as usize].clone(),
                    steps,
                    instances: Num::some(instances),
                    bytes: Num::some(bytes),
                    sampled: Num::some(sampled),
                    retained,
                });
            }
            record.types.push(RetentionType {
                type_name: request.types[t].clone(),
                matched: std::mem::take(&mut matched[t]).iter().map(|m| m.to_string()).collect(),
                instances: Num::some(target.instances),
                bytes: Num::some(target.bytes),
                sampled: Num::some(tally.instances),
                unknown: Num::some(unknown),
                walked: Num::some(target.seen),
                collected: Num::some(
                    target.estimate(taken - samples.iter().filter(|&&(_, st)| st == t).count() as u64),
                ),
                unreached: Num::some(tally.unreached),
                paths: listed,
                other: Some(other),
            });
        }
        for w in &searched.walks {
            record.walks.push(walk(w.pause, w.objects, w.followed as u64, w.unsettled as u64));
        }
        record.followed = Num::some(searched.tracked.nodes.len());
        let pauses = || record.walks.iter().map(|w| w.pause_ms.unwrap_or_default().0);
        let roots_pause = gc_roots.pause_ms.unwrap_or_default().0;
        record.pause_ms = Num::some(pauses().sum::<f64>() + roots_pause);
        record.max_pause_ms = Num::some(pauses().fold(roots_pause, f64::max));
        record.roots = Some(gc_roots);
        if let Some(why) = searched.stopped {
            if searched.unsettled > 0 {
                record.truncated = true;
                record.truncated_by.push(why.name().to_string());
                record.cut_short = Some(cut_short);
            }
        }
        record.memory_bytes =
            Num::some(crate::memory::allocated_bytes().saturating_sub(baseline).max(searched.peak_bytes));
        record.elapsed_ms = Num::some(ms(started.elapsed()));
        record
    }
}

/// One heap walk of the request, as the record lists it.
fn walk(pause: Duration, objects: u64, followed: u64, unsettled: u64) -> RetentionWalk {
    RetentionWalk {
        pause_ms: Num::some(ms(pause)),
        objects: Num::some(objects),
        followed: Num::some(followed),
        unsettled: Num::some(unsettled),
    }
}

/// Classes whose instances cannot hold a reference: strings and arrays of numbers.
fn no_references(
    info: &crate::clr::profiler_info::ProfilerInfo,
    classes: impl Iterator<Item = ClassID>,
    names: &mut dyn Namer,
) -> tracked::AddrSet {
    // CorElementType: BOOLEAN (2) … R8 (0xd), I (0x18), U (0x19).
    let number = |e: u32| (0x02..=0x0d).contains(&e) || e == 0x18 || e == 0x19;
    classes
        .filter(|&c| match info.array_info(c) {
            Ok(Some(array)) => number(array.element_type),
            Ok(None) => &*names.class(c) == "System.String",
            Err(_) => false,
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}
