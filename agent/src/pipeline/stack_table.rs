//! Interning captured stacks: each distinct stack gets a small id, its frames' names, and its
//! call site — the first frame in user code.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::lines::Lines;
use super::names::{Names, Runtime};
use crate::capture::Frame;

pub type StackId = u32;

pub struct StackInfo {
    /// Frame names, innermost first.
    pub frames: Vec<Arc<str>>,
    /// `File.cs:line` per frame, where the module has a PDB.
    pub lines: Vec<Option<Arc<str>>>,
    /// The first user-code frame, or the innermost frame when all are framework code.
    pub site: Arc<str>,
    pub site_line: Option<Arc<str>>,
}

#[derive(Default)]
pub struct Stacks {
    ids: FxHashMap<Vec<Frame>, StackId>,
    stacks: Vec<StackInfo>,
    /// Stacks the frame walk captured, by their return addresses alone: a walk seen before is
    /// one lookup away from its id, without resolving or naming its frames again. An address
    /// stands for the same function until its module unloads, which clears this. At most one
    /// entry per stack (the addresses decide the frames).
    walks: FxHashMap<Box<[usize]>, StackId>,
    scratch: Vec<usize>,
}

/// What the sample path learns from `Stacks::known_walk`.
pub enum Walk {
    /// Seen before: its id.
    Known(StackId),
    /// A walk not seen yet: its return addresses, remembered once it is interned.
    New(Box<[usize]>),
    /// Not a walk (frames from DoStackSnapshot, or none): intern it as it is.
    NotWalked,
}

impl Stacks {
    /// Looks a sample's frames up by return address, when they all came from the frame walk
    /// (no function resolved yet).
    pub fn known_walk(&mut self, frames: &[Frame]) -> Walk {
        if frames.is_empty() || frames.iter().any(|f| f.function != 0) {
            return Walk::NotWalked;
        }
        self.scratch.clear();
        self.scratch.extend(frames.iter().map(|f| f.ip));
        match self.walks.get(self.scratch.as_slice()) {
            Some(&id) => Walk::Known(id),
            None => Walk::New(self.scratch.as_slice().into()),
        }
    }

    /// The id of a sample's stack: a known walk's, or its frames interned (a new walk is then
    /// remembered by its return addresses).
    pub fn intern_sample<R: Runtime>(
        &mut self,
        walk: Walk,
        frames: Vec<Frame>,
        names: &mut Names<R>,
        lines: Option<&mut Lines<'_>>,
    ) -> StackId {
        match walk {
            Walk::Known(id) => id,
            Walk::New(returns) => {
                let id = self.intern(frames, names, lines);
                self.walks.insert(returns, id);
                id
            }
            Walk::NotWalked => self.intern(frames, names, lines),
        }
    }

    pub fn intern<R: Runtime>(
        &mut self,
        frames: Vec<Frame>,
        names: &mut Names<R>,
        mut lines: Option<&mut Lines<'_>>,
    ) -> StackId {
        if let Some(&id) = self.ids.get(&frames) {
            return id;
        }
        let resolved: Vec<_> = frames.iter().map(|f| names.function(f.function)).collect();
        let locations: Vec<Option<Arc<str>>> = frames
            .iter()
            .zip(&resolved)
            .map(|(frame, name)| match lines.as_deref_mut() {
                // Framework assemblies ship without PDBs beside them: don't look.
                Some(lines) if !name.is_framework => lines.location(*frame),
                _ => None,
            })
            .collect();
        let site_index = resolved.iter().position(|f| !f.is_framework).unwrap_or(0);
        let site =
            resolved.get(site_index).map(|f| f.display.clone()).unwrap_or_else(|| Arc::from("<no managed frames>"));
        let site_line = locations.get(site_index).cloned().flatten();
        let id = self.stacks.len() as StackId;
        self.stacks.push(StackInfo {
            frames: resolved.into_iter().map(|f| f.display).collect(),
            lines: locations,
            site,
            site_line,
        });
        self.ids.insert(frames, id);
        id
    }

    /// A module is unloading: stacks through its functions are no longer looked up by id (the
    /// ids may be reused for other code); the stacks already named keep their names.
    pub fn forget_module(&mut self, in_module: impl Fn(crate::clr::types::FunctionID) -> bool) {
        self.ids.retain(|frames, _| !frames.iter().any(|f| in_module(f.function)));
        // Walks hold addresses only: which of them were in the module is not known here.
        self.walks.clear();
    }

    pub fn get(&self, id: StackId) -> &StackInfo {
        &self.stacks[id as usize]
    }

    pub fn count(&self) -> usize {
        self.stacks.len()
    }

    /// Stacks of one frame each, for tests that need sites without a runtime to name them.
    #[cfg(test)]
    pub fn of_sites(sites: &[&str]) -> Stacks {
        let mut stacks = Stacks::default();
        for site in sites {
            let site: Arc<str> = Arc::from(*site);
            stacks.stacks.push(StackInfo { frames: vec![site.clone()], lines: vec![None], site, site_line: None });
        }
        stacks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walked(ips: &[usize]) -> Vec<Frame> {
        ips.iter().map(|&ip| Frame { function: 0, ip }).collect()
    }

    #[test]
    fn a_walk_is_known_by_its_return_addresses_once_remembered() {
        let mut stacks = Stacks::default();
        let Walk::New(returns) = stacks.known_walk(&walked(&[0x10, 0x20, 0x30])) else { panic!("first sight") };
        assert_eq!(&*returns, &[0x10, 0x20, 0x30]);
        stacks.walks.insert(returns, 7);
        assert!(matches!(stacks.known_walk(&walked(&[0x10, 0x20, 0x30])), Walk::Known(7)));
        // Same addresses in another order, or one more frame: another stack.
        assert!(matches!(stacks.known_walk(&walked(&[0x20, 0x10, 0x30])), Walk::New(_)));
        assert!(matches!(stacks.known_walk(&walked(&[0x10, 0x20, 0x30, 0x40])), Walk::New(_)));
    }

    #[test]
    fn frames_with_functions_or_none_are_not_walks() {
        let mut stacks = Stacks::default();
        let snapshot = vec![Frame { function: 0x5000, ip: 0x10 }];
        assert!(matches!(stacks.known_walk(&snapshot), Walk::NotWalked));
        assert!(matches!(stacks.known_walk(&[]), Walk::NotWalked));
    }

    #[test]
    fn an_unloading_module_forgets_every_walk() {
        let mut stacks = Stacks::default();
        stacks.walks.insert(Box::new([0x10]), 0);
        stacks.forget_module(|_| false);
        assert!(matches!(stacks.known_walk(&walked(&[0x10])), Walk::New(_)));
    }
}
