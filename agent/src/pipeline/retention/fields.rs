//! Field names for the steps of a path: which field of a class sits at a given offset, from
//! the runtime's layout of the class and its base classes and the fields' names in metadata.

use std::collections::HashMap;
use std::sync::Arc;

use crate::clr::metadata::MetaDataImport;
use crate::clr::profiler_info::ProfilerInfo;
use crate::clr::types::{ClassID, ModuleID};

/// Deepest base-class chain followed.
const MAX_BASES: usize = 32;

#[derive(Default)]
pub struct FieldNames {
    /// Per class: (offset, name) of every instance field, its bases' included.
    layouts: HashMap<ClassID, Vec<(u32, Arc<str>)>>,
    metadata: HashMap<ModuleID, Option<MetaDataImport>>,
}

impl FieldNames {
    /// The name of the field of `class` at `offset` bytes from the object's start.
    pub fn name(&mut self, info: &ProfilerInfo, class: ClassID, offset: u32) -> Option<Arc<str>> {
        if !self.layouts.contains_key(&class) {
            let layout = self.layout(info, class);
            self.layouts.insert(class, layout);
        }
        let layout = self.layouts.get(&class)?;
        layout.iter().find(|(o, _)| *o == offset).map(|(_, name)| name.clone())
    }

    fn layout(&mut self, info: &ProfilerInfo, class: ClassID) -> Vec<(u32, Arc<str>)> {
        let mut layout = Vec::new();
        let mut c = class;
        for _ in 0..MAX_BASES {
            if c == 0 {
                break;
            }
            if let (Ok(fields), Ok(class_info)) = (info.class_layout(c), info.class_info(c)) {
                let metadata = self
                    .metadata
                    .entry(class_info.module)
                    .or_insert_with(|| info.module_metadata(class_info.module).ok());
                if let Some(md) = metadata {
                    for f in fields {
                        if let Ok(props) = md.field_props(f.field) {
                            layout.push((f.offset, tidy_field(&props.name).into()));
                        }
                    }
                }
            }
            c = info.parent_class(c).unwrap_or(0);
        }
        layout
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
    #[test]
    fn backing_fields_read_as_their_property() {
        assert_eq!(super::tidy_field("<Items>k__BackingField"), "Items");
        assert_eq!(super::tidy_field("_items"), "_items");
        assert_eq!(super::tidy_field("<>k__BackingField"), "<>k__BackingField");
    }
}
