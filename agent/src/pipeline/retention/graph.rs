//! The object graph of the whole GC heap, taken in one pass with the runtime suspended:
//! `EnumerateGCHeapObjects` visits every object, and for each `EnumerateObjectReferences` gives
//! the address of every slot holding a reference. Nothing here allocates outside the agent's
//! own heap, and everything is bounded: past the memory budget or the time budget the walk
//! stops and says why.
//!
//! Storage is compact: 24 bytes per object and 12 per reference, in three flat vectors whose
//! growth is checked against the budget before it happens.

use std::collections::HashMap;
use std::ffi::c_void;
use std::time::{Duration, Instant};

use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{ClassID, HRESULT, ObjectID};
use crate::com::walks::{ObjectVisitor, ReferenceVisitor, on_reference};
use crate::pipeline::heap_walk::{self, Pace, Stopped};

/// One object. `class` indexes [`Graph::classes`]; its references are
/// `targets[first_edge .. first_edge + edges]`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Node {
    pub id: ObjectID,
    pub class: u32,
    /// Bytes, saturated at 4 GiB.
    pub size: u32,
    pub first_edge: u32,
    pub edges: u32,
}

/// Most ascending runs searched one by one; with more, the nodes are sorted.
const MAX_RUNS: usize = 32;

/// A reference target not found among the walked objects (a frozen object, or one allocated
/// after the walk began), once edges are resolved.
pub const MISSING: u64 = u64::MAX;

/// Bytes the analysis needs per object on top of the graph (parent, parent slot, BFS queue,
/// two flags, and a margin for the paths' own tables).
pub const ANALYSIS_BYTES_PER_NODE: usize = 18;
const NODE_BYTES: usize = std::mem::size_of::<Node>() + ANALYSIS_BYTES_PER_NODE;
const EDGE_BYTES: usize = std::mem::size_of::<u64>() + std::mem::size_of::<u32>();

#[derive(Default)]
pub struct Graph {
    /// In walk order (see [`Graph::index`]).
    pub nodes: Vec<Node>,
    /// Per reference: the referenced ObjectID while walking; after [`Graph::resolve_edges`],
    /// the index of the referenced node (or [`MISSING`]).
    pub targets: Vec<u64>,
    /// Per reference: offset of the slot within the referencing object.
    pub offsets: Vec<u32>,
    /// Distinct classes, in order of first appearance.
    pub classes: Vec<ClassID>,
    /// Ascending runs of `nodes`: (first address, last address, first index, end index).
    runs: Vec<(ObjectID, ObjectID, u32, u32)>,
    class_index: HashMap<ClassID, u32>,
}

impl Graph {
    /// Bytes the graph and its analysis will take at the current capacities.
    pub fn reserved_bytes(&self) -> usize {
        self.nodes.capacity() * NODE_BYTES + self.targets.capacity() * EDGE_BYTES + self.classes.capacity() * 24
    }

    pub fn class_id(&mut self, class: ClassID) -> u32 {
        if let Some(&i) = self.class_index.get(&class) {
            return i;
        }
        let i = self.classes.len() as u32;
        self.classes.push(class);
        self.class_index.insert(class, i);
        i
    }

    /// The node holding object `id` (after [`Graph::index`]).
    pub fn find(&self, id: ObjectID) -> Option<u32> {
        self.runs.iter().filter(|r| r.0 <= id && id <= r.1).find_map(|&(_, _, start, end)| {
            let slice = &self.nodes[start as usize..end as usize];
            slice.binary_search_by_key(&id, |n| n.id).ok().map(|i| start + i as u32)
        })
    }

    /// Ascending runs lookups search (1 once sorted).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    pub fn edge_range(&self, node: u32) -> std::ops::Range<usize> {
        let n = &self.nodes[node as usize];
        n.first_edge as usize..(n.first_edge as usize + n.edges as usize)
    }

    /// Makes objects findable by address. The walk visits the heap region by region, each in
    /// address order, so the nodes form a few ascending runs: they are searched as they are.
    /// Only when there are many runs are the nodes sorted (edge ranges move with them).
    pub fn index(&mut self) {
        self.runs.clear();
        let mut start = 0;
        for i in 1..=self.nodes.len() {
            if i == self.nodes.len() || self.nodes[i].id <= self.nodes[i - 1].id {
                if start < i {
                    self.runs.push((self.nodes[start].id, self.nodes[i - 1].id, start as u32, i as u32));
                }
                start = i;
            }
        }
        if self.runs.len() > MAX_RUNS {
            self.nodes.sort_unstable_by_key(|n| n.id);
            self.runs.clear();
            if let (Some(first), Some(last)) = (self.nodes.first(), self.nodes.last()) {
                self.runs.push((first.id, last.id, 0, self.nodes.len() as u32));
            }
        }
        // The largest runs first: most lookups end in them.
        self.runs.sort_unstable_by_key(|r| std::cmp::Reverse(r.3 - r.2));
    }

    /// Replaces each reference's ObjectID with the index of its node, and returns which nodes
    /// are referenced by some other node. Stops early (None) past `deadline`, or when the agent
    /// must stop ([`crate::stop`]).
    pub fn resolve_edges(&mut self, deadline: Instant) -> Option<Vec<bool>> {
        let mut referenced = vec![false; self.nodes.len()];
        for i in 0..self.nodes.len() {
            if i % 65536 == 0 && (Instant::now() > deadline || crate::stop::walk_should_stop()) {
                return None;
            }
            for e in self.edge_range(i as u32) {
                let id = self.targets[e] as ObjectID;
                // Objects often point at what was allocated right after them: look there first.
                let near = (i + 1..(i + 5).min(self.nodes.len())).find(|&j| self.nodes[j].id == id);
                let found = near.or_else(|| self.find(id).map(|j| j as usize));
                self.targets[e] = match found {
                    Some(j) => {
                        referenced[j] = true;
                        j as u64
                    }
                    None => MISSING,
                };
            }
        }
        Some(referenced)
    }

    /// Room for `more_nodes` nodes and `more_edges` edges within `budget` bytes, growing by
    /// half again (or exactly as needed, near the budget). False when they do not fit.
    fn make_room(&mut self, more_nodes: usize, more_edges: usize, budget: usize) -> bool {
        let need_nodes = self.nodes.len() + more_nodes;
        let need_edges = self.targets.len() + more_edges;
        if need_nodes <= self.nodes.capacity() && need_edges <= self.targets.capacity() {
            return true;
        }
        let grow = |cap: usize, need: usize| {
            if need <= cap { cap } else { need.max(cap + cap / 2).max(4096) }
        };
        let mut nodes_cap = grow(self.nodes.capacity(), need_nodes);
        let mut edges_cap = grow(self.targets.capacity(), need_edges);
        let cost = |n: usize, e: usize| n * NODE_BYTES + e * EDGE_BYTES + self.classes.capacity() * 24;
        if cost(nodes_cap, edges_cap) > budget {
            // Near the budget: grow only as much as needed now.
            nodes_cap = need_nodes.max(self.nodes.capacity());
            edges_cap = need_edges.max(self.targets.capacity());
            if cost(nodes_cap, edges_cap) > budget {
                return false;
            }
        }
        // Fallible: a heap this size may not fit even within the budget (an allocation the
        // system refuses); the walk then stops for memory instead of aborting the host.
        self.nodes.try_reserve_exact(nodes_cap - self.nodes.len()).is_ok()
            && self.targets.try_reserve_exact(edges_cap - self.targets.len()).is_ok()
            && self.offsets.try_reserve_exact(edges_cap - self.offsets.len()).is_ok()
    }
}

/// Why a walk stopped before the end of the heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Memory,
    Time,
    /// The runtime is shutting down, or the process was asked to end ([`crate::stop::why`]).
    Interrupted,
}

/// What the first callback does while the runtime is suspended, before any object is
/// recorded: read the static fields' values, consistently with the graph.
pub trait AtSuspension {
    fn suspended(&mut self);
}

pub struct Walked {
    pub graph: Graph,
    pub stopped: Option<Limit>,
    /// Objects whose class or size the runtime would not give (not recorded).
    pub unreadable: u64,
    /// How long the application was paused.
    pub pause: Duration,
}

struct Walk<'a> {
    info: &'a ProfilerInfo,
    graph: Graph,
    budget: usize,
    pace: Pace,
    stopped: Option<Limit>,
    unreadable: u64,
    first: Option<&'a mut dyn AtSuspension>,
    current: ObjectID,
    last_class: (ClassID, u32),
}

/// Walks the heap (the runtime suspends itself for it; .NET 9+) into a graph of at most
/// `budget` bytes, stopping at `deadline`. `at_suspension` runs once, suspended, first.
pub fn walk(
    info: &ProfilerInfo,
    budget: usize,
    deadline: Instant,
    expected_objects: usize,
    at_suspension: &mut dyn AtSuspension,
) -> Result<Walked, HRESULT> {
    let mut graph = Graph::default();
    // A first guess from the last census, so the vectors rarely grow during the pause.
    let guess = expected_objects.min(budget / (NODE_BYTES + 2 * EDGE_BYTES));
    graph.make_room(guess.max(4096), (guess * 2).max(8192), budget);
    let mut walk = Walk {
        info,
        graph,
        budget,
        pace: Pace::new(Some(deadline)),
        stopped: None,
        unreadable: 0,
        first: Some(at_suspension),
        current: 0,
        last_class: (0, 0),
    };
    let started = Instant::now();
    let result = heap_walk::walk(info, &mut walk);
    let pause = started.elapsed();
    result?;
    let Walk { graph, stopped, unreadable, .. } = walk;
    Ok(Walked { graph, stopped, unreadable, pause })
}

impl ObjectVisitor for Walk<'_> {
    const WALK: &'static str = "the retention heap walk";

    fn object(&mut self, object: ObjectID) -> bool {
        if let Some(first) = self.first.take() {
            first.suspended();
        }
        if let Some(why) = self.pace.step() {
            self.stopped = Some(match why {
                Stopped::Time => Limit::Time,
                Stopped::Interrupted(_) => Limit::Interrupted,
            });
            return false;
        }
        let (class, size) = match (self.info.class_of_object(object), self.info.object_size(object)) {
            (Ok(c), Ok(s)) => (c, s),
            _ => {
                self.unreadable += 1;
                return true;
            }
        };
        if !self.graph.make_room(1, 0, self.budget) {
            self.stopped = Some(Limit::Memory);
            return false;
        }
        let class = if self.last_class.0 == class {
            self.last_class.1
        } else {
            let i = self.graph.class_id(class);
            self.last_class = (class, i);
            i
        };
        let first_edge = self.graph.targets.len();
        if first_edge > u32::MAX as usize - (1 << 20) {
            self.stopped = Some(Limit::Memory);
            return false;
        }
        self.current = object;
        // SAFETY: the runtime is suspended for the heap walk, `object` is the live object it
        // handed us, and `on_reference` gets this walk back, on this thread.
        let _ = unsafe {
            self.info.enumerate_object_references(object, on_reference::<Self>, self as *mut Self as *mut c_void)
        };
        let edges = self.graph.targets.len() - first_edge;
        self.graph.nodes.push(Node {
            id: object,
            class,
            size: size.min(u32::MAX as usize) as u32,
            first_edge: first_edge as u32,
            edges: edges as u32,
        });
        self.stopped.is_none()
    }
}

impl ReferenceVisitor for Walk<'_> {
    fn reference(&mut self, target: ObjectID, slot: usize) -> bool {
        if target == 0 {
            return true;
        }
        if !self.graph.make_room(0, 1, self.budget) {
            self.stopped = Some(Limit::Memory);
            return false;
        }
        self.graph.targets.push(target as u64);
        self.graph.offsets.push(slot.wrapping_sub(self.current).min(u32::MAX as usize) as u32);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_runs_are_searched_and_many_runs_sorted() {
        let mut g = Graph::default();
        for id in [0x1000, 0x3000, 0x2000, 0x4000] {
            g.nodes.push(Node { id, ..Node::default() });
        }
        g.index();
        assert_eq!(g.nodes.iter().map(|n| n.id).collect::<Vec<_>>(), [0x1000, 0x3000, 0x2000, 0x4000]);
        assert_eq!((g.find(0x3000), g.find(0x2000), g.find(0x4000), g.find(0x4001)), (Some(1), Some(2), Some(3), None));

        let mut g = Graph::default();
        for id in (0..1000).rev() {
            g.nodes.push(Node { id: 0x1000 + id * 16, ..Node::default() });
        }
        g.index();
        assert!(g.nodes.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(g.find(0x1000 + 16 * 500), Some(500));
    }

    #[test]
    fn room_is_refused_past_the_budget_and_granted_within_it() {
        let mut g = Graph::default();
        assert!(g.make_room(100, 100, 1 << 20));
        let cap = g.nodes.capacity();
        assert!(cap >= 100);
        assert!(!g.make_room(1 << 20, 0, 1 << 20), "a million nodes do not fit in 1 MiB");
        assert_eq!(g.nodes.capacity(), cap, "a refused request must not grow anything");
        assert!(g.reserved_bytes() <= 1 << 20);
    }

    #[test]
    fn edges_resolve_to_node_indices_and_mark_referenced_nodes() {
        let mut g = Graph::default();
        let a = g.class_id(0x100);
        for (id, first_edge, edges) in [(0x3000, 0, 1), (0x1000, 1, 2), (0x2000, 3, 1)] {
            g.nodes.push(Node { id, class: a, size: 24, first_edge, edges });
        }
        g.targets = vec![0x1000, 0x2000, 0x9999, 0x3000];
        g.offsets = vec![8, 8, 16, 8];
        g.index();
        let referenced = g.resolve_edges(Instant::now() + Duration::from_secs(5)).unwrap();
        // Two ascending runs, [0x3000] and [0x1000, 0x2000], indexed in place.
        assert_eq!(g.nodes.iter().map(|n| n.id).collect::<Vec<_>>(), [0x3000, 0x1000, 0x2000]);
        assert_eq!(g.targets, [1, 2, MISSING, 0]);
        assert_eq!(referenced, [true, true, true]);
        assert_eq!(g.edge_range(1), 1..3);
        assert_eq!(g.find(0x2000), Some(2));
        assert_eq!(g.find(0x0fff), None);
        assert_eq!(g.find(0x9999), None);
        assert_eq!(g.find(0x2001), None);
    }
}
