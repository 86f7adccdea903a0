//! Late symbolization, on the writer thread: return addresses captured by
//! the hooks are turned into frame names only when a stack is first sent.
//!
//! * native code: the mapping that contains the address (/proc/self/maps),
//!   then the ELF file's `.symtab`/`.dynsym` (or its build-id debug file),
//!   giving `function (module+0xoffset)` or `module+0xoffset`;
//! * JIT-compiled .NET code (anonymous or memfd "doublemapper" mappings):
//!   the runtime's perf map, giving `Namespace.Type.Method`;
//! * other file mappings (ReadyToRun `.dll` images): `Assembly.dll+0xoffset`.
//!
//! A stack is truncated at the first address that is not in an executable
//! mapping: with code lacking frame pointers, the chain walks into data.

pub(crate) mod elf;
pub(crate) mod perfmap;

use std::collections::HashMap;
use std::sync::Arc;

use elf::ElfSymbols;
use perfmap::PerfMap;

/// What a frame is, for choosing a stack's "site".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Allocator plumbing (libc, libstdc++ `operator new`, the shim).
    Alloc,
    /// Runtime and framework code (libcoreclr, System.*, ReadyToRun images).
    Runtime,
    /// Everything else: the code a user wants to see.
    User,
}

#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub(crate) text: String,
    pub(crate) class: Class,
}

#[derive(Debug, Clone)]
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    path: Option<Arc<str>>,
}

enum Module {
    Elf(ElfSymbols),
    NotElf,
}

type DemangleFn =
    unsafe extern "C" fn(*const libc::c_char, *mut libc::c_char, *mut usize, *mut i32) -> *mut libc::c_char;

pub(crate) struct Symbolizer {
    maps: Vec<Mapping>,
    /// Mappings seen earlier but gone now (dlclose'd modules): still used to
    /// name addresses captured while they were loaded.
    old_maps: Vec<Mapping>,
    modules: HashMap<Arc<str>, Module>,
    perf: PerfMap,
    cache: HashMap<u64, Frame>,
    demangle: Option<DemangleFn>,
    /// Frames in JIT code that the perf map could not name.
    pub(crate) unnamed_jit: u64,
}

/// `start-end perms offset dev inode path` → (range, perms, offset, path).
fn split_maps_line(line: &str) -> Option<(&str, &str, &str, &str)> {
    let mut rest = line;
    let mut fields = [""; 5];
    for f in fields.iter_mut() {
        rest = rest.trim_start();
        let end = rest.find(' ').unwrap_or(rest.len());
        let (head, tail) = rest.split_at(end);
        *f = head;
        rest = tail;
    }
    let [range, perms, off, _dev, _inode] = fields;
    if range.is_empty() {
        return None;
    }
    Some((range, perms, off, rest.trim()))
}

fn basename(path: &str) -> &str {
    let p = path.strip_suffix(" (deleted)").unwrap_or(path);
    p.rsplit('/').next().unwrap_or(p)
}

fn is_alloc_module(name: &str) -> bool {
    [
        "libc.so",
        "libc-",
        "ld-linux",
        "libstdc++",
        "libgcc_s",
        "libleakscope_shim",
        "libjemalloc",
        "libtcmalloc",
        "libmimalloc",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

fn is_runtime_module(name: &str) -> bool {
    name == "dotnet"
        || name.ends_with(".dll")
        || [
            "libcoreclr",
            "libclrjit",
            "libSystem.",
            "libhostfxr",
            "libhostpolicy",
            "libclrgc",
            "libmscordaccore",
            "libmscordbi",
            "libdotnet",
            "libleakscope_agent",
        ]
        .iter()
        .any(|p| name.starts_with(p))
}

fn is_runtime_managed(name: &str) -> bool {
    ["System.", "Microsoft.", "Internal.", "Interop.", "ILStubClass", "IL_STUB", "dynamicClass", "stub", "[", "Stub"]
        .iter()
        .any(|p| name.starts_with(p))
}

impl Symbolizer {
    pub(crate) fn new(perf_dir: &str, pid: i32) -> Self {
        // libstdc++'s demangler, if the process has it loaded (the CLR does).
        // SAFETY: dlsym with a valid NUL-terminated name; the result, if
        // non-null, is `__cxa_demangle` with the declared signature.
        let demangle = unsafe {
            let p = libc::dlsym(libc::RTLD_DEFAULT, c"__cxa_demangle".as_ptr());
            if p.is_null() { None } else { Some(core::mem::transmute::<*mut libc::c_void, DemangleFn>(p)) }
        };
        Symbolizer {
            maps: Vec::new(),
            old_maps: Vec::new(),
            modules: HashMap::new(),
            perf: PerfMap::new(perf_dir, pid),
            cache: HashMap::new(),
            demangle,
            unnamed_jit: 0,
        }
    }

    pub(crate) fn perf_map_path(&self) -> &str {
        self.perf.path()
    }

    pub(crate) fn perf_map_seen(&self) -> bool {
        !self.perf.is_empty()
    }

    /// Re-reads /proc/self/maps and the new part of the perf map.
    pub(crate) fn refresh(&mut self) {
        if let Some(text) = crate::sys::read_file("/proc/self/maps") {
            let text = String::from_utf8_lossy(&text);
            let mut maps = Vec::new();
            let mut paths: HashMap<&str, Arc<str>> = HashMap::new();
            for line in text.lines() {
                let Some((range, perms, off, path)) = split_maps_line(line) else {
                    continue;
                };
                if !perms.contains('x') {
                    continue;
                }
                let path = Some(path);
                let Some((a, b)) = range.split_once('-') else {
                    continue;
                };
                let (Ok(start), Ok(end), Ok(offset)) =
                    (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16), u64::from_str_radix(off, 16))
                else {
                    continue;
                };
                let path =
                    path.filter(|p| !p.is_empty()).map(|p| paths.entry(p).or_insert_with(|| Arc::from(p)).clone());
                maps.push(Mapping { start, end, offset, path });
            }
            maps.sort_by_key(|m| m.start);
            // keep departed mappings for late lookups
            for m in self.maps.drain(..) {
                if !maps.iter().any(|n| n.start == m.start && n.path == m.path) {
                    self.old_maps.retain(|o| o.start != m.start);
                    self.old_maps.push(m);
                }
            }
            self.maps = maps;
        }
        self.perf.refresh();
    }

    fn find_mapping(&self, ip: u64) -> Option<&Mapping> {
        let i = self.maps.partition_point(|m| m.start <= ip);
        if let Some(m) = i.checked_sub(1).and_then(|i| self.maps.get(i)).filter(|m| ip < m.end) {
            return Some(m);
        }
        self.old_maps.iter().find(|m| m.start <= ip && ip < m.end)
    }

    fn demangled(&self, name: &str) -> String {
        let Some(f) = self.demangle.filter(|_| name.starts_with("_Z")) else {
            return name.to_string();
        };
        let Ok(c) = std::ffi::CString::new(name) else {
            return name.to_string();
        };
        let mut status = -1i32;
        // SAFETY: valid C string; null buffer asks __cxa_demangle to malloc
        // the result, which we free below (through the hooks: this thread is
        // busy, so neither call is counted).
        let out = unsafe { f(c.as_ptr(), core::ptr::null_mut(), core::ptr::null_mut(), &mut status) };
        if out.is_null() || status != 0 {
            return name.to_string();
        }
        // SAFETY: a NUL-terminated string returned by __cxa_demangle.
        let s = unsafe { core::ffi::CStr::from_ptr(out) }.to_string_lossy().into_owned();
        // SAFETY: allocated by malloc inside __cxa_demangle.
        unsafe { libc::free(out.cast()) };
        rust_legacy_cleanup(&s)
    }

    /// Names one return address; `None` when it is not in executable code
    /// (the walk went astray: truncate the stack there).
    pub(crate) fn frame(&mut self, ip: u64) -> Option<Frame> {
        if let Some(f) = self.cache.get(&ip) {
            return Some(f.clone());
        }
        let m = self.find_mapping(ip)?.clone();
        // Look up the call instruction, not the instruction after it.
        let lookup = ip.saturating_sub(1);
        let path = m.path.clone();
        let elf_path =
            path.as_deref().filter(|p| p.starts_with('/') && !p.starts_with("/memfd:") && !p.ends_with("(deleted)"));
        let frame = match elf_path {
            Some(p) => {
                let module = self.modules.entry(Arc::from(p)).or_insert_with(|| match ElfSymbols::load(p) {
                    Some(e) => Module::Elf(e),
                    None => Module::NotElf,
                });
                let name = basename(p).to_string();
                let file_off = lookup - m.start + m.offset;
                match module {
                    Module::Elf(e) => {
                        let vaddr = e.vaddr_of_offset(file_off).unwrap_or(file_off);
                        let sym = e.lookup(vaddr).map(str::to_string);
                        let off = vaddr + (ip - lookup);
                        let class = if is_alloc_module(&name) {
                            Class::Alloc
                        } else if is_runtime_module(&name) {
                            Class::Runtime
                        } else {
                            Class::User
                        };
                        let text = match sym {
                            Some(s) => format!("{} ({name}+{off:#x})", self.demangled(&s)),
                            None => format!("{name}+{off:#x}"),
                        };
                        Frame { text, class }
                    }
                    Module::NotElf => Frame {
                        text: format!("{name}+{:#x}", file_off + 1),
                        class: if is_runtime_module(&name) { Class::Runtime } else { Class::User },
                    },
                }
            }
            None => {
                match self.perf.lookup(lookup) {
                    Some(raw) => {
                        let text = perfmap::managed_name(raw);
                        let class = if is_runtime_managed(&text) { Class::Runtime } else { Class::User };
                        Frame { text, class }
                    }
                    None => {
                        let what = path.as_deref().map(basename).unwrap_or("jit");
                        self.unnamed_jit += 1;
                        // Not cached: the perf map may name it later.
                        return Some(Frame { text: format!("[{what}] {ip:#x}"), class: Class::Runtime });
                    }
                }
            }
        };
        self.cache.insert(ip, frame.clone());
        Some(frame)
    }
}

/// Rust's legacy mangling survives the C++ demangler as `$LT$`-style escapes,
/// `..` separators and a `::h<16 hex>` hash: turn those into Rust syntax.
fn rust_legacy_cleanup(s: &str) -> String {
    // Legacy Rust symbols always end with the hash; anything else is left alone.
    let Some(i) = s.rfind("::h") else {
        return s.to_string();
    };
    let hash = &s[i + 3..];
    if hash.len() != 16 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return s.to_string();
    }
    let mut out = s[..i].to_string();
    for (from, to) in [
        ("$SP$", "@"),
        ("$BP$", "*"),
        ("$RF$", "&"),
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$LP$", "("),
        ("$RP$", ")"),
        ("$C$", ","),
        ("$u20$", " "),
        ("$u22$", "\""),
        ("$u27$", "'"),
        ("$u2b$", "+"),
        ("$u3b$", ";"),
        ("$u5b$", "["),
        ("$u5d$", "]"),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
        ("$u7e$", "~"),
        ("..", "::"),
    ] {
        out = out.replace(from, to);
    }
    out.replace("_<", "<").replace("::_<", "::<")
}

/// The frame a report should name for a stack: the first user frame, else
/// the first frame past the allocator, else the first frame.
pub(crate) fn choose_site(frames: &[Frame]) -> String {
    frames
        .iter()
        .find(|f| f.class == Class::User)
        .or_else(|| frames.iter().find(|f| f.class != Class::Alloc))
        .or_else(|| frames.first())
        .map_or_else(|| "<unknown>".to_string(), |f| f.text.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_choice() {
        let f = |t: &str, c| Frame { text: t.into(), class: c };
        let frames = vec![
            f("operator new (libstdc++.so.6+0x1)", Class::Alloc),
            f("System.Runtime.InteropServices.Marshal.AllocHGlobal", Class::Runtime),
            f("App.Leaker.Leak", Class::User),
        ];
        assert_eq!(choose_site(&frames), "App.Leaker.Leak");
        assert_eq!(choose_site(&frames[..2]), "System.Runtime.InteropServices.Marshal.AllocHGlobal");
        assert_eq!(choose_site(&frames[..1]), "operator new (libstdc++.so.6+0x1)");
        assert_eq!(choose_site(&[]), "<unknown>");
    }

    #[test]
    fn rust_names_are_cleaned_up() {
        assert_eq!(
            rust_legacy_cleanup(
                "alloc::boxed::iter::_$LT$impl$u20$core..iter..traits..collect..FromIterator$LT$I$GT$$u20$for$u20$alloc..boxed..Box$LT$$u5b$I$u5d$$GT$$GT$::from_iter::hd6dd2a20a107396f"
            ),
            "alloc::boxed::iter::<impl core::iter::traits::collect::FromIterator<I> for alloc::boxed::Box<[I]>>::from_iter"
        );
        assert_eq!(
            rust_legacy_cleanup("std::vector<int>::push_back(int const&)"),
            "std::vector<int>::push_back(int const&)"
        );
        assert_eq!(rust_legacy_cleanup("ns::handle(char const*, ...)"), "ns::handle(char const*, ...)");
    }

    #[test]
    fn symbolizes_own_code() {
        let mut s = Symbolizer::new("/tmp", std::process::id() as i32);
        s.refresh();
        let ip = symbolizes_own_code as *const () as u64 + 4;
        let f = s.frame(ip).unwrap();
        assert!(f.text.contains("symbolizes_own_code"), "{}", f.text);
        assert_eq!(f.class, Class::User);
        assert!(s.frame(8).is_none(), "null page is not code");
    }
}
