//! The followed part of the heap as a graph for the path search: nodes in the order the search
//! found them, each with its references (to other followed objects) in compressed rows.

use super::tracked::{Tracked, flag};
use crate::clr::types::{ClassID, ObjectID};

/// One object. `class` indexes [`Graph::classes`]; its references are
/// `targets[first_edge .. first_edge + edges]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Node {
    pub id: ObjectID,
    pub class: u32,
    /// Bytes, saturated at 4 GiB.
    pub size: u32,
    pub first_edge: u32,
    pub edges: u32,
}

#[derive(Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    /// Per reference: the index of the referenced node.
    pub targets: Vec<u32>,
    /// Per reference: offset of the slot within the referencing object.
    pub offsets: Vec<u32>,
    pub classes: Vec<ClassID>,
}

impl Graph {
    pub fn edge_range(&self, node: u32) -> std::ops::Range<usize> {
        let n = &self.nodes[node as usize];
        n.first_edge as usize..(n.first_edge as usize + n.edges as usize)
    }

    /// The followed objects and the references between live ones; also which objects some
    /// followed object references.
    pub fn from_tracked(t: &Tracked) -> (Graph, Vec<bool>) {
        let live = |i: u32| !t.nodes[i as usize].has(flag::DEAD);
        let mut edges: Vec<(u32, u32, u32)> =
            t.edges.iter().filter(|e| live(e.parent) && live(e.child)).map(|e| (e.parent, e.child, e.offset)).collect();
        edges.sort_unstable();
        let mut g = Graph {
            nodes: Vec::with_capacity(t.nodes.len()),
            targets: Vec::with_capacity(edges.len()),
            offsets: Vec::with_capacity(edges.len()),
            classes: t.classes.clone(),
        };
        let mut referenced = vec![false; t.nodes.len()];
        let mut e = 0;
        for (i, n) in t.nodes.iter().enumerate() {
            let first = g.targets.len();
            while e < edges.len() && edges[e].0 == i as u32 {
                g.targets.push(edges[e].1);
                g.offsets.push(edges[e].2);
                referenced[edges[e].1 as usize] = true;
                e += 1;
            }
            g.nodes.push(Node {
                id: n.addr,
                class: n.class,
                size: n.size,
                first_edge: first as u32,
                edges: (g.targets.len() - first) as u32,
            });
        }
        (g, referenced)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tracked::Edge;
    use super::*;

    #[test]
    fn followed_objects_become_nodes_with_their_live_references() {
        let mut t = Tracked::new(16 << 20, crate::memory::allocated_bytes());
        t.make_room(3, 3);
        let a = t.add(0x10, 0x100, 24, 0, 1);
        let b = t.add(0x20, 0x200, 32, 0, 1);
        let c = t.add(0x30, 0x200, 32, 0, 1);
        t.edges.extend([
            Edge { child: b, parent: a, offset: 8 },
            Edge { child: c, parent: a, offset: 16 },
            Edge { child: a, parent: c, offset: 8 },
        ]);
        t.nodes[c as usize].flags |= flag::DEAD;
        let (g, referenced) = Graph::from_tracked(&t);
        assert_eq!(g.nodes.len(), 3);
        assert_eq!(g.edge_range(a), 0..1);
        assert_eq!((g.targets[0], g.offsets[0]), (b, 8));
        assert_eq!(referenced, [false, true, false]);
        assert_eq!(g.classes, [0x100, 0x200]);
    }
}
