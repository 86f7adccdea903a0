//! The writer thread: aggregates, symbolizes late, and streams the wire
//! protocol (docs/PROTOCOL.md) to `LEAKSCOPE_SOCKET` or `LEAKSCOPE_OUTPUT`.
//!
//! It is a raw pthread created with every signal blocked, marked busy for its
//! whole life (anything it allocates through libc is neither counted nor
//! sampled; its Rust allocations go to glibc directly through the global
//! allocator). All its state sits behind one mutex, which the exit path takes
//! with a bounded wait to write the final record itself.

use core::ffi::c_void;
use core::fmt::Write as _;
use core::sync::atomic::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::config::Config;
use crate::json::{self, Obj};
use crate::live::Entry;

use crate::mmaps::Range;
use crate::sampler::sample_probability;
use crate::state::{self, Tables};
use crate::symbols::{self, Symbolizer};
use crate::sys::{self, OwnedFd};
use crate::{counters, tls};

/// How long a tick may spend sending before the connection is dropped.
const SEND_DEADLINE_MS: u64 = 2000;
/// The same, for the final flush on the exiting thread.
const EXIT_DEADLINE_MS: u64 = 300;
/// How long the exiting thread waits for the writer to finish a tick.
const EXIT_LOCK_WAIT_MS: u64 = 1000;

static WRITER: Mutex<Option<Writer>> = Mutex::new(None);

// ---------------------------------------------------------------- output --

enum Target {
    File(String),
    Socket(String),
}

/// Where lines go: an O_APPEND file (one write(2) per line) or a Unix stream
/// socket we connect to, reconnecting when it goes away.
pub(crate) struct Sink {
    target: Target,
    fd: Option<OwnedFd>,
    /// A new file segment or connection: the next line must be a hello.
    fresh: bool,
    connects: u32,
    last_error: Option<String>,
    /// After a listener of another user was refused: no new attempt before this (monotonic ms).
    refused_until_ms: u64,
    refusal_backoff_ms: u64,
}

/// Backoff after a refused listener: doubling from 1 s up to a minute.
const FIRST_REFUSAL_BACKOFF_MS: u64 = 1000;
const MAX_REFUSAL_BACKOFF_MS: u64 = 60_000;

fn os_err() -> String {
    std::io::Error::from_raw_os_error(sys::errno()).to_string()
}

fn open_append(path: &str) -> Result<OwnedFd, String> {
    sys::open_private_append("LEAKSCOPE_OUTPUT", path)
}

/// Why a connection could not be made.
enum ConnectError {
    /// The path could not be reached (nobody listening yet, …): try again next tick.
    Failed(String),
    /// Someone is listening, but not this process's user or root: never send them anything;
    /// try again with backoff (the rightful collector may take the path back).
    Refused(String),
}

/// The listener's uid is this process's or root's (`SO_PEERCRED`), so it may hear what we send.
fn check_listener(fd: i32, path: &str) -> Result<(), String> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = core::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is that large.
    let rc = unsafe {
        libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, (&raw mut cred).cast(), &mut len)
    };
    if rc != 0 {
        return Err(format!("refusing LEAKSCOPE_SOCKET={path}: cannot tell who serves it ({})", os_err()));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if cred.uid == me || cred.uid == 0 {
        return Ok(());
    }
    Err(format!(
        "refusing LEAKSCOPE_SOCKET={path}: it is served by uid {}, not by this process's user (uid {me}) or root, so nothing is sent to it",
        cred.uid
    ))
}

fn connect_unix(path: &str) -> Result<OwnedFd, ConnectError> {
    connect_unix_any(path).map_err(ConnectError::Failed).and_then(|fd| {
        let raw = fd.get().ok_or_else(|| ConnectError::Failed("descriptor vanished".to_string()))?;
        match check_listener(raw, path) {
            Ok(()) => Ok(fd),
            Err(why) => {
                fd.close();
                Err(ConnectError::Refused(why))
            }
        }
    })
}

fn connect_unix_any(path: &str) -> Result<OwnedFd, String> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(format!("socket: {}", os_err()));
    }
    // SAFETY: all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { core::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        // SAFETY: `fd` was just created.
        unsafe { libc::close(fd) };
        return Err(format!(
            "LEAKSCOPE_SOCKET path is longer than {} bytes",
            addr.sun_path.len() - 1
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: `addr` is a valid sockaddr_un of the given size.
    let r = unsafe {
        libc::connect(
            fd,
            (&raw const addr).cast(),
            core::mem::size_of::<libc::sockaddr_un>() as u32,
        )
    };
    if r != 0 {
        let e = os_err();
        // SAFETY: `fd` was just created.
        unsafe { libc::close(fd) };
        return Err(format!("cannot connect to LEAKSCOPE_SOCKET={path}: {e}"));
    }
    OwnedFd::adopt(fd, sys::Expect::Socket)
        .ok_or_else(|| "the socket descriptor was taken over by the host while connecting".to_string())
}

/// Sends all of `buf` on a non-blocking socket, waiting at most until
/// `deadline` (monotonic ms). Never raises SIGPIPE.
fn send_all(fd: i32, mut buf: &[u8], deadline: u64) -> bool {
    while !buf.is_empty() {
        // SAFETY: valid slice; MSG_NOSIGNAL: a vanished peer is EPIPE, not SIGPIPE.
        let r = unsafe {
            libc::send(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if r > 0 {
            buf = buf.get(r as usize..).unwrap_or(&[]);
            continue;
        }
        let e = sys::errno();
        if r < 0 && e == libc::EINTR {
            continue;
        }
        if r < 0 && (e == libc::EAGAIN || e == libc::EWOULDBLOCK) {
            let now = sys::monotonic_ms();
            if now >= deadline {
                return false;
            }
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, (deadline - now).min(1000) as i32) };
            continue;
        }
        return false;
    }
    true
}

impl Sink {
    /// Opens a file output right away (so an unwritable path is reported at
    /// start); a socket is connected by the writer thread.
    pub(crate) fn open(cfg: &Config) -> Result<Sink, String> {
        if let Some(path) = &cfg.socket {
            return Ok(Sink {
                target: Target::Socket(path.clone()),
                fd: None,
                fresh: true,
                connects: 0,
                last_error: None,
                refused_until_ms: 0,
                refusal_backoff_ms: FIRST_REFUSAL_BACKOFF_MS,
            });
        }
        let Some(path) = &cfg.output else {
            return Err("no output configured".to_string());
        };
        let fd = open_append(path)?;
        Ok(Sink {
            target: Target::File(path.clone()),
            fd: Some(fd),
            fresh: true,
            connects: 1,
            last_error: None,
            refused_until_ms: 0,
            refusal_backoff_ms: FIRST_REFUSAL_BACKOFF_MS,
        })
    }

    fn is_socket(&self) -> bool {
        matches!(self.target, Target::Socket(_))
    }

    /// Makes sure there is a descriptor; `Err` says why there is none.
    fn ensure(&mut self) -> Result<i32, String> {
        if let Some(fd) = self.fd.as_ref().and_then(OwnedFd::get) {
            return Ok(fd);
        }
        if self.fd.take().is_some() {
            // Our descriptor was closed or replaced by the host: never touch
            // the number again, open our own anew (a new segment).
            warn!("output descriptor was closed or replaced by the host; reopening");
        }
        let fd = match &self.target {
            Target::File(p) => open_append(p),
            Target::Socket(p) => {
                let now = sys::monotonic_ms();
                if now < self.refused_until_ms {
                    return Err(self.last_error.clone().unwrap_or_default());
                }
                match connect_unix(p) {
                    Ok(fd) => {
                        self.refusal_backoff_ms = FIRST_REFUSAL_BACKOFF_MS;
                        Ok(fd)
                    }
                    Err(ConnectError::Failed(e)) => Err(e),
                    Err(ConnectError::Refused(e)) => {
                        self.refused_until_ms = now + self.refusal_backoff_ms;
                        self.refusal_backoff_ms = (self.refusal_backoff_ms * 2).min(MAX_REFUSAL_BACKOFF_MS);
                        Err(e)
                    }
                }
            }
        }?;
        let raw = fd.get().ok_or("descriptor vanished")?;
        self.fd = Some(fd);
        self.fresh = true;
        self.connects += 1;
        Ok(raw)
    }

    fn drop_connection(&mut self, why: &str) {
        if let Some(fd) = self.fd.take() {
            warn!("output lost ({why}); will reconnect");
            fd.close();
        }
    }

    /// Writes one line (which must end with '\n').
    fn send(&mut self, line: &[u8], deadline: u64) -> bool {
        let Some(fd) = self.fd.as_ref().and_then(OwnedFd::get) else {
            return false;
        };
        let ok = if self.is_socket() {
            send_all(fd, line, deadline)
        } else {
            sys::write_all(fd, line)
        };
        if !ok {
            let e = os_err();
            self.drop_connection(&e);
        }
        ok
    }
}

// ---------------------------------------------------------------- writer --

struct StackOut {
    frames: Vec<String>,
    site: String,
}

#[derive(Default, Clone, Copy)]
struct Agg {
    samples: u64,
    allocs: f64,
    bytes: f64,
    mmap_bytes: u64,
}

pub(crate) struct Writer {
    cfg: Config,
    pid: i32,
    sink: Sink,
    sym: Symbolizer,
    seq: u64,
    tables: &'static Tables,
    table_bytes: usize,
    cmdline: String,
    /// Symbolized stacks by id.
    stacks: HashMap<u32, StackOut>,
    /// Ids already sent on the current connection / file segment.
    sent: HashSet<u32>,
    /// Status lines waiting for an output.
    pending: Vec<(String, String)>,
    last_dropped: u64,
    warned_negative: bool,
    warned_jit: bool,
    outage_logged: bool,
    live_buf: Vec<Entry>,
    mmap_buf: Vec<Range>,
    /// `bye` was written: nothing may follow it.
    done: bool,
}

fn cmdline() -> String {
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

fn line_start(out: &mut String, kind: &str, pid: i32) {
    out.clear();
    let _ = write!(
        out,
        "{{\"v\":1,\"type\":\"{kind}\",\"source\":\"shim\",\"pid\":{pid}"
    );
}

fn hello_line(
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
            .str("preload", &state::own_path());
        o.with("config", |out| {
            let mut c = Obj::new(out);
            c.u64("max_tracked", cfg.max_tracked as u64)
                .u64("max_depth", cfg.max_depth as u64)
                .u64("max_sites", cfg.max_sites as u64)
                .bool("track_mmap", cfg.track_mmap)
                .str(
                    "usable_size",
                    if crate::real::header_shortcut() {
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

fn status_line(pid: i32, level: &str, message: &str) -> String {
    let mut s = String::with_capacity(128 + message.len());
    line_start(&mut s, "status", pid);
    s.push_str(",\"level\":");
    json::push_str(&mut s, level);
    s.push_str(",\"message\":");
    json::push_str(&mut s, message);
    let _ = writeln!(
        s,
        ",\"t_ms\":{}}}",
        sys::monotonic_ms().saturating_sub(state::start_ms())
    );
    s
}

fn bye_line(pid: i32, reason: &str) -> String {
    let mut s = String::with_capacity(128);
    line_start(&mut s, "bye", pid);
    let _ = write!(
        s,
        ",\"t_ms\":{},\"reason\":",
        sys::monotonic_ms().saturating_sub(state::start_ms())
    );
    json::push_str(&mut s, reason);
    s.push_str("}\n");
    s
}

impl Writer {
    fn new(
        cfg: Config,
        warnings: Vec<String>,
        sink: Sink,
        tables: &'static Tables,
        table_bytes: usize,
    ) -> Writer {
        let pid = state::pid();
        let sym = Symbolizer::new(&cfg.perf_map_dir, pid);
        Writer {
            pending: warnings
                .into_iter()
                .map(|w| ("warn".to_string(), w))
                .collect(),
            cfg,
            pid,
            sink,
            sym,
            seq: 0,
            tables,
            table_bytes,
            cmdline: cmdline(),
            stacks: HashMap::new(),
            sent: HashSet::new(),
            last_dropped: 0,
            warned_negative: false,
            warned_jit: false,
            outage_logged: false,
            live_buf: Vec::new(),
            mmap_buf: Vec::new(),
            done: false,
        }
    }

    fn status(&mut self, level: &str, msg: String) {
        self.pending.push((level.to_string(), msg));
    }

    /// Connects if needed and starts a fresh connection/segment with hello.
    fn ready(&mut self, deadline: u64) -> bool {
        if let Err(e) = self.sink.ensure() {
            if !self.outage_logged || self.sink.last_error.as_deref() != Some(e.as_str()) {
                warn!("{e}; will retry (the host is not affected)");
                self.outage_logged = true;
            }
            self.sink.last_error = Some(e);
            return false;
        }
        if self.sink.fresh {
            self.sent.clear();
            let hello = hello_line(
                &self.cfg,
                self.pid,
                &self.cmdline,
                self.table_bytes,
                true,
                "active",
            );
            if !self.sink.send(hello.as_bytes(), deadline) {
                return false;
            }
            self.sink.fresh = false;
            if self.sink.connects > 1 {
                let msg = "reconnected; resending stacks".to_string();
                info!("{msg}");
                let l = status_line(self.pid, "info", &msg);
                if !self.sink.send(l.as_bytes(), deadline) {
                    return false;
                }
            } else {
                info!("output ready");
            }
            self.outage_logged = false;
            self.sink.last_error = None;
        }
        let pending = std::mem::take(&mut self.pending);
        for (i, (level, msg)) in pending.iter().enumerate() {
            let l = status_line(self.pid, level, msg);
            if !self.sink.send(l.as_bytes(), deadline) {
                self.pending = pending.get(i..).map(<[_]>::to_vec).unwrap_or_default();
                return false;
            }
        }
        true
    }

    fn symbolize(&mut self, id: u32) {
        if self.stacks.contains_key(&id) {
            return;
        }
        let out = match self.tables.stacks.get(id) {
            None => StackOut {
                frames: vec!["<stack table full>".to_string()],
                site: "<stack table full>".to_string(),
            },
            Some(ips) => {
                let mut frames = Vec::with_capacity(ips.len());
                for ip in ips {
                    match self.sym.frame(ip as u64) {
                        Some(f) => frames.push(f),
                        None => break,
                    }
                }
                let site = symbols::choose_site(&frames);
                StackOut {
                    frames: frames.into_iter().map(|f| f.text).collect(),
                    site,
                }
            }
        };
        self.stacks.insert(id, out);
    }

    fn stack_line(&self, id: u32) -> Option<String> {
        let st = self.stacks.get(&id)?;
        let mut s =
            String::with_capacity(64 + st.frames.iter().map(|f| f.len() + 3).sum::<usize>());
        line_start(&mut s, "stack", self.pid);
        let _ = write!(s, ",\"id\":{id},\"frames\":[");
        for (i, f) in st.frames.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            json::push_str(&mut s, f);
        }
        s.push_str("]}\n");
        Some(s)
    }

    /// One interval: counters, samples, stacks, and the `native` record.
    /// `final_tick`: on the exit path, never wait for a busy table lock.
    fn tick(&mut self, deadline_ms: u64, final_tick: bool) {
        if self.done {
            return;
        }
        let deadline = sys::monotonic_ms() + deadline_ms;
        state::TICK.fetch_add(1, Ordering::Relaxed);
        let threads = counters::recycle_dead(self.pid);
        if !self.ready(deadline) {
            return;
        }
        let totals = counters::totals();

        // Aggregate live samples (and mappings) by stack.
        self.live_buf.clear();
        self.tables.live.snapshot(&mut self.live_buf, final_tick);
        let mean = self.tables.mean_bytes;
        let mut by_stack: HashMap<u32, Agg> = HashMap::new();
        for e in &self.live_buf {
            let p = sample_probability(e.size as u64, mean);
            let a = by_stack.entry(e.stack).or_default();
            a.samples += 1;
            a.allocs += 1.0 / p;
            a.bytes += e.size as f64 / p;
        }
        self.mmap_buf.clear();
        let mut mmap_bytes = 0;
        if let Some(m) = &self.tables.mmaps {
            mmap_bytes = m.bytes();
            let l = if final_tick {
                m.try_lock_patiently()
            } else {
                m.lock()
            };
            if let Some(mut l) = l {
                l.snapshot(&mut self.mmap_buf);
            }
        }
        for r in &self.mmap_buf {
            let a = by_stack.entry(r.stack).or_default();
            let len = (r.end - r.start) as u64;
            a.samples += 1;
            a.allocs += 1.0;
            a.bytes += len as f64;
            a.mmap_bytes += len;
        }
        let mut sites: Vec<(u32, Agg)> = by_stack.into_iter().collect();
        sites.sort_by(|a, b| b.1.bytes.total_cmp(&a.1.bytes).then(a.0.cmp(&b.0)));
        sites.truncate(self.cfg.max_sites);

        // Symbolize what is new (maps and perf map refreshed once per tick).
        if sites.iter().any(|(id, _)| !self.stacks.contains_key(id)) {
            self.sym.refresh();
            for (id, _) in &sites {
                self.symbolize(*id);
            }
            if self.sym.unnamed_jit > 0 && !self.sym.perf_map_seen() && !self.warned_jit {
                self.warned_jit = true;
                let msg = format!(
                    "native stacks go through JIT-compiled code but there is no perf map at {}: managed callers cannot be named; start the process with DOTNET_PerfMapEnabled=3 (or 1)",
                    self.sym.perf_map_path()
                );
                warn!("{msg}");
                self.status("warn", msg);
            }
        }
        for (id, _) in &sites {
            if !self.sent.contains(id) {
                let Some(l) = self.stack_line(*id) else {
                    continue;
                };
                if !self.sink.send(l.as_bytes(), deadline) {
                    return;
                }
                self.sent.insert(*id);
            }
        }

        let live = &self.tables.live;
        let dropped = live.dropped_full.load(Ordering::Relaxed)
            + live.dropped_busy.load(Ordering::Relaxed)
            + self
                .tables
                .mmaps
                .as_ref()
                .map_or(0, |m| m.dropped.load(Ordering::Relaxed));
        if dropped > 0 && self.last_dropped == 0 {
            let msg = format!(
                "live-sample table full ({} samples): new samples are counted in the totals but not tracked per site; raise LEAKSCOPE_NATIVE_MAX_TRACKED or LEAKSCOPE_NATIVE_SAMPLE_BYTES",
                live.capacity()
            );
            warn!("{msg}");
            self.status("warn", msg);
        }
        self.last_dropped = dropped;
        let mut live_bytes = totals.live_bytes();
        let mut live_allocs = totals.live_allocs();
        if (live_bytes < 0 || live_allocs < 0) && !self.warned_negative {
            self.warned_negative = true;
            let msg = "more bytes freed than allocated were seen (memory allocated outside the shim, e.g. by an RTLD_DEEPBIND library, was freed through it); live totals are clamped at 0".to_string();
            warn!("{msg}");
            self.status("warn", msg);
        }
        live_bytes = live_bytes.max(0);
        live_allocs = live_allocs.max(0);

        self.seq += 1;
        let now = sys::monotonic_ms();
        let mut s = String::with_capacity(512 + sites.len() * 160);
        line_start(&mut s, "native", self.pid);
        let _ = write!(
            s,
            ",\"seq\":{},\"t_ms\":{},\"unix_ms\":{},\"live_bytes\":{},\"live_allocs\":{},\"total_allocs\":{},\"total_frees\":{},\"alloc_bytes_total\":{},\"mmap_bytes\":{},\"mmap_regions\":{},\"sampling_mean_bytes\":{},\"dropped\":{},\"live_samples\":{},\"threads\":{}",
            self.seq,
            now.saturating_sub(state::start_ms()),
            sys::unix_ms(),
            live_bytes,
            live_allocs,
            totals.allocs,
            totals.frees,
            totals.alloc_bytes,
            mmap_bytes,
            self.mmap_buf.len(),
            mean,
            dropped,
            self.live_buf.len(),
            threads
        );
        if let Some(rss) = sys::rss_bytes() {
            let _ = write!(s, ",\"rss\":{rss}");
        }
        s.push_str(",\"sites\":[");
        for (i, (id, a)) in sites.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let site = self
                .stacks
                .get(id)
                .map_or("<unknown>", |st| st.site.as_str());
            let mut o = Obj::new(&mut s);
            o.str("site", site)
                .u64("stack", *id as u64)
                .u64("samples", a.samples)
                .u64("allocs", a.allocs.round() as u64)
                .u64("bytes", a.bytes.round() as u64);
            if a.mmap_bytes > 0 {
                o.u64("mmap_bytes", a.mmap_bytes);
            }
            o.end();
        }
        s.push_str("]}\n");
        let _ = self.sink.send(s.as_bytes(), deadline);
    }

    fn bye(&mut self, reason: &str, deadline_ms: u64) {
        let deadline = sys::monotonic_ms() + deadline_ms;
        let l = bye_line(self.pid, reason);
        let _ = self.sink.send(l.as_bytes(), deadline);
        self.done = true;
    }
}

// ----------------------------------------------------------- thread & API --

extern "C" fn writer_main(_: *mut c_void) -> *mut c_void {
    tls::with(|t| t.set_busy_forever());
    // SAFETY: PR_SET_NAME with a NUL-terminated name of <= 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"leakscope-shim".as_ptr()) };
    debug!("writer thread running");
    if !tls::fast_path_consistent() {
        warn!("static TLS offset differs between threads; using the generic TLS access");
    }
    let mut interval;
    loop {
        let t0 = sys::monotonic_ms();
        let r = std::panic::catch_unwind(|| {
            let mut g = match WRITER.lock() {
                Ok(g) => g,
                Err(_) => return None,
            };
            let w = g.as_mut()?;
            if w.done {
                return None;
            }
            match state::state() {
                // The constructor flips to ENABLED right after starting us.
                state::INIT => return Some(5),
                state::ENABLED => w.tick(SEND_DEADLINE_MS, false),
                _ => return None, // off, forked, stopped: this thread is done
            }
            Some(w.cfg.interval_ms)
        });
        debug!("tick took {} ms", sys::monotonic_ms().saturating_sub(t0));
        match r {
            Ok(Some(ms)) => interval = ms,
            Ok(None) => return core::ptr::null_mut(),
            Err(_) => {
                let msg = "internal error in the shim's writer thread; native tracking off";
                state::go_off(msg);
                error!("{msg}");
                // Best effort: tell the collector, then say goodbye.
                let mut g = WRITER
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(w) = g.as_mut() {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let deadline = sys::monotonic_ms() + SEND_DEADLINE_MS;
                        let l = status_line(w.pid, "error", msg);
                        let _ = w.sink.send(l.as_bytes(), deadline);
                        w.bye("native tracking off", SEND_DEADLINE_MS);
                    }));
                }
                return core::ptr::null_mut();
            }
        }
        sys::sleep_ms(interval);
    }
}

/// Installs the writer state and starts its thread (signals blocked).
pub(crate) fn start(
    cfg: Config,
    warnings: Vec<String>,
    sink: Sink,
    table_bytes: usize,
) -> Result<(), String> {
    let tables = state::tables().ok_or("tables missing")?;
    let w = Writer::new(cfg, warnings, sink, tables, table_bytes);
    match WRITER.lock() {
        Ok(mut g) => *g = Some(w),
        Err(_) => return Err("writer lock poisoned".to_string()),
    }
    // SAFETY: sigset/pthread calls with valid out-pointers; the new thread
    // inherits the all-blocked mask, then ours is restored.
    unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut th: libc::pthread_t = 0;
        let r = libc::pthread_create(
            &mut th,
            core::ptr::null(),
            writer_main,
            core::ptr::null_mut(),
        );
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        if r != 0 {
            return Err(std::io::Error::from_raw_os_error(r).to_string());
        }
        libc::pthread_detach(th);
    }
    Ok(())
}

/// The exit path: waits (bounded) for the writer to finish its tick, then
/// writes a last `native` record and `bye` from the exiting thread.
pub(crate) fn final_flush(reason: &str) {
    let give_up = sys::monotonic_ms() + EXIT_LOCK_WAIT_MS;
    loop {
        match WRITER.try_lock() {
            Ok(mut g) => {
                if let Some(w) = g.as_mut() {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        w.tick(EXIT_DEADLINE_MS, true);
                        w.bye(reason, EXIT_DEADLINE_MS);
                    }));
                    if r.is_err() {
                        error!("internal error during the final flush");
                    }
                    info!("final report written ({reason})");
                }
                return;
            }
            Err(std::sync::TryLockError::Poisoned(_)) => return,
            Err(std::sync::TryLockError::WouldBlock) => {
                if sys::monotonic_ms() >= give_up {
                    warn!("writer busy at {reason}; final report skipped");
                    return;
                }
                sys::sleep_ms(1);
            }
        }
    }
}

/// Tracking is off but an output is configured: tell the collector once
/// (hello with `"native":"off"`, statuses, bye), so the report can say why.
pub(crate) fn announce_off(cfg: &Config, warnings: &[String], level: &str, reason: &str) {
    if cfg.socket.is_none() && cfg.output.is_none() {
        return;
    }
    let Ok(mut sink) = Sink::open(cfg) else {
        return;
    };
    let deadline = sys::monotonic_ms() + 200;
    if sink.ensure().is_err() {
        return;
    }
    let pid = state::pid();
    // The hello's reason is the bare cause; readers add "native tracking off" themselves.
    let cause = reason.strip_prefix("native tracking off: ").unwrap_or(reason);
    let mut lines = vec![hello_line(cfg, pid, &cmdline(), 0, false, cause)];
    lines.extend(warnings.iter().map(|w| status_line(pid, "warn", w)));
    lines.push(status_line(pid, level, reason));
    lines.push(bye_line(pid, "native tracking off"));
    for l in lines {
        if !sink.send(l.as_bytes(), deadline) {
            break;
        }
    }
    if let Some(fd) = sink.fd.take() {
        fd.close();
    }
}
