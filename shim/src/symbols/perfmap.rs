//! The .NET runtime's perf map (`/tmp/perf-PID.map`, written when
//! `DOTNET_PerfMapEnabled` is 1 or 3): one `START SIZE NAME` line per JIT'd
//! method or stub. Read incrementally (the runtime appends as it compiles).

use std::collections::BTreeMap;

use crate::sys;

#[derive(Debug, Default)]
pub(crate) struct PerfMap {
    path: String,
    offset: u64,
    partial: Vec<u8>,
    /// start → (end, raw name)
    entries: BTreeMap<u64, (u64, String)>,
}

fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim_start_matches("0x").trim_start_matches("0X"), 16).ok()
}

impl PerfMap {
    pub(crate) fn new(dir: &str, pid: i32) -> Self {
        PerfMap { path: format!("{}/perf-{pid}.map", dir.trim_end_matches('/')), ..Default::default() }
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Reads whatever was appended since the last call.
    pub(crate) fn refresh(&mut self) {
        // Usually in /tmp, where anyone may have put something at the name first: a regular
        // file of ours (or root's) only, never through a symlink, never blocking on a FIFO.
        let Some(fd) = sys::open_regular_readonly(&self.path, true) else {
            return;
        };
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = sys::pread(fd, &mut buf, self.offset);
            if n == 0 {
                break;
            }
            self.offset += n as u64;
            self.partial.extend_from_slice(buf.get(..n).unwrap_or(&[]));
            if n < buf.len() {
                break;
            }
        }
        // SAFETY: `fd` was opened above.
        unsafe { libc::close(fd) };
        let Some(last_nl) = self.partial.iter().rposition(|&c| c == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.partial.drain(..=last_nl).collect();
        for line in String::from_utf8_lossy(&complete).lines() {
            let mut it = line.splitn(3, ' ');
            let (Some(a), Some(s), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let (Some(start), Some(size)) = (parse_hex(a), parse_hex(s)) else {
                continue;
            };
            if size == 0 {
                continue;
            }
            self.entries.insert(start, (start.saturating_add(size), name.to_string()));
        }
    }

    pub(crate) fn lookup(&self, ip: u64) -> Option<&str> {
        let (_, (end, name)) = self.entries.range(..=ip).next_back()?;
        if ip < *end { Some(name.as_str()) } else { None }
    }
}

/// Turns a perf-map method name into the protocol's managed frame form:
/// `void [App] App.Leaker::Leak(int32)[QuickJitted]` → `App.Leaker.Leak`.
/// Stubs and anything unrecognised are returned trimmed, as written.
pub(crate) fn managed_name(raw: &str) -> String {
    let mut s = raw.trim();
    // Tier suffix: a trailing [...] after the argument list.
    if s.ends_with(']') {
        if let (Some(open), Some(paren)) = (s.rfind('['), s.rfind(')')) {
            if open > paren {
                s = s[..open].trim_end();
            }
        }
    }
    // "<ret> [<module>] <Type>::<Method>(<args>)"
    let Some(mod_start) = s.find(" [").map(|i| i + 1).or(if s.starts_with('[') { Some(0) } else { None }) else {
        return s.to_string();
    };
    let Some(mod_end) = s[mod_start..].find("] ").map(|i| mod_start + i) else {
        return s.to_string();
    };
    let rest = &s[mod_end + 2..];
    let Some(sep) = rest.find("::") else {
        return s.to_string();
    };
    let before_args = rest.find('(').unwrap_or(rest.len());
    if sep > before_args {
        return s.to_string();
    }
    let ty = &rest[..sep];
    let method = &rest[sep + 2..before_args];
    format!("{}.{}", ty.replace('+', "."), method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(managed_name("void [t1] T1.Leaker::Leak()[QuickJitted]"), "T1.Leaker.Leak");
        assert_eq!(
            managed_name(
                "instance void [NativeLeakApp] NativeLeakApp.Leaker::LeakBuffers(int32,int32)[OptimizedTier1]"
            ),
            "NativeLeakApp.Leaker.LeakBuffers"
        );
        assert_eq!(managed_name("int32[] [App] App.Outer+Inner::Make(int32)[Optimized]"), "App.Outer.Inner.Make");
        assert_eq!(
            managed_name("stub<1> AllocateTemporaryEntryPoints<PRECODE_STUB>"),
            "stub<1> AllocateTemporaryEntryPoints<PRECODE_STUB>"
        );
        assert_eq!(
            managed_name(
                "void [System.Private.CoreLib] System.Runtime.InteropServices.Marshal::AllocHGlobal(native int)[PreJIT]"
            ),
            "System.Runtime.InteropServices.Marshal.AllocHGlobal"
        );
    }

    #[test]
    fn incremental_reading() {
        let dir = std::env::temp_dir().join(format!("ls-perfmap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid = 424242;
        let file = dir.join(format!("perf-{pid}.map"));
        std::fs::write(&file, "0x1000 10 void [a] A.B::C()[QuickJitted]\n2000 20 stub<1> X\n0x30").unwrap();
        let mut m = PerfMap::new(dir.to_str().unwrap(), pid);
        m.refresh();
        assert_eq!(m.lookup(0x1005), Some("void [a] A.B::C()[QuickJitted]"));
        assert_eq!(m.lookup(0x1010), None);
        assert_eq!(m.lookup(0x2001), Some("stub<1> X"));
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(b"00 8 void [a] A.B::D()\n").unwrap();
        m.refresh();
        assert_eq!(m.lookup(0x3004), Some("void [a] A.B::D()"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
