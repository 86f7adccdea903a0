//! Retained size: the bytes that would be freed with an object, those it dominates (every path
//! from the roots to them goes through it), as a heap analyser shows beside its shallow size.
//!
//! Measured for a few objects only (the first object of the application's own on each listed
//! path, for a few of the path's instances), by following down from them: each walk records
//! what the objects followed down reference, and every referrer of those, so that after the
//! walk that completes their referrers it is known which of them are referenced only from
//! within. On that part of the heap the dominators are computed exactly, with every object
//! referenced from outside it (or held by a static, a GC root, or with referrers not all known)
//! entered from a virtual root. Objects whose references were not followed (a per-object cap,
//! or the budgets) are left out, and the size is then a lower bound, said so.

use std::collections::HashMap;
use std::time::Duration;

use super::search::{Host, Limits, Searched};
use super::settle::{Csr, still_open};
use super::tracked::{Edge, NONE, flag};
use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::HRESULT;

/// Most walks spent following down (each level of references takes one, and one more
/// completes the last level's referrers); deeper structures are measured as a lower bound.
const MAX_WALKS: usize = 4;

/// One object's retained size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measured {
    pub bytes: u64,
    /// Some of what it references was not followed: at least this much.
    pub lower_bound: bool,
}

/// Follows down from `starts` until what they reference is known with all its referrers (or a
/// budget stops it), then computes what each dominates. `last_pause` is the last walk's.
pub fn measure(
    info: &ProfilerInfo,
    host: &mut dyn Host,
    s: &mut Searched,
    starts: &[u32],
    limits: &Limits<'_>,
    mut last_pause: Duration,
) -> Result<Vec<Measured>, HRESULT> {
    // Only what is followed down still needs its referrers.
    for n in &mut s.tracked.nodes {
        if !n.has(flag::FORWARD) {
            n.flags &= !flag::EXPAND;
        }
    }
    // Samples of the application's own types were followed down from the first walk on; the
    // other starts begin now.
    let mut owners = Vec::with_capacity(starts.len());
    for &u in starts {
        let n = &mut s.tracked.nodes[u as usize];
        if n.owner == NONE || !n.has(flag::FORWARD) {
            n.owner = s.tracked.owners.len() as u32;
            n.flags |= flag::FORWARD;
            s.tracked.owners.push((0, false));
        }
        owners.push(s.tracked.nodes[u as usize].owner);
    }
    // Done when everything followed down from the starts has its references recorded and (but
    // for the starts, whose own referrers do not matter) all its referrers. (An object with more
    // referrers than are kept never completes: no walk would help.)
    let pending = |s: &Searched| {
        s.tracked.nodes.iter().enumerate().any(|(i, n)| {
            n.has(flag::FORWARD)
                && !n.has(flag::DEAD)
                && owners.contains(&n.owner)
                && (!n.has(flag::CHILDREN)
                    || (n.scanned_in == 0 && !n.has(flag::CAPPED) && !starts.contains(&(i as u32))))
        })
    };
    let mut complete = !pending(s);
    let mut walks = 0;
    while !complete && walks < MAX_WALKS && s.stopped.is_none() && s.room_for_another(host, limits, last_pause) {
        walks += 1;
        let (pause, stopped) = s.walk(info, host, limits, None)?;
        last_pause = pause;
        if stopped.is_some() {
            s.stopped = stopped;
            break;
        }
        complete = !pending(s);
        tracing::info!(
            "retained size: walk {} in {pause:?}, {} followed, complete {complete}",
            s.walks.len(),
            s.tracked.nodes.len()
        );
    }
    let children = Csr::new(s.tracked.nodes.len(), &live_edges(s), |e| (e.parent, e.child));
    let parents = Csr::new(s.tracked.nodes.len(), &live_edges(s), |e| (e.child, e.parent));
    Ok(starts
        .iter()
        .enumerate()
        .map(|(i, &u)| {
            let owner = owners[i];
            let capped = s.tracked.owners.get(owner as usize).is_some_and(|o| o.1);
            let mut m = dominated(s, u, owner, &children, &parents);
            m.lower_bound |= capped || !complete;
            m
        })
        .collect())
}

fn live_edges(s: &Searched) -> Vec<Edge> {
    let nodes = &s.tracked.nodes;
    s.tracked
        .edges
        .iter()
        .filter(|e| !nodes[e.child as usize].has(flag::DEAD) && !nodes[e.parent as usize].has(flag::DEAD))
        .copied()
        .collect()
}

/// What `u` dominates among the objects followed down from it (those of `owner`).
fn dominated(s: &Searched, u: u32, owner: u32, children: &Csr, parents: &Csr) -> Measured {
    let nodes = &s.tracked.nodes;
    // The part below u: u first, then what it reaches through objects of its own.
    let mut order = vec![u];
    let mut local: HashMap<u32, u32> = HashMap::from([(u, 1)]);
    let mut lower_bound = false;
    let mut i = 0;
    while i < order.len() {
        let x = order[i];
        i += 1;
        if x != u && !nodes[x as usize].has(flag::CHILDREN) {
            lower_bound = true;
        }
        for &c in children.of(x) {
            let n = &nodes[c as usize];
            if n.owner == owner && n.has(flag::FORWARD) && !local.contains_key(&c) {
                local.insert(c, order.len() as u32 + 1);
                order.push(c);
            }
        }
    }
    // Local graph: 0 is the virtual root, then `order` (u is 1).
    let count = order.len() + 1;
    let mut preds: Vec<Vec<u32>> = vec![Vec::new(); count];
    preds[1].push(0);
    for (k, &x) in order.iter().enumerate().skip(1) {
        let n = &nodes[x as usize];
        let incomplete = still_open(n);
        let mut outside = n.static_field != NONE || n.root != NONE || incomplete;
        for &p in parents.of(x) {
            match local.get(&p) {
                Some(&lp) => preds[k + 1].push(lp),
                None => outside = true,
            }
        }
        if incomplete {
            lower_bound = true;
        }
        if outside {
            preds[k + 1].push(0);
        }
    }
    let idom = dominators(&preds);
    let mut bytes = nodes[u as usize].size as u64;
    for (k, &x) in order.iter().enumerate().skip(1) {
        let mut d = k + 1;
        while d != 0 && d != 1 {
            d = idom[d] as usize;
        }
        if d == 1 {
            bytes += nodes[x as usize].size as u64;
        }
    }
    Measured { bytes, lower_bound }
}

/// Immediate dominators of a graph given by predecessors, node 0 the root and every node
/// reachable from it (Cooper, Harvey & Kennedy's iterative algorithm). Unreachable nodes get 0.
pub fn dominators(preds: &[Vec<u32>]) -> Vec<u32> {
    let n = preds.len();
    let mut succs: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (v, ps) in preds.iter().enumerate() {
        for &p in ps {
            succs[p as usize].push(v as u32);
        }
    }
    // Reverse postorder from the root.
    let mut post = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    let mut stack: Vec<(u32, usize)> = vec![(0, 0)];
    seen[0] = true;
    while let Some(&mut (v, ref mut next)) = stack.last_mut() {
        if let Some(&w) = succs[v as usize].get(*next) {
            *next += 1;
            if !seen[w as usize] {
                seen[w as usize] = true;
                stack.push((w, 0));
            }
        } else {
            post.push(v);
            stack.pop();
        }
    }
    let mut rank = vec![u32::MAX; n];
    for (i, &v) in post.iter().enumerate() {
        rank[v as usize] = i as u32;
    }
    const UNDEF: u32 = u32::MAX;
    let mut idom = vec![UNDEF; n];
    idom[0] = 0;
    let intersect = |idom: &[u32], mut a: u32, mut b: u32| {
        while a != b {
            while rank[a as usize] < rank[b as usize] {
                a = idom[a as usize];
            }
            while rank[b as usize] < rank[a as usize] {
                b = idom[b as usize];
            }
        }
        a
    };
    let mut changed = true;
    while changed {
        changed = false;
        for &v in post.iter().rev() {
            if v == 0 {
                continue;
            }
            let mut new = UNDEF;
            for &p in &preds[v as usize] {
                if idom[p as usize] == UNDEF {
                    continue;
                }
                new = if new == UNDEF { p } else { intersect(&idom, p, new) };
            }
            if new != UNDEF && idom[v as usize] != new {
                idom[v as usize] = new;
                changed = true;
            }
        }
    }
    idom.iter().map(|&d| if d == UNDEF { 0 } else { d }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dominators_of_a_diamond_and_a_chain() {
        // 0 → 1 → {2, 3} → 4 → 5; 0 → 3 as well.
        let preds = vec![vec![], vec![0], vec![1], vec![1, 0], vec![2, 3], vec![4]];
        let idom = dominators(&preds);
        assert_eq!(idom, [0, 0, 1, 0, 0, 4]);
    }

    #[test]
    fn a_cycle_below_its_only_entry_is_dominated_by_it() {
        // 0 → 1 → 2 ⇄ 3.
        let preds = vec![vec![], vec![0], vec![1, 3], vec![2]];
        assert_eq!(dominators(&preds), [0, 0, 1, 2]);
    }
}
