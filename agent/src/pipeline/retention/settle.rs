//! Which sampled instances are settled after a walk, and which objects' referrers the next
//! walk looks for. An instance is settled when a static field's value reaches it by a path no
//! longer than any still-open step could give (so it is the shortest, as a search from the roots
//! would find), or when only complete steps lead to it (its roots are then not statics). The
//! followed objects and references as adjacency in compressed rows ([`Csr`]) serve the other
//! analyses of the followed part of the heap too.

use std::collections::VecDeque;

use super::target::Target;
use super::tracked::{Edge, NONE, Node, Tracked, flag};

/// After a complete walk: every object followed since before it whose referrers were wanted
/// now has all of them recorded.
pub fn mark_scanned(t: &mut Tracked, walk: u16) {
    for n in &mut t.nodes {
        if n.found_in < walk && n.has(flag::EXPAND) && !n.has(flag::DEAD) {
            n.scanned_in = walk;
        }
    }
}

/// Adjacency in compressed rows: for node `i`, `list[start[i]..start[i + 1]]`.
pub struct Csr {
    pub start: Vec<u32>,
    pub list: Vec<u32>,
}

impl Csr {
    /// `pairs` yields (from, to).
    pub fn new(n: usize, edges: &[Edge], pair: impl Fn(&Edge) -> (u32, u32)) -> Csr {
        let mut start = vec![0u32; n + 1];
        for e in edges {
            start[pair(e).0 as usize + 1] += 1;
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut list = vec![0u32; edges.len()];
        for e in edges {
            let (from, to) = pair(e);
            list[fill[from as usize] as usize] = to;
            fill[from as usize] += 1;
        }
        Csr { start, list }
    }

    pub fn of(&self, i: u32) -> &[u32] {
        &self.list[self.start[i as usize] as usize..self.start[i as usize + 1] as usize]
    }
}

const FAR: u32 = u32::MAX;

/// Distances (in references) from the nearest of `sources`, following `next`; `blocked` nodes
/// are not entered.
fn distances(n: usize, sources: impl Iterator<Item = u32>, next: &Csr, blocked: &dyn Fn(u32) -> bool) -> Vec<u32> {
    let mut dist = vec![FAR; n];
    let mut queue = VecDeque::new();
    for s in sources {
        if dist[s as usize] == FAR {
            dist[s as usize] = 0;
            queue.push_back(s);
        }
    }
    while let Some(i) = queue.pop_front() {
        for &j in next.of(i) {
            if dist[j as usize] == FAR && !blocked(j) {
                dist[j as usize] = dist[i as usize] + 1;
                queue.push_back(j);
            }
        }
    }
    dist
}

pub struct Settled {
    /// Live sampled instances not settled.
    pub unsettled: usize,
    /// Objects whose referrers the next walk looks for.
    pub expand: usize,
}

/// Whether an object's referrers may still be missing and another walk would find them.
fn open(n: &Node) -> bool {
    !n.has(flag::DEAD) && n.static_field == NONE && n.scanned_in == 0 && !n.has(flag::CAPPED)
}

/// Whether an object's referrers may not all be known (not all looked for yet, or more than
/// are kept): what holds it is unknown beyond the ones found.
pub fn still_open(n: &Node) -> bool {
    !n.has(flag::DEAD) && n.static_field == NONE && (n.scanned_in == 0 || n.has(flag::CAPPED))
}

/// Which sampled instances are settled, and which objects' referrers the next walk looks for.
pub fn settle(t: &mut Tracked, targets: &[Target]) -> Settled {
    let n = t.nodes.len();
    let live: Vec<Edge> = t
        .edges
        .iter()
        .filter(|e| !t.nodes[e.child as usize].has(flag::DEAD) && !t.nodes[e.parent as usize].has(flag::DEAD))
        .copied()
        .collect();
    let children = Csr::new(n, &live, |e| (e.parent, e.child));
    let parents = Csr::new(n, &live, |e| (e.child, e.parent));
    let nodes = &t.nodes;
    let statics =
        (0..n as u32).filter(|&i| !nodes[i as usize].has(flag::DEAD) && nodes[i as usize].static_field != NONE);
    let dist_static = distances(n, statics, &children, &|_| false);
    let dist_open = distances(n, (0..n as u32).filter(|&i| open(&nodes[i as usize])), &children, &|_| false);
    let mut unsettled: Vec<u32> = Vec::new();
    for &s in targets.iter().flat_map(|t| &t.samples) {
        if nodes[s as usize].has(flag::DEAD) {
            continue;
        }
        let (ds, dopen) = (dist_static[s as usize], dist_open[s as usize]);
        let settled = if ds == FAR { dopen == FAR } else { dopen == FAR || ds <= dopen + 1 };
        if !settled {
            unsettled.push(s);
        }
    }
    // The objects on the way up from unsettled instances, short of statics' values.
    let needed = distances(n, unsettled.iter().copied(), &parents, &|j| nodes[j as usize].static_field != NONE);
    let mut expand = 0;
    for (i, node) in t.nodes.iter_mut().enumerate() {
        if needed[i] != FAR && open(node) {
            node.flags |= flag::EXPAND;
            expand += 1;
        } else if !node.has(flag::FORWARD) {
            // (Objects followed down keep theirs: their retained size needs all their referrers.)
            node.flags &= !flag::EXPAND;
        }
    }
    Settled { unsettled: unsettled.len(), expand }
}
