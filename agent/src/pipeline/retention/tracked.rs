//! The objects a retention search follows across heap walks: sampled instances of the
//! requested types and the objects found referencing them, with the references between them.
//!
//! Only these objects are kept (never the whole heap): per object its current address, a weak
//! GC handle (so it can be found again after a GC moved it), its class, size and search state;
//! per reference the two objects and the slot's offset. A hash index finds an object by
//! address, behind a bit filter that answers "not followed" for almost every reference on the
//! heap with one memory read. Everything grows only within the memory budget.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::clr::types::{ClassID, ObjectHandleID, ObjectID};

/// No node / no field.
pub const NONE: u32 = u32::MAX;

/// What a node is to the search.
pub mod flag {
    /// An instance of a requested type picked to be followed.
    pub const SAMPLE: u8 = 0x01;
    /// Whatever references it is wanted.
    pub const EXPAND: u8 = 0x02;
    /// The GC collected it since it was found.
    pub const DEAD: u8 = 0x04;
    /// It has more referrers than are kept: the ones kept may not be all.
    pub const CAPPED: u8 = 0x08;
    /// It references a static field's value: the runtime's storage for statics.
    pub const HOLDS_STATIC: u8 = 0x10;
    /// What it references is wanted (retained size).
    pub const FORWARD: u8 = 0x20;
    /// What it references has been recorded.
    pub const CHILDREN: u8 = 0x40;
}

/// Most referrers kept per object (a string shared by a million records keeps this many).
pub const MAX_REFERRERS: u16 = 64;

#[derive(Clone, Copy, Debug)]
pub struct Node {
    pub addr: ObjectID,
    pub handle: ObjectHandleID,
    /// Index in [`Tracked::classes`].
    pub class: u32,
    /// Bytes, saturated at 4 GiB.
    pub size: u32,
    /// The static field (index in the search's field names) whose value it is, or [`NONE`].
    pub static_field: u32,
    /// The GC root (index in the search's root descriptions) holding it, or [`NONE`].
    pub root: u32,
    /// For objects followed down (retained size): the object whose retained size it counts
    /// towards (index in [`Tracked::owners`]), or [`NONE`].
    pub owner: u32,
    pub flags: u8,
    /// The walk it was found in.
    pub found_in: u16,
    /// Referrers recorded.
    pub referrers: u16,
    /// The last walk that looked at every object for references to it from its first object
    /// on (its referrers are complete as of that walk); 0 = none yet.
    pub scanned_in: u16,
}

impl Node {
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// A reference: `parent` holds `child` in the slot `offset` bytes from its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub child: u32,
    pub parent: u32,
    pub offset: u32,
}

/// Multiplicative hashing of addresses (objects are 8-aligned: the low bits carry nothing).
#[derive(Default, Clone, Copy)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

pub type AddrMap<V> = HashMap<ObjectID, V, BuildHasherDefault<AddrHasher>>;
pub type AddrSet = std::collections::HashSet<usize, BuildHasherDefault<AddrHasher>>;

/// Bits of the address filter: at most 4 Mi bits (512 KiB), so that 100 000 followed objects
/// leave about 98 % of lookups at the filter; at most a sixteenth of the budget.
const FILTER_BITS: u32 = 22;
const MIN_FILTER_BITS: u32 = 12;

/// Bytes the analysis after the walks needs per node (distances, queues, the final graph, the
/// path tree) and per reference, kept free while the walks grow.
const ANALYSIS_PER_NODE: usize = 64;
const ANALYSIS_PER_EDGE: usize = 16;
/// Bytes per entry of the address index at its fullest, while it grows (old and new tables).
const INDEX_ENTRY: usize = 40;

#[derive(Default)]
pub struct Tracked {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// Distinct classes, in order of first appearance.
    pub classes: Vec<ClassID>,
    /// Objects whose retained size is measured: (objects followed down from it, whether the
    /// per-object cap stopped that).
    pub owners: Vec<(u32, bool)>,
    class_index: HashMap<ClassID, u32>,
    index: AddrMap<u32>,
    filter: Vec<u64>,
    filter_bits: u32,
    budget: usize,
    /// The agent's heap when the request began: the budget is for what it adds.
    baseline: usize,
}

impl Tracked {
    /// Objects to be followed within `budget` bytes more than the agent's heap held at
    /// `baseline` (everything the request allocates counts, not only this table).
    pub fn new(budget: usize, baseline: usize) -> Tracked {
        let bits = ((budget / 16 * 8).max(1).ilog2()).clamp(MIN_FILTER_BITS, FILTER_BITS);
        Tracked { budget, baseline, filter: vec![0; 1 << (bits - 6)], filter_bits: bits, ..Default::default() }
    }

    /// Bytes the request has added to the agent's heap so far.
    pub fn bytes(&self) -> usize {
        crate::memory::allocated_bytes().saturating_sub(self.baseline)
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Room for `more_nodes` nodes and `more_edges` edges within the budget (with room kept for
    /// the analysis of that many), growing by half again, or exactly as needed near the budget.
    /// False when they do not fit.
    pub fn make_room(&mut self, more_nodes: usize, more_edges: usize) -> bool {
        let need_nodes = self.nodes.len() + more_nodes;
        let need_edges = self.edges.len() + more_edges;
        if need_nodes <= self.nodes.capacity() && need_edges <= self.edges.capacity() {
            return true;
        }
        let grow = |cap: usize, need: usize| if need <= cap { cap } else { need.max(cap + cap / 2).max(1024) };
        let used = self.bytes();
        let fits = |n: usize, e: usize| {
            let growth = (n - self.nodes.capacity()) * std::mem::size_of::<Node>()
                + (e - self.edges.capacity()) * std::mem::size_of::<Edge>()
                + if n > self.index.capacity() { n * INDEX_ENTRY } else { 0 };
            used + growth + n * ANALYSIS_PER_NODE + e * ANALYSIS_PER_EDGE <= self.budget
        };
        let (mut n, mut e) = (grow(self.nodes.capacity(), need_nodes), grow(self.edges.capacity(), need_edges));
        if !fits(n, e) {
            n = need_nodes.max(self.nodes.capacity());
            e = need_edges.max(self.edges.capacity());
            if !fits(n, e) {
                return false;
            }
        }
        self.nodes.reserve_exact(n - self.nodes.len());
        self.edges.reserve_exact(e - self.edges.len());
        if n > self.index.capacity() {
            self.index.reserve(n - self.index.len());
        }
        true
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

    fn filter_slot(&self, addr: ObjectID) -> (usize, u64) {
        let h = ((addr as u64) >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.filter_bits);
        ((h >> 6) as usize, 1u64 << (h & 63))
    }

    /// The node at `addr`, if followed.
    #[inline]
    pub fn lookup(&self, addr: ObjectID) -> Option<u32> {
        let (word, bit) = self.filter_slot(addr);
        if self.filter[word] & bit == 0 {
            return None;
        }
        self.index.get(&addr).copied()
    }

    /// Follows a new object (call [`Tracked::make_room`] first). Its handle comes later.
    pub fn add(&mut self, addr: ObjectID, class: ClassID, size: usize, flags: u8, walk: u16) -> u32 {
        let class = self.class_id(class);
        let i = self.nodes.len() as u32;
        self.nodes.push(Node {
            addr,
            handle: 0,
            class,
            size: size.min(u32::MAX as usize) as u32,
            static_field: NONE,
            root: NONE,
            owner: NONE,
            flags,
            found_in: walk,
            referrers: 0,
            scanned_in: 0,
        });
        self.index.insert(addr, i);
        let (word, bit) = self.filter_slot(addr);
        self.filter[word] |= bit;
        i
    }

    /// Rebuilds the index from the nodes' current addresses (after a GC moved them).
    pub fn reindex(&mut self) {
        self.index.clear();
        self.filter.iter_mut().for_each(|w| *w = 0);
        for (i, n) in self.nodes.iter().enumerate() {
            if n.has(flag::DEAD) || n.addr == 0 {
                continue;
            }
            self.index.insert(n.addr, i as u32);
            let (word, bit) = self.filter_slot(n.addr);
            self.filter[word] |= bit;
        }
    }

    /// After a GC: a reference from an object that has died since is dropped, and the object it
    /// pointed at has its referrers looked for again. Whatever holds it now was not recorded (a
    /// list's array replaced by a larger copy, say); without this it would look held by nothing,
    /// and a search ending there would name no owner for it instead of saying it does not know.
    pub fn forget_dead_referrers(&mut self) {
        let nodes = &mut self.nodes;
        self.edges.retain(|e| {
            if !nodes[e.parent as usize].has(flag::DEAD) {
                return true;
            }
            let child = &mut nodes[e.child as usize];
            child.scanned_in = 0;
            child.referrers = child.referrers.saturating_sub(1);
            false
        });
    }

    /// Sorts the edges and drops the ones found twice (an object found in the middle of a walk
    /// has its referrers looked for again in the next), then recounts referrers.
    pub fn dedup_edges(&mut self) {
        self.edges.sort_unstable();
        self.edges.dedup();
        for n in &mut self.nodes {
            n.referrers = 0;
        }
        for e in &self.edges {
            let n = &mut self.nodes[e.child as usize];
            n.referrers = n.referrers.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_find_added_nodes_and_survive_a_reindex() {
        let mut t = Tracked::new(16 << 20, crate::memory::allocated_bytes());
        assert!(t.make_room(3, 0));
        let a = t.add(0x1000, 0x77, 24, flag::SAMPLE, 1);
        let b = t.add(0x2000, 0x78, 32, 0, 1);
        assert_eq!((t.lookup(0x1000), t.lookup(0x2000), t.lookup(0x3000)), (Some(a), Some(b), None));
        t.nodes[a as usize].addr = 0x5000;
        t.nodes[b as usize].flags |= flag::DEAD;
        t.reindex();
        assert_eq!((t.lookup(0x1000), t.lookup(0x5000), t.lookup(0x2000)), (None, Some(a), None));
        assert_eq!(t.classes, [0x77, 0x78]);
    }

    #[test]
    fn room_is_refused_past_the_budget() {
        let mut t = Tracked::new(1 << 20, crate::memory::allocated_bytes());
        assert!(t.make_room(100, 100));
        assert!(!t.make_room(1 << 20, 0), "a million nodes do not fit in 1 MiB");
        assert!(t.nodes.capacity() < 1 << 14);
    }

    #[test]
    fn a_dead_referrer_reopens_what_it_held() {
        let mut t = Tracked::new(16 << 20, crate::memory::allocated_bytes());
        t.make_room(4, 3);
        let (list, old_array, kept, item) =
            (t.add(0x10, 1, 24, 0, 1), t.add(0x20, 2, 64, 0, 1), t.add(0x30, 2, 64, 0, 1), t.add(0x40, 3, 24, 0, 1));
        t.edges.push(Edge { child: old_array, parent: list, offset: 8 });
        t.edges.push(Edge { child: item, parent: old_array, offset: 16 });
        t.edges.push(Edge { child: kept, parent: list, offset: 16 });
        for n in &mut t.nodes {
            n.scanned_in = 2;
        }
        t.dedup_edges();
        // The list's array was replaced: the old one died in a GC, the item lives on.
        t.nodes[old_array as usize].flags |= flag::DEAD;
        t.forget_dead_referrers();
        assert_eq!(t.edges.len(), 2);
        assert_eq!((t.nodes[item as usize].scanned_in, t.nodes[item as usize].referrers), (0, 0));
        assert_eq!(t.nodes[kept as usize].scanned_in, 2, "held by a live object: still complete");
        assert_eq!(t.nodes[old_array as usize].scanned_in, 2);
    }

    #[test]
    fn duplicate_edges_collapse_and_referrers_are_recounted() {
        let mut t = Tracked::new(16 << 20, crate::memory::allocated_bytes());
        t.make_room(2, 3);
        let a = t.add(0x10, 1, 24, 0, 1);
        let b = t.add(0x20, 1, 24, 0, 1);
        t.edges.extend([Edge { child: b, parent: a, offset: 8 }; 2]);
        t.edges.push(Edge { child: b, parent: a, offset: 16 });
        t.dedup_edges();
        assert_eq!(t.edges.len(), 2);
        assert_eq!((t.nodes[b as usize].referrers, t.nodes[a as usize].referrers), (2, 0));
    }
}
