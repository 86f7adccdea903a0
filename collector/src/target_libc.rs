//! Which C library a program about to be launched uses, read from its ELF interpreter
//! (`PT_INTERP`). The native shim is built against glibc: a musl process (an Alpine image) that
//! preloads it does not start at all, since musl's loader treats the shim's glibc-only symbols
//! as fatal. So `run` and `env` preload the shim only into a glibc program and otherwise say
//! that native tracking is off, and why.
//!
//! The program is found the way `execvp` finds it; a `#!` script is followed to its interpreter
//! (through `/usr/bin/env NAME` too). For `dotnet app.dll` that is the `dotnet` host; for an
//! app host (`./Worker`), the app itself.

use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The C library a program is linked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Libc {
    /// glibc (`ld-linux*.so`, `ld64.so*`).
    Glibc,
    /// musl (`ld-musl-*.so.1`); the interpreter's path.
    Musl(String),
    /// No interpreter: statically linked, LD_PRELOAD never applies.
    Static,
    /// Some other dynamic loader (its path).
    Other(String),
}

/// What the probe found: the ELF file actually run, and its C library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub program: PathBuf,
    pub libc: Libc,
}

/// Most `#!` hops followed (a script run by a script…).
const MAX_HOPS: usize = 4;

/// Probes `argv`'s program. `None` when it cannot be told (not found, not readable, not ELF):
/// the caller keeps its default and the launch itself reports a missing program.
pub fn probe(argv: &[String]) -> Option<Found> {
    let mut program = resolve(argv.first()?)?;
    for _ in 0..MAX_HOPS {
        let head = read_head(&program, 4096)?;
        if let Some(next) = shebang_target(&head) {
            program = next;
            continue;
        }
        let libc = interpreter(&program, &head)?;
        return Some(Found { program, libc });
    }
    None
}

/// Why the shim must not be preloaded into `argv`'s program, if it must not.
pub fn shim_refusal(argv: &[String]) -> Option<String> {
    let found = probe(argv)?;
    let program = found.program.display();
    match found.libc {
        Libc::Glibc => None,
        Libc::Musl(interp) => Some(format!(
            "{program} uses the musl C library (ELF interpreter {interp}); the native shim needs glibc, and a musl \
             process that preloads it does not start, so it is not preloaded (managed tracking is unaffected; \
             --no-native says the same without this check)"
        )),
        Libc::Static => Some(format!("{program} is statically linked: LD_PRELOAD cannot reach it")),
        Libc::Other(interp) => Some(format!(
            "{program} uses the dynamic loader {interp}, not glibc's; the native shim needs glibc, so it is not preloaded"
        )),
    }
}

/// `argv[0]` as `execvp` would find it: a path if it holds a `/`, else the first executable
/// regular file of that name in `$PATH`.
fn resolve(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The first `max` bytes of a regular file (never opening anything that could block).
fn read_head(path: &Path, max: usize) -> Option<Vec<u8>> {
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).ok()?;
    let mut head = Vec::with_capacity(max);
    file.take(max as u64).read_to_end(&mut head).ok()?;
    Some(head)
}

/// For a `#!` script, the program that runs it (`#!/usr/bin/env NAME` → NAME on `$PATH`).
fn shebang_target(head: &[u8]) -> Option<PathBuf> {
    let line = head.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let text = String::from_utf8_lossy(line);
    let mut words = text.split_whitespace();
    let interpreter = words.next()?;
    if Path::new(interpreter).file_name().is_some_and(|n| n == "env") {
        // `env [-S] [-i] [NAME=VALUE…] PROGRAM`: the first word that is neither.
        let program = words.find(|w| !w.starts_with('-') && !w.contains('='))?;
        return resolve(program);
    }
    Some(PathBuf::from(interpreter))
}

/// The C library of an ELF file from its `PT_INTERP`; `None` if `head` is not ELF.
fn interpreter(path: &Path, head: &[u8]) -> Option<Libc> {
    // The header's identification bytes come from `head`; the rest is read where it lies.
    if head.get(..4)? != b"\x7fELF" {
        return None;
    }
    let wide = match head.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match head.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    // Only the few bytes needed are read: a single-file app can be tens of megabytes.
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).ok()?;
    let bytes_at = |at: u64, len: usize| -> Option<Vec<u8>> {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, at).ok()?;
        Some(buf)
    };
    let int = |at: u64, width: usize| -> Option<u64> {
        let bytes = bytes_at(at, width)?;
        let mut v = 0u64;
        for i in 0..width {
            let b = if little { bytes[width - 1 - i] } else { bytes[i] };
            v = (v << 8) | b as u64;
        }
        Some(v)
    };
    let (phoff, phentsize, phnum) = if wide {
        (int(0x20, 8)?, int(0x36, 2)?, int(0x38, 2)?)
    } else {
        (int(0x1c, 4)?, int(0x2a, 2)?, int(0x2c, 2)?)
    };
    const PT_INTERP: u64 = 3;
    for i in 0..phnum.min(4096) {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if int(at, 4)? != PT_INTERP {
            continue;
        }
        let (offset, size) =
            if wide { (int(at + 8, 8)?, int(at + 32, 8)?) } else { (int(at + 4, 4)?, int(at + 16, 4)?) };
        let bytes = bytes_at(offset, size.min(4096) as usize)?;
        let interp = String::from_utf8_lossy(bytes.split(|&b| b == 0).next().unwrap_or(&bytes)).into_owned();
        let name = Path::new(&interp).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Some(if name.starts_with("ld-musl-") {
            Libc::Musl(interp)
        } else if name.starts_with("ld-linux") || name.starts_with("ld64.so") {
            Libc::Glibc
        } else {
            Libc::Other(interp)
        });
    }
    Some(Libc::Static)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn glibc_programs_are_recognised_and_keep_the_shim() {
        let sh = probe(&argv(&["sh", "-c", "true"])).expect("sh is on PATH");
        assert_eq!(sh.libc, Libc::Glibc, "{sh:?}");
        assert_eq!(shim_refusal(&argv(&["/bin/true"])), None);
    }

    #[test]
    fn scripts_are_followed_to_their_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("start.sh");
        std::fs::write(&script, "#!/usr/bin/env sh\nexec true\n").unwrap();
        let found = probe(&argv(&[script.to_str().unwrap()])).unwrap();
        assert_eq!(found.libc, Libc::Glibc);
        assert_eq!(found.program.file_name().unwrap(), "sh");
        std::fs::write(&script, "#!/bin/sh -e\n").unwrap();
        assert_eq!(probe(&argv(&[script.to_str().unwrap()])).unwrap().program, PathBuf::from("/bin/sh"));
    }

    #[test]
    fn a_musl_interpreter_or_no_interpreter_refuses_the_shim() {
        // A minimal ELF64 header with one PT_INTERP program header naming musl's loader.
        let interp = b"/lib/ld-musl-x86_64.so.1\0";
        let mut elf = vec![0u8; 0x40 + 0x38];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2; // 64-bit
        elf[5] = 1; // little-endian
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes()); // e_phoff
        elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes()); // e_phentsize
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        elf[0x40..0x44].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        let offset = elf.len() as u64;
        elf[0x48..0x50].copy_from_slice(&offset.to_le_bytes()); // p_offset
        elf[0x60..0x68].copy_from_slice(&(interp.len() as u64).to_le_bytes()); // p_filesz
        elf.extend_from_slice(interp);
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("prog");
        std::fs::write(&program, &elf).unwrap();
        let found = probe(&argv(&[program.to_str().unwrap()])).unwrap();
        assert_eq!(found.libc, Libc::Musl("/lib/ld-musl-x86_64.so.1".into()));
        let why = shim_refusal(&argv(&[program.to_str().unwrap(), "x"])).unwrap();
        assert!(why.contains("musl") && why.contains("/lib/ld-musl-x86_64.so.1"), "{why}");

        elf[0x40..0x44].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD: no interpreter
        std::fs::write(&program, &elf).unwrap();
        assert_eq!(probe(&argv(&[program.to_str().unwrap()])).unwrap().libc, Libc::Static);
    }

    #[test]
    fn what_cannot_be_told_is_left_alone() {
        assert_eq!(probe(&argv(&["/nonexistent/leakscope-test-program"])), None);
        assert_eq!(probe(&argv(&["leakscope-no-such-command-on-path"])), None);
        assert_eq!(probe(&[]), None);
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "just text").unwrap();
        assert_eq!(probe(&argv(&[text.to_str().unwrap()])), None);
    }
}
