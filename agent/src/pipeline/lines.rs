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
        let il_offset = self.il_offset(frame.function, frame.ip)?;
        pdb.location(function.token, il_offset)
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
        let target = ip.checked_sub(1)?;
        for start in self.info.native_code_starts(function).ok()? {
            let Ok(chunks) = self.info.code_chunks(start) else { continue };
            let mut preceding = 0usize;
            let mut native_offset = None;
            for chunk in chunks {
                if (chunk.start..chunk.start + chunk.size).contains(&target) {
                    native_offset = Some(preceding + (target - chunk.start));
                    break;
                }
                preceding += chunk.size;
            }
            let Some(offset) = native_offset else { continue };
            let map = self.info.il_to_native_map(start).ok()?;
            return map
                .iter()
                .filter(|m| (m.il_offset as i32) >= 0)
                .find(|m| (m.native_start as usize..m.native_end as usize).contains(&offset))
                .map(|m| m.il_offset);
        }
        None
    }
}
