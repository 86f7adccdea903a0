//! From the object graph to type-level retention paths: a breadth-first search from the roots
//! gives every object its shortest path (parent pointers), the path of each instance of a
//! requested type becomes a signature (root, then type and field per step), and instances
//! are counted per signature.
//!
//! The graph is the part of the heap the [search](super::search) followed: sampled instances
//! and their ancestors. Roots come in phases: first the values of static fields (so whatever a
//! static keeps alive is attributed to it, however short another path is), then the roots the
//! GC reported (GC handles, stack frames, the finalizer queue), when it did, then objects
//! nothing on the heap references, then objects whose referrers the search did not finish
//! finding (the path is then unknown above them), then anything left (cycles held from
//! outside the heap).
//!
//! Recursive shapes (linked lists, trees, a node's children holding nodes) would make every
//! depth its own signature; a step (type and field) that already appears within the last few
//! steps folds back onto it, marked `repeated`.

use std::collections::HashMap;
use std::time::Instant;

use super::graph::Graph;

const UNVISITED: u32 = u32::MAX;
const SEED: u32 = u32::MAX - 1;
/// A sample's signature when the search did not reach it.
pub const NO_PATH: u32 = u32::MAX;
/// `field` of a step into an array element.
pub const ARRAY_ELEMENT: u32 = u32::MAX;
/// Class of the step standing for elided steps of a very deep path.
pub const ELIDED: u32 = u32::MAX;
/// Deepest signature kept; deeper paths end with one elided step.
const MAX_DEPTH: u16 = 48;
/// How far back a repeated type folds.
const FOLD_WINDOW: usize = 8;

/// The roots a search starts from: named statics (phase 1) and the GC's roots (phase 2), each
/// in priority order, plus the fixed root indices for the other kinds.
pub struct Roots {
    /// (node, index of its root description).
    pub statics: Vec<(u32, u32)>,
    pub gc: Vec<(u32, u32)>,
    /// Per node: the runtime's storage for statics (an array holding statics' values).
    pub storage: Vec<bool>,
    /// Per node: its referrers may not all be known (the search stopped short of them).
    pub open: Vec<bool>,
    pub storage_root: u32,
    pub unreferenced_root: u32,
    pub unknown_root: u32,
    pub other_root: u32,
}

/// The search's result: per node, who it was reached from.
pub struct Tree {
    /// Parent node; `SEED` for roots, `UNVISITED` if never reached.
    parent: Vec<u32>,
    /// Slot offset within the parent; for roots, the root index.
    via: Vec<u32>,
    /// False when the deadline stopped the search.
    pub complete: bool,
}

impl Tree {
    pub fn visited(&self, node: u32) -> bool {
        self.parent[node as usize] != UNVISITED
    }

    /// The nodes from the root down to `node` (empty if it was not reached).
    pub fn chain(&self, node: u32) -> Vec<u32> {
        let mut chain = Vec::new();
        if !self.visited(node) {
            return chain;
        }
        let mut at = node;
        loop {
            chain.push(at);
            let parent = self.parent[at as usize];
            if parent == SEED {
                break;
            }
            at = parent;
        }
        chain.reverse();
        chain
    }
}

/// Seeds one phase of the search.
type Phase<'a> = dyn Fn(&mut Tree, &mut Vec<u32>) + 'a;

/// Breadth-first search from `roots`, phase by phase. `referenced[n]`: some node points at n.
pub fn search(graph: &Graph, referenced: &[bool], roots: &Roots, deadline: Instant) -> Tree {
    let n = graph.nodes.len();
    let mut tree = Tree { parent: vec![UNVISITED; n], via: vec![0; n], complete: true };
    let mut queue: Vec<u32> = Vec::with_capacity(n);
    let seed = |tree: &mut Tree, queue: &mut Vec<u32>, node: u32, root: u32| {
        if tree.parent[node as usize] == UNVISITED {
            tree.parent[node as usize] = SEED;
            tree.via[node as usize] = root;
            queue.push(node);
        }
    };
    let storage = |node: u32| roots.storage.get(node as usize).copied().unwrap_or(false);
    let open = |node: u32| roots.open.get(node as usize).copied().unwrap_or(false);
    let mut head = 0;
    let phases: [&Phase<'_>; 4] = [
        // Phase 1: statics.
        &|tree, queue| {
            for &(node, root) in &roots.statics {
                seed(tree, queue, node, root);
            }
        },
        // Phase 2: the GC's roots.
        &|tree, queue| {
            for &(node, root) in &roots.gc {
                seed(tree, queue, node, if storage(node) { roots.storage_root } else { root });
            }
        },
        // Phase 3: objects nothing references (as far as the search knows for sure).
        &|tree, queue| {
            for node in 0..n as u32 {
                if !referenced[node as usize] && !open(node) {
                    seed(tree, queue, node, if storage(node) { roots.storage_root } else { roots.unreferenced_root });
                }
            }
        },
        // Phase 4: objects whose referrers were not all found: above them the path is unknown.
        &|tree, queue| {
            for node in 0..n as u32 {
                if open(node) {
                    seed(tree, queue, node, roots.unknown_root);
                }
            }
        },
    ];
    for phase in phases {
        phase(&mut tree, &mut queue);
        if !drain(graph, &mut tree, &mut queue, &mut head, deadline) {
            tree.complete = false;
            return tree;
        }
    }
    // Phase 5: whatever is left, in address order.
    for node in 0..n as u32 {
        if tree.parent[node as usize] == UNVISITED {
            seed(&mut tree, &mut queue, node, roots.other_root);
            if !drain(graph, &mut tree, &mut queue, &mut head, deadline) {
                tree.complete = false;
                return tree;
            }
        }
    }
    tree
}

fn drain(graph: &Graph, tree: &mut Tree, queue: &mut Vec<u32>, head: &mut usize, deadline: Instant) -> bool {
    while *head < queue.len() {
        if *head % 65536 == 0 && Instant::now() > deadline {
            return false;
        }
        let node = queue[*head];
        *head += 1;
        for e in graph.edge_range(node) {
            let target = graph.targets[e];
            let t = target as usize;
            if tree.parent[t] == UNVISITED {
                tree.parent[t] = node;
                tree.via[t] = graph.offsets[e];
                queue.push(target);
            }
        }
    }
    true
}

/// One step of a type-level path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    parent: u32,
    /// Class index in the graph, or `ELIDED`.
    pub class: u32,
    /// For the first step, the root index; else the slot offset in the previous step's object,
    /// or `ARRAY_ELEMENT`.
    pub field: u32,
    depth: u16,
    /// Instances of this step's type reached through more steps of the same shape.
    pub repeated: bool,
}

/// Interned signatures: a trie of steps.
#[derive(Default)]
pub struct Signatures {
    entries: Vec<Entry>,
    index: HashMap<(u32, u32, u32), u32>,
}

impl Signatures {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn intern(&mut self, parent: u32, class: u32, field: u32) -> u32 {
        if let Some(&s) = self.index.get(&(parent, class, field)) {
            return s;
        }
        let depth = if parent == UNVISITED { 1 } else { self.entries[parent as usize].depth + 1 };
        let s = self.entries.len() as u32;
        self.entries.push(Entry { parent, class, field, depth, repeated: false });
        self.index.insert((parent, class, field), s);
        s
    }

    /// The signature of a child reached from a parent with signature `parent`.
    fn extend(&mut self, parent: u32, class: u32, field: u32) -> u32 {
        let p = self.entries[parent as usize];
        if p.class == ELIDED {
            return parent;
        }
        // The same step (type and field) already on the last few steps: fold back onto it.
        let mut s = parent;
        for _ in 0..FOLD_WINDOW {
            let e = self.entries[s as usize];
            if e.parent == UNVISITED {
                break; // the root's own step is never folded onto: its field is the root
            }
            if e.class == class && e.field == field {
                self.entries[s as usize].repeated = true;
                return s;
            }
            s = e.parent;
        }
        if p.depth >= MAX_DEPTH {
            return self.intern(parent, ELIDED, 0);
        }
        self.intern(parent, class, field)
    }

    /// The steps of a signature, root first.
    pub fn steps(&self, sig: u32) -> Vec<Entry> {
        let mut steps = Vec::new();
        let mut s = sig;
        while s != UNVISITED {
            let e = self.entries[s as usize];
            steps.push(e);
            s = e.parent;
        }
        steps.reverse();
        steps
    }
}

/// Sampled instances of one requested type, grouped by path.
#[derive(Default, Debug)]
pub struct TypeTally {
    pub instances: u64,
    pub bytes: u64,
    /// Instances the path search did not reach (it was stopped by the deadline).
    pub unreached: u64,
    /// Per signature: (instances, bytes).
    pub by_path: HashMap<u32, (u64, u64)>,
}

/// Counts the sampled instances of the requested types by path. `samples` are (node, index of
/// its requested type); `is_array[c]` says whether class `c` is an array. Also returns each
/// sample's signature (`NO_PATH` if the search did not reach it).
pub fn tally(
    graph: &Graph,
    tree: &Tree,
    samples: &[(u32, usize)],
    is_array: &[bool],
    types: usize,
    signatures: &mut Signatures,
) -> (Vec<TypeTally>, Vec<u32>) {
    let mut tallies: Vec<TypeTally> = (0..types).map(|_| TypeTally::default()).collect();
    let mut memo: HashMap<u32, u32> = HashMap::new();
    let mut chain: Vec<u32> = Vec::new();
    let mut sig_of = vec![NO_PATH; samples.len()];
    for (sample, &(node, t)) in samples.iter().enumerate() {
        let n = &graph.nodes[node as usize];
        let node = node as usize;
        let tally = &mut tallies[t];
        tally.instances += 1;
        tally.bytes += n.size as u64;
        if !tree.visited(node as u32) {
            tally.unreached += 1;
            continue;
        }
        // Up to the nearest node whose signature is known (or the root)...
        chain.clear();
        let mut at = node as u32;
        let mut known = UNVISITED;
        loop {
            if let Some(&s) = memo.get(&at) {
                known = s;
                break;
            }
            chain.push(at);
            let parent = tree.parent[at as usize];
            if parent == SEED {
                break;
            }
            at = parent;
        }
        // ...then down again, extending it one step at a time.
        let mut sig = known;
        while let Some(at) = chain.pop() {
            let class = graph.nodes[at as usize].class;
            let parent = tree.parent[at as usize];
            sig = if parent == SEED {
                signatures.intern(UNVISITED, class, tree.via[at as usize])
            } else {
                let parent_class = graph.nodes[parent as usize].class as usize;
                let field = if is_array.get(parent_class).copied().unwrap_or(false) {
                    ARRAY_ELEMENT
                } else {
                    tree.via[at as usize]
                };
                signatures.extend(sig, class, field)
            };
            // The instance itself is rarely another's ancestor: only its ancestors are kept.
            if at != node as u32 {
                memo.insert(at, sig);
            }
        }
        let slot = tally.by_path.entry(sig).or_default();
        slot.0 += 1;
        slot.1 += n.size as u64;
        sig_of[sample] = sig;
    }
    (tallies, sig_of)
}

#[cfg(test)]
mod tests {
    use super::super::graph::Node;
    use super::*;
    use std::time::Duration;

    /// (id, class, size, [(target, offset)]) of one test object.
    type TestObject<'a> = (usize, u32, u32, &'a [(usize, u32)]);
    /// The same, owning its references.
    type OwnedTestObject = (usize, u32, u32, Vec<(usize, u32)>);

    /// Builds a graph from test objects (references by address).
    fn graph(objects: &[TestObject<'_>], classes: usize) -> (Graph, Vec<bool>) {
        let mut g = Graph { classes: (0..classes).map(|c| 0x1000 + c).collect(), ..Graph::default() };
        let index: HashMap<usize, u32> = objects.iter().enumerate().map(|(i, o)| (o.0, i as u32)).collect();
        let mut referenced = vec![false; objects.len()];
        for &(id, class, size, refs) in objects {
            let first_edge = g.targets.len() as u32;
            for &(t, off) in refs {
                g.targets.push(index[&t]);
                g.offsets.push(off);
                referenced[index[&t] as usize] = true;
            }
            g.nodes.push(Node { id, class, size, first_edge, edges: refs.len() as u32 });
        }
        (g, referenced)
    }

    fn find(g: &Graph, id: usize) -> u32 {
        g.nodes.iter().position(|n| n.id == id).unwrap() as u32
    }

    /// Every node of `class`, as samples of type 0.
    fn samples_of(g: &Graph, class: u32) -> Vec<(u32, usize)> {
        g.nodes.iter().enumerate().filter(|(_, n)| n.class == class).map(|(i, _)| (i as u32, 0)).collect()
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    // Classes: 0 statics storage Object[], 1 EventHandler, 2 Object[], 3 Subscriber, 4 Main local.
    const STORAGE: u32 = 0;
    const HANDLER: u32 = 1;
    const ARRAY: u32 = 2;
    const SUBSCRIBER: u32 = 3;
    const LOCAL: u32 = 4;

    /// The event-handler leak: storage → multicast → invocation list → handlers → subscribers,
    /// and one subscriber also held by a local that nothing else references.
    fn event_leak() -> (Graph, Vec<bool>) {
        graph(
            &[
                (0x100, STORAGE, 64, &[(0x200, 16)]),
                (0x200, HANDLER, 64, &[(0x300, 40)]),
                (0x300, ARRAY, 48, &[(0x400, 16), (0x410, 24), (0x420, 32)]),
                (0x400, HANDLER, 64, &[(0x500, 8)]),
                (0x410, HANDLER, 64, &[(0x510, 8)]),
                (0x420, HANDLER, 64, &[(0x520, 8)]),
                (0x500, SUBSCRIBER, 32, &[]),
                (0x510, SUBSCRIBER, 32, &[]),
                (0x520, SUBSCRIBER, 32, &[]),
                (0x600, LOCAL, 24, &[(0x520, 8)]),
                (0x700, SUBSCRIBER, 32, &[]),
            ],
            5,
        )
    }

    /// Roots with these statics' values; an object referencing one is the statics' storage.
    fn roots(g: &Graph, statics: &[usize]) -> Roots {
        let statics: Vec<(u32, u32)> = statics.iter().enumerate().map(|(i, &id)| (find(g, id), i as u32)).collect();
        let storage = (0..g.nodes.len() as u32)
            .map(|n| g.targets[g.edge_range(n)].iter().any(|t| statics.iter().any(|s| s.0 == *t)))
            .collect();
        Roots {
            statics,
            gc: Vec::new(),
            storage,
            open: vec![false; g.nodes.len()],
            storage_root: 100,
            unreferenced_root: 101,
            unknown_root: 103,
            other_root: 102,
        }
    }

    fn is_array() -> Vec<bool> {
        vec![true, false, true, false, false]
    }

    #[test]
    fn statics_win_over_shorter_paths_and_paths_name_fields() {
        let (g, referenced) = event_leak();
        let tree = search(&g, &referenced, &roots(&g, &[0x200]), later());
        assert!(tree.complete);
        let mut sigs = Signatures::default();
        let (tallies, _) = tally(&g, &tree, &samples_of(&g, SUBSCRIBER), &is_array(), 1, &mut sigs);
        let t = &tallies[0];
        assert_eq!((t.instances, t.bytes, t.unreached), (4, 128, 0));
        let mut paths: Vec<_> = t.by_path.iter().map(|(&s, &c)| (c.0, sigs.steps(s))).collect();
        paths.sort_by_key(|p| std::cmp::Reverse(p.0));
        // Three through the static event (including the one a local also holds)...
        let (count, steps) = &paths[0];
        assert_eq!(*count, 3);
        let shape: Vec<(u32, u32)> = steps.iter().map(|e| (e.class, e.field)).collect();
        assert_eq!(shape, [(HANDLER, 0), (ARRAY, 40), (HANDLER, ARRAY_ELEMENT), (SUBSCRIBER, 8)]);
        // ...and one held by nothing on the heap.
        let (count, steps) = &paths[1];
        assert_eq!(*count, 1);
        assert_eq!(steps.iter().map(|e| (e.class, e.field)).collect::<Vec<_>>(), [(SUBSCRIBER, 101)]);
    }

    #[test]
    fn without_named_statics_the_storage_array_is_the_root() {
        let (g, referenced) = event_leak();
        // 0x100 references a static value (0x200) only if 0x200 is known as one: with none
        // named, the storage array is merely unreferenced.
        let tree = search(&g, &referenced, &roots(&g, &[]), later());
        let mut sigs = Signatures::default();
        let t = &tally(&g, &tree, &samples_of(&g, SUBSCRIBER), &is_array(), 1, &mut sigs).0[0];
        let top = t.by_path.iter().max_by_key(|(_, c)| c.0).map(|(&s, _)| sigs.steps(s)).unwrap();
        assert_eq!(top[0].class, STORAGE);
        assert_eq!(top[0].field, 101);
    }

    /// Each path's count with the class and field of its first step, sorted.
    fn first_steps(t: &TypeTally, sigs: &Signatures) -> Vec<(u64, u32, u32)> {
        let mut firsts: Vec<(u64, u32, u32)> =
            t.by_path.iter().map(|(&s, &(count, _))| (count, sigs.steps(s)[0].class, sigs.steps(s)[0].field)).collect();
        firsts.sort();
        firsts
    }

    #[test]
    fn reported_roots_come_before_unreferenced_objects() {
        let (g, referenced) = event_leak();
        let mut r = roots(&g, &[]);
        // The GC says the storage array is held by a handle and the local by a stack frame.
        r.gc = vec![(find(&g, 0x100), 50), (find(&g, 0x600), 51)];
        let tree = search(&g, &referenced, &r, later());
        let mut sigs = Signatures::default();
        let t = &tally(&g, &tree, &samples_of(&g, SUBSCRIBER), &is_array(), 1, &mut sigs).0[0];
        let firsts = first_steps(t, &sigs);
        // 0x500 and 0x510 through the handle's array; 0x520 now through the stack frame (both
        // phase 2, and the frame's local is one step closer); 0x700 still unreferenced.
        assert_eq!(firsts, [(1, SUBSCRIBER, 101), (1, LOCAL, 51), (2, STORAGE, 50)]);
    }

    #[test]
    fn linked_lists_fold_into_one_repeated_step() {
        // static → list head → node → node → … (each node holds a payload and the next node).
        const NODE: u32 = 1;
        const PAYLOAD: u32 = 3;
        let mut objects: Vec<OwnedTestObject> = Vec::new();
        let n = 1000;
        for i in 0..n {
            let mut refs = vec![(0x10_0000 + i * 0x100, 8)];
            if i + 1 < n {
                refs.push((0x1000 + (i + 1) * 0x100, 16));
            }
            objects.push((0x1000 + i * 0x100, NODE, 32, refs));
            objects.push((0x10_0000 + i * 0x100, PAYLOAD, 24, vec![]));
        }
        let borrowed: Vec<TestObject<'_>> = objects.iter().map(|(a, b, c, d)| (*a, *b, *c, d.as_slice())).collect();
        let (g, referenced) = graph(&borrowed, 5);
        let tree = search(&g, &referenced, &roots(&g, &[0x1000]), later());
        let mut sigs = Signatures::default();
        let t = &tally(&g, &tree, &samples_of(&g, PAYLOAD), &is_array(), 1, &mut sigs).0[0];
        assert_eq!(t.instances, n as u64);
        // The head's payload, and every other one through the folded chain of `next` fields.
        assert_eq!(t.by_path.len(), 2, "{:?}", t.by_path);
        let (&sig, &(count, _)) = t.by_path.iter().max_by_key(|(_, c)| c.0).unwrap();
        assert_eq!(count, n as u64 - 1);
        let steps = sigs.steps(sig);
        assert_eq!(steps.iter().map(|e| (e.class, e.field)).collect::<Vec<_>>(), [(NODE, 0), (NODE, 16), (PAYLOAD, 8)]);
        assert!(steps[1].repeated && !steps[0].repeated);
        assert!(sigs.len() < 10);
    }

    #[test]
    fn a_stopped_search_counts_unreached_instances() {
        let (g, referenced) = event_leak();
        let tree = search(&g, &referenced, &roots(&g, &[0x200]), Instant::now() - Duration::from_secs(1));
        assert!(!tree.complete);
        let mut sigs = Signatures::default();
        let t = &tally(&g, &tree, &samples_of(&g, SUBSCRIBER), &is_array(), 1, &mut sigs).0[0];
        assert_eq!(t.instances, 4);
        assert_eq!(t.unreached, 4);
    }

    #[test]
    fn objects_whose_referrers_were_not_all_found_are_unknown_roots_not_unreferenced_ones() {
        let (g, referenced) = event_leak();
        // No statics named, and the search never finished the referrers of the multicast
        // handler (0x200) and of the local (0x600): the storage array above the handler was
        // never found, so the handler is open, and so is the local.
        let mut r = roots(&g, &[]);
        let open = |id| find(&g, id) as usize;
        r.open[open(0x200)] = true;
        r.open[open(0x600)] = true;
        // The storage array was not followed: drop it from the graph's roots by making it
        // referenced (as if the search had not seen it at all, it cannot seed anything).
        let mut referenced = referenced;
        referenced[find(&g, 0x100) as usize] = true;
        let tree = search(&g, &referenced, &r, later());
        let mut sigs = Signatures::default();
        let t = &tally(&g, &tree, &samples_of(&g, SUBSCRIBER), &is_array(), 1, &mut sigs).0[0];
        let firsts = first_steps(t, &sigs);
        // 0x700 is complete and unreferenced; the three others end at open objects: unknown.
        assert_eq!(firsts, [(1, SUBSCRIBER, 101), (1, LOCAL, 103), (2, HANDLER, 103)]);
    }
}
