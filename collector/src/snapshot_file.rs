//! A snapshot file: the NDJSON that `leakscope snapshot` and the capture rules write (a heap
//! census, the sampled sites that survive, what keeps types alive, peeked values). Reading its
//! census points ([`load`]), and rendering one as text ([`render`]); `diff` compares two.

use crate::budget::{Budget, Charge};
use crate::error::{CliError, CliResult};
use crate::protocol::{self, Census, ManagedSite, Record, Source};
use crate::units::{format_bytes, format_count};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// One census of one process, with the survivor table that goes with it.
#[derive(Debug, Clone)]
pub struct Point {
    pub file: PathBuf,
    pub pid: u32,
    pub cmdline: Option<String>,
    pub census: Census,
    /// The sampled survivors of the same full GC (`retained`), else the latest summary's.
    pub sites: Vec<ManagedSite>,
    /// The latest `retention` record after this census and before the next one.
    pub retention: Option<crate::protocol::Retention>,
    /// The latest `peek` record after this census and before the next one.
    pub peek: Option<crate::protocol::Peek>,
}

impl Point {
    pub fn types(&self) -> HashMap<&str, (u64, u64)> {
        self.census.types.iter().map(|t| (t.type_name.as_str(), (num(t.count), num(t.bytes)))).collect()
    }

    /// Whether a type absent from the list really had no objects (nothing was folded into
    /// `other`, the rest of a long list).
    pub fn complete(&self) -> bool {
        self.census.other.as_ref().is_none_or(|o| num(o.types) == 0)
    }

    pub fn describe(&self) -> String {
        let mut s = format!("{} (pid {}", self.file.display(), self.pid);
        if let Some(gc) = self.census.gc {
            s.push_str(&format!(", after GC #{gc}"));
        }
        s.push(')');
        s
    }
}

pub(crate) fn num(n: Option<protocol::Num>) -> u64 {
    n.map(|n| n.u64()).unwrap_or(0)
}

/// The first and the last census in a recording (one point if it has one), for the process
/// with the most of them. Read line by line (lines over the protocol's limit are discarded),
/// keeping two points per process, so any size of file is read in bounded memory.
pub fn load(path: &Path) -> CliResult<Vec<Point>> {
    let file = if path.is_dir() { path.join("recording.ndjson") } else { path.to_path_buf() };
    let opened = crate::files::open_regular(&file).map_err(|e| e.to_cli("cannot read"))?;
    struct PerPid {
        cmdline: Option<String>,
        censuses: u64,
        /// The first census and, once there is a second, the latest.
        points: Vec<Point>,
        /// Whether each point's sites came from the `retained` record of its GC.
        from_retained: Vec<bool>,
        /// What each point holds, charged to the memory budget.
        charges: Vec<Charge>,
        latest_sites: Vec<ManagedSite>,
        latest_charge: Charge,
    }
    // What is kept is charged to a memory budget, as a session's store is: a crafted file
    // cannot make diff hold more, whatever it repeats.
    let budget = Budget::default();
    let mut not_kept = 0u64;
    let mut by_pid: BTreeMap<u32, PerPid> = BTreeMap::new();
    let mut oversize = 0u64;
    let mut on_line = |line: &[u8]| {
        let Ok(env) = protocol::parse_line(line) else { return };
        if env.key.source != Source::Agent {
            return;
        }
        let pid = env.key.pid;
        let Some(charge) = budget.charge(env.approx_bytes) else {
            not_kept += 1;
            return;
        };
        // Producers per file are bounded like a session's (store::MAX_PRODUCERS).
        if !by_pid.contains_key(&pid) && by_pid.len() >= crate::store::MAX_PRODUCERS {
            return;
        }
        let entry = by_pid.entry(pid).or_insert_with(|| PerPid {
            cmdline: None,
            censuses: 0,
            points: Vec::new(),
            from_retained: Vec::new(),
            charges: Vec::new(),
            latest_sites: Vec::new(),
            latest_charge: Charge::default(),
        });
        match env.record {
            Record::Hello(h) => entry.cmdline = h.cmdline.or(entry.cmdline.take()),
            Record::Summary(s) => {
                entry.latest_sites = s.sites;
                entry.latest_charge = charge;
            }
            Record::Retained(r) => {
                // The survivors of the same full GC as a census (sent after it).
                let matching = entry
                    .points
                    .iter()
                    .zip(&entry.from_retained)
                    .position(|(point, done)| !*done && r.gc.is_some() && r.gc == point.census.gc);
                if let Some(i) = matching {
                    entry.points[i].sites = r.sites;
                    entry.from_retained[i] = true;
                    entry.charges[i].absorb(charge);
                }
            }
            Record::Census(c) => {
                entry.censuses += 1;
                if entry.points.len() == 2 {
                    entry.points.pop();
                    entry.from_retained.pop();
                    entry.charges.pop();
                }
                let mut charge = charge;
                // The sites copied from the latest summary count once more.
                if let Some(copy) = budget.charge(entry.latest_charge.bytes()) {
                    charge.absorb(copy);
                } else {
                    not_kept += 1;
                    return;
                }
                entry.points.push(Point {
                    file: file.clone(),
                    pid,
                    cmdline: entry.cmdline.clone(),
                    census: *c,
                    // Replaced by the matching `retained`, if one follows.
                    sites: entry.latest_sites.clone(),
                    retention: None,
                    peek: None,
                });
                entry.from_retained.push(false);
                entry.charges.push(charge);
            }
            Record::Retention(r) => {
                if let (Some(last), Some(held)) = (entry.points.last_mut(), entry.charges.last_mut()) {
                    last.retention = Some(*r);
                    held.absorb(charge);
                }
            }
            Record::Peek(p) => {
                if let (Some(last), Some(held)) = (entry.points.last_mut(), entry.charges.last_mut()) {
                    last.peek = Some(*p);
                    held.absorb(charge);
                }
            }
            _ => {}
        }
    };
    crate::ingest::read_file_lines(opened, |ev| match ev {
        crate::ingest::Event::Line(_, line) => on_line(&line),
        crate::ingest::Event::Oversize(_) => oversize += 1,
        _ => {}
    })
    .map_err(|e| CliError::io(format!("cannot read {}", file.display()), e))?;
    if not_kept > 0 {
        crate::terminal::print_stderr(&format!(
            "leakscope: note: {}: {not_kept} record(s) not kept: the memory budget ({}) was full\n",
            file.display(),
            format_bytes(budget.limit() as f64)
        ));
    }
    let no_census = |file: &Path| {
        let e = no_census(file);
        if oversize > 0 {
            e.hint(format!(
                "{oversize} line(s) longer than {} MiB were discarded: is it a recording?",
                protocol::MAX_LINE_BYTES >> 20
            ))
        } else {
            e
        }
    };
    let Some((_, mut chosen)) = by_pid.into_iter().max_by_key(|(_, p)| p.censuses) else {
        return Err(no_census(&file));
    };
    if chosen.points.is_empty() {
        return Err(no_census(&file));
    }
    // A census with no summary before it (a snapshot of an idle process) takes the last one seen.
    if let Some(last) = chosen.points.last_mut() {
        if last.sites.is_empty() {
            last.sites = chosen.latest_sites.clone();
        }
    }
    Ok(chosen.points)
}

fn no_census(file: &Path) -> CliError {
    CliError::usage(format!("{} has no heap census", file.display()))
        .hint("take one with `leakscope snapshot PID`, or record with census points: `leakscope soak`, `leakscope attach PID --gc-every 1m`")
        .hint("a census needs .NET 9 or later in the target")
}

/// What keeps each asked-about type alive, most instances first (estimates when the agent
/// followed a sample), with the retained size of the top paths' first object of the
/// application's own; a path a budget cut short is `unknown (walk cut short: …)`.
pub fn render_retention(r: &crate::protocol::Retention) -> String {
    let mut out = String::new();
    for t in &r.types {
        let instances = t.instances.map_or(0.0, |n| n.0);
        let sampled = t.sampled.map_or(0.0, |n| n.0);
        out.push_str(&format!(
            "\nwhat keeps {} alive ({} instances, {}{}):\n",
            t.type_name,
            format_count(instances),
            format_bytes(t.bytes.map_or(0.0, |n| n.0)),
            if sampled > 0.0 && sampled < instances {
                format!("; {} followed, counts per path estimated", format_count(sampled))
            } else {
                String::new()
            }
        ));
        if t.paths.is_empty() {
            out.push_str("    (no instances reached)\n");
        }
        for p in &t.paths {
            out.push_str(&format!("  {:>10}  {}\n", format_count(p.instances.map_or(0.0, |n| n.0)), p.render()));
            if let Some(k) = &p.retained {
                out.push_str(&format!(
                    "  {:>10}  {} shallow; each {} keeps {}{} alive by itself\n",
                    "",
                    format_bytes(p.bytes.map_or(0.0, |n| n.0)),
                    k.type_name,
                    if k.lower_bound { "at least " } else { "" },
                    format_bytes(k.bytes_per_instance.map_or(0.0, |n| n.0))
                ));
            }
        }
    }
    if r.truncated {
        match &r.cut_short {
            Some(why) => out.push_str(&format!("(partial: {why})\n")),
            None => out.push_str(&format!("(partial: the {} budget ran out)\n", r.truncated_by.join(" and "))),
        }
    }
    if let Some(roots) = &r.roots {
        match (&roots.source, &roots.why) {
            (Some(source), _) if roots.reported => out.push_str(&format!(
                "(roots other than statics named by the runtime's {}, a {:.0} ms pause)\n",
                if source == "heap-dump" { "heap dump" } else { "GC callbacks" },
                roots.pause_ms.map_or(0.0, |n| n.0)
            )),
            (_, Some(why)) => out.push_str(&format!("(roots other than static fields are not told apart: {why})\n")),
            _ => {}
        }
    }
    out
}

/// Like `dumpheap -stat`, largest first, then the call sites whose sampled allocations survive.
pub fn render(point: &Point, top: usize) -> String {
    let c = &point.census;
    let gc = c.gc_ms.map(|n| format!(" of {:.0} ms", n.0)).unwrap_or_default();
    let mut out = format!(
        "heap of pid {}: {} objects, {} (counted in {:.0} ms after a full GC{gc}: the application's pause)\n\n",
        point.pid,
        format_count(c.objects.map_or(0.0, |n| n.0)),
        format_bytes(c.bytes.map_or(0.0, |n| n.0)),
        c.pause_ms.map_or(0.0, |n| n.0)
    );
    out.push_str(&format!("{:>12}  {:>10}  TYPE\n", "BYTES", "COUNT"));
    for t in c.types.iter().take(top) {
        out.push_str(&format!(
            "{:>12}  {:>10}  {}\n",
            format_bytes(t.bytes.map_or(0.0, |n| n.0)),
            format_count(t.count.map_or(0.0, |n| n.0)),
            t.type_name
        ));
    }
    if c.types.len() > top {
        out.push_str(&format!("… {} more types (--top N)\n", c.types.len() - top));
    }
    if !point.sites.is_empty() {
        out.push_str("\nsurviving sampled allocations by type and call site (estimated):\n");
        for s in point.sites.iter().take(top.min(10)) {
            let at = s.location.as_deref().map(|l| format!(" ({l})")).unwrap_or_default();
            out.push_str(&format!(
                "{:>12}  {}  ←  {}{at}\n",
                format_bytes(s.bytes.map_or(0.0, |n| n.0)),
                s.type_name,
                s.site
            ));
        }
    }
    if let Some(r) = &point.retention {
        out.push_str(&render_retention(r));
    }
    if let Some(p) = &point.peek {
        out.push_str(&render_peek(p));
    }
    out
}

/// `HeapApp.SessionState #1 (88 B):` then one field per line, indented.
pub fn render_peek(p: &crate::protocol::Peek) -> String {
    let mut out = String::new();
    for t in &p.types {
        let found = t.instances.map_or(0.0, |n| n.0);
        out.push_str(&format!("\n{} ({} instances on the heap):\n", t.type_name, format_count(found)));
        if t.samples.is_empty() {
            out.push_str("    (none found)\n");
        }
        for (i, s) in t.samples.iter().enumerate() {
            out.push_str(&format!("  {} #{} ({}):\n", s.type_name, i + 1, format_bytes(s.size.map_or(0.0, |n| n.0))));
            for f in &s.fields {
                let value = match &f.value {
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                out.push_str(&format!("      {} = {value}\n", f.name));
            }
        }
    }
    if let Some(error) = &p.error {
        out.push_str(&format!("(peek: {error})\n"));
    }
    if let Some(why) = &p.strings_withheld {
        out.push_str(&format!("(strings: {why})\n"));
    }
    out
}
