//! Where `leakscope attach` and `snapshot` keep their private directory inside a target
//! (`leakscope-attach-<pid>-<cli pid>` in its temporary directories), and which of those
//! sessions are still running. `attach` makes and cleans them; `ps` asks who is attached.

use crate::diagnostics_ipc;
use crate::target_root::Dir;

/// What a private directory of an attach session is called: `leakscope-attach-<pid>-<cli pid>`,
/// so `ps` can tell whether the session that made it is still running.
pub const PLACE_PREFIX: &str = "leakscope-attach-";

/// `(name, cli pid)` of every attach place for `pid` in `tmp`.
pub fn places_in(tmp: &Dir, pid: u32) -> Vec<(String, u32)> {
    let prefix = format!("{PLACE_PREFIX}{pid}-");
    tmp.names()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|name| {
            let cli = name.strip_prefix(&prefix)?.parse::<u32>().ok()?;
            Some((name, cli))
        })
        .collect()
}

/// Whether `cli` is a running `leakscope` (not a process that reused its pid).
pub fn session_alive(cli: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{cli}/comm")).is_ok_and(|comm| comm.trim().starts_with("leakscope"))
}

/// The `leakscope attach`/`snapshot` sessions that attached to `pid` and are still running
/// (found by their private directories in the target's temporary directories).
pub fn live_sessions(pid: u32) -> Vec<u32> {
    let Ok(root) = Dir::root_of(pid) else { return Vec::new() };
    let mut dirs = vec!["/tmp".to_string()];
    dirs.extend(diagnostics_ipc::target_env(pid, "TMPDIR").filter(|t| t.starts_with('/')));
    let mut sessions: Vec<u32> = dirs
        .iter()
        .filter_map(|d| root.resolve_dir(d).ok())
        .flat_map(|tmp| places_in(&tmp, pid))
        .map(|(_, cli)| cli)
        .filter(|&cli| session_alive(cli))
        .collect();
    sessions.sort_unstable();
    sessions.dedup();
    sessions
}
