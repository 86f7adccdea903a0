//! Instance fields of a class: where each sits (its offset from the object's start, from the
//! runtime's layout of the class and of its base classes), its name and its declared type
//! (from metadata). Names the steps of retention paths and the fields `peek` shows.

use std::collections::HashMap;
use std::sync::Arc;

use crate::clr::metadata::MetaDataImport;
use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{ClassID, ModuleID};

/// Deepest base-class chain followed.
const MAX_BASES: usize = 32;

/// What a field's signature declares, as far as reading its value goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Char,
    /// Signed integer of this many bytes.
    Int(u8),
    /// Unsigned integer of this many bytes.
    UInt(u8),
    Float(u8),
    String,
    /// Any other reference (class, object, array).
    Reference,
    /// A value type, not read (its size is not in the signature): its TypeDef or TypeRef
    /// token, 0 if the signature names none.
    Struct(u32),
    /// A generic parameter, a pointer, anything else: not read.
    Other,
}

impl Kind {
    /// Bytes the value occupies in the object, for the kinds that are read.
    pub fn width(self) -> Option<u32> {
        match self {
            Kind::Bool => Some(1),
            Kind::Char => Some(2),
            Kind::Int(n) | Kind::UInt(n) | Kind::Float(n) => Some(n as u32),
            Kind::String | Kind::Reference => Some(std::mem::size_of::<usize>() as u32),
            Kind::Struct(_) | Kind::Other => None,
        }
    }

    /// From a field signature (`FIELD` then custom modifiers then the type).
    pub fn from_signature(signature: &[u8]) -> Kind {
        let mut rest = match signature.split_first() {
            Some((&0x06, rest)) => rest,
            _ => return Kind::Other,
        };
        // CMOD_REQD / CMOD_OPT, each followed by a compressed token.
        while let Some((&(0x1f | 0x20), after)) = rest.split_first() {
            let token_len = match after.first() {
                Some(b) if b & 0x80 == 0 => 1,
                Some(b) if b & 0xc0 == 0x80 => 2,
                Some(_) => 4,
                None => return Kind::Other,
            };
            rest = after.get(token_len..).unwrap_or(&[]);
        }
        match rest.first() {
            Some(0x02) => Kind::Bool,
            Some(0x03) => Kind::Char,
            Some(0x04) => Kind::Int(1),
            Some(0x05) => Kind::UInt(1),
            Some(0x06) => Kind::Int(2),
            Some(0x07) => Kind::UInt(2),
            Some(0x08) => Kind::Int(4),
            Some(0x09) => Kind::UInt(4),
            Some(0x0a) => Kind::Int(8),
            Some(0x0b) => Kind::UInt(8),
            Some(0x0c) => Kind::Float(4),
            Some(0x0d) => Kind::Float(8),
            Some(0x0e) => Kind::String,
            Some(0x18) => Kind::Int(std::mem::size_of::<isize>() as u8),
            Some(0x19) => Kind::UInt(std::mem::size_of::<usize>() as u8),
            Some(0x12 | 0x14 | 0x1c | 0x1d) => Kind::Reference,
            // GENERICINST: CLASS or VALUETYPE follows.
            Some(0x15) => match rest.get(1) {
                Some(0x12) => Kind::Reference,
                Some(0x11) => Kind::Struct(0),
                _ => Kind::Other,
            },
            Some(0x11) => Kind::Struct(type_def_or_ref(&rest[1..])),
            _ => Kind::Other,
        }
    }
}

/// A compressed `TypeDefOrRef` coded index → its token (0 for a TypeSpec or a bad blob).
fn type_def_or_ref(blob: &[u8]) -> u32 {
    let value = match blob {
        [b, ..] if b & 0x80 == 0 => *b as u32,
        [b, c, ..] if b & 0xc0 == 0x80 => ((*b as u32 & 0x3f) << 8) | *c as u32,
        [b, c, d, e, ..] if b & 0xe0 == 0xc0 => {
            ((*b as u32 & 0x1f) << 24) | ((*c as u32) << 16) | ((*d as u32) << 8) | *e as u32
        }
        _ => return 0,
    };
    match value & 3 {
        0 => 0x0200_0000 | (value >> 2),
        1 => 0x0100_0000 | (value >> 2),
        _ => 0,
    }
}

/// One instance field.
#[derive(Clone, Debug)]
pub struct Field {
    /// Bytes from the object's start (its method table pointer).
    pub offset: u32,
    pub name: Arc<str>,
    pub kind: Kind,
    /// For a value type: its name, when metadata gives it.
    pub type_name: Option<Arc<str>>,
}

#[derive(Default)]
pub struct FieldNames {
    /// Per class: every instance field, the base classes' first, each class's in declaration order.
    layouts: HashMap<ClassID, Arc<[Field]>>,
    metadata: HashMap<ModuleID, Option<MetaDataImport>>,
}

impl FieldNames {
    /// The name of the field of `class` at `offset` bytes from the object's start.
    pub fn name(&mut self, info: &ProfilerInfo, class: ClassID, offset: u32) -> Option<Arc<str>> {
        let layout = self.fields(info, class);
        layout.iter().find(|f| f.offset == offset).map(|f| f.name.clone())
    }

    /// Every instance field of `class`, its bases' included (base classes first).
    pub fn fields(&mut self, info: &ProfilerInfo, class: ClassID) -> Arc<[Field]> {
        if let Some(layout) = self.layouts.get(&class) {
            return layout.clone();
        }
        let layout: Arc<[Field]> = self.layout(info, class).into();
        self.layouts.insert(class, layout.clone());
        layout
    }

    fn layout(&mut self, info: &ProfilerInfo, class: ClassID) -> Vec<Field> {
        // Per class of the chain, most derived first; reversed at the end.
        let mut chain: Vec<Vec<Field>> = Vec::new();
        let mut c = class;
        for _ in 0..MAX_BASES {
            if c == 0 {
                break;
            }
            let mut own = Vec::new();
            if let (Ok(fields), Ok(class_info)) = (info.class_layout(c), info.class_info(c)) {
                let metadata = self
                    .metadata
                    .entry(class_info.module)
                    .or_insert_with(|| info.module_metadata(class_info.module).ok());
                if let Some(md) = metadata {
                    for f in fields {
                        if let Ok(props) = md.field_props(f.field) {
                            let kind = Kind::from_signature(&props.signature);
                            let type_name = match kind {
                                Kind::Struct(token) if token >> 24 == 0x02 => {
                                    md.type_def_props(token).ok().map(|p| p.name.into())
                                }
                                Kind::Struct(token) if token >> 24 == 0x01 => {
                                    md.type_ref_name(token).ok().map(Arc::from)
                                }
                                _ => None,
                            };
                            own.push(Field { offset: f.offset, name: tidy_field(&props.name).into(), kind, type_name });
                        }
                    }
                }
            }
            chain.push(own);
            c = info.parent_class(c).unwrap_or(0);
        }
        chain.into_iter().rev().flatten().collect()
    }
}

/// `<Name>k__BackingField` (an auto-property's field) → `Name`.
pub fn tidy_field(name: &str) -> &str {
    name.strip_prefix('<')
        .and_then(|rest| rest.strip_suffix(">k__BackingField"))
        .filter(|inner| !inner.is_empty())
        .unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::Kind;

    #[test]
    fn backing_fields_read_as_their_property() {
        assert_eq!(super::tidy_field("<Items>k__BackingField"), "Items");
        assert_eq!(super::tidy_field("_items"), "_items");
        assert_eq!(super::tidy_field("<>k__BackingField"), "<>k__BackingField");
    }

    #[test]
    fn signatures_give_the_kinds_that_can_be_read() {
        assert_eq!(Kind::from_signature(&[0x06, 0x0a]), Kind::Int(8));
        assert_eq!(Kind::from_signature(&[0x06, 0x0e]), Kind::String);
        assert_eq!(Kind::from_signature(&[0x06, 0x1d, 0x05]), Kind::Reference);
        // valuetype TypeRef row 0x12 (coded 0x49).
        assert_eq!(Kind::from_signature(&[0x06, 0x11, 0x49]), Kind::Struct(0x0100_0012));
        assert_eq!(Kind::from_signature(&[0x06, 0x11, 0x08]), Kind::Struct(0x0200_0002));
        // volatile int: modreq(IsVolatile) int32.
        assert_eq!(Kind::from_signature(&[0x06, 0x1f, 0x42, 0x08]), Kind::Int(4));
        assert_eq!(Kind::from_signature(&[0x06, 0x13, 0x00]), Kind::Other);
        assert_eq!(Kind::from_signature(&[]), Kind::Other);
        assert_eq!(Kind::Int(8).width(), Some(8));
        assert_eq!(Kind::Struct(0).width(), None);
    }
}
