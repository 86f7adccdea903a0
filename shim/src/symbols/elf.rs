//! A small ELF64 (little-endian) symbol reader: `.symtab` and `.dynsym`
//! function symbols, `PT_LOAD` segments to turn file offsets into virtual
//! addresses, and the GNU build-id to find a separate debug file under
//! /usr/lib/debug/.build-id when the binary is stripped. Reads with pread;
//! every offset is bounds-checked (a malformed file yields no symbols, never
//! a panic). Writer thread only.

use crate::sys;

const SHT_SYMTAB: u32 = 2;
const SHT_NOTE: u32 = 7;
const SHT_DYNSYM: u32 = 11;
const PT_LOAD: u32 = 1;
const STT_FUNC: u8 = 2;
const STT_GNU_IFUNC: u8 = 10;
const NT_GNU_BUILD_ID: u32 = 3;
/// Refuse absurd tables (corrupt headers).
const MAX_TABLE: u64 = 512 << 20;

#[derive(Debug, Clone, Copy)]
struct Sym {
    addr: u64,
    size: u64,
    name: u32,
}

#[derive(Debug, Default)]
pub(crate) struct ElfSymbols {
    /// (p_offset, p_vaddr, p_filesz) of each PT_LOAD.
    loads: Vec<(u64, u64, u64)>,
    syms: Vec<Sym>,
    names: Vec<u8>,
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

struct File {
    fd: i32,
}

impl Drop for File {
    fn drop(&mut self) {
        // SAFETY: `fd` was opened by `File::open` and is closed once.
        unsafe { libc::close(self.fd) };
    }
}

impl File {
    fn open(path: &str) -> Option<File> {
        // Paths come from /proc/self/maps and the debug directory (whose build-id entries are
        // symlinks): followed, but only a regular file is read, and opening never blocks.
        sys::open_regular_readonly(path, false).map(|fd| File { fd })
    }

    fn read(&self, off: u64, len: u64) -> Option<Vec<u8>> {
        if len > MAX_TABLE {
            return None;
        }
        let mut v = vec![0u8; len as usize];
        let n = sys::pread(self.fd, &mut v, off);
        if n != v.len() {
            return None;
        }
        Some(v)
    }
}

struct Section {
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
    entsize: u64,
}

struct Parsed {
    loads: Vec<(u64, u64, u64)>,
    sections: Vec<Section>,
}

fn parse_headers(f: &File) -> Option<Parsed> {
    let eh = f.read(0, 64)?;
    if eh.get(0..4)? != b"\x7fELF" || *eh.get(4)? != 2 || *eh.get(5)? != 1 {
        return None; // not ELF64 little-endian
    }
    let phoff = u64_at(&eh, 0x20)?;
    let shoff = u64_at(&eh, 0x28)?;
    let phentsize = u16_at(&eh, 0x36)? as u64;
    let phnum = u16_at(&eh, 0x38)? as u64;
    let shentsize = u16_at(&eh, 0x3a)? as u64;
    let shnum = u16_at(&eh, 0x3c)? as u64;
    let mut loads = Vec::new();
    if phentsize >= 56 && phnum > 0 {
        let ph = f.read(phoff, phentsize * phnum)?;
        for i in 0..phnum as usize {
            let o = i * phentsize as usize;
            if u32_at(&ph, o)? == PT_LOAD {
                loads.push((u64_at(&ph, o + 8)?, u64_at(&ph, o + 16)?, u64_at(&ph, o + 32)?));
            }
        }
    }
    let mut sections = Vec::new();
    if shentsize >= 64 && shnum > 0 && shoff > 0 {
        if let Some(sh) = f.read(shoff, shentsize * shnum) {
            for i in 0..shnum as usize {
                let o = i * shentsize as usize;
                sections.push(Section {
                    kind: u32_at(&sh, o + 4)?,
                    offset: u64_at(&sh, o + 24)?,
                    size: u64_at(&sh, o + 32)?,
                    link: u32_at(&sh, o + 40)?,
                    entsize: u64_at(&sh, o + 56)?,
                });
            }
        }
    }
    Some(Parsed { loads, sections })
}

fn build_id(f: &File, p: &Parsed) -> Option<Vec<u8>> {
    for s in p.sections.iter().filter(|s| s.kind == SHT_NOTE && s.size < 4096) {
        let data = f.read(s.offset, s.size)?;
        let mut o = 0usize;
        while o + 12 <= data.len() {
            let namesz = u32_at(&data, o)? as usize;
            let descsz = u32_at(&data, o + 4)? as usize;
            let kind = u32_at(&data, o + 8)?;
            let name_at = o + 12;
            let desc_at = name_at + namesz.div_ceil(4) * 4;
            if kind == NT_GNU_BUILD_ID && data.get(name_at..name_at + namesz)? == b"GNU\0" {
                return data.get(desc_at..desc_at + descsz).map(<[u8]>::to_vec);
            }
            o = desc_at + descsz.div_ceil(4) * 4;
        }
    }
    None
}

fn read_symbols(f: &File, p: &Parsed, want_symtab: bool, out: &mut ElfSymbols) {
    for s in &p.sections {
        let is_symtab = s.kind == SHT_SYMTAB;
        if !(s.kind == SHT_DYNSYM || (want_symtab && is_symtab)) || s.entsize < 24 {
            continue;
        }
        let Some(strsec) = p.sections.get(s.link as usize) else {
            continue;
        };
        let (Some(data), Some(strs)) = (f.read(s.offset, s.size), f.read(strsec.offset, strsec.size)) else {
            continue;
        };
        let base = out.names.len() as u64;
        if base + strs.len() as u64 > u32::MAX as u64 {
            continue;
        }
        out.names.extend_from_slice(&strs);
        let n = (s.size / s.entsize) as usize;
        for i in 0..n {
            let o = i * s.entsize as usize;
            let (Some(name), Some(info), Some(shndx), Some(value), Some(size)) =
                (u32_at(&data, o), data.get(o + 4), u16_at(&data, o + 6), u64_at(&data, o + 8), u64_at(&data, o + 16))
            else {
                break;
            };
            let kind = info & 0xf;
            if (kind != STT_FUNC && kind != STT_GNU_IFUNC) || shndx == 0 || value == 0 || name == 0 {
                continue;
            }
            out.syms.push(Sym { addr: value, size, name: (base + name as u64) as u32 });
        }
    }
}

impl ElfSymbols {
    /// Loads the symbols of the ELF file at `path`; `None` if it is not ELF.
    pub(crate) fn load(path: &str) -> Option<ElfSymbols> {
        let f = File::open(path)?;
        let p = parse_headers(&f)?;
        let mut out = ElfSymbols { loads: p.loads.clone(), ..Default::default() };
        let has_symtab = p.sections.iter().any(|s| s.kind == SHT_SYMTAB);
        read_symbols(&f, &p, true, &mut out);
        if !has_symtab {
            if let Some(id) = build_id(&f, &p).filter(|id| id.len() >= 2) {
                let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
                let dbg = format!("/usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..]);
                if let Some(df) = File::open(&dbg) {
                    if let Some(dp) = parse_headers(&df) {
                        read_symbols(&df, &dp, true, &mut out);
                    }
                }
            }
        }
        // Sort by address; among equal addresses prefer sized symbols.
        out.syms.sort_by(|a, b| a.addr.cmp(&b.addr).then(b.size.cmp(&a.size)));
        out.syms.dedup_by_key(|s| s.addr);
        Some(out)
    }

    /// File offset → virtual address (via the PT_LOAD that contains it).
    pub(crate) fn vaddr_of_offset(&self, off: u64) -> Option<u64> {
        self.loads.iter().find(|(o, _, sz)| off >= *o && off < o + (*sz).max(1)).map(|(o, v, _)| off - o + v)
    }

    /// The function containing `vaddr`, if any.
    pub(crate) fn lookup(&self, vaddr: u64) -> Option<&str> {
        let i = self.syms.partition_point(|s| s.addr <= vaddr);
        let s = self.syms.get(i.checked_sub(1)?)?;
        let inside = if s.size > 0 { vaddr < s.addr + s.size } else { vaddr - s.addr < 4096 };
        if !inside {
            return None;
        }
        let rest = self.names.get(s.name as usize..)?;
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        core::str::from_utf8(rest.get(..end)?).ok()
    }

    #[cfg(test)]
    pub(crate) fn symbol_count(&self) -> usize {
        self.syms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libc_symbols() {
        let maps = String::from_utf8(crate::sys::read_file("/proc/self/maps").unwrap()).unwrap();
        let libc_path = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.contains("/libc.so"))
            .unwrap()
            .to_string();
        let e = ElfSymbols::load(&libc_path).unwrap();
        assert!(e.symbol_count() > 500);
        // find malloc's vaddr through dladdr and look it up
        // SAFETY: all-zero Dl_info is valid.
        let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
        let f = libc::malloc as *const libc::c_void;
        // SAFETY: valid out-pointer.
        assert!(unsafe { libc::dladdr(f, &mut info) } != 0);
        let vaddr = f as u64 - info.dli_fbase as u64;
        let name = e.lookup(vaddr + 1).unwrap();
        assert!(name.contains("malloc"), "{name}");
        assert!(ElfSymbols::load("/proc/self/status").is_none());
    }
}
