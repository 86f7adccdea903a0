//! The live view: a full-screen table redrawn in place on a terminal, or one compact line per
//! interval otherwise. Frames are rendered by pure functions ([`render_frame`], [`plain_line`])
//! from the store, so they are unit-tested without a terminal.

use crate::analysis::{LiveVerdict, Thresholds};
use crate::held_verdicts::HeldVerdicts;
use crate::protocol::Source;
use crate::report::{gc_text, health_text, heap_parts};
use crate::sites::{self, SiteRow};
use crate::store::{Connection, ProcessView, Store};
use crate::terminal::{self, Style, pad_left, pad_right, paint, truncate_visible};
use crate::units::{format_bytes, format_clock, format_count};
use std::io::Write;
use std::time::{Duration, Instant};

/// The live view's growth column looks at the last 10 minutes (after warm-up): recent
/// behaviour, not a long average that hides a leak that started late.
pub const RECENT_WINDOW_MS: f64 = 10.0 * 60_000.0;
/// Redraw cadence on a terminal (the clock ticks even when data arrives every 5 s).
const REDRAW_EVERY: Duration = Duration::from_secs(1);
/// Re-rank at most this often, however fast records arrive.
const RERANK_EVERY: Duration = Duration::from_millis(900);
/// Rows kept from each ranking.
const ROWS_KEPT: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewMode {
    /// Full screen on a terminal.
    Live,
    /// One line per interval on stderr.
    Plain,
    /// Nothing until the end.
    Quiet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// Everything the frame shows that does not come from the store.
#[derive(Debug, Clone, Default)]
pub struct FrameInfo {
    pub title: String,
    pub elapsed: Duration,
    pub interval: Duration,
    /// Where files go, shown under the title.
    pub out_dir: Option<String>,
    /// Where producers are expected from (socket or file), shown while nothing has arrived.
    pub waiting_on: Option<String>,
    pub alerts: Vec<(Level, String)>,
    /// Last lines of the target's output.
    pub output_tail: Vec<String>,
    pub footer: String,
}

pub struct LiveView {
    mode: ViewMode,
    screen: Option<terminal::Screen>,
    colour: bool,
    thresholds: Thresholds,
    ranked_version: u64,
    ranked_at: Option<Instant>,
    managed: Vec<SiteRow>,
    native: Vec<SiteRow>,
    /// Suspects shown in earlier frames, kept while their rise goes on (no flicker).
    held: HeldVerdicts,
    last_draw: Option<Instant>,
    last_plain: Option<Instant>,
}

impl LiveView {
    pub fn new(mode: ViewMode) -> LiveView {
        let screen = (mode == ViewMode::Live).then(terminal::Screen::enter);
        LiveView {
            mode,
            screen,
            colour: mode == ViewMode::Live && terminal::colour_allowed(),
            thresholds: Thresholds::default(),
            ranked_version: u64::MAX,
            ranked_at: None,
            managed: Vec::new(),
            native: Vec::new(),
            held: HeldVerdicts::default(),
            last_draw: None,
            last_plain: None,
        }
    }

    pub fn mode(&self) -> ViewMode {
        self.mode
    }

    fn rerank(&mut self, store: &Store) {
        let due = self.ranked_at.is_none_or(|t| t.elapsed() >= RERANK_EVERY);
        if store.data_version != self.ranked_version && due {
            self.managed = self.ranked_held(store, Source::Agent);
            self.native = self.ranked_held(store, Source::Shim);
            self.ranked_version = store.data_version;
            self.ranked_at = Some(Instant::now());
        }
    }

    /// The top sites of `source`, ranked with the verdicts this view holds.
    fn ranked_held(&mut self, store: &Store, source: Source) -> Vec<SiteRow> {
        let mut rows = sites::assessed_all(store, source, &self.thresholds, Some(RECENT_WINDOW_MS));
        self.held.apply(source, &mut rows);
        sites::sort_ranked(&mut rows);
        rows.truncate(ROWS_KEPT);
        rows
    }

    /// Called often; draws when due (every second on a terminal, every interval otherwise).
    pub fn update(&mut self, store: &Store, info: &FrameInfo) {
        match self.mode {
            ViewMode::Quiet => {}
            ViewMode::Live => {
                if self.last_draw.is_none_or(|t| t.elapsed() >= REDRAW_EVERY) {
                    self.draw_now(store, info);
                }
            }
            ViewMode::Plain => {
                let every = info.interval.max(Duration::from_secs(1));
                match self.last_plain {
                    None => self.last_plain = Some(Instant::now()),
                    Some(t) if t.elapsed() >= every => {
                        self.rerank(store);
                        let line = plain_line(store, &self.managed, &self.native, info);
                        let mut err = std::io::stderr().lock();
                        let _ = writeln!(err, "{line}");
                        self.last_plain = Some(Instant::now());
                    }
                    _ => {}
                }
            }
        }
    }

    pub fn draw_now(&mut self, store: &Store, info: &FrameInfo) {
        if self.mode != ViewMode::Live {
            return;
        }
        self.rerank(store);
        let (cols, rows) = terminal::size(libc::STDERR_FILENO);
        let lines = render_frame(store, &self.managed, &self.native, info, cols, rows, self.colour);
        if let Some(screen) = self.screen.as_mut() {
            screen.draw(&lines);
        }
        self.last_draw = Some(Instant::now());
    }

    /// Leaves the full screen, restoring the terminal.
    pub fn finish(&mut self) {
        if let Some(mut screen) = self.screen.take() {
            screen.leave();
        }
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        self.finish();
    }
}

fn verdict_mark(v: LiveVerdict, colour: bool) -> String {
    match v {
        LiveVerdict::Growing => paint("▲ growing", Style::Red, colour),
        LiveVerdict::Rising => paint("△ rising", Style::Yellow, colour),
        LiveVerdict::Plateaued => paint("▬ plateau", Style::Yellow, colour),
        LiveVerdict::Steady => paint("  steady", Style::Green, colour),
        LiveVerdict::InsufficientData => paint("  …", Style::Dim, colour),
    }
}

/// One full frame, as lines fitting `width` × `height`.
pub fn render_frame(
    store: &Store,
    managed: &[SiteRow],
    native: &[SiteRow],
    info: &FrameInfo,
    width: usize,
    height: usize,
    colour: bool,
) -> Vec<String> {
    let mut top: Vec<String> = Vec::new();
    top.push(format!(
        "{} {} {}  every {}  {}",
        paint("leakscope", Style::Bold, colour),
        paint("·", Style::Dim, colour),
        format_clock(info.elapsed),
        crate::units::format_duration(info.interval),
        paint(&info.title, Style::Cyan, colour)
    ));
    if let Some(out) = &info.out_dir {
        top.push(paint(&format!("writing to {out}"), Style::Dim, colour));
    }
    for (level, text) in &info.alerts {
        let style = match level {
            Level::Info => Style::Cyan,
            Level::Warn => Style::Yellow,
            Level::Error => Style::Red,
        };
        top.push(paint(text, style, colour));
    }
    top.push(String::new());

    let processes = store.processes();
    if processes.is_empty() {
        match &info.waiting_on {
            Some(w) => top.push(format!("waiting for the agent/shim to connect ({w}) …")),
            None => top.push("no data yet …".to_string()),
        }
    }
    for p in &processes {
        process_lines(&mut top, p, colour);
    }

    // Messages worth seeing now: the newest warnings from producers and the collector.
    let mut notes: Vec<String> = Vec::new();
    for p in store.producers() {
        if let Some(s) = p.statuses.back() {
            notes.push(format!("{} {} [{}]: {}", p.key.source.as_str(), p.key.pid, s.level, s.message));
        }
    }
    if let Some(n) = store.notes.back() {
        notes.push(format!("collector: {}", n.message));
    }
    let skipped = store.input.skipped();
    if skipped > 0 {
        notes.push(format!("{skipped} input line(s) skipped (details in the report)"));
    }
    notes.extend(store.bounds_messages().into_iter().map(|m| format!("collector: {m}")));

    let mut bottom: Vec<String> = Vec::new();
    if !notes.is_empty() {
        bottom.push(String::new());
        for n in notes.iter().rev().take(3) {
            bottom.push(paint(n, Style::Yellow, colour));
        }
    }
    if !info.output_tail.is_empty() {
        bottom.push(String::new());
        for l in &info.output_tail {
            bottom.push(paint(&format!("│ {l}"), Style::Dim, colour));
        }
    }
    if !info.footer.is_empty() {
        bottom.push(String::new());
        bottom.push(paint(&info.footer, Style::Dim, colour));
    }

    // Site tables get what is left; native sites a third at most when both are present.
    let multi = processes.len() > 1;
    let fixed = top.len() + bottom.len();
    let mut room = height.saturating_sub(fixed + 1);
    let mut middle: Vec<String> = Vec::new();
    let has_native = store.has_source(Source::Shim);
    let has_managed = store.has_source(Source::Agent);
    let native_room = if has_native && has_managed { (room / 3).max(4).min(native.len() + 3) } else { room };
    if has_managed && room >= 4 {
        let managed_room = if has_native { room.saturating_sub(native_room) } else { room };
        let kept = |r: &SiteRow| kept_alive_line(store, r);
        site_lines(&mut middle, "MANAGED SURVIVORS", "objects", managed, managed_room, multi, colour, &kept);
        room = room.saturating_sub(middle.len());
    }
    if has_native && room >= 4 {
        if !middle.is_empty() {
            middle.push(String::new());
            room = room.saturating_sub(1);
        }
        site_lines(&mut middle, "NATIVE SURVIVORS", "allocs", native, room, multi, colour, &|_| None);
    }

    top.extend(middle);
    top.extend(bottom);
    top.truncate(height.saturating_sub(1));
    top.into_iter().map(|l| truncate_visible(&l, width)).collect()
}

fn process_lines(out: &mut Vec<String>, p: &ProcessView<'_>, colour: bool) {
    let mut head = format!("pid {}", p.pid);
    if let Some(cmd) = p.cmdline() {
        head.push_str("  ");
        head.push_str(cmd);
    }
    if let Some(a) = p.agent.and_then(|a| a.hello.as_ref()) {
        head.push_str(&format!(
            "   {}",
            paint(
                &format!(".NET {} · {}", a.runtime.as_deref().unwrap_or("?"), a.sampling.as_deref().unwrap_or("?")),
                Style::Dim,
                colour
            )
        ));
    }
    for (producer, name) in [(p.agent, "agent"), (p.shim, "shim")] {
        match producer.map(|x| x.connection) {
            Some(Connection::SaidBye) => head.push_str(&format!("  [{name} said bye]")),
            Some(Connection::Lost) => head.push_str(&paint(&format!("  [{name} lost]"), Style::Yellow, colour)),
            _ => {}
        }
    }
    out.push(paint(&head, Style::Bold, colour));

    let rss = p.rss().map(|r| format_bytes(r as f64)).unwrap_or_else(|| "—".into());
    let managed = match p.agent.and_then(|a| a.heap.as_ref()) {
        Some(h) => format!("managed {} ({})", format_bytes(h.total()), heap_parts(h)),
        None if p.agent.is_some() => "managed —".to_string(),
        None => "managed: no agent".to_string(),
    };
    let shim_off = p.shim.and_then(|s| s.hello.as_ref()).and_then(|h| h.native_off_reason());
    let native = match p.shim.and_then(|s| s.native.as_ref()) {
        _ if shim_off.is_some() => format!("native: off ({})", shim_off.unwrap_or_default()),
        Some(n) => {
            format!("native {} live", n.live_bytes.map(|b| format_bytes(b as f64)).unwrap_or_else(|| "?".into()))
        }
        None if p.shim.is_some() => "native —".to_string(),
        None => "native: no shim data".to_string(),
    };
    out.push(format!("  memory  RSS {rss} │ {managed} │ {native}"));
    if let Some(a) = p.agent {
        if let Some(gc) = &a.gc {
            out.push(format!("  gc      {}", gc_text(gc)));
        }
        if let Some(h) = &a.health {
            let text = format!("  agent   {}", health_text(h));
            let degraded = h.degraded.as_deref().is_some_and(|d| !d.is_empty());
            out.push(if degraded { paint(&text, Style::Yellow, colour) } else { text });
        }
    }
}

/// A growing managed row's first `kept alive by: …` line, from the agent's latest retention
/// record for its type.
fn kept_alive_line(store: &Store, r: &SiteRow) -> Option<String> {
    if !matches!(r.growth.verdict, LiveVerdict::Growing | LiveVerdict::Rising) {
        return None;
    }
    let type_name = r.type_name.as_deref()?;
    let record = crate::retention_view::latest_retention(store, r.pid, type_name)?;
    let paths = crate::retention_view::KeptAliveBy::of_type(record, type_name, 3);
    crate::retention_view::kept_alive_lines(&paths).into_iter().next()
}

#[allow(clippy::too_many_arguments)]
fn site_lines(
    out: &mut Vec<String>,
    title: &str,
    count_head: &str,
    rows: &[SiteRow],
    room: usize,
    multi: bool,
    colour: bool,
    kept: &dyn Fn(&SiteRow) -> Option<String>,
) {
    let pid_col = if multi { 8 } else { 0 };
    let what = if count_head == "objects" { "type @ allocating site" } else { "allocating site" };
    out.push(paint(title, Style::Bold, colour));
    out.push(paint(
        &format!(
            "{}{}{}  {}{}{what}",
            pad_left("live", 10),
            pad_left(count_head, 10),
            pad_left("growth", 15),
            pad_right("trend", 11),
            if multi { pad_right("pid", pid_col) } else { String::new() },
        ),
        Style::Dim,
        colour,
    ));
    if rows.is_empty() {
        out.push(paint("  (no live sites yet)", Style::Dim, colour));
        return;
    }
    let shown = room.saturating_sub(2).min(rows.len());
    for r in rows.iter().take(shown) {
        let growth = sites::growth_text(&r.growth, r.full_gc_check).unwrap_or_else(|| "…".to_string());
        let pid = if multi { pad_right(&r.pid.to_string(), pid_col) } else { String::new() };
        let label =
            if r.growth.verdict == LiveVerdict::Growing { paint(&r.label(), Style::Bold, colour) } else { r.label() };
        out.push(format!(
            "{}{}{}  {}{pid}{label}",
            pad_left(&format_bytes(r.latest.bytes), 10),
            pad_left(&format_count(r.latest.count), 10),
            pad_left(&growth, 15),
            pad_right(&verdict_mark(r.growth.verdict, colour), 11),
        ));
        if let Some(line) = kept(r) {
            out.push(paint(&format!("{}↳ {line}", " ".repeat(46)), Style::Dim, colour));
        }
    }
    if rows.len() > shown && shown > 0 {
        if let Some(last) = out.last_mut() {
            *last = paint(&format!("  … {} more sites", rows.len() - shown + 1), Style::Dim, colour);
        }
    }
}

/// One compact line for non-terminal output.
pub fn plain_line(store: &Store, managed: &[SiteRow], native: &[SiteRow], info: &FrameInfo) -> String {
    let mut line = format!("leakscope [{}]", format_clock(info.elapsed));
    let processes = store.processes();
    if processes.is_empty() {
        line.push_str(" waiting for the agent/shim to connect");
        if let Some(w) = &info.waiting_on {
            line.push_str(&format!(" ({w})"));
        }
        return line;
    }
    for p in &processes {
        line.push_str(&format!(" pid {}", p.pid));
        if let Some(rss) = p.rss() {
            line.push_str(&format!(" rss {}", format_bytes(rss as f64)));
        }
        if let Some(h) = p.agent.and_then(|a| a.heap.as_ref()) {
            line.push_str(&format!(" heap {}", format_bytes(h.total())));
            if let Some(g2) = h.gen2 {
                line.push_str(&format!(" gen2 {}", format_bytes(g2.0)));
            }
        }
        if let Some(n) = p.shim.and_then(|s| s.native.as_ref()).and_then(|n| n.live_bytes) {
            line.push_str(&format!(" native {}", format_bytes(n as f64)));
        }
        if let Some(gc) = p.agent.and_then(|a| a.gc.as_ref()) {
            let counts: Vec<String> = gc.count.iter().map(|c| c.u64().to_string()).collect();
            line.push_str(&format!(" gc {}", counts.join("/")));
        }
        if let Some(h) = p.agent.and_then(|a| a.health.as_ref()) {
            if let (Some(t), Some(m)) = (h.tracked, h.max_tracked) {
                line.push_str(&format!(" tracked {}/{}", t.u64(), m.u64()));
            }
            if h.degraded.as_deref().is_some_and(|d| !d.is_empty()) {
                line.push_str(" DEGRADED");
            }
        }
    }
    let top = |rows: &[SiteRow]| {
        rows.first().map(|r| {
            format!(
                "{} {} {}",
                r.label(),
                format_bytes(r.latest.bytes),
                match sites::growth_text(&r.growth, r.full_gc_check) {
                    None => "(collecting data)".to_string(),
                    Some(_) if !sites::quotes_rate(&r.growth, r.full_gc_check) => r.growth.verdict.as_str().to_string(),
                    Some(rate) => format!("{rate} {}", r.growth.verdict.as_str()),
                }
            )
        })
    };
    if let Some(t) = top(managed) {
        line.push_str(&format!(" | top managed: {t}"));
    }
    if let Some(t) = top(native) {
        line.push_str(&format!(" | top native: {t}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(store: &Store) -> (Vec<SiteRow>, Vec<SiteRow>) {
        let th = Thresholds::default();
        (
            sites::ranked(store, Source::Agent, &th, Some(RECENT_WINDOW_MS)),
            sites::ranked(store, Source::Shim, &th, Some(RECENT_WINDOW_MS)),
        )
    }

    fn info() -> FrameInfo {
        FrameInfo {
            title: "dotnet Demo.dll".into(),
            elapsed: Duration::from_secs(62),
            interval: Duration::from_secs(2),
            out_dir: Some("/tmp/out".into()),
            waiting_on: Some("/tmp/s.sock".into()),
            alerts: vec![(Level::Warn, "native tracking off: shim not found".into())],
            output_tail: vec!["handled 1000 messages".into()],
            footer: "Ctrl-C: stop the target and write the report".into(),
        }
    }

    #[test]
    fn frame_shows_memory_gc_health_and_the_growing_site_first() {
        let store = crate::report::tests::sample_store();
        let (m, n) = rows(&store);
        let lines = render_frame(&store, &m, &n, &info(), 160, 40, false);
        let text = lines.join("\n");
        assert!(lines[0].starts_with("leakscope · 00:01:02  every 2s  dotnet Demo.dll"), "{text}");
        assert!(text.contains("pid 42  dotnet Demo.dll"), "{text}");
        assert!(text.contains("memory  RSS 90.0 MB │ managed"), "{text}");
        assert!(text.contains("native 1.00 MB live"), "{text}");
        assert!(text.contains("gc      gen0 29, gen1 1, gen2 2"), "{text}");
        assert!(text.contains("agent   tracked 10/100000 samples"), "{text}");
        let managed_at = lines.iter().position(|l| l.starts_with("MANAGED SURVIVORS")).unwrap();
        assert!(lines[managed_at + 1].ends_with("type @ allocating site"), "{text}");
        assert!(lines[managed_at + 2].contains("▲ growing"), "{text}");
        assert!(lines[managed_at + 2].ends_with("System.String @ Demo.OrderAudit.Record (OrderAudit.cs:17)"), "{text}");
        assert!(lines[managed_at + 2].contains("+3.00 MB/min"), "{text}");
        assert!(text.contains("NATIVE SURVIVORS"));
        assert!(text.contains("native tracking off"));
        assert!(text.contains("│ handled 1000 messages"));
        assert!(text.contains("agent 42 [warn]: tracking budget full"));
        assert!(!text.contains('\x1b'), "no escapes without colour");
    }

    /// The view remembers what it showed: a leak it called growing is not demoted to "rising"
    /// when the next ranking, fresh, lacks a confirming full GC, while the rise goes on.
    #[test]
    fn a_site_shown_growing_stays_growing_while_its_rise_goes_on() {
        let confirmed = crate::report::tests::sample_store();
        let unconfirmed = crate::report::tests::sample_store_with_full_gcs(false);
        let leak = |view: &LiveView| {
            let row = view.managed.iter().find(|r| r.site == "Demo.OrderAudit.Record").unwrap();
            (row.growth.verdict, row.growth.still_rising)
        };
        let mut fresh = LiveView::new(ViewMode::Quiet);
        fresh.rerank(&unconfirmed);
        assert_eq!(leak(&fresh), (LiveVerdict::Rising, true), "fresh, without a full GC: rising");

        let mut view = LiveView::new(ViewMode::Quiet);
        view.rerank(&confirmed);
        assert_eq!(leak(&view).0, LiveVerdict::Growing);
        // Due again at once, though the two stores' versions may be equal.
        (view.ranked_at, view.ranked_version) = (None, u64::MAX);
        view.rerank(&unconfirmed);
        assert_eq!(leak(&view).0, LiveVerdict::Growing, "held: the rise goes on");
        assert_eq!(view.managed[0].site, "Demo.OrderAudit.Record", "and it still ranks first");
        let line = plain_line(&unconfirmed, &view.managed, &view.native, &info());
        assert!(line.contains("Demo.OrderAudit.Record") && line.contains("growing"), "{line}");
    }

    #[test]
    fn frame_fits_small_terminals_and_never_panics_on_an_empty_store() {
        let store = crate::report::tests::sample_store();
        let (m, n) = rows(&store);
        for (w, h) in [(40, 10), (80, 24), (200, 60)] {
            let lines = render_frame(&store, &m, &n, &info(), w, h, true);
            assert!(lines.len() < h, "{w}x{h}: {} lines", lines.len());
            assert!(lines.iter().all(|l| terminal::visible_width(l) <= w));
        }
        let empty = Store::new();
        let lines = render_frame(&empty, &[], &[], &info(), 80, 24, false);
        assert!(lines.join("\n").contains("waiting for the agent/shim to connect (/tmp/s.sock)"));
    }

    #[test]
    fn plain_line_is_one_compact_line() {
        let store = crate::report::tests::sample_store();
        let (m, n) = rows(&store);
        let line = plain_line(&store, &m, &n, &info());
        assert!(!line.contains('\n'));
        assert!(line.starts_with("leakscope [00:01:02] pid 42 rss 90.0 MB heap"), "{line}");
        assert!(line.contains("gc 29/1/2 tracked 10/100000"), "{line}");
        assert!(
            line.contains(
                "| top managed: System.String @ Demo.OrderAudit.Record (OrderAudit.cs:17) 3.00 MB +3.00 MB/min growing"
            ),
            "{line}"
        );
        assert_eq!(
            plain_line(&Store::new(), &[], &[], &info()),
            "leakscope [00:01:02] waiting for the agent/shim to connect (/tmp/s.sock)"
        );
    }

    #[test]
    fn a_steady_site_without_a_trend_shows_no_rate() {
        // A one-off step inside the window: a large slope that Mann–Kendall does not find.
        let store = crate::report::tests::sample_store();
        let (mut m, n) = rows(&store);
        m[0].growth.verdict = LiveVerdict::Steady;
        m[0].growth.significant = false;
        m[0].growth.bytes_per_min = 26_300_000.0;
        let line = plain_line(&store, &m[..1], &n, &info());
        assert!(line.contains("(OrderAudit.cs:17) 3.00 MB steady"), "{line}");
        assert!(!line.contains("MB/min steady"), "{line}");
        let text = render_frame(&store, &m[..1], &n, &info(), 160, 40, false).join("\n");
        let row = text.lines().find(|l| l.contains("Demo.OrderAudit.Record")).unwrap();
        assert!(row.contains("no trend") && row.contains("steady") && !row.contains("MB/min"), "{row}");
    }
}
