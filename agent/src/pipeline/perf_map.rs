//! The runtime's perf map (`DOTNET_PerfMapEnabled=1` or `3`, as `leakscope run` sets it): the
//! one place that gives the code range of dynamic methods (compiled expression trees such as
//! ASP.NET Core's request delegates, reflection's invoke stubs), which `GetFunctionFromIP` does not
//! know. The frame walk uses it only to find where such a method's code starts, to read its
//! prologue. The file is in a shared directory, so it is trusted only if it is a regular file
//! owned by this process's user, and every byte it points at is read with `process_vm_readv` on
//! ourselves, which fails instead of faulting on an address that is not mapped.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

/// Bytes of the map read per refresh at most (it only grows; a huge one is read in steps).
const MAX_READ: usize = 4 << 20;

#[derive(Default)]
pub struct PerfMap {
    path: Option<std::path::PathBuf>,
    offset: u64,
    partial: Vec<u8>,
    /// start → size
    ranges: BTreeMap<usize, usize>,
}

impl PerfMap {
    /// The map of this process, if the runtime was told to write one.
    pub fn from_env() -> Self {
        let enabled = std::env::var("DOTNET_PerfMapEnabled").or_else(|_| std::env::var("COMPlus_PerfMapEnabled"));
        if !matches!(enabled.as_deref().map(str::trim), Ok("1") | Ok("3")) {
            return PerfMap::default();
        }
        let dir = std::env::var("DOTNET_PerfMapJitDumpPath").unwrap_or_else(|_| "/tmp".into());
        let path = std::path::Path::new(&dir).join(format!("perf-{}.map", std::process::id()));
        PerfMap { path: Some(path), ..Default::default() }
    }

    /// The code range `(start, size)` holding `ip`, reading what the runtime appended meanwhile.
    pub fn range_of(&mut self, ip: usize) -> Option<(usize, usize)> {
        if let Some(found) = self.lookup(ip) {
            return Some(found);
        }
        self.refresh();
        self.lookup(ip)
    }

    fn lookup(&self, ip: usize) -> Option<(usize, usize)> {
        let (&start, &size) = self.ranges.range(..=ip).next_back()?;
        (ip < start.saturating_add(size)).then_some((start, size))
    }

    fn refresh(&mut self) {
        let Some(path) = &self.path else { return };
        let Ok(file) =
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path)
        else {
            return;
        };
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        match file.metadata() {
            Ok(m) if m.file_type().is_file() && m.uid() == me => {}
            _ => return,
        }
        use std::io::{Read, Seek, SeekFrom};
        let mut file = file;
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut chunk = Vec::new();
        let Ok(n) = file.take(MAX_READ as u64).read_to_end(&mut chunk) else { return };
        self.offset += n as u64;
        self.partial.extend_from_slice(&chunk);
        let Some(end) = self.partial.iter().rposition(|&c| c == b'\n') else { return };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        for line in complete.split(|&c| c == b'\n') {
            let mut fields = line.splitn(3, |&c| c == b' ');
            let (Some(start), Some(size)) = (fields.next(), fields.next()) else { continue };
            let hex = |f: &[u8]| {
                std::str::from_utf8(f).ok().and_then(|s| usize::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            };
            if let (Some(start), Some(size)) = (hex(start), hex(size)) {
                if size > 0 {
                    self.ranges.insert(start, size);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// Copies `len` bytes at `address` of this process, or `None` if any of them is not mapped.
pub fn read_own_memory(address: usize, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: len };
    let remote = libc::iovec { iov_base: address as *mut libc::c_void, iov_len: len };
    // SAFETY: `local` describes our own buffer of `len` bytes; the kernel reads `remote` through
    // the page tables and reports EFAULT rather than faulting when it is not mapped.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    (n == len as isize).then_some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ranges_and_refuses_what_it_cannot_trust() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("perf-test.map");
        std::fs::write(&path, "7f0000001000 200 dynamicClass::lambda_method1\n7f0000002000 10 stub\npartial").unwrap();
        let mut map = PerfMap { path: Some(path.clone()), ..Default::default() };
        assert_eq!(map.range_of(0x7f00_0000_1100), Some((0x7f00_0000_1000, 0x200)));
        assert_eq!(map.range_of(0x7f00_0000_1200), None);
        assert_eq!(map.len(), 2);
        // A symlink in its place is not followed.
        let link = dir.path().join("perf-link.map");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let mut linked = PerfMap { path: Some(link), ..Default::default() };
        assert_eq!(linked.range_of(0x7f00_0000_1100), None);
    }

    #[test]
    fn reading_unmapped_memory_fails_instead_of_faulting() {
        assert!(read_own_memory(0x10, 16).is_none());
        let here = [1u8, 2, 3, 4];
        assert_eq!(read_own_memory(here.as_ptr() as usize, 4), Some(vec![1, 2, 3, 4]));
    }
}
