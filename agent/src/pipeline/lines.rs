//! Source lines for frames: instruction pointer → IL offset (through the runtime's IL-to-native
//! map of the code version that contains it) → `File.cs:line` (through the module's portable
//! PDB, read from beside the assembly). Resolved once per frame on the agent's thread.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use crate::capture::Frame;
use crate::clr::pdb::PortablePdb;
use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{FunctionID, ModuleID};

/// Largest PDB we read into memory.
const MAX_PDB_BYTES: u64 = 64 << 20;

pub struct Lines<'a> {
    info: &'a ProfilerInfo,
    pdbs: HashMap<ModuleID, Option<Rc<PortablePdb>>>,
    frames: HashMap<Frame, Option<Arc<str>>>,
}

impl<'a> Lines<'a> {
    pub fn new(info: &'a ProfilerInfo) -> Self {
        Lines { info, pdbs: HashMap::new(), frames: HashMap::new() }
    }

    /// A module is unloading: forgets its frames and PDB (their ids may be reused).
    pub fn forget_module(&mut self, module: ModuleID, in_module: impl Fn(FunctionID) -> bool) {
        self.frames.retain(|frame, _| !in_module(frame.function));
        self.pdbs.remove(&module);
    }

    /// `File.cs:line` of a frame, when the module has a portable PDB next to it.
    pub fn location(&mut self, frame: Frame) -> Option<Arc<str>> {
        if let Some(known) = self.frames.get(&frame) {
            return known.clone();
        }
        let found = self.resolve(frame).map(Arc::from);
        self.frames.insert(frame, found.clone());
        found
    }

    fn resolve(&mut self, frame: Frame) -> Option<String> {
        let function = self.info.function_info(frame.function).ok()?;
        let pdb = self.pdb(function.module)?;
        // A frame of a module with a PDB that gets no line is remembered so: say why (once).
        let Some(il_offset) = self.il_offset(frame.function, frame.ip) else {
            tracing::debug!(
                "no IL offset for {:#x} at {:#x} (token {:#x}; code starts {:x?})",
                frame.function,
                frame.ip,
                function.token,
                self.info.native_code_starts(frame.function)
            );
            return None;
        };
        let location = pdb.location(function.token, il_offset);
        if location.is_none() {
            tracing::debug!("no sequence point for token {:#x} at IL {il_offset:#x}", function.token);
        }
        location
    }

    fn pdb(&mut self, module: ModuleID) -> Option<Rc<PortablePdb>> {
        let info = self.info;
        self.pdbs
            .entry(module)
            .or_insert_with(|| {
                let path = info.module_path(module).ok()?;
                let pdb_path = Path::new(&path).with_extension("pdb");
                PortablePdb::parse(crate::files::read_regular(&pdb_path, MAX_PDB_BYTES)?).map(Rc::new)
            })
            .clone()
    }

    /// The IL offset of the instruction before `ip`: stack frames hold return addresses, and
    /// the call that made the frame is the instruction just before.
    fn il_offset(&self, function: FunctionID, ip: usize) -> Option<u32> {
        let at = super::code_versions::locate(self.info, function, ip.checked_sub(1)?)?;
        let map = self
            .info
            .il_to_native_map(at.start)
            .inspect_err(|hr| tracing::debug!("no IL-to-native map for the version at {:#x} ({hr:#x})", at.start))
            .ok()?;
        tracing::trace!("{ip:#x} is at +{:#x} in the version at {:#x}: map {map:?}", at.offset, at.start);
        il_offset_at(
            map.iter().map(|m| (m.il_offset as i32, m.native_start as usize, m.native_end as usize)),
            at.offset,
        )
    }
}

/// The IL offset of native `offset` from a version's map of (IL offset, native start, native
/// end): the entry holding it, else the nearest one before it. Optimised code leaves gaps in
/// the map (code with no IL of its own: moved, merged, or inlined without a mapping), and a
/// call in a gap belongs to the statement before it, as a debugger's nearest preceding
/// sequence point. Prolog, epilog and unmapped entries (negative IL offsets) are not
/// statements.
fn il_offset_at(map: impl Iterator<Item = (i32, usize, usize)>, offset: usize) -> Option<u32> {
    let mut before: Option<(usize, u32)> = None;
    for (il, start, end) in map.filter(|m| m.0 >= 0) {
        if (start..end).contains(&offset) {
            return Some(il as u32);
        }
        if start <= offset && before.is_none_or(|(s, _)| start > s) {
            before = Some((start, il as u32));
        }
    }
    before.map(|(_, il)| il)
}

#[cfg(test)]
mod tests {
    use super::il_offset_at;

    #[test]
    fn an_offset_in_a_gap_of_the_map_belongs_to_the_statement_before_it() {
        let map = [(-2, 0, 83), (0, 83, 118), (104, 568, 576), (108, 616, 629), (75, 900, 950)];
        assert_eq!(il_offset_at(map.into_iter(), 100), Some(0), "held by an entry");
        assert_eq!(il_offset_at(map.into_iter(), 600), Some(104), "in the gap after IL 104");
        assert_eq!(il_offset_at(map.into_iter(), 960), Some(75), "after the last entry");
        assert_eq!(il_offset_at(map.into_iter(), 10), None, "in the prolog: no statement");
        assert_eq!(il_offset_at(std::iter::empty(), 10), None);
    }
}
