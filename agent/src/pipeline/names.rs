//! Turning ClassIDs and FunctionIDs into the names users read, C#-style:
//! `System.Collections.Generic.Dictionary<String, List<Order>>`, `Byte[]`, `Demo.Outer.Inner`,
//! `Demo.Worker.RunAsync`. Runs on the agent's thread only, behind caches: each id is resolved
//! once.

use std::collections::HashMap;
use std::sync::Arc;

use crate::clr::metadata::{MetaDataImport, TypeDefProps};
use crate::clr::profiler_info::{ArrayInfo, ClassInfo, FunctionInfo, ProfilerInfo};
use crate::clr::types::{ClassID, FunctionID, HRESULT, ModuleID, mdToken};

/// What name resolution needs from the runtime; a test double implements it in unit tests.
pub trait Runtime {
    fn array_info(&mut self, class: ClassID) -> Result<Option<ArrayInfo>, HRESULT>;
    fn class_info(&mut self, class: ClassID) -> Result<ClassInfo, HRESULT>;
    fn function_info(&mut self, function: FunctionID) -> Result<FunctionInfo, HRESULT>;
    fn type_def(&mut self, module: ModuleID, type_def: mdToken) -> Option<TypeDefProps>;
    fn enclosing_class(&mut self, module: ModuleID, type_def: mdToken) -> Option<mdToken>;
    /// A method's name and declaring TypeDef.
    fn method(&mut self, module: ModuleID, function: FunctionID, token: mdToken) -> Option<(String, mdToken)>;
    /// Drops what is cached about a module that is unloading (`in_module`: its functions).
    fn forget_module(&mut self, _module: ModuleID, _in_module: &dyn Fn(FunctionID) -> bool) {}
}

/// A resolved frame.
#[derive(Clone, Debug)]
pub struct FunctionName {
    /// `Namespace.Type.Method`, compiler-generated names tidied.
    pub display: Arc<str>,
    /// Framework code (`System.*`, `Microsoft.*`, …) is never a call site.
    pub is_framework: bool,
}

pub struct Names<R> {
    runtime: R,
    classes: rustc_hash::FxHashMap<ClassID, Arc<str>>,
    functions: rustc_hash::FxHashMap<FunctionID, FunctionName>,
    framework_prefixes: Vec<String>,
}

const MAX_NESTING: usize = 16;

impl<R: Runtime> Names<R> {
    pub fn new(runtime: R, framework_prefixes: Vec<String>) -> Self {
        Names { runtime, classes: Default::default(), functions: Default::default(), framework_prefixes }
    }

    /// Fully qualified type name of a class.
    pub fn class(&mut self, class: ClassID) -> Arc<str> {
        if let Some(name) = self.classes.get(&class) {
            return name.clone();
        }
        let name: Arc<str> =
            self.render_class(class, true, 0).unwrap_or_else(|| format!("<unknown type 0x{class:x}>")).into();
        self.classes.insert(class, name.clone());
        name
    }

    pub fn function(&mut self, function: FunctionID) -> FunctionName {
        if let Some(name) = self.functions.get(&function) {
            return name.clone();
        }
        let resolved = self.render_function(function);
        let name = match resolved {
            Some((type_name, method)) => {
                let is_framework = self.is_framework(&type_name);
                FunctionName { display: tidy_frame(&type_name, &method).into(), is_framework }
            }
            None => FunctionName { display: format!("<unknown method 0x{function:x}>").into(), is_framework: true },
        };
        self.functions.insert(function, name.clone());
        name
    }

    /// A module is unloading: forgets its classes and functions (their ids may be reused).
    /// `in_module` says which functions are its (from what was recorded when they were first
    /// seen: a function of code collected since must not be asked about).
    pub fn forget_module(&mut self, module: ModuleID, in_module: impl Fn(FunctionID) -> bool + Copy) {
        let runtime = &mut self.runtime;
        self.functions.retain(|&f, _| !in_module(f));
        self.classes.retain(|&c, _| runtime.class_info(c).map_or(true, |i| i.module != module));
        runtime.forget_module(module, &in_module);
    }

    fn is_framework(&self, type_name: &str) -> bool {
        self.framework_prefixes.iter().any(|p| type_name.starts_with(p.as_str()))
    }

    fn render_class(&mut self, class: ClassID, qualified: bool, depth: usize) -> Option<String> {
        if depth > MAX_NESTING || class == 0 {
            return None;
        }
        if let Ok(Some(array)) = self.runtime.array_info(class) {
            let element = match array.element_class {
                0 => primitive_name(array.element_type).to_string(),
                element => self.render_class(element, qualified, depth + 1)?,
            };
            let commas = ",".repeat(array.rank.saturating_sub(1) as usize);
            return Some(format!("{element}[{commas}]"));
        }
        let info = self.runtime.class_info(class).ok()?;
        let mut name = self.type_def_name(info.module, info.type_def, qualified, 0)?;
        if !info.type_args.is_empty() {
            let args: Vec<String> = info
                .type_args
                .iter()
                .map(|&arg| self.render_class(arg, false, depth + 1).unwrap_or_else(|| "?".into()))
                .collect();
            name.push('<');
            name.push_str(&args.join(", "));
            name.push('>');
        }
        Some(name)
    }

    /// `Namespace.Outer.Inner` (or `Outer.Inner` unqualified), generic arity markers removed.
    fn type_def_name(&mut self, module: ModuleID, type_def: mdToken, qualified: bool, depth: usize) -> Option<String> {
        let props = self.runtime.type_def(module, type_def)?;
        if props.is_nested() && depth < MAX_NESTING {
            if let Some(outer) = self.runtime.enclosing_class(module, type_def) {
                let outer = self.type_def_name(module, outer, qualified, depth + 1)?;
                return Some(format!("{outer}.{}", strip_arity(&props.name)));
            }
        }
        let full = strip_arity(&props.name);
        Some(if qualified { full.to_string() } else { full.rsplit('.').next().unwrap_or(full).to_string() })
    }

    /// (declaring type, method name) of a function.
    fn render_function(&mut self, function: FunctionID) -> Option<(String, String)> {
        let info = self.runtime.function_info(function).ok()?;
        let (method, declaring) = self.runtime.method(info.module, function, info.token)?;
        let type_name = self.type_def_name(info.module, declaring, true, 0).unwrap_or_else(|| "?".into());
        Some((type_name, method))
    }
}

/// `List`1` → `List`.
fn strip_arity(name: &str) -> &str {
    match name.find('`') {
        Some(i) => &name[..i],
        None => name,
    }
}

/// Names of `CorElementType` primitives, for arrays whose element class is not given.
fn primitive_name(element_type: u32) -> &'static str {
    match element_type {
        0x2 => "Boolean",
        0x3 => "Char",
        0x4 => "SByte",
        0x5 => "Byte",
        0x6 => "Int16",
        0x7 => "UInt16",
        0x8 => "Int32",
        0x9 => "UInt32",
        0xa => "Int64",
        0xb => "UInt64",
        0xc => "Single",
        0xd => "Double",
        0xe => "String",
        0x18 => "IntPtr",
        0x19 => "UIntPtr",
        0x1c => "Object",
        _ => "?",
    }
}

/// Tidies compiler-generated names so a frame reads like the source:
/// `Ns.Worker.<RunAsync>d__3.MoveNext` → `Ns.Worker.RunAsync`,
/// `Ns.Program.<>c.<Main>b__0_0` → `Ns.Program.Main.lambda`,
/// `Ns.Program.<>c__DisplayClass1_0.<Run>b__2` → `Ns.Program.Run.lambda`,
/// `Ns.Program.<Main>g__Local|0_1` → `Ns.Program.Main.Local`.
pub fn tidy_frame(type_name: &str, method: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for segment in type_name.split('.') {
        if segment.starts_with("<>c") {
            continue; // closure classes
        }
        if let Some(inner) = generated_source_name(segment) {
            parts.push(inner.to_string()); // async/iterator state machine: the method itself
            continue;
        }
        parts.push(segment.to_string());
    }
    let state_machine = type_name.split('.').any(|s| generated_source_name(s).is_some());
    if let Some(inner) = generated_source_name(method) {
        let suffix = if method.contains(">g__") {
            method.split(">g__").nth(1).and_then(|s| s.split('|').next()).unwrap_or("local").to_string()
        } else {
            "lambda".to_string()
        };
        if parts.last().map(String::as_str) != Some(inner) {
            parts.push(inner.to_string());
        }
        parts.push(suffix);
    } else if !(state_machine && method == "MoveNext") {
        parts.push(method.to_string());
    }
    parts.join(".")
}

/// `<RunAsync>d__3` → `RunAsync`; `<Main>b__0_0` → `Main`.
fn generated_source_name(segment: &str) -> Option<&str> {
    let rest = segment.strip_prefix('<')?;
    let end = rest.find('>')?;
    let name = &rest[..end];
    (!name.is_empty()).then_some(name)
}

/// The real runtime behind [`Runtime`], with one metadata reader cached per module.
pub struct ClrRuntime<'a> {
    info: &'a ProfilerInfo,
    modules: HashMap<ModuleID, Option<MetaDataImport>>,
    /// Readers obtained per function when the module lookup fails.
    functions: HashMap<FunctionID, MetaDataImport>,
}

impl<'a> ClrRuntime<'a> {
    pub fn new(info: &'a ProfilerInfo) -> Self {
        ClrRuntime { info, modules: HashMap::new(), functions: HashMap::new() }
    }

    fn module(&mut self, module: ModuleID) -> Option<&MetaDataImport> {
        let info = self.info;
        self.modules.entry(module).or_insert_with(|| info.module_metadata(module).ok()).as_ref()
    }
}

impl Runtime for ClrRuntime<'_> {
    fn forget_module(&mut self, module: ModuleID, in_module: &dyn Fn(FunctionID) -> bool) {
        self.modules.remove(&module);
        self.functions.retain(|&f, _| !in_module(f));
    }

    fn array_info(&mut self, class: ClassID) -> Result<Option<ArrayInfo>, HRESULT> {
        self.info.array_info(class)
    }
    fn class_info(&mut self, class: ClassID) -> Result<ClassInfo, HRESULT> {
        self.info.class_info(class)
    }
    fn function_info(&mut self, function: FunctionID) -> Result<FunctionInfo, HRESULT> {
        self.info.function_info(function)
    }
    fn type_def(&mut self, module: ModuleID, type_def: mdToken) -> Option<TypeDefProps> {
        self.module(module)?.type_def_props(type_def).ok()
    }
    fn enclosing_class(&mut self, module: ModuleID, type_def: mdToken) -> Option<mdToken> {
        self.module(module)?.enclosing_class(type_def)
    }
    fn method(&mut self, module: ModuleID, function: FunctionID, token: mdToken) -> Option<(String, mdToken)> {
        if let Some(found) = self.module(module).and_then(|md| md.method_props(token).ok()) {
            return Some(found);
        }
        let (md, token) = self.info.function_metadata(function).ok()?;
        let found = md.method_props(token).ok();
        self.functions.insert(function, md);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clr::types::E_FAIL;

    /// A tiny type system: classes are indices into `classes`, typedefs into `typedefs`.
    #[derive(Default)]
    struct FakeRuntime {
        arrays: HashMap<ClassID, ArrayInfo>,
        classes: HashMap<ClassID, ClassInfo>,
        typedefs: HashMap<mdToken, (String, u32, Option<mdToken>)>,
        functions: HashMap<FunctionID, (mdToken, String, mdToken)>,
    }

    impl Runtime for FakeRuntime {
        fn array_info(&mut self, class: ClassID) -> Result<Option<ArrayInfo>, HRESULT> {
            Ok(self.arrays.get(&class).copied())
        }
        fn class_info(&mut self, class: ClassID) -> Result<ClassInfo, HRESULT> {
            self.classes.get(&class).cloned().ok_or(E_FAIL)
        }
        fn function_info(&mut self, function: FunctionID) -> Result<FunctionInfo, HRESULT> {
            let (token, _, _) = self.functions.get(&function).ok_or(E_FAIL)?;
            Ok(FunctionInfo { class: 0, module: 1, token: *token })
        }
        fn type_def(&mut self, _: ModuleID, td: mdToken) -> Option<TypeDefProps> {
            self.typedefs.get(&td).map(|(name, flags, _)| TypeDefProps { name: name.clone(), flags: *flags })
        }
        fn enclosing_class(&mut self, _: ModuleID, td: mdToken) -> Option<mdToken> {
            self.typedefs.get(&td).and_then(|t| t.2)
        }
        fn method(&mut self, _: ModuleID, function: FunctionID, _: mdToken) -> Option<(String, mdToken)> {
            self.functions.get(&function).map(|(_, name, td)| (name.clone(), *td))
        }
    }

    fn class(rt: &mut FakeRuntime, id: ClassID, td: mdToken, args: &[ClassID]) {
        rt.classes.insert(id, ClassInfo { module: 1, type_def: td, type_args: args.to_vec() });
    }

    fn names() -> Names<FakeRuntime> {
        let mut rt = FakeRuntime::default();
        rt.typedefs.insert(1, ("System.String".into(), 1, None));
        rt.typedefs.insert(2, ("System.Collections.Generic.Dictionary`2".into(), 1, None));
        rt.typedefs.insert(3, ("System.Collections.Generic.List`1".into(), 1, None));
        rt.typedefs.insert(4, ("LeakApp.Order".into(), 1, None));
        rt.typedefs.insert(5, ("LeakApp.Outer".into(), 1, None));
        rt.typedefs.insert(6, ("Inner`1".into(), 2, Some(5)));
        rt.typedefs.insert(7, ("System.Byte".into(), 1, None));
        class(&mut rt, 100, 1, &[]);
        class(&mut rt, 101, 4, &[]);
        class(&mut rt, 102, 3, &[101]);
        class(&mut rt, 103, 2, &[100, 102]);
        class(&mut rt, 104, 6, &[100]);
        class(&mut rt, 105, 7, &[]);
        rt.arrays.insert(200, ArrayInfo { element_type: 0x5, element_class: 105, rank: 1 });
        rt.arrays.insert(201, ArrayInfo { element_type: 0x8, element_class: 0, rank: 2 });
        rt.arrays.insert(202, ArrayInfo { element_type: 0x1d, element_class: 200, rank: 1 });
        rt.functions.insert(900, (0x0600_0001, "RecordAuditLine".into(), 4));
        rt.functions.insert(901, (0x0600_0002, "Add".into(), 3));
        Names::new(rt, vec!["System.".into(), "Microsoft.".into()])
    }

    #[test]
    fn generic_types_render_csharp_style() {
        let mut n = names();
        assert_eq!(&*n.class(103), "System.Collections.Generic.Dictionary<String, List<Order>>");
        assert_eq!(&*n.class(102), "System.Collections.Generic.List<Order>");
    }

    #[test]
    fn nested_types_and_arrays_render_fully() {
        let mut n = names();
        assert_eq!(&*n.class(104), "LeakApp.Outer.Inner<String>");
        assert_eq!(&*n.class(200), "System.Byte[]");
        assert_eq!(&*n.class(201), "Int32[,]");
        assert_eq!(&*n.class(202), "System.Byte[][]");
        assert!(n.class(999).starts_with("<unknown type"));
    }

    #[test]
    fn frames_know_framework_from_user_code() {
        let mut n = names();
        let user = n.function(900);
        assert_eq!(&*user.display, "LeakApp.Order.RecordAuditLine");
        assert!(!user.is_framework);
        let framework = n.function(901);
        assert_eq!(&*framework.display, "System.Collections.Generic.List.Add");
        assert!(framework.is_framework);
    }

    #[test]
    fn compiler_generated_names_are_tidied() {
        assert_eq!(tidy_frame("Demo.Worker.<RunAsync>d__3", "MoveNext"), "Demo.Worker.RunAsync");
        assert_eq!(tidy_frame("Demo.Program.<>c", "<Main>b__0_0"), "Demo.Program.Main.lambda");
        assert_eq!(tidy_frame("Demo.Program.<>c__DisplayClass1_0", "<Run>b__2"), "Demo.Program.Run.lambda");
        assert_eq!(tidy_frame("Demo.Program", "<Main>g__Local|0_1"), "Demo.Program.Main.Local");
        assert_eq!(tidy_frame("Demo.Program", "Main"), "Demo.Program.Main");
    }
}
