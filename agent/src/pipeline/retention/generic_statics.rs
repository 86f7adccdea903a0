//! Naming a generic class's static field by the type of the object it holds.
//!
//! The profiling API gives no address for a static field of a generic instantiation
//! (`GetAppDomainStaticAddress` answers `CORPROF_E_DATAINCOMPLETE` for `Registry<Widget>.Items`
//! however long it has been initialised: the runtime checks the open type `Registry<T>`, which
//! is never initialised). So such a static's value is met in the runtime's storage for statics
//! with no field to name. What can be said: among the generic instantiations the runtime has
//! loaded ([`generics`](super::generics)), which static reference fields are declared with
//! exactly the value's type (`List<T>` with `T = Widget` for a `List<Widget>`). When one field
//! fits, it is named, and the root says it was named by type; when several do, none is.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Namer;
use super::statics::Statics;
use super::tracked::{NONE, Node, Tracked, flag};
use crate::clr::metadata::MetaDataImport;
use crate::clr::profiler_info::{ClassInfo, ProfilerInfo};
use crate::clr::types::{ClassID, ModuleID, mdToken};

/// A field's declared type, as far as matching goes (ECMA-335 II.23.2.12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SigType {
    /// The generic class's type parameter `n`.
    Var(u32),
    /// A class or value type by TypeDef or TypeRef token.
    Named(mdToken),
    /// An instantiation: the generic type's token and its arguments.
    Generic(mdToken, Vec<SigType>),
    SzArray(Box<SigType>),
    /// A primitive (`ELEMENT_TYPE_*` code).
    Primitive(u8),
    String,
    Object,
    /// Anything else (pointers, method type parameters, multi-dimensional arrays…).
    Other,
}

/// The type of a field signature (`FIELD CustomMod* Type`), or None if malformed.
pub fn parse_field(signature: &[u8]) -> Option<SigType> {
    let (&first, mut rest) = signature.split_first()?;
    if first != 0x06 {
        return None;
    }
    // Custom modifiers: CMOD_REQD / CMOD_OPT, each followed by a TypeDefOrRef.
    while let Some((&(0x1f | 0x20), after)) = rest.split_first() {
        (_, rest) = uncompress(after)?;
    }
    parse_type(&mut rest)
}

fn parse_type(b: &mut &[u8]) -> Option<SigType> {
    let (&code, rest) = b.split_first()?;
    *b = rest;
    Some(match code {
        0x02..=0x0d | 0x18 | 0x19 => SigType::Primitive(code),
        0x0e => SigType::String,
        0x1c => SigType::Object,
        0x11 | 0x12 => SigType::Named(type_def_or_ref(b)?),
        0x13 => {
            let (n, rest) = uncompress(b)?;
            *b = rest;
            SigType::Var(n)
        }
        0x1d => SigType::SzArray(Box::new(parse_type(b)?)),
        0x15 => {
            let (&kind, rest) = b.split_first()?;
            *b = rest;
            if kind != 0x11 && kind != 0x12 {
                return None;
            }
            let token = type_def_or_ref(b)?;
            let (count, rest) = uncompress(b)?;
            *b = rest;
            let mut args = Vec::with_capacity(count.min(16) as usize);
            for _ in 0..count {
                args.push(parse_type(b)?);
            }
            SigType::Generic(token, args)
        }
        _ => SigType::Other,
    })
}

/// An ECMA-335 compressed unsigned integer, and what follows it.
fn uncompress(b: &[u8]) -> Option<(u32, &[u8])> {
    let &first = b.first()?;
    if first & 0x80 == 0 {
        Some((first as u32, &b[1..]))
    } else if first & 0xc0 == 0x80 {
        Some(((((first & 0x3f) as u32) << 8) | *b.get(1)? as u32, b.get(2..)?))
    } else if first & 0xe0 == 0xc0 {
        let v =
            (((first & 0x1f) as u32) << 24) | (*b.get(1)? as u32) << 16 | (*b.get(2)? as u32) << 8 | *b.get(3)? as u32;
        Some((v, b.get(4..)?))
    } else {
        None
    }
}

/// A TypeDefOrRef coded index → its token (None for a TypeSpec).
fn type_def_or_ref(b: &mut &[u8]) -> Option<mdToken> {
    let (v, rest) = uncompress(b)?;
    *b = rest;
    match v & 3 {
        0 => Some(0x0200_0000 | (v >> 2)),
        1 => Some(0x0100_0000 | (v >> 2)),
        _ => None,
    }
}

/// What one generic instantiation's static field would be matched against.
pub struct Candidate<'a> {
    pub class: ClassID,
    pub module: ModuleID,
    pub field: &'a str,
    pub signature: &'a [u8],
}

/// Matches field types against the classes of objects, with metadata and class lookups cached.
#[derive(Default)]
pub struct Matcher {
    metadata: HashMap<ModuleID, Option<MetaDataImport>>,
    classes: HashMap<ClassID, Option<ClassInfo>>,
    names: HashMap<(ModuleID, mdToken), Option<String>>,
}

impl Matcher {
    fn class(&mut self, info: &ProfilerInfo, class: ClassID) -> Option<ClassInfo> {
        self.classes.entry(class).or_insert_with(|| info.class_info(class).ok()).clone()
    }

    /// The full metadata name (`System.Collections.Generic.List`1`) of a TypeDef or TypeRef.
    fn token_name(&mut self, info: &ProfilerInfo, module: ModuleID, token: mdToken) -> Option<String> {
        if let Some(name) = self.names.get(&(module, token)) {
            return name.clone();
        }
        let md = self.metadata.entry(module).or_insert_with(|| info.module_metadata(module).ok());
        let name = md.as_ref().and_then(|md| match token >> 24 {
            0x02 => md.type_def_props(token).ok().map(|p| p.name),
            0x01 => md.type_ref_name(token).ok(),
            _ => None,
        });
        self.names.insert((module, token), name.clone());
        name
    }

    /// The name of a class's own type (its TypeDef), without type arguments.
    fn class_name(&mut self, info: &ProfilerInfo, class: ClassID) -> Option<String> {
        let c = self.class(info, class)?;
        self.token_name(info, c.module, c.type_def)
    }

    /// Whether `sig` (declared in `module`, its type parameters `args`) is exactly `class`.
    pub fn matches(
        &mut self,
        info: &ProfilerInfo,
        sig: &SigType,
        module: ModuleID,
        args: &[ClassID],
        class: ClassID,
    ) -> bool {
        match sig {
            SigType::Var(n) => args.get(*n as usize) == Some(&class),
            SigType::String => self.class_name(info, class).as_deref() == Some("System.String"),
            SigType::Object => self.class_name(info, class).as_deref() == Some("System.Object"),
            SigType::Primitive(_) | SigType::Other => false,
            SigType::Named(token) => {
                if !matches!(info.array_info(class), Ok(None))
                    || self.class(info, class).is_none_or(|c| !c.type_args.is_empty())
                {
                    return false;
                }
                let declared = self.token_name(info, module, *token);
                declared.is_some() && declared == self.class_name(info, class)
            }
            SigType::Generic(token, sig_args) => {
                let Some(c) = self.class(info, class) else { return false };
                if c.type_args.len() != sig_args.len() {
                    return false;
                }
                let declared = self.token_name(info, module, *token);
                if declared.is_none() || declared != self.token_name(info, c.module, c.type_def) {
                    return false;
                }
                sig_args.iter().zip(&c.type_args).all(|(s, &a)| self.matches(info, s, module, args, a))
            }
            SigType::SzArray(element) => match info.array_info(class) {
                Ok(Some(array)) if array.rank == 1 => match element.as_ref() {
                    SigType::Primitive(code) => array.element_type == *code as u32,
                    other => array.element_class != 0 && self.matches(info, other, module, args, array.element_class),
                },
                _ => false,
            },
        }
    }

    /// The candidates whose declared type is exactly `class` (at most `limit` kept).
    pub fn fitting<'a>(
        &mut self,
        info: &ProfilerInfo,
        candidates: &[Candidate<'a>],
        class: ClassID,
        limit: usize,
    ) -> Vec<usize> {
        let mut fits = Vec::new();
        for (i, c) in candidates.iter().enumerate() {
            let Some(sig) = parse_field(c.signature) else { continue };
            let Some(inst) = self.class(info, c.class) else { continue };
            if self.matches(info, &sig, c.module, &inst.type_args, class) {
                fits.push(i);
                if fits.len() >= limit {
                    break;
                }
            }
        }
        fits
    }
}

/// The generic classes' statics named by type so far (name → index among the statics' fields,
/// kept between requests so a field keeps its index), and the matcher's caches.
#[derive(Default)]
pub struct ByType {
    by_type: HashMap<Arc<str>, u32>,
    matcher: Matcher,
}

impl ByType {
    /// Names the values the runtime's storage for statics holds without a located field, when
    /// exactly one static field of a loaded generic instantiation is declared with the value's
    /// type; returns the fields so named.
    pub fn name(
        &mut self,
        statics: &mut Statics,
        info: &ProfilerInfo,
        t: &mut Tracked,
        names: &mut dyn Namer,
        is_framework: &dyn Fn(&str) -> bool,
    ) -> HashSet<u32> {
        let mut named = HashSet::new();
        // Only an array known to be the storage for statics (it holds a located static's value):
        // other arrays nothing references (a thread's statics, say) hold other things.
        let is_storage = |n: &Node, names: &mut dyn Namer, classes: &[ClassID]| {
            !n.has(flag::DEAD)
                && n.has(flag::HOLDS_STATIC)
                && &*names.class(classes[n.class as usize]) == "System.Object[]"
        };
        let mut values: Vec<u32> = Vec::new();
        for e in &t.edges {
            let (parent, child) = (&t.nodes[e.parent as usize], &t.nodes[e.child as usize]);
            if child.static_field == NONE && !child.has(flag::DEAD) && is_storage(parent, names, &t.classes) {
                values.push(e.child);
            }
        }
        values.sort_unstable();
        values.dedup();
        if values.is_empty() {
            return named;
        }
        let mut found: Vec<(u32, Arc<str>, bool)> = Vec::new();
        {
            let candidates = statics.generic_candidates();
            for &v in &values {
                let class = t.classes[t.nodes[v as usize].class as usize];
                let fits = self.matcher.fitting(info, &candidates, class, 2);
                if let [one] = fits[..] {
                    let c = &candidates[one];
                    let owner = names.class(c.class);
                    found.push((v, format!("{owner}.{}", c.field).into(), is_framework(&owner)));
                }
            }
        }
        for (v, name, framework) in found {
            let field = match self.by_type.get(&name) {
                Some(&f) => f,
                None => {
                    let f = statics.add_field(name.clone(), framework);
                    self.by_type.insert(name, f);
                    f
                }
            };
            let n = &mut t.nodes[v as usize];
            n.static_field = field;
            n.flags &= !flag::EXPAND;
            named.insert(field);
        }
        named
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_signatures_parse_into_types() {
        // static List<T> Items: GENERICINST CLASS TypeRef(0x12) 1 VAR 0.
        assert_eq!(
            parse_field(&[0x06, 0x15, 0x12, 0x49, 0x01, 0x13, 0x00]),
            Some(SigType::Generic(0x0100_0012, vec![SigType::Var(0)]))
        );
        // static Dictionary<string, T[]>: two arguments.
        assert_eq!(
            parse_field(&[0x06, 0x15, 0x12, 0x49, 0x02, 0x0e, 0x1d, 0x13, 0x00]),
            Some(SigType::Generic(0x0100_0012, vec![SigType::String, SigType::SzArray(Box::new(SigType::Var(0)))]))
        );
        // static T Instance; static int[] with a modreq(volatile).
        assert_eq!(parse_field(&[0x06, 0x13, 0x01]), Some(SigType::Var(1)));
        assert_eq!(
            parse_field(&[0x06, 0x1f, 0x42, 0x1d, 0x08]),
            Some(SigType::SzArray(Box::new(SigType::Primitive(0x08))))
        );
        // A class by TypeDef (coded 0x08 → TypeDef row 2).
        assert_eq!(parse_field(&[0x06, 0x12, 0x08]), Some(SigType::Named(0x0200_0002)));
        assert_eq!(parse_field(&[0x07, 0x0e]), None);
        assert_eq!(parse_field(&[0x06, 0x15, 0x12]), None);
    }
}
