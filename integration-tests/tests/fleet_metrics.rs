//! `leakscope listen --metrics` scraped by a real Prometheus server (Debian's `prometheus`)
//! while a real leaking .NET worker runs under the real agent and shim; the alert rules in
//! deploy/prometheus checked and unit-tested with the real `promtool`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::*;
use serde_json::Value;

/// SoakApp steady-leak: 1000 AuditRecords a second from SoakApp.AuditLog.Append, each 40 bytes
/// (header, method table, two longs, one reference) plus its 29-character string (80 bytes).
const PLANTED_BYTES_PER_S: f64 = 1000.0 * (40.0 + 80.0);

fn tool(name: &str) -> PathBuf {
    let path = PathBuf::from("/usr/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: install Debian's `prometheus` package (scripts/setup.sh --with-test-tools)",
        path.display()
    );
    path
}

/// A free loopback port (bound, then released for the server to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A plain HTTP/1.0 GET; returns (status, body).
fn http_get(addr: &str, path_and_query: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query against Prometheus' HTTP API: each result's labels and value.
fn query(prom: &str, promql: &str) -> Vec<(Value, f64)> {
    query_path(prom, promql, &format!("/api/v1/query?query={}", url_encode(promql)))
}

/// An instant query evaluated at `unix_s`, so that several queries see the same moment.
fn query_at(prom: &str, promql: &str, unix_s: f64) -> Vec<(Value, f64)> {
    query_path(prom, promql, &format!("/api/v1/query?query={}&time={unix_s:.3}", url_encode(promql)))
}

/// The single value of a query that must have exactly one result.
fn one(results: Vec<(Value, f64)>, promql: &str) -> f64 {
    assert_eq!(results.len(), 1, "{promql}: {results:?}");
    results[0].1
}

fn query_path(prom: &str, promql: &str, path: &str) -> Vec<(Value, f64)> {
    result_of(prom, promql, path).iter().map(|r| (r["metric"].clone(), number(&r["value"][1]))).collect()
}

/// The scraped samples of `selector` over the `range` before `unix_s`: each series' labels
/// and its (scrape time, value) pairs.
fn samples_at(prom: &str, selector: &str, range: &str, unix_s: f64) -> Vec<(Value, Vec<(f64, f64)>)> {
    let promql = format!("{selector}[{range}]");
    let path = format!("/api/v1/query?query={}&time={unix_s:.3}", url_encode(&promql));
    result_of(prom, &promql, &path)
        .iter()
        .map(|r| {
            let points = r["values"].as_array().unwrap().iter().map(|p| (p[0].as_f64().unwrap(), number(&p[1])));
            (r["metric"].clone(), points.collect())
        })
        .collect()
}

fn result_of(prom: &str, promql: &str, path: &str) -> Vec<Value> {
    let (status, body) = http_get(prom, path).expect("query Prometheus");
    assert_eq!(status, 200, "{promql}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{promql}: {body}");
    v["data"]["result"].as_array().unwrap().clone()
}

fn number(v: &Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

fn now_unix_s() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `leakscope listen --metrics 127.0.0.1:0` and returns it with the address it serves.
fn start_listener(dir: &Path, socket: &Path) -> (Killed, String) {
    let mut c = Command::new(cli_path());
    c.args(["listen", "--plain", "--duration", "400s", "--metrics", "127.0.0.1:0", "--socket"])
        .arg(socket)
        .arg("--out")
        .arg(dir.join("out"))
        .env("TMPDIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("start leakscope listen");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let listener = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("listen did not say where it serves metrics");
        if let Some(rest) = line.strip_prefix("leakscope: serving metrics at http://") {
            let addr = rest.trim_end_matches("/metrics").to_string();
            assert!(addr.starts_with("127.0.0.1:"), "{line}");
            return (listener, addr);
        }
    }
}

fn start_prometheus(dir: &Path, target: &str) -> (Killed, String) {
    let rules = workspace_root().join("deploy/prometheus/leakscope-rules.yml");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: leakscope\n    static_configs:\n      - targets: ['{target}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let prom = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(http_get(&addr, "/-/ready"), Ok((200, _))) {
        assert!(
            Instant::now() < deadline,
            "prometheus not ready: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (prom, addr)
}

#[test]
fn prometheus_scrapes_listen_and_sees_the_leak_grow_and_the_churn_stay_flat() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("l.sock");
    let (_listener, metrics_addr) = start_listener(dir.path(), &socket);
    let (_prom, prom) = start_prometheus(dir.path(), &metrics_addr);

    let app = dotnet_app("SoakApp", Build::FrameworkDependent);
    let mut worker = app.command();
    without_profiler_env(&mut worker)
        .args(["steady-leak", "210"])
        .env("CORECLR_ENABLE_PROFILING", "1")
        .env("CORECLR_PROFILER", AGENT_CLSID)
        .env("CORECLR_PROFILER_PATH", agent_path())
        .env("LD_PRELOAD", shim_path())
        .env("LEAKSCOPE_SOCKET", &socket)
        .env("LEAKSCOPE_INTERVAL", "1s")
        .env("LEAKSCOPE_SERVICE", "audit-worker")
        // A full GC every 5 s, so the series read right after each one has ~12 steps a minute.
        // `listen` induces none, and this worker's own come ever rarer as its heap grows (at
        // 8, 16, 30, 55 and 101 s in one 150 s run): the last minute would hold one or none.
        // Not more often: the worker's own (gen1) GCs must come between them, or the estimate
        // between full GCs would change only when the one after them does. No census: its heap
        // walks are not what this test is about.
        .env("LEAKSCOPE_INDUCE_FULL_GC", "5s")
        .env("LEAKSCOPE_CENSUS", "0")
        .env("TMPDIR", dir.path());
    let mut worker = Running::start(worker);
    worker.wait_for_line("ready", Duration::from_secs(60));
    let pid = worker.pid().to_string();
    let started = Instant::now();

    // Enough for a minute of 1 s points after the collector's warm-up, and two minutes of the
    // readings after full GCs (the churn's slope is judged on 24 of them: below).
    let leak = format!(
        "leakscope_site_live_bytes{{pid=\"{pid}\",site=\"SoakApp.AuditLog.Append\",type=~\"SoakApp.AuditRecord|System.String\"}}"
    );
    let deadline = Instant::now() + Duration::from_secs(200);
    loop {
        let ready = started.elapsed() >= Duration::from_secs(130)
            && query(&prom, &format!("count_over_time({leak}[60s])")).len() == 2;
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus has no minute of the leak's series: {:?}", query(&prom, &leak));
        std::thread::sleep(Duration::from_secs(2));
    }

    // The worker's labels: pid, LEAKSCOPE_SERVICE, this host.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let info = query(&prom, &format!("leakscope_worker_info{{pid=\"{pid}\"}}"));
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0].0["service"], "audit-worker", "{info:?}");
    assert_eq!(info[0].0["host"], host.as_str(), "{info:?}");
    assert_eq!((info[0].0["agent"].as_str(), info[0].0["shim"].as_str()), (Some("yes"), Some("yes")));

    // The leak's growth, as Prometheus computes it from the scraped live bytes and as leakscope
    // reports it: above half the planted rate (sampling is an estimate), below twice it.
    let lower = PLANTED_BYTES_PER_S / 2.0;
    let upper = PLANTED_BYTES_PER_S * 2.0;
    let deriv = query(&prom, &format!("sum(deriv({leak}[60s]))"));
    let deriv = deriv.first().map(|r| r.1).unwrap_or(0.0);
    assert!(
        deriv > lower && deriv < upper,
        "deriv of the leak's live bytes: {deriv} B/s (planted {PLANTED_BYTES_PER_S})"
    );
    let growth_q = leak.replace("leakscope_site_live_bytes", "leakscope_site_growth_bytes_per_second");
    let growth = query(&prom, &format!("sum({growth_q})"));
    let growth = growth.first().map(|r| r.1).unwrap_or(0.0);
    assert!(growth > lower && growth < upper, "leakscope's growth of the leak: {growth} B/s");
    let growing = query(
        &prom,
        &format!(
            "leakscope_site_verdict{{pid=\"{pid}\",type=\"SoakApp.AuditRecord\",site=\"SoakApp.AuditLog.Append\",verdict=\"growing\"}}"
        ),
    );
    assert_eq!(growing.iter().map(|r| r.1).collect::<Vec<_>>(), [1.0], "{growing:?}");
    let verdict = query(&prom, &format!("leakscope_verdict{{pid=\"{pid}\"}} == 1"));
    assert_eq!(verdict.len(), 1);
    assert_eq!(verdict[0].0["verdict"], "leak_suspected");

    // The leak as read right after each full GC: between the full GCs that set its value now
    // and a minute ago, it rose by what the planted rate predicts for the time between them.
    // One moment for every query, so that no full GC falls between two of them.
    let at = now_unix_s() - 1.0;
    let leak_after = leak.replace("leakscope_site_live_bytes{", "leakscope_site_live_bytes_after_full_gc{");
    let gc_at = format!("leakscope_last_full_gc_timestamp_seconds{{pid=\"{pid}\"}}");
    assert_eq!(query_at(&prom, &leak_after, at).len(), 2, "{:?}", query_at(&prom, &leak_after, at));
    assert_eq!(query_at(&prom, &format!("{leak_after} offset 60s"), at).len(), 2);
    let rise = one(query_at(&prom, &format!("sum({leak_after}) - sum({leak_after} offset 60s)"), at), &leak_after);
    let between = one(query_at(&prom, &format!("{gc_at} - {gc_at} offset 60s"), at), &gc_at);
    eprintln!("leak after full GCs: +{rise:.0} B between full GCs {between:.1} s apart");
    assert!(between >= 30.0, "the full GCs that set the values are only {between} s apart");
    assert!(
        rise > lower * between && rise < upper * between,
        "the leak's live bytes after full GCs rose {rise} B in {between} s (planted {PLANTED_BYTES_PER_S} B/s)"
    );
    // It changes at full GCs only: in no scrape without a new full-GC timestamp (the two are
    // rendered together). The estimate between full GCs moves at every GC that promotes or
    // collects a sample, and a summary comes every second, between the full GCs.
    let gc_times = samples_at(&prom, &gc_at, "60s", at);
    assert_eq!(gc_times.len(), 1, "{gc_times:?}");
    let gc_times = &gc_times[0].1;
    let new_gc_at = |t: f64| {
        let i = gc_times.iter().position(|p| p.0 == t).expect("scraped together");
        i > 0 && gc_times[i].1 != gc_times[i - 1].1
    };
    let full_gcs = (1..gc_times.len()).filter(|i| new_gc_at(gc_times[*i].0)).count();
    assert!(full_gcs >= 8, "full GCs seen in the last minute: {full_gcs} (one induced every 5 s)");
    for (labels, points) in samples_at(&prom, &leak_after, "60s", at) {
        let moved: Vec<f64> = points.windows(2).filter(|w| w[0].1 != w[1].1).map(|w| w[1].0).collect();
        assert!(moved.len() >= 4, "{labels}: changed only at {moved:?}");
        let unexplained: Vec<&f64> = moved.iter().filter(|t| !new_gc_at(**t)).collect();
        assert!(unexplained.is_empty(), "{labels} changed with no full GC at {unexplained:?}");
    }

    // The churn (a sliding window of recent messages) stays flat after full GCs. Not on
    // leakscope_site_live_bytes: between full GCs that one also holds dead messages that were
    // promoted to gen2 and wait for the next full GC, a sawtooth whose 60 s slope depends on
    // where the full GCs fall (it measured 32.9 kB/s and -62 kB/s on a loaded machine). Over two
    // minutes: each reading is an independent draw of the sampled churn (σ ≈ 0.6-0.7 MB measured),
    // so the slope of a minute's 12 has σ ≈ 12 kB/s, of two minutes' 24 about 4 kB/s.
    let churn = format!("leakscope_site_live_bytes{{pid=\"{pid}\",site=\"SoakApp.Worker.Handle\"}}");
    let churn_series = query(&prom, &churn);
    assert!(!churn_series.is_empty(), "the churn site is exported");
    let churn_after = churn.replace("leakscope_site_live_bytes{", "leakscope_site_live_bytes_after_full_gc{");
    assert!(!query_at(&prom, &churn_after, at).is_empty(), "the churn site is read after full GCs");
    let churn_deriv = one(query_at(&prom, &format!("sum(deriv({churn_after}[120s]))"), at), &churn_after);
    let spread = query_at(&prom, &format!("stddev_over_time(sum({churn_after})[120s:1s])"), at);
    eprintln!(
        "churn after full GCs: deriv {churn_deriv:.0} B/s over 120 s, readings' σ {:.0} B; leak (between full GCs): deriv {deriv:.0} B/s",
        spread.first().map_or(f64::NAN, |r| r.1)
    );
    assert!(
        churn_deriv.abs() < PLANTED_BYTES_PER_S / 4.0,
        "the churn site after full GCs moves {churn_deriv} B/s (the leak: {deriv})"
    );
    let churn_growing = query(
        &prom,
        &format!("leakscope_site_verdict{{pid=\"{pid}\",site=\"SoakApp.Worker.Handle\",verdict=\"growing\"}} == 1"),
    );
    assert!(churn_growing.is_empty(), "{churn_growing:?}");

    // Native memory, GC, RSS and the agent's health are there too.
    for (metric, min) in [
        ("leakscope_native_live_bytes", 1.0),
        // The shim's default totals are estimates, and the series says so by being there.
        ("leakscope_native_live_bytes_standard_error", 0.0),
        ("leakscope_rss_bytes", 1e6),
        ("leakscope_gc_collections_total", 1.0),
        ("leakscope_agent_tracked_samples_budget", 1.0),
    ] {
        let r = query(&prom, &format!("max({metric}{{pid=\"{pid}\"}})"));
        assert!(r.first().is_some_and(|r| r.1 >= min), "{metric}: {r:?}");
    }
    let degraded = query(&prom, &format!("leakscope_agent_degraded{{pid=\"{pid}\"}}"));
    assert_eq!(degraded.iter().map(|r| r.1).collect::<Vec<_>>(), [0.0]);

    // The example alert rules load and evaluate in a real server.
    let (status, body) = http_get(&prom, "/api/v1/rules").unwrap();
    assert_eq!(status, 200);
    let rules: Value = serde_json::from_str(&body).unwrap();
    let loaded: Vec<(String, String)> = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r["health"].as_str().unwrap().to_string()))
        .collect();
    let names: Vec<&str> = loaded.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names, ["LeakscopeSiteLeaking", "LeakscopeNativeGrowth", "LeakscopeAgentDegraded"]);
    assert!(loaded.iter().all(|r| r.1 == "ok"), "{loaded:?}");
}

#[test]
fn promtool_checks_the_alert_rules_and_their_unit_tests_pass() {
    let dir = workspace_root().join("deploy/prometheus");
    let check = Command::new(tool("promtool"))
        .args(["check", "rules", "leakscope-rules.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}{}", stdout_of(&check), String::from_utf8_lossy(&check.stderr));
    assert!(stdout_of(&check).contains("SUCCESS: 3 rules found"), "{}", stdout_of(&check));
    let test = Command::new(tool("promtool"))
        .args(["test", "rules", "leakscope-rules.test.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(test.status.success(), "{}{}", stdout_of(&test), String::from_utf8_lossy(&test.stderr));

    // The unit tests do test the rules: with the leak rule's `for` dropped, they fail.
    let tmp = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(dir.join("leakscope-rules.yml")).unwrap();
    let leak_rule_for = "\n        for: 30m\n";
    assert!(rules.contains(leak_rule_for));
    std::fs::write(tmp.path().join("leakscope-rules.yml"), rules.replacen(leak_rule_for, "\n        for: 0m\n", 1))
        .unwrap();
    std::fs::copy(dir.join("leakscope-rules.test.yml"), tmp.path().join("leakscope-rules.test.yml")).unwrap();
    let broken = Command::new(tool("promtool"))
        .args(["test", "rules", "leakscope-rules.test.yml"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(!broken.status.success(), "promtool passed rules that fire too early");

    // …and with the leak rule reading the estimate between full GCs (which churn that dies
    // old drives up until the next full GC), they fail too.
    let after_full_gc = "deriv(leakscope_site_live_bytes_after_full_gc[10m])";
    assert!(rules.contains(after_full_gc));
    std::fs::write(
        tmp.path().join("leakscope-rules.yml"),
        rules.replacen(after_full_gc, "deriv(leakscope_site_live_bytes[10m])", 1),
    )
    .unwrap();
    let raw = Command::new(tool("promtool"))
        .args(["test", "rules", "leakscope-rules.test.yml"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(!raw.status.success(), "promtool passed a leak rule that the churn's sawtooth fires");
    let said = format!("{}{}", stdout_of(&raw), String::from_utf8_lossy(&raw.stderr));
    assert!(said.contains(r#"type="System.Byte[]""#), "the churn is not what fired: {said}");
}
