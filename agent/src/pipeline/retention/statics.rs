//! Static reference fields, so that a path can start with the field that holds it.
//!
//! CoreCLR keeps statics in runtime-owned object arrays reached through handles: a heap walk
//! sees those arrays, not which field a slot belongs to. So fields are matched by value: the
//! metadata of every loaded module lists its static fields of reference type, the runtime says
//! where each one of an initialised class lives (`GetAppDomainStaticAddress`), and the values
//! read there while the heap walk holds the runtime suspended are the objects those fields hold.
//!
//! Nothing here loads a type: a class's ClassID is taken only from one of its methods the
//! runtime has already loaded (`GetFunctionFromToken` is a lookup, unlike `GetClassFromToken`).
//! A class that is not loaded has no statics yet anyway. A generic class has statics per
//! instantiation (`Registry<Widget>.Items`, `Registry<Order>.Items`): its instantiations are the
//! ones the runtime reported loading ([`generics`](super::generics)). A thread static
//! (`[ThreadStatic]`) has a value per thread: each managed thread's (`EnumThreads`) is located with
//! `GetThreadStaticAddress2` and named with the thread's OS id, as SOS shows it. (Thread statics
//! of generic classes are not named.)

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::clr::metadata::{FD_HAS_FIELD_RVA, FD_LITERAL, FD_STATIC};
use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{ClassID, ModuleID, ObjectID, ThreadID, mdToken};

/// Methods tried per class to find its ClassID.
const METHODS_TRIED: usize = 4;
/// `COR_PRF_FIELD_THREAD_STATIC`.
const THREAD_STATIC: u32 = 0x2;

/// A named static field.
#[derive(Clone, Debug)]
pub struct StaticField {
    /// `Namespace.Type.Field`.
    pub name: Arc<str>,
    /// Declared by framework code (`System.*`, …): its paths rank after the application's.
    pub framework: bool,
    /// A thread static's value for one thread: that thread's OS id.
    pub thread: Option<u32>,
}

/// Where one static field's value lives, and (once read) the value.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    pub address: usize,
    pub field: u32,
    pub value: ObjectID,
}

struct TypeStatics {
    type_def: mdToken,
    methods: Vec<mdToken>,
    /// 0 until the runtime has loaded the class.
    class: ClassID,
    /// (field token, field name, index in `Statics::fields` once the class is known).
    fields: Vec<(mdToken, String, Option<u32>)>,
    /// The fields' signatures, in the same order (for naming a generic class's by type).
    signatures: Vec<Vec<u8>>,
}

struct ModuleStatics {
    app_domain: usize,
    types: Vec<TypeStatics>,
}

#[derive(Default)]
pub struct Statics {
    modules: HashMap<ModuleID, ModuleStatics>,
    pub fields: Vec<StaticField>,
    /// Generic instantiations: their module and type (None: not one with static fields).
    instantiations: HashMap<ClassID, Option<(ModuleID, mdToken)>>,
    /// (instantiation, field token) → index in `fields`.
    instantiated_fields: HashMap<(ClassID, mdToken), u32>,
    /// Whether a field with no app-domain address is a thread static.
    thread_static: HashMap<(ClassID, mdToken), bool>,
    /// (class, field token, thread) → index in `fields`.
    per_thread: HashMap<(ClassID, mdToken, ThreadID), u32>,
    /// Indices in `fields` of threads gone, to reuse (threads come and go; fields would pile up).
    free: Vec<u32>,
}

impl Statics {
    /// Reads the metadata of modules loaded since the last call, forgets unloaded ones, and
    /// returns the addresses of every static reference field of an initialised class.
    /// `class_name` names a ClassID; `is_framework` tells framework type names.
    pub fn slots(
        &mut self,
        info: &ProfilerInfo,
        class_name: &mut dyn FnMut(ClassID) -> Arc<str>,
        is_framework: &dyn Fn(&str) -> bool,
    ) -> Vec<Slot> {
        let Ok(loaded) = info.modules() else { return Vec::new() };
        let live: HashSet<ModuleID> = loaded.iter().copied().collect();
        // A module gone (collectible load context unloaded) must never be asked about again.
        self.modules.retain(|m, _| live.contains(m));
        for &module in &loaded {
            self.modules.entry(module).or_insert_with(|| {
                discover(info, module).unwrap_or(ModuleStatics { app_domain: 0, types: Vec::new() })
            });
        }
        let mut slots = Vec::new();
        let mut thread_statics = Vec::new();
        for (&module, statics) in &mut self.modules {
            if statics.app_domain == 0 {
                continue;
            }
            for t in &mut statics.types {
                if t.methods.is_empty() {
                    continue;
                }
                if t.class == 0 {
                    t.class = loaded_class(info, module, &t.methods);
                    if t.class == 0 {
                        continue;
                    }
                }
                for (token, name, index) in &mut t.fields {
                    let Ok(address) = info.static_field_address(t.class, *token, statics.app_domain) else {
                        let kind = self.thread_static.entry((t.class, *token)).or_insert_with(|| {
                            info.static_field_kind(t.class, *token).is_ok_and(|k| k & THREAD_STATIC != 0)
                        });
                        if *kind {
                            thread_statics.push((t.class, *token, statics.app_domain, name.clone()));
                        }
                        continue;
                    };
                    let field = *index.get_or_insert_with(|| {
                        let type_name = class_name(t.class);
                        let framework = is_framework(&type_name);
                        self.fields.push(StaticField {
                            name: format!("{type_name}.{name}").into(),
                            framework,
                            thread: None,
                        });
                        (self.fields.len() - 1) as u32
                    });
                    slots.push(Slot { address, field, value: 0 });
                }
            }
        }
        self.instantiation_slots(info, class_name, is_framework, &mut slots);
        self.thread_slots(info, &thread_statics, class_name, is_framework, &mut slots);
        slots
    }

    /// Every managed thread's value of each thread static in `fields` (class, token, app
    /// domain, field name). A thread's storage is the runtime's (a managed array per thread), so
    /// like any static's it is read only in a suspension with no GC since it was located.
    fn thread_slots(
        &mut self,
        info: &ProfilerInfo,
        fields: &[(ClassID, mdToken, usize, String)],
        class_name: &mut dyn FnMut(ClassID) -> Arc<str>,
        is_framework: &dyn Fn(&str) -> bool,
        slots: &mut Vec<Slot>,
    ) {
        if fields.is_empty() {
            return;
        }
        let threads = match info.threads() {
            Ok(t) => t,
            Err(hr) => {
                tracing::debug!("thread statics: EnumThreads failed ({hr:#x})");
                return;
            }
        };
        let live: HashSet<ThreadID> = threads.iter().copied().collect();
        let free = &mut self.free;
        self.per_thread.retain(|(_, _, thread), f| {
            let keep = live.contains(thread);
            if !keep {
                free.push(*f);
            }
            keep
        });
        for &thread in &threads {
            let mut os_id = None;
            for (class, token, app_domain, name) in fields {
                // No storage yet on this thread (it never touched the class): nothing it holds.
                let Ok(address) = info.thread_static_address(*class, *token, *app_domain, thread) else { continue };
                let field = match self.per_thread.get(&(*class, *token, thread)) {
                    Some(&f) => f,
                    None => {
                        let id = *os_id.get_or_insert_with(|| info.os_thread_id(thread).unwrap_or(0));
                        let type_name = class_name(*class);
                        let framework = is_framework(&type_name);
                        let named = StaticField {
                            name: format!("{type_name}.{name} (thread {id:#x})").into(),
                            framework,
                            thread: Some(id),
                        };
                        let f = match self.free.pop() {
                            Some(f) => {
                                self.fields[f as usize] = named;
                                f
                            }
                            None => {
                                self.fields.push(named);
                                (self.fields.len() - 1) as u32
                            }
                        };
                        self.per_thread.insert((*class, *token, thread), f);
                        f
                    }
                };
                slots.push(Slot { address, field, value: 0 });
            }
        }
    }

    /// The static reference fields of the generic instantiations the runtime has loaded, for
    /// naming one by the type of what it holds.
    pub fn generic_candidates(&self) -> Vec<super::generic_statics::Candidate<'_>> {
        let mut out = Vec::new();
        for (&class, place) in &self.instantiations {
            let Some((module, type_def)) = *place else { continue };
            let Some(t) = self.modules.get(&module).and_then(|m| m.types.iter().find(|t| t.type_def == type_def))
            else {
                continue;
            };
            for ((_, name, _), signature) in t.fields.iter().zip(&t.signatures) {
                out.push(super::generic_statics::Candidate { class, module, field: name, signature });
            }
        }
        out
    }

    /// Registers a static field named some other way (by type) and returns its index.
    pub fn add_field(&mut self, name: Arc<str>, framework: bool) -> u32 {
        self.fields.push(StaticField { name, framework, thread: None });
        (self.fields.len() - 1) as u32
    }

    /// The statics of the generic instantiations the runtime has loaded.
    fn instantiation_slots(
        &mut self,
        info: &ProfilerInfo,
        class_name: &mut dyn FnMut(ClassID) -> Arc<str>,
        is_framework: &dyn Fn(&str) -> bool,
        slots: &mut Vec<Slot>,
    ) {
        let (loaded, _) = super::generics::LOADED.snapshot();
        let live: HashSet<ClassID> = loaded.iter().copied().collect();
        self.instantiations.retain(|c, _| live.contains(c));
        self.instantiated_fields.retain(|(c, _), _| live.contains(c));
        for class in loaded {
            let modules = &self.modules;
            let place = *self.instantiations.entry(class).or_insert_with(|| {
                let c = info.class_info(class).ok()?;
                let has_statics = modules.get(&c.module)?.types.iter().any(|t| t.type_def == c.type_def);
                has_statics.then_some((c.module, c.type_def))
            });
            let Some((module, type_def)) = place else { continue };
            let Some(statics) = self.modules.get(&module) else { continue };
            let Some(t) = statics.types.iter().find(|t| t.type_def == type_def) else { continue };
            for (token, name, _) in &t.fields {
                let Ok(address) = info.static_field_address(class, *token, statics.app_domain) else { continue };
                let fields = &mut self.fields;
                let field = *self.instantiated_fields.entry((class, *token)).or_insert_with(|| {
                    let type_name = class_name(class);
                    let framework = is_framework(&type_name);
                    fields.push(StaticField { name: format!("{type_name}.{name}").into(), framework, thread: None });
                    (fields.len() - 1) as u32
                });
                slots.push(Slot { address, field, value: 0 });
            }
        }
    }
}

/// The ClassID of a class, if the runtime has loaded one of its methods (0 otherwise, and for
/// generic classes).
fn loaded_class(info: &ProfilerInfo, module: ModuleID, methods: &[mdToken]) -> ClassID {
    methods
        .iter()
        .filter_map(|&m| info.loaded_function(module, m).ok())
        .find_map(|f| info.function_class(f).ok().filter(|&c| c != 0))
        .unwrap_or(0)
}

/// The static reference fields a module declares (metadata only).
fn discover(info: &ProfilerInfo, module: ModuleID) -> Option<ModuleStatics> {
    let metadata = info.module_metadata(module).ok()?;
    let app_domain = info.module_app_domain(module).ok()?;
    let mut types = Vec::new();
    for type_def in metadata.type_defs() {
        let fields: Vec<(mdToken, String, Option<u32>, Vec<u8>)> = metadata
            .fields(type_def)
            .into_iter()
            .filter_map(|f| {
                let props = metadata.field_props(f).ok()?;
                let storage = props.flags & FD_STATIC != 0 && props.flags & (FD_LITERAL | FD_HAS_FIELD_RVA) == 0;
                (storage && is_reference_field(&props.signature)).then_some((f, props.name, None, props.signature))
            })
            .collect();
        if fields.is_empty() {
            continue;
        }
        // Without methods a class's ClassID can only come from a generic instantiation.
        let methods: Vec<mdToken> = metadata.methods(type_def).into_iter().take(METHODS_TRIED).collect();
        let (fields, signatures) = fields.into_iter().map(|(t, n, i, sig)| ((t, n, i), sig)).unzip();
        types.push(TypeStatics { type_def, methods, class: 0, fields, signatures });
    }
    Some(ModuleStatics { app_domain, types })
}

/// `ELEMENT_TYPE_*` values used below (ECMA-335 II.23.1.16).
mod element {
    pub const STRING: u8 = 0x0e;
    pub const VALUETYPE: u8 = 0x11;
    pub const CLASS: u8 = 0x12;
    pub const ARRAY: u8 = 0x14;
    pub const GENERICINST: u8 = 0x15;
    pub const OBJECT: u8 = 0x1c;
    pub const SZARRAY: u8 = 0x1d;
    pub const CMOD_REQD: u8 = 0x1f;
    pub const CMOD_OPT: u8 = 0x20;
}

/// Whether a field signature (`FIELD CustomMod* Type`) is of a reference type: a class, a
/// string, object, an array, or a generic class instantiation. Value types, pointers and
/// generic parameters are not.
pub fn is_reference_field(signature: &[u8]) -> bool {
    if signature.first() != Some(&0x06) {
        return false;
    }
    let mut i = 1;
    while let Some(&b) = signature.get(i) {
        if b != element::CMOD_REQD && b != element::CMOD_OPT {
            break;
        }
        // A modifier is followed by a compressed TypeDefOrRef token.
        i += 1 + compressed_len(signature.get(i + 1).copied().unwrap_or(0));
    }
    match signature.get(i) {
        Some(&(element::STRING | element::CLASS | element::OBJECT | element::SZARRAY | element::ARRAY)) => true,
        Some(&element::GENERICINST) => signature.get(i + 1) == Some(&element::CLASS),
        Some(&element::VALUETYPE) | Some(_) | None => false,
    }
}

/// Length of an ECMA-335 compressed integer from its first byte.
fn compressed_len(first: u8) -> usize {
    if first & 0x80 == 0 {
        1
    } else if first & 0xC0 == 0x80 {
        2
    } else {
        4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_fields_are_told_from_value_fields() {
        assert!(is_reference_field(&[0x06, 0x0e])); // string
        assert!(is_reference_field(&[0x06, 0x12, 0x49])); // class token
        assert!(is_reference_field(&[0x06, 0x1d, 0x0e])); // string[]
        assert!(is_reference_field(&[0x06, 0x15, 0x12, 0x81, 0x02, 0x01, 0x0e])); // List<string>
        assert!(is_reference_field(&[0x06, 0x1f, 0x81, 0x10, 0x12, 0x08])); // volatile (modreq) class
        assert!(!is_reference_field(&[0x06, 0x08])); // int
        assert!(!is_reference_field(&[0x06, 0x11, 0x10])); // struct
        assert!(!is_reference_field(&[0x06, 0x15, 0x11, 0x10, 0x01, 0x08])); // KeyValuePair<…>-like struct
        assert!(!is_reference_field(&[0x06, 0x13, 0x00])); // T
        assert!(!is_reference_field(&[0x07, 0x0e]));
        assert!(!is_reference_field(&[]));
    }
}
