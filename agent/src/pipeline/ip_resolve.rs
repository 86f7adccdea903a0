//! Resolve late: what the frame walk captured on the allocating threads, made sense of on the
//! agent thread.
//!
//! - Return addresses become functions through `GetFunctionFromIP`, once per address (cached).
//! - Addresses the walk did not know yet (from samples that fell back to `DoStackSnapshot`) are
//!   classified and published to the walk's [`Verdicts`]: managed code by its code version's
//!   prologue, the runtime's native code by its function's prologue (found through
//!   `.eh_frame_hdr`), other native code as the end of a walk; anything not understood as
//!   `Opaque`, so samples through it keep falling back rather than be walked wrongly.
//! - When a module unloads, everything keyed by code address is forgotten.

use rustc_hash::FxHashMap;

use super::code_versions;
use super::native_code::{NativeHome, NativeModules};
use super::perf_map::{self, PerfMap};
use super::prologue;
use crate::capture::Frame;
use crate::capture::verdicts::{Shape, Verdict, Verdicts};
use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{FunctionID, ModuleID};
use crate::output::records::Learnt;

/// Prologue bytes read to classify code.
const PROLOGUE_BYTES: usize = 64;

pub struct IpResolver<'a> {
    info: &'a ProfilerInfo,
    /// Return address → the function holding the call before it (0: not managed code).
    functions: FxHashMap<usize, FunctionID>,
    native: NativeModules,
    /// Where dynamic methods' code is (when the runtime writes a perf map).
    perf_map: PerfMap,
    /// Addresses already classified (the table may have refused some), with the module of
    /// the managed function holding them.
    classified: FxHashMap<usize, (Verdict, Option<ModuleID>)>,
    pub learnt: Learnt,
    /// Verdicts the table could not take (full).
    pub refused: u64,
}

impl<'a> IpResolver<'a> {
    pub fn new(info: &'a ProfilerInfo) -> Self {
        let native = NativeModules::new(info.runtime_code_address());
        IpResolver {
            info,
            functions: FxHashMap::default(),
            native,
            perf_map: PerfMap::from_env(),
            classified: FxHashMap::default(),
            learnt: Learnt::default(),
            refused: 0,
        }
    }

    /// The managed function holding the call that returns to `ret`, or 0.
    pub fn function(&mut self, ret: usize) -> FunctionID {
        let info = self.info;
        // A return address follows its call, which may be the last instruction of the
        // function (a call that never returns): look the call itself up.
        *self.functions.entry(ret).or_insert_with(|| info.function_from_ip(ret.wrapping_sub(1)).unwrap_or(0))
    }

    /// Fills in the function of every frame captured by the walk (those with none yet).
    pub fn resolve(&mut self, frames: &mut [Frame]) {
        for frame in frames.iter_mut().filter(|f| f.function == 0) {
            frame.function = self.function(frame.ip);
        }
    }

    /// Classifies the addresses a walk did not know and publishes the verdicts.
    pub fn learn(&mut self, verdicts: &Verdicts, addresses: &[usize]) {
        for &address in addresses {
            if self.classified.contains_key(&address) {
                continue;
            }
            let verdict = self.classify(address);
            match verdict {
                Verdict::Managed(shape) | Verdict::Runtime(shape) => {
                    if matches!(verdict, Verdict::Managed(_)) {
                        self.learnt.managed += 1;
                    } else {
                        self.learnt.runtime += 1;
                    }
                    match shape {
                        Shape::Framed => {}
                        Shape::Frameless { .. } => self.learnt.frameless += 1,
                        Shape::SavedRbp { .. } => self.learnt.saved_rbp += 1,
                        Shape::Osr => self.learnt.osr += 1,
                    }
                }
                Verdict::Foreign => self.learnt.foreign += 1,
                Verdict::Opaque => {
                    self.learnt.opaque += 1;
                    tracing::debug!(
                        "frame walk: cannot walk through {address:#x} ({}); samples through it use DoStackSnapshot",
                        self.describe(address)
                    );
                }
            }
            if !verdicts.insert(address, verdict) {
                self.refused += 1;
            }
            let module = match verdict {
                Verdict::Managed(_) => self.info.function_info(self.function(address)).ok().map(|i| i.module),
                _ => None,
            };
            self.classified.insert(address, (verdict, module));
        }
    }

    /// `module` is unloading: its code addresses may soon hold other code. Forgets them, and
    /// rebuilds the walk's table from what remains (the table cannot delete in place; samples
    /// taken meanwhile fall back).
    pub fn forget_module(&mut self, verdicts: &Verdicts, module: ModuleID, in_module: impl Fn(FunctionID) -> bool) {
        self.functions.retain(|_, f| *f == 0 || !in_module(*f));
        self.classified.retain(|_, (_, m)| *m != Some(module));
        // Unclassified stubs of the module may also go: forget every opaque verdict too.
        self.classified.retain(|_, (v, _)| *v != Verdict::Opaque);
        verdicts.clear();
        for (&address, &(verdict, _)) in &self.classified {
            verdicts.insert(address, verdict);
        }
        self.native.refresh();
    }

    /// Where an address is, for the log.
    fn describe(&mut self, ret: usize) -> String {
        match self.native.home(ret) {
            Some(NativeHome::Foreign) => "native code".into(),
            Some(NativeHome::Runtime { function: Some(f), .. }) => {
                // SAFETY: as in `classify`: the runtime's loaded code.
                let code = unsafe { std::slice::from_raw_parts(f as *const u8, 24) };
                format!("runtime function at +{:#x}, prologue {code:02x?}", ret - f)
            }
            Some(NativeHome::Runtime { function: None, .. }) => "runtime code outside any known function".into(),
            None => match self.function(ret) {
                0 => "neither managed nor native code".into(),
                f => match self.code_version_of(f, ret.wrapping_sub(1)) {
                    Some((start, size)) => {
                        // SAFETY: as in `classify_managed`.
                        let code = unsafe { std::slice::from_raw_parts(start as *const u8, size.min(24)) };
                        format!("managed function {f:#x} at +{:#x}, prologue {code:02x?}", ret - start)
                    }
                    None => format!("managed function {f:#x}, code version not found"),
                },
            },
        }
    }

    fn classify(&mut self, ret: usize) -> Verdict {
        let home = match self.native.home(ret) {
            Some(home) => Some(home),
            None if self.function(ret) == 0 => {
                // Not managed code; perhaps a native library loaded since we last looked.
                self.native.refresh();
                self.native.home(ret)
            }
            None => None,
        };
        match home {
            Some(NativeHome::Foreign) => Verdict::Foreign,
            Some(NativeHome::Runtime { function: Some(start), code_end }) if start < code_end => {
                // SAFETY: `start..code_end` is inside a loaded executable segment of the runtime.
                let code =
                    unsafe { std::slice::from_raw_parts(start as *const u8, (code_end - start).min(PROLOGUE_BYTES)) };
                prologue::decode(code)
                    .filter(|shape| *shape != Shape::Osr)
                    .or_else(|| prologue::decode_shrink_wrapped(code, ret - start))
                    .map_or(Verdict::Opaque, Verdict::Runtime)
            }
            Some(NativeHome::Runtime { .. }) => Verdict::Opaque,
            None => self.classify_managed(ret),
        }
    }

    fn classify_managed(&mut self, ret: usize) -> Verdict {
        let function = self.function(ret);
        if function == 0 {
            return self.classify_dynamic(ret);
        }
        let Some((start, size)) = self.code_version_of(function, ret.wrapping_sub(1)) else {
            return Verdict::Opaque;
        };
        // SAFETY: `start..start+size` is this code version's first chunk as the runtime reports
        // it, or its bytes from its start up to `ret - 1` (code that just ran): mapped while the
        // function's module is loaded (until `forget`).
        let code = unsafe { std::slice::from_raw_parts(start as *const u8, size.min(PROLOGUE_BYTES)) };
        prologue::decode(code).map_or(Verdict::Opaque, Verdict::Managed)
    }

    /// Code the runtime does not map to a function: a dynamic method (a compiled expression tree,
    /// reflection's invoke stub) or a stub. Dynamic methods are in the perf map, when there is
    /// one; `DoStackSnapshot` does not report their frames either, so they are walked through
    /// like the runtime's own code, not recorded. Anything else stays opaque.
    fn classify_dynamic(&mut self, ret: usize) -> Verdict {
        let Some((start, size)) = self.perf_map.range_of(ret.wrapping_sub(1)) else {
            return Verdict::Opaque;
        };
        let Some(code) = perf_map::read_own_memory(start, size.min(PROLOGUE_BYTES)) else {
            return Verdict::Opaque;
        };
        match prologue::decode(&code) {
            Some(shape) => {
                self.learnt.dynamic += 1;
                Verdict::Runtime(shape)
            }
            None => Verdict::Opaque,
        }
    }

    /// Start and size of the first code chunk of the compiled version (tier) of `function`
    /// that holds `ip`: where that version's prologue is.
    fn code_version_of(&self, function: FunctionID, ip: usize) -> Option<(usize, usize)> {
        code_versions::locate(self.info, function, ip).map(|l| l.first_chunk)
    }
}
