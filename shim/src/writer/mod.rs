//! The writer thread: aggregates, symbolizes late, and streams the wire
//! protocol (docs/PROTOCOL.md) to `LEAKSCOPE_SOCKET` or `LEAKSCOPE_OUTPUT`.
//!
//! It is a raw pthread created with every signal blocked, marked busy for its
//! whole life (anything it allocates through libc is neither counted nor
//! sampled; its Rust allocations go to glibc directly through the global
//! allocator). All its state sits behind one mutex, which the exit path takes
//! with a bounded wait to write the final record itself.
//!
//! This file owns the writer's state and its tick: aggregation, late symbolisation, and the
//! `native` and `stack` records. `sink` is where lines go, `records` the hello/status/bye lines,
//! `thread` the thread itself and the entry points the rest of the shim calls.

use core::fmt::Write as _;
use core::sync::atomic::Ordering;
use std::collections::{HashMap, HashSet};

mod records;
mod sink;
mod thread;

pub(crate) use sink::{Output, Sink};
pub(crate) use thread::{announce_off, final_flush, start};

use records::{bye_line, cmdline, hello_line, line_start, status_line};

use crate::config::Config;
use crate::json::{self, Obj};
use crate::live::Entry;

use crate::counters;
use crate::mmaps::Range;
use crate::sampler::sample_probability;
use crate::state;
use crate::symbols::{self, Symbolizer};
use crate::sys;
use crate::tables::Tables;

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

/// The writer's state; `O` is where its lines go (the OS's file or socket but in tests).
pub(crate) struct Writer<O: Output = Sink> {
    cfg: Config,
    pid: i32,
    sink: O,
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

impl<O: Output> Writer<O> {
    fn new(cfg: Config, warnings: Vec<String>, sink: O, tables: &'static Tables, table_bytes: usize) -> Writer<O> {
        let pid = state::pid();
        let sym = Symbolizer::new(&cfg.perf_map_dir, pid);
        Writer {
            pending: warnings.into_iter().map(|w| ("warn".to_string(), w)).collect(),
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
            if !self.outage_logged || self.sink.session().last_error.as_deref() != Some(e.as_str()) {
                warn!("{e}; will retry (the host is not affected)");
                self.outage_logged = true;
            }
            self.sink.session().last_error = Some(e);
            return false;
        }
        if self.sink.session().fresh {
            self.sent.clear();
            let hello = hello_line(&self.cfg, self.pid, &self.cmdline, self.table_bytes, true, "active");
            if !self.sink.send(hello.as_bytes(), deadline) {
                return false;
            }
            self.sink.session().fresh = false;
            if self.sink.session().connects > 1 {
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
            self.sink.session().last_error = None;
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
            None => StackOut { frames: vec!["<stack table full>".to_string()], site: "<stack table full>".to_string() },
            Some(ips) => {
                let mut frames = Vec::with_capacity(ips.len());
                for ip in ips {
                    match self.sym.frame(ip as u64) {
                        Some(f) => frames.push(f),
                        None => break,
                    }
                }
                let site = symbols::choose_site(&frames);
                StackOut { frames: frames.into_iter().map(|f| f.text).collect(), site }
            }
        };
        self.stacks.insert(id, out);
    }

    fn stack_line(&self, id: u32) -> Option<String> {
        let st = self.stacks.get(&id)?;
        let mut s = String::with_capacity(64 + st.frames.iter().map(|f| f.len() + 3).sum::<usize>());
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
        // The live totals estimated from the samples (reported unless every call is counted).
        let (mut est_allocs, mut est_bytes) = (0.0f64, 0.0f64);
        // Its variance: each sampled block of size x stands for x/p bytes; the unbiased
        // variance estimate of that sum is the sum of x²(1-p)/p² over the samples.
        let mut est_bytes_var = 0.0f64;
        for e in &self.live_buf {
            let p = sample_probability(e.size as u64, mean);
            let a = by_stack.entry(e.stack).or_default();
            a.samples += 1;
            a.allocs += 1.0 / p;
            a.bytes += e.size as f64 / p;
            est_allocs += 1.0 / p;
            est_bytes += e.size as f64 / p;
            est_bytes_var += (e.size as f64 / p).powi(2) * (1.0 - p);
        }
        self.mmap_buf.clear();
        let mut mmap_bytes = 0;
        if let Some(m) = &self.tables.mmaps {
            mmap_bytes = m.bytes();
            let l = if final_tick { m.try_lock_patiently() } else { m.lock() };
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
            + self.tables.mmaps.as_ref().map_or(0, |m| m.dropped.load(Ordering::Relaxed));
        let exact = counters::exact();
        if dropped > 0 && self.last_dropped == 0 {
            let msg = if exact {
                format!(
                    "live-sample table full ({} samples): new samples are counted in the totals but not tracked per site; raise LEAKSCOPE_NATIVE_MAX_TRACKED or LEAKSCOPE_NATIVE_SAMPLE_BYTES",
                    live.capacity()
                )
            } else {
                format!(
                    "live-sample table full ({} samples): new samples are not tracked, so the live totals (estimated from the samples) and the sites are low from now on; raise LEAKSCOPE_NATIVE_MAX_TRACKED or LEAKSCOPE_NATIVE_SAMPLE_BYTES, or count every call with LEAKSCOPE_NATIVE_TOTALS=exact",
                    live.capacity()
                )
            };
            warn!("{msg}");
            self.status("warn", msg);
        }
        self.last_dropped = dropped;
        let (mut live_bytes, mut live_allocs) = if exact {
            (totals.live_bytes(), totals.live_allocs())
        } else {
            (est_bytes.round() as i64, est_allocs.round() as i64)
        };
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
            ",\"seq\":{},\"t_ms\":{},\"unix_ms\":{},\"totals\":\"{}\",\"live_bytes\":{},\"live_allocs\":{}",
            self.seq,
            now.saturating_sub(state::start_ms()),
            sys::unix_ms(),
            if exact { "exact" } else { "sampled" },
            live_bytes,
            live_allocs,
        );
        if !exact {
            let _ = write!(s, ",\"live_bytes_se\":{}", est_bytes_var.sqrt().round() as u64);
        } else {
            let _ = write!(
                s,
                ",\"total_allocs\":{},\"total_frees\":{},\"alloc_bytes_total\":{}",
                totals.allocs, totals.frees, totals.alloc_bytes
            );
        }
        let _ = write!(
            s,
            ",\"mmap_bytes\":{},\"mmap_regions\":{},\"sampling_mean_bytes\":{},\"dropped\":{},\"live_samples\":{},\"threads\":{}",
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
            let site = self.stacks.get(id).map_or("<unknown>", |st| st.site.as_str());
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

#[cfg(test)]
mod tests;
