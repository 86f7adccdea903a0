//! `listen --metrics ADDR`: every connected worker's survivors, growth, GC, native memory and
//! agent health in the Prometheus text format, for Prometheus to scrape.
//!
//! The collector's main loop owns the store; it re-renders the text at most once a second, and
//! only for workers whose data changed ([`Exporter::refresh`]). The HTTP threads serve the
//! latest text, so a scrape never waits for ranking and never touches the store. Cardinality
//! is bounded: at most `top` sites (managed, native) and census types per worker, with the
//! number left out in `leakscope_series_omitted`.

mod address;
mod families;
mod server;
mod worker;

pub use address::parse_metrics_addr;
pub use worker::service_from_cmdline;

use crate::analysis::Thresholds;
use crate::held_verdicts::HeldVerdicts;
use crate::store::Store;
use families::Sample;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Sites (and census types) per worker unless `--metrics-top` says otherwise.
pub const DEFAULT_TOP: u32 = 20;
/// The text is rebuilt at most this often.
const RENDER_EVERY: Duration = Duration::from_secs(1);

type ChangeKey = (u64, u64, u32, u32, bool, bool);

/// What the served text was built from.
#[derive(PartialEq)]
struct Version {
    data: u64,
    captures: u64,
    connected: Vec<crate::protocol::ProducerKey>,
}

pub struct Exporter {
    addr: SocketAddr,
    top: usize,
    host: String,
    thresholds: Thresholds,
    text: server::Shared,
    /// Per worker: what its samples were built from, and the samples.
    cache: HashMap<u32, (ChangeKey, Vec<Sample>)>,
    /// Each worker's sites shown growing or rising, held while their rise goes on.
    held: HashMap<u32, HeldVerdicts>,
    captures: HashMap<u32, u64>,
    rendered_at: Option<Instant>,
    rendered_version: Option<Version>,
    changes: u64,
}

impl Exporter {
    /// Binds `addr` and starts serving `/metrics` (empty until the first refresh).
    pub fn start(addr: SocketAddr, top: usize) -> Result<Exporter, String> {
        let text = server::Shared::default();
        let bound = server::serve(addr, text.clone())?;
        Ok(Exporter::new(bound, top, text))
    }

    fn new(addr: SocketAddr, top: usize, text: server::Shared) -> Exporter {
        Exporter {
            addr,
            top: top.max(1),
            host: hostname(),
            thresholds: Thresholds::default(),
            text,
            cache: HashMap::new(),
            held: HashMap::new(),
            captures: HashMap::new(),
            rendered_at: None,
            rendered_version: None,
            changes: 0,
        }
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Counts a snapshot written for worker `pid` by a capture rule: it appears as
    /// `leakscope_captures_total{pid=…}` at the next refresh.
    pub fn record_capture(&mut self, pid: u32) {
        *self.captures.entry(pid).or_insert(0) += 1;
        self.changes += 1;
    }

    /// Rebuilds the served text when the store (or a capture count) changed and the last
    /// rebuild is at least a second old. Cheap to call on every turn of the main loop.
    pub fn refresh(&mut self, store: &Store) {
        // Data, capture counts, and which producers are connected (a disconnect changes no data).
        let version = Version {
            data: store.data_version,
            captures: self.changes,
            connected: store.producers().filter(|p| worker::connected(p)).map(|p| p.key).collect(),
        };
        if self.rendered_version.as_ref() == Some(&version) {
            return;
        }
        if self.rendered_at.is_some_and(|t| t.elapsed() < RENDER_EVERY) {
            return;
        }
        let text = self.render(store);
        self.text.set(text);
        self.rendered_at = Some(Instant::now());
        self.rendered_version = Some(version);
    }

    /// The whole exposition, re-building only workers whose data changed.
    fn render(&mut self, store: &Store) -> String {
        let mut live: Vec<u32> = Vec::new();
        for view in store.processes() {
            let connected = view.agent.is_some_and(worker::connected) || view.shim.is_some_and(worker::connected);
            if !connected {
                continue;
            }
            live.push(view.pid);
            let captures = self.captures.get(&view.pid).copied().unwrap_or(0);
            let key = worker::change_key(&view, captures);
            if self.cache.get(&view.pid).is_some_and(|(k, _)| *k == key) {
                continue;
            }
            let held = self.held.entry(view.pid).or_default();
            let samples = worker::samples(&view, &self.host, self.top, captures, &self.thresholds, held);
            self.cache.insert(view.pid, (key, samples));
        }
        // Workers that went away disappear from the metrics (Prometheus marks them stale).
        self.cache.retain(|pid, _| live.contains(pid));
        self.held.retain(|pid, _| live.contains(pid));
        let workers = Sample { def: &worker::WORKERS, labels: Vec::new(), value: live.len() as f64 };
        let mut pids: Vec<&u32> = self.cache.keys().collect();
        pids.sort();
        let per_worker = pids.into_iter().flat_map(|pid| self.cache[pid].1.iter());
        families::encode(worker::ALL, std::iter::once(&workers).chain(per_worker))
    }
}

/// This host's name, for the `host` label: producers reach the listener over a Unix socket, so
/// they run on the same host (in Kubernetes, the same pod).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Renders the metrics of a store once, as `/metrics` would serve them (for tests and tools).
pub fn render_once(store: &Store, top: usize) -> String {
    let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
    Exporter::new(unbound, top, server::Shared::default()).render(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_sites(pid: u32, sites: usize, summaries: u64) -> Store {
        let mut store = Store::new();
        let hello = format!(
            r#"{{"v":1,"type":"hello","source":"agent","pid":{pid},"cmdline":"dotnet /srv/Orders.dll","interval_ms":1000,"runtime":"10.0.1"}}"#
        );
        store.ingest_line(hello.as_bytes());
        for seq in 1..=summaries {
            let rows: Vec<String> = (0..sites)
                .map(|i| {
                    format!(
                        r#"{{"type_name":"App.T{i}","site":"App.C.M{i}","samples":10,"objects":{},"bytes":{}}}"#,
                        100 * (i + 1),
                        1000 * (i + 1) as u64 * seq
                    )
                })
                .collect();
            let line = format!(
                r#"{{"v":1,"type":"summary","source":"agent","pid":{pid},"seq":{seq},"t_ms":{},"rss":5000000,"agent":{{"tracked":7,"max_tracked":100000,"degraded":null}},"sites":[{}]}}"#,
                seq * 1000,
                rows.join(",")
            );
            store.ingest_line(line.as_bytes());
        }
        store
    }

    fn lines_of<'a>(text: &'a str, metric: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(&format!("{metric}{{"))).collect()
    }

    #[test]
    fn sites_are_capped_per_worker_and_the_rest_counted() {
        let store = store_with_sites(42, 5, 3);
        let text = render_once(&store, 2);
        let sites = lines_of(&text, "leakscope_site_live_bytes");
        assert_eq!(sites.len(), 2, "{text}");
        // The largest are kept.
        assert!(sites[0].contains(r#"type="App.T4""#) && sites[0].ends_with(" 15000"), "{}", sites[0]);
        assert!(sites[1].contains(r#"type="App.T3""#), "{}", sites[1]);
        let omitted = lines_of(&text, "leakscope_series_omitted");
        assert_eq!(omitted.len(), 1);
        assert!(omitted[0].contains(r#"kind="managed_site""#) && omitted[0].ends_with(" 3"), "{}", omitted[0]);
        // Labelled by pid, service (the entry assembly) and host.
        assert!(sites[0].starts_with(r#"leakscope_site_live_bytes{pid="42",service="Orders",host=""#), "{}", sites[0]);
        assert!(text.contains("\nleakscope_workers 1\n"), "{text}");
        // Three points are too few for a growth figure: none is exported rather than a 0.
        assert!(lines_of(&text, "leakscope_site_growth_bytes_per_second").is_empty(), "{text}");
        let verdict = lines_of(&text, "leakscope_verdict");
        assert!(
            verdict.iter().any(|l| l.contains(r#"verdict="insufficient_data""#) && l.ends_with(" 1")),
            "{verdict:?}"
        );
    }

    /// One record of worker 9 listing `sites` as (type, site, bytes).
    fn record(kind: &str, t_ms: u64, gen2: u64, sites: &[(&str, &str, u64)]) -> String {
        let rows: Vec<String> = sites
            .iter()
            .map(|(ty, site, bytes)| {
                format!(
                    r#"{{"type_name":"{ty}","site":"{site}","samples":10,"objects":{},"bytes":{bytes}}}"#,
                    bytes / 100
                )
            })
            .collect();
        let gc = if kind == "summary" { format!(r#""gc":{{"count":[50,20,{gen2}]}},"#) } else { String::new() };
        format!(
            r#"{{"v":1,"type":"{kind}","source":"agent","pid":9,"t_ms":{t_ms},"unix_ms":{},{gc}"sites":[{}]}}"#,
            1_800_000_000_000 + t_ms,
            rows.join(",")
        )
    }

    fn value_of(text: &str, metric: &str, ty: &str) -> Option<f64> {
        let want = format!(r#"type="{ty}""#);
        let line = lines_of(text, metric).into_iter().find(|l| l.contains(&want))?;
        line.rsplit(' ').next()?.parse().ok()
    }

    /// A site the exporter called growing is not demoted to rising when the next look, fresh,
    /// lacks a confirming full GC, while the rise goes on: an alert's `for:` clock keeps running.
    #[test]
    fn a_site_shown_growing_stays_growing_while_its_rise_goes_on() {
        let store = |full_gcs: bool| {
            let mut store = Store::new();
            store.ingest_line(br#"{"v":1,"type":"hello","source":"agent","pid":9,"interval_ms":2000}"#);
            // One 100 kB sample more every 2 s; full GCs after the 14th and the 28th point.
            for i in 0..30u64 {
                let line = format!(
                    r#"{{"v":1,"type":"summary","source":"agent","pid":9,"t_ms":{},"gc":{{"count":[{i},1,{}]}},"sites":[{{"type_name":"Leak","site":"A.Append","samples":{},"objects":{i},"bytes":{}}}]}}"#,
                    2000 * (i + 1),
                    if full_gcs { i / 14 } else { 0 },
                    i + 1,
                    100_000 * (i + 1),
                );
                store.ingest_line(line.as_bytes());
            }
            store
        };
        let shown = |text: &str, verdict: &str| {
            let want = format!(r#"verdict="{verdict}""#);
            lines_of(text, "leakscope_site_verdict").iter().any(|l| l.contains(&want) && l.ends_with(" 1"))
        };
        let fresh = render_once(&store(false), 10);
        assert!(shown(&fresh, "rising"), "without a full GC, fresh: rising\n{fresh}");

        let mut exporter = Exporter::new(SocketAddr::from(([127, 0, 0, 1], 0)), 10, server::Shared::default());
        let first = exporter.render(&store(true));
        assert!(shown(&first, "growing"), "{first}");
        exporter.cache.clear(); // new data, whatever the change key says
        let next = exporter.render(&store(false));
        assert!(shown(&next, "growing") && !shown(&next, "rising"), "held\n{next}");
        assert!(lines_of(&next, "leakscope_verdict").iter().any(|l| l.contains("leak_suspected") && l.ends_with(" 1")));
    }

    #[test]
    fn live_bytes_after_full_gc_hold_the_latest_full_gcs_reading_until_the_next() {
        const AFTER: &str = "leakscope_site_live_bytes_after_full_gc";
        const AT: &str = "leakscope_last_full_gc_timestamp_seconds";
        let mut store = Store::new();
        store.ingest_line(
            br#"{"v":1,"type":"hello","source":"agent","pid":9,"cmdline":"dotnet /srv/Audit.dll","interval_ms":1000}"#,
        );
        // Churn rises between full GCs (garbage not yet collected) while the leak creeps up.
        let feed = |store: &mut Store, line: String| {
            store.ingest_line(line.as_bytes());
        };
        feed(
            &mut store,
            record("summary", 1000, 0, &[("Churn", "W.Handle", 4_000_000), ("Leak", "A.Append", 1_000_000)]),
        );
        feed(
            &mut store,
            record("summary", 2000, 0, &[("Churn", "W.Handle", 6_000_000), ("Leak", "A.Append", 1_100_000)]),
        );
        let text = render_once(&store, 10);
        assert!(lines_of(&text, AFTER).is_empty(), "no full GC yet: absent, not 0\n{text}");
        assert!(lines_of(&text, AT).is_empty(), "{text}");

        // A full GC: the agent reports what survived it right away, then the next summary.
        feed(
            &mut store,
            record("retained", 2500, 0, &[("Churn", "W.Handle", 4_100_000), ("Leak", "A.Append", 1_200_000)]),
        );
        feed(
            &mut store,
            record("summary", 3000, 1, &[("Churn", "W.Handle", 4_200_000), ("Leak", "A.Append", 1_200_000)]),
        );
        // Garbage piles up again; a new site appears after the full GC.
        feed(
            &mut store,
            record(
                "summary",
                4000,
                1,
                &[("Churn", "W.Handle", 7_000_000), ("Leak", "A.Append", 1_300_000), ("New", "N.Make", 500_000)],
            ),
        );
        let text = render_once(&store, 10);
        assert_eq!(
            value_of(&text, AFTER, "Churn"),
            Some(4_100_000.0),
            "the full GC's reading, not the sawtooth's\n{text}"
        );
        assert_eq!(value_of(&text, AFTER, "Leak"), Some(1_200_000.0), "{text}");
        assert_eq!(value_of(&text, AFTER, "New"), None, "first listed after the latest full GC: absent\n{text}");
        assert_eq!(value_of(&text, "leakscope_site_live_bytes", "Churn"), Some(7_000_000.0), "{text}");
        assert!(lines_of(&text, AT)[0].ends_with(" 1800000002.5"), "{text}");
        assert!(
            lines_of(&text, AT)[0].starts_with(r#"leakscope_last_full_gc_timestamp_seconds{pid="9",service="Audit""#)
        );

        // The next full GC replaces every reading: the churn is back, the leak stepped up, the
        // new site is read, and a site the record no longer lists (all collected) reads 0.
        feed(
            &mut store,
            record(
                "retained",
                5500,
                1,
                &[("Churn", "W.Handle", 3_900_000), ("Leak", "A.Append", 1_500_000), ("New", "N.Make", 400_000)],
            ),
        );
        feed(
            &mut store,
            record(
                "summary",
                6000,
                2,
                &[("Churn", "W.Handle", 4_000_000), ("Leak", "A.Append", 1_500_000), ("New", "N.Make", 400_000)],
            ),
        );
        feed(
            &mut store,
            record(
                "summary",
                7000,
                2,
                &[("Churn", "W.Handle", 8_000_000), ("Leak", "A.Append", 1_600_000), ("New", "N.Make", 600_000)],
            ),
        );
        let text = render_once(&store, 10);
        assert_eq!(value_of(&text, AFTER, "Churn"), Some(3_900_000.0), "{text}");
        assert_eq!(value_of(&text, AFTER, "Leak"), Some(1_500_000.0), "{text}");
        assert_eq!(value_of(&text, AFTER, "New"), Some(400_000.0), "{text}");
        assert!(lines_of(&text, AT)[0].ends_with(" 1800000005.5"), "{text}");
        feed(
            &mut store,
            record("retained", 8500, 2, &[("Churn", "W.Handle", 4_050_000), ("Leak", "A.Append", 1_800_000)]),
        );
        feed(
            &mut store,
            record(
                "summary",
                9000,
                3,
                &[("Churn", "W.Handle", 4_050_000), ("Leak", "A.Append", 1_800_000), ("New", "N.Make", 100_000)],
            ),
        );
        let text = render_once(&store, 10);
        assert_eq!(value_of(&text, AFTER, "New"), Some(0.0), "{text}");
        assert_eq!(value_of(&text, AFTER, "Leak"), Some(1_800_000.0), "{text}");

        // Same cardinality bound as the other site families: only the exported sites.
        let text = render_once(&store, 1);
        assert_eq!(lines_of(&text, AFTER).len(), 1, "{text}");
        assert_eq!(value_of(&text, AFTER, "Churn"), Some(4_050_000.0), "{text}");
    }

    #[test]
    fn captures_are_counted_and_departed_workers_dropped() {
        let mut store = store_with_sites(7, 1, 2);
        let mut e = Exporter::new(SocketAddr::from(([127, 0, 0, 1], 0)), 5, server::Shared::default());
        e.record_capture(7);
        e.record_capture(7);
        let text = e.render(&store);
        assert_eq!(lines_of(&text, "leakscope_captures_total").len(), 1);
        assert!(lines_of(&text, "leakscope_captures_total")[0].ends_with(" 2"), "{text}");
        store.ingest_line(br#"{"v":1,"type":"bye","source":"agent","pid":7,"reason":"exit"}"#);
        let text = e.render(&store);
        assert!(!text.contains(r#"pid="7""#), "{text}");
        assert!(text.contains("leakscope_workers 0"), "{text}");
    }
}
