//! The process's native (ELF) modules: which one holds an address, and where the function
//! holding it starts (from the module's `.eh_frame_hdr` search table, which stripped libraries
//! such as libcoreclr keep for unwinding). Agent thread only.

use std::ffi::CStr;

/// One loaded ELF object.
struct Module {
    /// Executable ranges, absolute.
    code: Vec<(usize, usize)>,
    /// Absolute address and size of `.eh_frame_hdr`, if present.
    eh_frame_hdr: Option<(usize, usize)>,
    /// The runtime itself (libcoreclr): its frames are walked through, not recorded.
    is_runtime: bool,
}

/// Where an address lies among the native modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NativeHome {
    /// In the runtime's code; the function holding it starts at `function` (when found), in
    /// code that is mapped up to `code_end`.
    Runtime { function: Option<usize>, code_end: usize },
    /// In another native module's code.
    Foreign,
}

#[derive(Default)]
pub struct NativeModules {
    modules: Vec<Module>,
    /// An address in the runtime's code: its module is the runtime whatever its file is called
    /// (libcoreclr.so, or a single-file app's host).
    runtime_address: usize,
}

impl NativeModules {
    /// The modules loaded now, the one holding `runtime_address` taken as the runtime.
    pub fn new(runtime_address: usize) -> Self {
        let mut m = NativeModules { modules: Vec::new(), runtime_address };
        m.refresh();
        m
    }

    /// Reads the loaded modules (again): new native libraries load at any time.
    pub fn refresh(&mut self) {
        let mut modules: Vec<Module> = Vec::new();
        // SAFETY: dl_iterate_phdr calls `visit` synchronously with valid `dl_phdr_info` pointers
        // and passes our `&mut Vec` back as `data`.
        unsafe { libc::dl_iterate_phdr(Some(visit), &mut modules as *mut Vec<Module> as *mut libc::c_void) };
        let runtime = self.runtime_address;
        for m in &mut modules {
            if m.code.iter().any(|&(s, e)| (s..e).contains(&runtime)) {
                m.is_runtime = true;
            }
        }
        self.modules = modules;
    }

    /// The module holding `address` in its code, if any.
    pub fn home(&self, address: usize) -> Option<NativeHome> {
        let (module, &(_, code_end)) = self
            .modules
            .iter()
            .find_map(|m| m.code.iter().find(|&&(s, e)| (s..e).contains(&address)).map(|range| (m, range)))?;
        if !module.is_runtime {
            return Some(NativeHome::Foreign);
        }
        let function = module.eh_frame_hdr.and_then(|(hdr, size)| function_start(hdr, size, address));
        Some(NativeHome::Runtime { function, code_end })
    }
}

unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut libc::c_void) -> libc::c_int {
    // SAFETY: per dl_iterate_phdr's contract `info` is valid for this call; `data` is the Vec
    // passed by `refresh`.
    let (info, modules) = unsafe { (&*info, &mut *(data as *mut Vec<Module>)) };
    let name = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: a NUL-terminated string owned by the loader, valid for this call.
        unsafe { CStr::from_ptr(info.dlpi_name) }.to_string_lossy().into_owned()
    };
    let base = info.dlpi_addr as usize;
    let mut module = Module { code: Vec::new(), eh_frame_hdr: None, is_runtime: name.ends_with("/libcoreclr.so") };
    for i in 0..info.dlpi_phnum as usize {
        // SAFETY: `dlpi_phdr` holds `dlpi_phnum` program headers.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        let start = base.wrapping_add(ph.p_vaddr as usize);
        let size = ph.p_memsz as usize;
        if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
            module.code.push((start, start + size));
        } else if ph.p_type == libc::PT_GNU_EH_FRAME {
            module.eh_frame_hdr = Some((start, size));
        }
    }
    if !module.code.is_empty() {
        modules.push(module);
    }
    0
}

/// DWARF pointer encodings `.eh_frame_hdr` uses on x86-64 (GCC, clang, lld all emit these).
const PCREL_SDATA4: u8 = 0x1b;
const UDATA4: u8 = 0x03;
const DATAREL_SDATA4: u8 = 0x3b;

/// Start of the function holding `pc`, from the `.eh_frame_hdr` at `hdr` (`size` bytes): a
/// binary search of its sorted (start, FDE) table, then the FDE's range checked to cover `pc`.
/// `None` for any layout other than the usual one.
fn function_start(hdr: usize, size: usize, pc: usize) -> Option<usize> {
    let byte = |off: usize| {
        // SAFETY: `.eh_frame_hdr` is a loaded, read-only segment of `size` bytes; `off < size`.
        (off < size).then(|| unsafe { *((hdr + off) as *const u8) })
    };
    let word = |addr: usize| {
        // SAFETY: callers pass addresses inside `.eh_frame_hdr` (bounds-checked against `size`
        // below) or the fixed header of an FDE it points to, in the loaded `.eh_frame`.
        unsafe { (addr as *const i32).read_unaligned() }
    };
    if byte(0)? != 1 || byte(1)? != PCREL_SDATA4 || byte(2)? != UDATA4 || byte(3)? != DATAREL_SDATA4 {
        return None;
    }
    if size < 12 {
        return None;
    }
    let count = word(hdr + 8) as u32 as usize;
    let table = hdr + 12;
    if 12 + count.checked_mul(8)? > size || count == 0 {
        return None;
    }
    let entry = |i: usize| {
        let start = hdr.wrapping_add(word(table + i * 8) as isize as usize);
        let fde = hdr.wrapping_add(word(table + i * 8 + 4) as isize as usize);
        (start, fde)
    };
    // Last entry whose start is <= pc.
    let (mut lo, mut hi) = (0usize, count);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if entry(mid).0 <= pc { lo = mid } else { hi = mid }
    }
    let (start, fde) = entry(lo);
    if start > pc {
        return None;
    }
    // FDE: u32 length (0xffffffff: 64-bit, not handled), u32 CIE pointer, pc_begin, pc_range
    // (pcrel sdata4 and udata4 for the usual CIE augmentation "zR" with encoding 0x1b).
    let length = word(fde) as u32;
    if length == 0 || length == u32::MAX {
        return None;
    }
    let begin = (fde + 8).wrapping_add(word(fde + 8) as isize as usize);
    let range = word(fde + 12) as u32 as usize;
    (begin == start && pc < start + range).then_some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_start_of_a_function_in_a_loaded_library() {
        let mut m = NativeModules::new(0);
        // libc's own functions are foreign: not the runtime.
        assert_eq!(m.home(libc::getpid as *const () as usize), Some(NativeHome::Foreign));
        // Unless an address says libc is the runtime (as a single-file host would be).
        let libc_is_runtime = NativeModules::new(libc::getpid as *const () as usize);
        assert!(matches!(libc_is_runtime.home(libc::getppid as *const () as usize), Some(NativeHome::Runtime { .. })));
        m.refresh();
        assert_eq!(m.home(0x10), None);
        // The table of this test binary finds the start of one of its functions.
        let here = finds_the_start_of_a_function_in_a_loaded_library as *const () as usize;
        let module = m.modules.iter().find(|m| m.code.iter().any(|&(s, e)| (s..e).contains(&here))).unwrap();
        let (hdr, size) = module.eh_frame_hdr.unwrap();
        assert_eq!(function_start(hdr, size, here + 5), Some(here));
    }
}
