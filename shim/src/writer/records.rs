//! The shim's own record lines (docs/PROTOCOL.md): `hello`, `status` and `bye`, written
//! straight into strings without serde (the writer runs inside a process whose allocator it
//! is tracking). The `native` record is built by the writer's tick (`mod.rs`).

use core::fmt::Write as _;

use crate::config::Config;
use crate::json::{self, Obj};
use crate::{state, sys};

pub(super) fn cmdline() -> String {
    sys::read_file("/proc/self/cmdline")
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Opens a line's object with the protocol's envelope: version, kind, source and pid.
pub(super) fn line_start(out: &mut String, kind: &str, pid: i32) {
    use leakscope_protocol::version::{PROTOCOL_VERSION, SOURCE_SHIM};
    out.clear();
    let _ = write!(out, "{{\"v\":{PROTOCOL_VERSION},\"type\":\"{kind}\",\"source\":\"{SOURCE_SHIM}\",\"pid\":{pid}");
}

pub(super) fn hello_line(
    cfg: &Config,
    pid: i32,
    cmdline: &str,
    table_bytes: usize,
    native_on: bool,
    reason: &str,
) -> String {
    let mut s = String::with_capacity(512);
    line_start(&mut s, "hello", pid);
    s.push(',');
    // Continue the object opened by line_start.
    let mut body = String::new();
    {
        let mut o = Obj::new(&mut body);
        o.str("version", env!("CARGO_PKG_VERSION"))
            .str("cmdline", cmdline)
            .u64("start_unix_ms", state::start_unix_ms())
            .u64("interval_ms", cfg.interval_ms)
            .str("sampling", "poisson")
            .u64("mean_bytes", cfg.mean_bytes)
            .str("mode", "sampled")
            .str("native", if native_on { "on" } else { "off" })
            .str("native_reason", reason)
            .str("preload", &sys::own_path());
        if let Some(service) = &cfg.service {
            o.str("service", service);
        }
        o.with("config", |out| {
            let mut c = Obj::new(out);
            c.u64("max_tracked", cfg.max_tracked as u64)
                .u64("max_depth", cfg.max_depth as u64)
                .u64("max_sites", cfg.max_sites as u64)
                .bool("track_mmap", cfg.track_mmap)
                .str("totals", if cfg.exact_totals { "exact" } else { "sampled" })
                .str(
                    "usable_size",
                    if crate::real::header_layout_verified() {
                        "chunk header (verified)"
                    } else {
                        "malloc_usable_size"
                    },
                )
                .u64("table_bytes", table_bytes as u64);
            c.end();
        });
        o.end();
    }
    // splice: drop the inner '{'
    s.push_str(body.get(1..).unwrap_or("}"));
    s.push('\n');
    s
}

pub(super) fn status_line(pid: i32, level: &str, message: &str) -> String {
    let mut s = String::with_capacity(128 + message.len());
    line_start(&mut s, "status", pid);
    s.push_str(",\"level\":");
    json::push_str(&mut s, level);
    s.push_str(",\"message\":");
    json::push_str(&mut s, message);
    let _ = writeln!(s, ",\"t_ms\":{}}}", sys::monotonic_ms().saturating_sub(state::start_ms()));
    s
}

pub(super) fn bye_line(pid: i32, reason: &str) -> String {
    let mut s = String::with_capacity(128);
    line_start(&mut s, "bye", pid);
    let _ = write!(s, ",\"t_ms\":{},\"reason\":", sys::monotonic_ms().saturating_sub(state::start_ms()));
    json::push_str(&mut s, reason);
    s.push_str("}\n");
    s
}
