//! The report in words: `report.txt`, the summary printed when a session ends (for a soak, its
//! verdict), and the short texts (GC, heap, agent health) the live view shares.

use super::model::*;
use super::sufficiency;
use crate::protocol::{AgentHealth, GcStats, HeapSizes};
use crate::retention_view::kept_alive_lines;
use crate::sites::growth_text;
use crate::soak::SoakVerdict;
use crate::store::{InputStats, site_label};
use crate::units::{format_bytes, format_count, format_duration};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// …and in report.txt.
const TEXT_TOP_SITES: usize = 15;

/// Frames shown under a finding in report.txt (all of them are in report.json).
const TEXT_FRAMES: usize = 8;

/// The frames worth reading: from the site down, with the count of runtime frames above it
/// (allocation helpers such as `System.String.Ctor`). report.json keeps them all.
pub fn frames_from_site<'a>(frames: &'a [String], site: &str) -> (usize, &'a [String]) {
    match frames.iter().position(|f| f == site) {
        Some(i) => (i, &frames[i..]),
        None => (0, frames),
    }
}

fn write_frames(o: &mut String, all_frames: &[String], lines: &[Option<String>], site: &str, max: usize) {
    let (above, frames) = frames_from_site(all_frames, site);
    for (i, frame) in frames.iter().take(max).enumerate() {
        let line = match lines.get(above + i) {
            Some(Some(l)) => format!(" ({l})"),
            _ => String::new(),
        };
        let _ = writeln!(o, "      {} {frame}{line}", if i == 0 { "at" } else { "  " });
    }
    if frames.len() > max {
        let _ = writeln!(o, "         … {} more frames in report.json", frames.len() - max);
    }
    if above > 0 && !frames.is_empty() {
        let _ = writeln!(o, "         ({above} runtime frame(s) above the site, in report.json)");
    }
}

pub fn format_p(p: f64) -> String {
    if p < 0.001 { "< 0.001".to_string() } else { format!("= {p:.3}") }
}

fn opt_bytes(v: Option<u64>) -> String {
    v.map(|b| format_bytes(b as f64)).unwrap_or_else(|| "—".to_string())
}

/// The human report.
pub fn render_text(r: &Report) -> String {
    let mut o = String::new();
    let s = &r.session;
    let title = s
        .command
        .as_ref()
        .map(|c| c.join(" "))
        // The .NET process (the one with an agent) names the session, not a wrapper like `timeout`.
        .or_else(|| r.processes.iter().filter(|p| p.agent.is_some()).find_map(|p| p.cmdline.clone()))
        .or_else(|| r.processes.iter().find_map(|p| p.cmdline.clone()))
        .unwrap_or_else(|| "(unknown command)".to_string());
    let _ = writeln!(o, "leakscope report: {title}");
    let mut line = format!("{} session, {}", s.mode, format_duration(Duration::from_millis(s.duration_ms)));
    if let Some(exit) = &s.exit {
        let _ = write!(line, "; target {}", exit.describe());
    }
    if let Some(by) = &s.stopped_by {
        let _ = write!(line, " (stopped by leakscope: {by})");
    }
    let _ = writeln!(o, "{line}");
    let th = &r.thresholds;
    let _ = writeln!(
        o,
        "Sizes in decimal units (1 MB = 1,000,000 bytes). Growth: Theil–Sen slope after a {:.0}% warm-up. \
         Growing: Mann–Kendall p < {} and > {} and > {:.0}% of the site's peak, still rising at the end, \
         and for managed sites still that much higher after a full GC (until one comes: rising).",
        th.warmup_fraction * 100.0,
        th.alpha,
        format_bytes(th.min_growth_bytes),
        th.min_growth_fraction * 100.0
    );
    let _ = writeln!(o);
    if let Some(soak) = &r.soak {
        o.push_str(&crate::soak::render_text(soak));
        let _ = writeln!(o);
    }

    if r.soak.is_some() {
        let _ =
            writeln!(o, "FINDINGS OF THE LIVE VIEW (sampled survivors per summary; the soak verdicts above decide)");
    } else {
        let _ = writeln!(o, "FINDINGS");
    }
    if r.findings.is_empty() {
        let connected = r.processes.iter().any(|p| p.agent.is_some() || p.shim.is_some());
        if !connected {
            let _ = writeln!(o, "  Nothing to analyse: no agent or shim sent data (see MESSAGES).");
        } else if let Some(s) = &r.sufficiency {
            let _ = writeln!(o, "  {}", sufficiency::verdict_line(s, &r.session.mode));
        }
    }
    for f in &r.findings {
        let _ = writeln!(o, "  {}", f.text);
        write_frames(&mut o, &f.frames, &f.frame_lines, &f.site, TEXT_FRAMES);
        write_kept_alive_by(&mut o, f);
    }
    if !r.rising.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "RISING, NOT YET CONFIRMED BY A FULL GC (could be garbage waiting for one)");
        for f in &r.rising {
            let _ = writeln!(o, "  {}", f.text);
            write_frames(&mut o, &f.frames, &f.frame_lines, &f.site, TEXT_FRAMES);
            write_kept_alive_by(&mut o, f);
        }
    }

    for p in &r.processes {
        let _ = writeln!(o);
        let _ = writeln!(o, "PROCESS {}{}", p.pid, p.cmdline.as_ref().map(|c| format!(": {c}")).unwrap_or_default());
        if let Some(a) = &p.agent {
            let _ = writeln!(
                o,
                "  agent {}: .NET {}, sampling {}{}, interval {}, {} summaries over {}, ended: {}",
                a.version.as_deref().unwrap_or("?"),
                a.runtime.as_deref().unwrap_or("?"),
                a.sampling.as_deref().unwrap_or("?"),
                a.mode.as_deref().map(|m| format!(" ({m})")).unwrap_or_default(),
                a.interval_ms.map(|i| format_duration(Duration::from_millis(i))).unwrap_or_else(|| "?".into()),
                a.reports,
                format_duration(Duration::from_millis(a.duration_ms)),
                ended_text(a)
            );
            if let Some(c) = &p.retention_cost {
                let mut line = format!(
                    "  retention paths: {} request{}, pausing the application {:.0} ms in all, {:.0} ms at most",
                    c.requests,
                    if c.requests == 1 { "" } else { "s" },
                    c.pause_ms,
                    c.max_pause_ms
                );
                if c.roots_requests > 0 {
                    let _ = write!(
                        line,
                        "; GC roots asked for {} time{} ({}, up to {:.0} ms)",
                        c.roots_requests,
                        if c.roots_requests == 1 { "" } else { "s" },
                        match c.roots_source.as_deref() {
                            Some("heap-dump") => "the runtime's heap dump: needs no setting, background GC stays on",
                            _ => "GC callbacks",
                        },
                        c.roots_max_pause_ms
                    );
                }
                let _ = writeln!(o, "{line}");
            }
            if let Some(kinds) = a.config.as_ref().and_then(|c| c.get("retention_roots")) {
                let list = |k: &str| {
                    kinds[k]
                        .as_array()
                        .map(|v| v.iter().filter_map(|s| s.as_str()).collect::<Vec<_>>().join("; "))
                        .unwrap_or_default()
                };
                let _ = writeln!(o, "  retention paths can start at: {}", list("named"));
                let not = list("not_named");
                if !not.is_empty() {
                    let _ = writeln!(o, "  retention paths cannot name: {not}");
                }
            }
        } else {
            let _ = writeln!(o, "  agent: not connected (no managed data)");
        }
        if let Some(sh) = &p.shim {
            let _ = writeln!(
                o,
                "  shim {}: sampling {}{}, {} reports over {}, ended: {}",
                sh.version.as_deref().unwrap_or("?"),
                sh.sampling.as_deref().unwrap_or("?"),
                sh.mean_bytes.map(|m| format!(" (mean {})", format_bytes(m as f64))).unwrap_or_default(),
                sh.reports,
                format_duration(Duration::from_millis(sh.duration_ms)),
                ended_text(sh)
            );
        }
        let mut mem = format!("  memory at end: RSS {}", opt_bytes(p.rss_bytes));
        if let Some(h) = &p.heap {
            let _ = write!(mem, "; managed heap {} ({})", opt_bytes(p.heap_total_bytes), heap_parts(h));
        }
        if let Some(n) = &p.native_totals {
            let (about, how) = if n.totals == "sampled" { ("~", " (estimated from samples)") } else { ("", "") };
            let _ = write!(
                mem,
                "; native live {about}{}{} in {about}{} allocations{how}, mmap {}",
                opt_bytes(n.live_bytes),
                native_live_interval(n),
                n.live_allocs.map(|c| format_count(c as f64)).unwrap_or_else(|| "?".into()),
                opt_bytes(n.mmap_bytes)
            );
        }
        let _ = writeln!(o, "{mem}");
        if let Some(gc) = &p.gc {
            let _ = writeln!(o, "  gc: {}", gc_text(gc));
        }
        if let Some(h) = &p.agent_health {
            let _ = writeln!(o, "  agent health: {}", health_text(h));
        }
        site_table(&mut o, "Managed survivors", &p.managed_sites, p.managed_sites_total, true);
        site_table(&mut o, "Native survivors", &p.native_sites, p.native_sites_total, false);
    }

    if !r.messages.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "MESSAGES");
        for m in &r.messages {
            let who = match m.pid {
                Some(pid) => format!("{} {pid}", m.source),
                None => m.source.clone(),
            };
            let _ = writeln!(o, "  {:<5} {who}: {}", m.level, m.message);
        }
    }

    let i = &r.input;
    let _ = writeln!(o);
    let _ = writeln!(o, "INPUT");
    let _ = writeln!(o, "  {} lines, {} records, {} skipped{}", i.lines, i.records, i.skipped(), skipped_breakdown(i));
    for ex in &i.examples {
        let _ = writeln!(o, "    {ex}");
    }
    o
}

/// The short version printed when a session ends: findings, one memory line per process,
/// the top sites, warnings, and where the files are.
/// The main path in full; the others (in report.json) only counted: a common type such as
/// String has many holders, and the leak's is the one with most instances.
fn write_kept_alive_by(o: &mut String, f: &Finding) {
    if let Some(owner) = &f.owner_to_fix {
        let _ = writeln!(o, "      owner to fix: {}", owner.text());
    }
    for line in kept_alive_lines(&f.kept_alive_by) {
        let _ = writeln!(o, "      {line}");
    }
}

pub fn render_summary(r: &Report, out_dir: Option<&Path>) -> String {
    const SUMMARY_SITES: usize = 5;
    const SUMMARY_FRAMES: usize = 4;
    let mut o = String::new();
    let s = &r.session;
    let _ = writeln!(o);
    let mut head = format!("leakscope: {} session, {}", s.mode, format_duration(Duration::from_millis(s.duration_ms)));
    if let Some(exit) = &s.exit {
        let _ = write!(head, "; target {}", exit.describe());
    }
    if let Some(by) = &s.stopped_by {
        let _ = write!(head, " (stopped: {by})");
    }
    let _ = writeln!(o, "{head}");
    for f in r.findings.iter().chain(&r.rising) {
        let _ = writeln!(o, "  {}", f.text);
        write_frames(&mut o, &f.frames, &f.frame_lines, &f.site, SUMMARY_FRAMES);
        write_kept_alive_by(&mut o, f);
    }
    let connected = r.processes.iter().any(|p| p.agent.is_some() || p.shim.is_some());
    if let (true, true, Some(suff)) = (r.findings.is_empty(), connected, &r.sufficiency) {
        let _ = writeln!(o, "  {}", sufficiency::verdict_line(suff, &s.mode));
    }
    for p in &r.processes {
        let mut mem = format!("  pid {}: RSS {}", p.pid, opt_bytes(p.rss_bytes));
        if p.heap.is_some() {
            let _ = write!(mem, ", managed heap {}", opt_bytes(p.heap_total_bytes));
        }
        if let Some(n) = &p.native_totals {
            let about = if n.totals == "sampled" { "~" } else { "" };
            let _ = write!(mem, ", native live {about}{}", opt_bytes(n.live_bytes));
        }
        if let Some(h) = &p.agent_health {
            if let Some(d) = h.degraded.as_ref().filter(|d| !d.is_empty()) {
                let _ = write!(mem, "; agent degraded: {d}");
            }
        }
        let _ = writeln!(o, "{mem}");
        for site in p.managed_sites.iter().take(SUMMARY_SITES).chain(p.native_sites.iter().take(SUMMARY_SITES.min(3))) {
            let label = match &site.type_name {
                Some(_) => site_label(site.type_name.as_deref(), &site.site, site.location.as_deref()),
                None => format!("native @ {}", site.site),
            };
            let growth = growth_text(&site.growth, site.full_gc_check).unwrap_or_else(|| "—".to_string());
            let _ = writeln!(
                o,
                "    {:<17} {:>14} {:>10}  {label}",
                site.growth.verdict.as_str(),
                growth,
                format_bytes(site.live_bytes as f64)
            );
        }
    }
    for m in r.messages.iter().filter(|m| m.level == "warn" || m.level == "error").take(6) {
        let _ = writeln!(o, "  {}: {}", m.level, m.message);
    }
    if r.input.skipped() > 0 {
        let _ = writeln!(o, "  {} input lines skipped{}", r.input.skipped(), skipped_breakdown(&r.input));
    }
    if let Some(dir) = out_dir {
        let _ = writeln!(o, "Full report: {}", dir.join("report.txt").display());
        let _ = writeln!(
            o,
            "             {} (JSON), recording.ndjson (re-render: leakscope report {})",
            dir.join("report.json").display(),
            dir.display()
        );
    }
    o
}

fn ended_text(p: &ProducerReport) -> String {
    match p.ended {
        "bye" => format!("bye ({})", p.bye_reason.as_deref().unwrap_or("no reason given")),
        "lost" => "connection lost without bye".to_string(),
        _ => "still connected".to_string(),
    }
}

pub fn heap_parts(h: &HeapSizes) -> String {
    let part = |name: &str, v: Option<crate::protocol::Num>| v.map(|n| format!("{name} {}", format_bytes(n.0)));
    [part("gen0", h.gen0), part("gen1", h.gen1), part("gen2", h.gen2), part("LOH", h.loh), part("POH", h.poh)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn gc_text(gc: &GcStats) -> String {
    let mut t = gc.count.iter().enumerate().map(|(i, c)| format!("gen{i} {}", c.u64())).collect::<Vec<_>>().join(", ");
    if t.is_empty() {
        t = "no collections reported".to_string();
    }
    if let Some(induced) = gc.induced.filter(|n| n.u64() > 0) {
        let _ = write!(t, " ({} induced)", induced.u64());
    }
    if let Some(total) = gc.pause_ms_total {
        let _ = write!(t, "; pause {:.1} ms total", total.0);
    }
    if let Some(max) = gc.pause_ms_max {
        let _ = write!(t, ", {:.1} ms max", max.0);
    }
    t
}

pub fn health_text(h: &AgentHealth) -> String {
    let n = |v: Option<crate::protocol::Num>| v.map(|x| x.u64().to_string()).unwrap_or_else(|| "?".into());
    let mut t = format!("tracked {}/{} samples, {} dropped", n(h.tracked), n(h.max_tracked), n(h.dropped));
    if let Some(m) = h.memory_bytes {
        let _ = write!(t, ", agent memory {}", format_bytes(m.0));
    }
    match &h.degraded {
        Some(d) if !d.is_empty() => {
            let _ = write!(t, "; DEGRADED: {d}");
        }
        _ => t.push_str("; not degraded"),
    }
    t
}

fn skipped_breakdown(i: &InputStats) -> String {
    let parts: Vec<String> = [
        (i.not_json, "not JSON"),
        (i.malformed, "malformed"),
        (i.unknown_version, "unknown version"),
        (i.unknown_type, "unknown type"),
        (i.unknown_source, "unknown source"),
        (i.oversize, "over 4 MiB"),
        (i.truncated, "truncated"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if parts.is_empty() { String::new() } else { format!(" ({})", parts.join(", ")) }
}

fn site_table(o: &mut String, title: &str, sites: &[SiteReport], total: usize, managed: bool) {
    if total == 0 {
        return;
    }
    let shown = sites.len().min(TEXT_TOP_SITES);
    let _ = writeln!(o, "  {title} (top {shown} of {total} sites)");
    let count_head = if managed { "objects" } else { "allocs" };
    let _ = writeln!(
        o,
        "    {:<17} {:>14} {:>10} {:>10} {:>10}  {}",
        "verdict",
        "growth",
        "live",
        "peak",
        count_head,
        if managed { "type @ site" } else { "site" }
    );
    for s in sites.iter().take(shown) {
        let label = site_label(s.type_name.as_deref(), &s.site, s.location.as_deref());
        let growth = growth_text(&s.growth, s.full_gc_check).unwrap_or_else(|| "—".to_string());
        let _ = writeln!(
            o,
            "    {:<17} {:>14} {:>10} {:>10} {:>10}  {label}",
            s.growth.verdict.as_str(),
            growth,
            format_bytes(s.live_bytes as f64),
            format_bytes(s.peak_bytes as f64),
            format_count(s.live_count as f64),
        );
    }
}

/// What `leakscope soak` prints when it ends: the verdict, what fails, where the files are.
pub fn render_soak_summary(r: &Report, out_dir: Option<&Path>) -> String {
    const SHOWN: usize = 8;
    let mut o = String::new();
    let Some(soak) = &r.soak else {
        return o;
    };
    let _ = writeln!(o);
    let _ = writeln!(o, "leakscope soak: {} (exit {})", soak.headline, soak.exit_code);
    for p in &soak.problems {
        let _ = writeln!(o, "  problem: {p}");
    }
    for w in &soak.warnings {
        let _ = writeln!(o, "  warning: {w}");
    }
    for s in soak.subjects.iter().filter(|s| s.failing() || s.verdict == SoakVerdict::Leaking).take(SHOWN) {
        let _ = writeln!(
            o,
            "  {}{} {}: {}",
            s.verdict.as_str(),
            if s.failing() { " (fails)" } else { "" },
            s.label,
            s.evidence
        );
    }
    if let Some(b) = &soak.baseline {
        for reg in &b.regressions {
            let _ = writeln!(o, "  regression: {}", reg.text);
        }
    }
    for m in &soak.memory {
        for line in &m.interpretation {
            let _ = writeln!(o, "  memory: {line}");
        }
    }
    if let Some(t) = soak.decided_after_ms {
        let _ = writeln!(o, "  verdict reached after {} of the run", crate::soak::clock(t));
    }
    if let Some(out_dir) = out_dir {
        let _ = writeln!(
            o,
            "Reports: {} (charts and verdicts), {}, {}",
            out_dir.join("report.html").display(),
            out_dir.join("report.json").display(),
            out_dir.join("junit.xml").display()
        );
    }
    o
}

/// " (95% CI 61.2 MB to 84.4 MB)" after a sampled estimate of the native live bytes, worded as
/// the report's other intervals; empty when exact.
fn native_live_interval(n: &NativeTotalsReport) -> String {
    match (n.totals, n.live_bytes, n.live_bytes_se) {
        ("sampled", Some(live), Some(se)) => {
            let half = 1.96 * se as f64;
            let low = (live as f64 - half).max(0.0);
            format!(" (95% CI {} to {})", format_bytes(low), format_bytes(live as f64 + half))
        }
        _ => String::new(),
    }
}
