//! A client for the .NET runtime's diagnostics IPC: the Unix socket every .NET process opens
//! (`$TMPDIR/dotnet-diagnostic-<pid>-<key>-socket`) and the binary protocol spoken on it
//! (dotnet/diagnostics `documentation/design-docs/ipc-protocol.md`). leakscope uses two
//! commands: ProcessInfo2, to describe a process, and AttachProfiler, to load the agent into it.
//!
//! Message: a 20-byte header — magic `DOTNET_IPC_V1\0`, u16 total size, u8 command set,
//! u8 command id, u16 reserved — then the payload, little-endian. Strings are a u32 count of
//! UTF-16 units (NUL included) followed by the units. The runtime answers with command set
//! 0xFF: id 0x00 (OK) or 0xFF (error, payload = u32 HRESULT).

use crate::target_root::Dir;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MAGIC: &[u8; 14] = b"DOTNET_IPC_V1\0";
const HEADER_LEN: usize = 20;
const SERVER_SET: u8 = 0xFF;
const SERVER_OK: u8 = 0x00;
const SERVER_ERROR: u8 = 0xFF;
const PROFILER_SET: u8 = 0x03;
const ATTACH_PROFILER: u8 = 0x01;
const PROCESS_SET: u8 = 0x04;
const PROCESS_INFO: u8 = 0x00;
const PROCESS_INFO2: u8 = 0x04;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum IpcError {
    Io(std::io::Error),
    /// The runtime answered with an error HRESULT.
    Runtime(u32),
    Protocol(String),
    /// The socket is not the target's: nothing was sent.
    Refused(String),
}

impl std::fmt::Display for IpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IpcError::Io(e) => write!(f, "{e}"),
            IpcError::Runtime(hr) => write!(f, "the runtime answered {hr:#010x}{}", explain_hresult(*hr)),
            IpcError::Protocol(m) => write!(f, "unexpected answer on the diagnostics socket: {m}"),
            IpcError::Refused(m) => write!(f, "refusing the diagnostics socket: {m}; nothing was sent to it"),
        }
    }
}

impl From<std::io::Error> for IpcError {
    fn from(e: std::io::Error) -> Self {
        IpcError::Io(e)
    }
}

/// Known HRESULTs the runtime returns to AttachProfiler, in words.
pub fn explain_hresult(hr: u32) -> &'static str {
    match hr {
        0x8013_136A => " (CORPROF_E_PROFILER_ALREADY_ACTIVE: a profiler is already loaded in this process)",
        0x8013_1369 => " (CORPROF_E_PROFILER_NOT_ATTACHABLE: the profiler refused attach)",
        0x8013_1375 => " (CORPROF_E_PROFILER_CANCEL_ACTIVATION: the agent declined; its log says why)",
        0x8013_1373 => " (CORPROF_E_PROFILER_DETACHING: the previous attach is still detaching; try again shortly)",
        0x8000_4005 => " (E_FAIL)",
        0x8007_0002 => " (file not found: the agent path must exist inside the target's filesystem)",
        0x8000_4002 => " (E_NOINTERFACE)",
        _ => "",
    }
}

/// What the runtime says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u64,
    pub command_line: String,
    pub os: String,
    pub arch: String,
    pub entrypoint_assembly: String,
    /// The runtime's product version, e.g. `10.0.12+95017c711e`.
    pub runtime_version: String,
}

pub fn encode(command_set: u8, command_id: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER_LEN + payload.len());
    m.extend_from_slice(MAGIC);
    m.extend_from_slice(&((HEADER_LEN + payload.len()) as u16).to_le_bytes());
    m.push(command_set);
    m.push(command_id);
    m.extend_from_slice(&0u16.to_le_bytes());
    m.extend_from_slice(payload);
    m
}

fn push_string(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().chain(std::iter::once(0)).collect();
    out.extend_from_slice(&(units.len() as u32).to_le_bytes());
    for u in units {
        out.extend_from_slice(&u.to_le_bytes());
    }
}

/// The AttachProfiler payload: timeout, CLSID (in its in-memory layout), path, client data.
pub fn attach_payload(timeout_ms: u32, clsid: [u8; 16], path: &str, client_data: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&timeout_ms.to_le_bytes());
    p.extend_from_slice(&clsid);
    push_string(&mut p, path);
    p.extend_from_slice(&(client_data.len() as u32).to_le_bytes());
    p.extend_from_slice(client_data);
    p
}

/// Parses a `{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}` GUID into COM's in-memory byte order.
pub fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.trim_matches(|c| c == '{' || c == '}').split('-').collect();
    if hex.len() != 32 {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok();
    let mut raw = [0u8; 16];
    for (i, b) in raw.iter_mut().enumerate() {
        *b = byte(i)?;
    }
    // data1 (u32), data2 (u16), data3 (u16) are little-endian in memory; data4 is bytes.
    raw[0..4].reverse();
    raw[4..6].reverse();
    raw[6..8].reverse();
    Some(raw)
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], IpcError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| IpcError::Protocol("payload too short".into()))?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, IpcError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, IpcError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn string(&mut self) -> Result<String, IpcError> {
        let units = self.u32()? as usize;
        if units > 1 << 20 {
            return Err(IpcError::Protocol("string too long".into()));
        }
        let bytes = self.take(units * 2)?;
        let utf16: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        let end = utf16.iter().position(|&u| u == 0).unwrap_or(utf16.len());
        Ok(String::from_utf16_lossy(&utf16[..end]))
    }
}

pub fn decode_process_info(payload: &[u8], v2: bool) -> Result<ProcessInfo, IpcError> {
    let mut r = Reader { data: payload, at: 0 };
    let pid = r.u64()?;
    r.take(16)?; // runtime instance cookie
    let mut info =
        ProcessInfo { pid, command_line: r.string()?, os: r.string()?, arch: r.string()?, ..Default::default() };
    if v2 {
        info.entrypoint_assembly = r.string()?;
        info.runtime_version = r.string()?;
    }
    Ok(info)
}

/// A process's diagnostics socket: the directory it was found in (held open, resolved inside the
/// process's root), its name, and whose it must be.
#[derive(Debug)]
pub struct DiagSocket {
    dir: Dir,
    name: String,
    /// The process it belongs to, as this process sees it.
    pub pid: u32,
    /// The process's user: the socket's owner, and the only user (besides root) it may answer as.
    pub uid: u32,
}

impl DiagSocket {
    /// `name` in `dir`, expected to be served by process `pid` of user `uid`.
    pub fn new(dir: Dir, name: String, pid: u32, uid: u32) -> DiagSocket {
        DiagSocket { dir, name, pid, uid }
    }

    /// Where it is, for messages.
    pub fn shown(&self) -> PathBuf {
        self.dir.shown().join(&self.name)
    }

    /// Connects, after checking that the file is a socket of the process's user (not a symlink
    /// somebody put in its place) and, once connected, that the process listening is the
    /// target itself (`SO_PEERCRED`): nothing is sent to anyone else.
    fn connect(&self) -> Result<UnixStream, IpcError> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let meta = self.dir.entry_metadata(&self.name)?;
        if !meta.file_type().is_socket() {
            return Err(IpcError::Refused(format!("{} is not a socket", self.shown().display())));
        }
        if meta.uid() != self.uid && meta.uid() != 0 {
            return Err(IpcError::Refused(format!(
                "{} belongs to uid {}, not to the process's user (uid {})",
                self.shown().display(),
                meta.uid(),
                self.uid
            )));
        }
        let stream = UnixStream::connect(self.dir.entry(&self.name))?;
        let peer = crate::owner_only::peer(&stream)?;
        let right_process = peer.pid == 0 || peer.pid == self.pid;
        if !right_process || (peer.uid != self.uid && peer.uid != 0) {
            return Err(IpcError::Refused(format!(
                "{} is served by pid {} (uid {}), not by process {} (uid {})",
                self.shown().display(),
                peer.pid,
                peer.uid,
                self.pid,
                self.uid
            )));
        }
        Ok(stream)
    }
}

/// Sends one command and reads the answer's payload.
fn exchange(socket: &DiagSocket, message: &[u8]) -> Result<Vec<u8>, IpcError> {
    let mut stream = socket.connect()?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(message)?;
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header)?;
    if &header[..14] != MAGIC {
        return Err(IpcError::Protocol("bad magic".into()));
    }
    let size = u16::from_le_bytes([header[14], header[15]]) as usize;
    let mut payload = vec![0u8; size.saturating_sub(HEADER_LEN)];
    stream.read_exact(&mut payload)?;
    match (header[16], header[17]) {
        (SERVER_SET, SERVER_OK) => Ok(payload),
        (SERVER_SET, SERVER_ERROR) => {
            let hr = payload.get(..4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes"))).unwrap_or(0);
            Err(IpcError::Runtime(hr))
        }
        (set, id) => Err(IpcError::Protocol(format!("command set {set:#x} id {id:#x}"))),
    }
}

/// Asks a runtime to describe itself (ProcessInfo2, falling back to ProcessInfo on old runtimes).
pub fn process_info(socket: &DiagSocket) -> Result<ProcessInfo, IpcError> {
    match exchange(socket, &encode(PROCESS_SET, PROCESS_INFO2, &[])) {
        Ok(payload) => decode_process_info(&payload, true),
        Err(IpcError::Runtime(_)) => {
            decode_process_info(&exchange(socket, &encode(PROCESS_SET, PROCESS_INFO, &[]))?, false)
        }
        Err(e) => Err(e),
    }
}

/// Asks a runtime to load a profiler. Ok means the runtime accepted and the profiler's
/// `InitializeForAttach` returned success.
pub fn attach_profiler(
    socket: &DiagSocket,
    clsid: [u8; 16],
    path: &str,
    client_data: &[u8],
    timeout_ms: u32,
) -> Result<(), IpcError> {
    let payload = exchange(
        socket,
        &encode(PROFILER_SET, ATTACH_PROFILER, &attach_payload(timeout_ms, clsid, path, client_data)),
    )?;
    let hr = payload.get(..4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes"))).unwrap_or(0);
    if hr as i32 >= 0 { Ok(()) } else { Err(IpcError::Runtime(hr)) }
}

/// Where a process's diagnostics socket is. The process may live in another mount namespace (a
/// container) with its own `TMPDIR` and its own pid numbering: the socket is looked for in its
/// `TMPDIR` (from its environment) or `/tmp`, both resolved inside its root (`/proc/PID/root`;
/// our own root when that cannot be opened), named after the pid the target knows itself by
/// (the last `NSpid` entry).
pub fn find_socket(pid: u32) -> Option<DiagSocket> {
    let root = Dir::root_of(pid).or_else(|_| Dir::open(Path::new("/"))).ok()?;
    let uid = process_uid(pid)?;
    let inner_pid = namespace_pid(pid).unwrap_or(pid);
    let mut dirs = Vec::new();
    if let Some(tmp) = target_env(pid, "TMPDIR").filter(|t| !t.is_empty()) {
        dirs.push(tmp);
    }
    dirs.push("/tmp".to_string());
    let prefix = format!("dotnet-diagnostic-{inner_pid}-");
    let started = start_time(pid);
    for dir in dirs {
        let Ok(found_in) = root.resolve_dir(&dir) else { continue };
        let Ok(names) = found_in.names() else { continue };
        let candidates: Vec<String> =
            names.into_iter().filter(|n| n.starts_with(&prefix) && n.ends_with("-socket")).collect();
        let newest =
            || candidates.iter().max_by_key(|n| found_in.entry_metadata(n).and_then(|m| m.modified()).ok()).cloned();
        if let Some(name) = socket_of_this_process(&candidates, &prefix, started).or_else(newest) {
            return Some(DiagSocket::new(found_in, name, pid, uid));
        }
    }
    None
}

/// Among `dotnet-diagnostic-<pid>-<key>-socket` names, the one whose key is the process's start
/// time (jiffies since boot, as the runtime names it). A process killed without cleaning up
/// leaves its socket behind, and once pids wrap (pid_max is often 32768) a new process with the
/// same pid finds it there: connecting to it would be refused.
fn socket_of_this_process(candidates: &[String], prefix: &str, started: Option<u64>) -> Option<String> {
    let started = started?;
    candidates
        .iter()
        .find(|n| {
            n.strip_prefix(prefix).and_then(|r| r.strip_suffix("-socket")).and_then(|k| k.parse::<u64>().ok())
                == Some(started)
        })
        .cloned()
}

/// A process's start time in clock ticks since boot (field 22 of /proc/PID/stat).
fn start_time(pid: u32) -> Option<u64> {
    start_time_in(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn start_time_in(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count from after its last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// A process's effective uid, as this process's user namespace sees it.
pub fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The pid a process has in its own pid namespace.
fn namespace_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// A variable of a process's environment (as it was at its start).
pub fn target_env(pid: u32, name: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
        .map(str::to_string)
}

/// Every process this user can see that has loaded the .NET runtime.
pub fn dotnet_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| maps_contain(pid, "libcoreclr.so"))
        .collect();
    pids.sort_unstable();
    pids
}

/// Whether a process has mapped a library whose path contains `needle`.
pub fn maps_contain(pid: u32, needle: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|maps| maps.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn the_socket_named_by_the_process_start_time_wins_over_stale_ones() {
        let prefix = "dotnet-diagnostic-42-";
        let names: Vec<String> =
            ["dotnet-diagnostic-42-100-socket", "dotnet-diagnostic-42-7777-socket", "dotnet-diagnostic-42-x-socket"]
                .map(String::from)
                .to_vec();
        assert_eq!(
            socket_of_this_process(&names, prefix, Some(7777)).as_deref(),
            Some("dotnet-diagnostic-42-7777-socket")
        );
        assert_eq!(socket_of_this_process(&names, prefix, Some(5)), None);
        assert_eq!(socket_of_this_process(&names, prefix, None), None);
    }

    #[test]
    fn start_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194304 10 0 0 0 5 3 0 0 20 0 9 0 188377 1000 10";
        assert_eq!(start_time_in(stat), Some(188377));
        assert_eq!(start_time_in("42 (cut short) S 1"), None);
        let mine = start_time(std::process::id()).expect("own start time");
        assert!(mine > 0);
    }

    #[test]
    fn guids_are_laid_out_like_com() {
        let g = guid_bytes("{E3F826A5-7C38-4392-A672-1BB85AF76D18}").unwrap();
        assert_eq!(g, [0xA5, 0x26, 0xF8, 0xE3, 0x38, 0x7C, 0x92, 0x43, 0xA6, 0x72, 0x1B, 0xB8, 0x5A, 0xF7, 0x6D, 0x18]);
        assert_eq!(guid_bytes("not a guid"), None);
    }

    #[test]
    fn attach_message_has_the_documented_layout() {
        let m = encode(PROFILER_SET, ATTACH_PROFILER, &attach_payload(5000, [7; 16], "/a.so", b"K=V"));
        assert_eq!(&m[..14], MAGIC);
        assert_eq!(u16::from_le_bytes([m[14], m[15]]) as usize, m.len());
        assert_eq!((m[16], m[17]), (3, 1));
        assert_eq!(u32::from_le_bytes(m[20..24].try_into().unwrap()), 5000);
        assert_eq!(&m[24..40], &[7; 16]);
        assert_eq!(u32::from_le_bytes(m[40..44].try_into().unwrap()), 6); // "/a.so" + NUL
        let data_len_at = 44 + 12;
        assert_eq!(u32::from_le_bytes(m[data_len_at..data_len_at + 4].try_into().unwrap()), 3);
        assert_eq!(&m[data_len_at + 4..], b"K=V");
    }

    /// A diagnostics socket served by this test process (the runtime, as far as checks go).
    fn ours(dir: &tempfile::TempDir) -> DiagSocket {
        DiagSocket::new(
            Dir::open(dir.path()).unwrap(),
            "ipc.sock".into(),
            std::process::id(),
            crate::owner_only::euid(),
        )
    }

    fn serve_once(answer: Vec<u8>) -> (tempfile::TempDir, DiagSocket, std::thread::JoinHandle<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipc.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut header = [0u8; HEADER_LEN];
            conn.read_exact(&mut header).unwrap();
            let size = u16::from_le_bytes([header[14], header[15]]) as usize;
            let mut rest = vec![0u8; size - HEADER_LEN];
            conn.read_exact(&mut rest).unwrap();
            conn.write_all(&answer).unwrap();
            [header.to_vec(), rest].concat()
        });
        let socket = ours(&dir);
        (dir, socket, handle)
    }

    #[test]
    fn process_info2_round_trips() {
        let mut payload = 4242u64.to_le_bytes().to_vec();
        payload.extend([0u8; 16]);
        for s in ["dotnet Worker.dll", "Linux", "x64", "Worker", "10.0.12+abc"] {
            push_string(&mut payload, s);
        }
        let (_dir, path, server) = serve_once(encode(SERVER_SET, SERVER_OK, &payload));
        let info = process_info(&path).unwrap();
        assert_eq!(info.pid, 4242);
        assert_eq!(info.command_line, "dotnet Worker.dll");
        assert_eq!(info.runtime_version, "10.0.12+abc");
        let sent = server.join().unwrap();
        assert_eq!((sent[16], sent[17]), (PROCESS_SET, PROCESS_INFO2));
    }

    #[test]
    fn runtime_errors_are_reported_with_their_meaning() {
        let (_dir, path, _server) = serve_once(encode(SERVER_SET, SERVER_ERROR, &0x8013_136Au32.to_le_bytes()));
        let err = attach_profiler(&path, [0; 16], "/x.so", b"", 1000).unwrap_err();
        assert!(err.to_string().contains("already loaded"), "{err}");
    }

    #[test]
    fn a_socket_of_another_process_or_a_symlink_gets_nothing() {
        let (dir, socket, _server) = serve_once(encode(SERVER_SET, SERVER_OK, &[]));
        let elsewhere = DiagSocket::new(Dir::open(dir.path()).unwrap(), "ipc.sock".into(), 1, socket.uid);
        let err = process_info(&elsewhere).unwrap_err();
        assert!(matches!(err, IpcError::Refused(_)) && err.to_string().contains("not by process 1"), "{err}");
        std::os::unix::fs::symlink(dir.path().join("ipc.sock"), dir.path().join("link.sock")).unwrap();
        let linked = DiagSocket::new(Dir::open(dir.path()).unwrap(), "link.sock".into(), socket.pid, socket.uid);
        assert!(process_info(&linked).unwrap_err().to_string().contains("not a socket"));
    }

    #[test]
    fn truncated_answers_are_protocol_errors_not_panics() {
        assert!(decode_process_info(&[1, 2, 3], true).is_err());
        let mut payload = 1u64.to_le_bytes().to_vec();
        payload.extend([0u8; 16]);
        payload.extend(1000u32.to_le_bytes());
        assert!(decode_process_info(&payload, false).is_err());
    }
}
