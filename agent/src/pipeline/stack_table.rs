//! Interning captured stacks: each distinct stack gets a small id, its frames' names, and its
//! call site — the first frame in user code.

use std::collections::HashMap;
use std::sync::Arc;

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
    ids: HashMap<Vec<Frame>, StackId>,
    stacks: Vec<StackInfo>,
}

impl Stacks {
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
