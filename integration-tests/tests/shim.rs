//! Integration tests for the LD_PRELOAD shim (`libleakscope_shim.so`).
//!
//! Every test runs a real program under the real, release-built shim: the C
//! hazard programs of `integration-tests/native/` (compiled with `cc` into
//! `<target>/shim-tests/run-<pid>/`, removed by the next run) and the .NET app
//! `integration-tests/dotnet/NativeLeakApp` (built into `<target>/shim-tests/`).
//! They read the NDJSON the shim writes (docs/PROTOCOL.md) and assert on it.
//!
//! The shim is `$LEAKSCOPE_SHIM`, or `<target>/release/libleakscope_shim.so`
//! (`cargo build --release --workspace` first; scripts/test.sh does).
//! The .NET test needs `dotnet` (10.0 SDK) and fails, never skips, without it.
//!
//! Exactness: the shim counts `malloc_usable_size` bytes, and the programs
//! report what they leak in the same unit (`EXPECT_*` lines on stdout). The
//! tests run with `GLIBC_TUNABLES=glibc.pthread.stack_cache_size=0`: with
//! glibc's default cache, exited threads' stacks keep their TLS vectors
//! (calloc'd by glibc on the thread's behalf) live, a few hundred bytes each,
//! which the shim rightly counts but a program cannot predict.
//!
//! Shared helpers (finding binaries, building .NET apps, timeouts) come from the
//! crate's lib.rs; those specific to the shim live here.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use integration_tests::{Build, dotnet_app, drain, profile_dir, read_records, shim_path, workspace_root};
use serde_json::Value;

/// Waits for `child` or fails the test: a hang is a bug.
fn wait_deadline(child: &mut std::process::Child, timeout: Duration, what: &str) -> ExitStatus {
    integration_tests::wait_with_deadline(child, timeout)
        .unwrap_or_else(|| panic!("{what} did not finish within {timeout:?}: hang"))
}

// ------------------------------------------------------------------ setup --

/// A scratch directory for this test process: `<target>/shim-tests/run-<pid>`.
/// Directories of earlier runs whose process is gone are removed first.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = profile_dir().join("shim-tests");
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = name.strip_prefix("run-").and_then(|p| p.parse::<u32>().ok());
                if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = base.join(format!("run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    })
}

fn native_src(name: &str) -> PathBuf {
    workspace_root().join("integration-tests/native").join(name)
}

/// Compiles `integration-tests/native/<name>.c` (once per process). With
/// `shared`, builds `lib<name>.so` instead of an executable.
fn build_c(name: &str, shared: bool) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<(String, bool), PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(&(name.to_string(), shared)) {
        return p.clone();
    }
    let out = if shared { scratch().join(format!("lib{name}.so")) } else { scratch().join(name) };
    let mut cmd = Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()));
    cmd.args(["-O1", "-g", "-fno-omit-frame-pointer", "-Wall", "-pthread"]);
    if shared {
        cmd.args(["-shared", "-fPIC"]);
    }
    cmd.arg(native_src(&format!("{name}.c"))).arg("-o").arg(&out).arg("-ldl");
    let res = cmd.output().expect("run cc (a C compiler is needed for the shim tests)");
    assert!(res.status.success(), "compiling {name}.c failed:\n{}", String::from_utf8_lossy(&res.stderr));
    built.insert((name.to_string(), shared), out.clone());
    out
}

fn unique(tag: &str) -> PathBuf {
    static N: Mutex<u32> = Mutex::new(0);
    let mut n = N.lock().unwrap_or_else(|e| e.into_inner());
    *n += 1;
    let dir = scratch().join(format!("{tag}-{}", *n));
    std::fs::create_dir_all(&dir).expect("create run dir");
    dir
}

// -------------------------------------------------------------------- run --

/// What one run left behind.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    records: Vec<Value>,
    log: String,
    expect: HashMap<String, i64>,
    pid: u32,
}

impl Run {
    fn expect(&self, key: &str) -> i64 {
        *self.expect.get(key).unwrap_or_else(|| panic!("program printed no EXPECT_{key}; stdout:\n{}", self.stdout))
    }

    fn of(&self, kind: &str) -> Vec<&Value> {
        self.records.iter().filter(|r| r["type"] == kind).collect()
    }

    fn of_pid(&self, kind: &str, pid: u32) -> Vec<&Value> {
        self.records.iter().filter(|r| r["type"] == kind && r["pid"] == pid).collect()
    }

    /// The last `native` record of the program's own pid.
    fn last_native(&self) -> &Value {
        self.of_pid("native", self.pid).into_iter().last().unwrap_or_else(|| {
            panic!("no native record from pid {}; log:\n{}\nrecords: {:?}", self.pid, self.log, self.records)
        })
    }

    fn stacks(&self) -> HashMap<u64, Vec<String>> {
        self.of("stack")
            .into_iter()
            .filter(|r| r["pid"] == self.pid)
            .map(|r| {
                let frames = r["frames"]
                    .as_array()
                    .map(|a| a.iter().map(|f| f.as_str().unwrap_or("").to_string()).collect())
                    .unwrap_or_default();
                (r["id"].as_u64().unwrap_or(0), frames)
            })
            .collect()
    }

    fn context(&self) -> String {
        format!(
            "status {:?}\nstdout:\n{}\nstderr:\n{}\nlog:\n{}\nlast records:\n{}",
            self.status,
            self.stdout,
            self.stderr,
            self.log,
            self.records.iter().rev().take(4).map(|r| r.to_string()).collect::<Vec<_>>().join("\n")
        )
    }
}

/// Estimated bytes per site name (sites of the same name, different stacks, summed).
fn bytes_by_site(native: &Value) -> Vec<(String, f64)> {
    let mut m: HashMap<String, f64> = HashMap::new();
    for s in native["sites"].as_array().into_iter().flatten() {
        *m.entry(s["site"].as_str().unwrap_or("").to_string()).or_default() += s["bytes"].as_f64().unwrap_or(0.0);
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

/// Runs `program args` with `env` added to a clean-ish environment (no
/// inherited LEAKSCOPE_* or LD_PRELOAD) and a timeout.
fn run_raw(
    program: &Path,
    args: &[&str],
    env: &[(&str, String)],
    timeout: Duration,
) -> (ExitStatus, String, String, u32) {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("LEAKSCOPE_") || k == "LD_PRELOAD" || k.starts_with("DOTNET_PerfMap") {
            cmd.env_remove(k);
        }
    }
    cmd.env("GLIBC_TUNABLES", "glibc.pthread.stack_cache_size=0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let pid = child.id();
    let out = drain(child.stdout.take().expect("stdout"));
    let err = drain(child.stderr.take().expect("stderr"));
    let status = wait_deadline(&mut child, timeout, &program.display().to_string());
    let text =
        |h: std::thread::JoinHandle<Vec<u8>>| String::from_utf8_lossy(&h.join().unwrap_or_default()).into_owned();
    (status, text(out), text(err), pid)
}

/// Runs a program under the shim, writing to a file; `env` overrides the defaults.
fn run_shim(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    run_shim_timeout(program, args, env, Duration::from_secs(60))
}

fn run_shim_timeout(program: &Path, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Run {
    let dir = unique(program.file_name().and_then(|n| n.to_str()).unwrap_or("run"));
    let output = dir.join("out.ndjson");
    let log = dir.join("shim.log");
    let mut vars: Vec<(&str, String)> = vec![
        ("LD_PRELOAD", shim_path().display().to_string()),
        ("LEAKSCOPE_OUTPUT", output.display().to_string()),
        ("LEAKSCOPE_LOG", log.display().to_string()),
        ("LEAKSCOPE_INTERVAL", "100ms".to_string()),
        // Most tests here check the totals to the byte; the default (sampled) has its own test.
        ("LEAKSCOPE_NATIVE_TOTALS", "exact".to_string()),
    ];
    for (k, v) in env {
        vars.retain(|(x, _)| x != k);
        vars.push((k, v.to_string()));
    }
    let (status, stdout, stderr, pid) = run_raw(program, args, &vars, timeout);
    let records = read_records(&output);
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let expect = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("EXPECT_"))
        .filter_map(|l| l.split_once('='))
        .filter_map(|(k, v)| v.trim().parse().ok().map(|v| (k.to_string(), v)))
        .collect();
    Run { status, stdout, stderr, records, log, expect, pid }
}

/// Structural checks every shim output must pass: hello first, every stack
/// sent before the first record naming it, bye last, all lines of our pid.
fn assert_well_formed(run: &Run, pid: u32) {
    let mine: Vec<&Value> = run.records.iter().filter(|r| r["pid"] == pid).collect();
    assert!(!mine.is_empty(), "no records from pid {pid}\n{}", run.context());
    assert_eq!(mine[0]["type"], "hello", "first line must be hello\n{}", run.context());
    assert_eq!(mine[0]["source"], "shim");
    assert_eq!(mine[0]["sampling"], "poisson");
    let mut sent = HashSet::new();
    for r in &mine {
        assert_eq!(r["v"], 1);
        assert_eq!(r["source"], "shim");
        assert_matches_protocol_types(r, run);
        match r["type"].as_str() {
            Some("stack") => {
                sent.insert(r["id"].as_u64().expect("stack id"));
                assert!(r["frames"].is_array());
            }
            Some("native") => {
                for s in r["sites"].as_array().expect("sites") {
                    let id = s["stack"].as_u64().expect("site stack");
                    assert!(sent.contains(&id), "site names stack {id} before it was sent\n{}", run.context());
                    assert!(
                        s["site"].is_string() && s["bytes"].is_u64() && s["allocs"].is_u64() && s["samples"].is_u64()
                    );
                }
                for k in [
                    "seq",
                    "t_ms",
                    "unix_ms",
                    "live_bytes",
                    "live_allocs",
                    "mmap_bytes",
                    "sampling_mean_bytes",
                    "dropped",
                ] {
                    assert!(r[k].is_u64(), "native record lacks {k}: {r}");
                }
                // Call counts exist only when every call is counted.
                let exact = r["totals"] == "exact";
                assert!(exact || r["totals"] == "sampled", "native record without its kind of totals: {r}");
                for k in ["total_allocs", "total_frees", "alloc_bytes_total"] {
                    assert_eq!(r[k].is_u64(), exact, "{k} in a record with {} totals: {r}", r["totals"]);
                }
            }
            _ => {}
        }
    }
    let last = mine.last().expect("records");
    assert_eq!(last["type"], "bye", "last line must be bye\n{}", run.context());
}

/// The shim writes its lines by hand (no serde in a malloc hook's process); they must read as
/// the protocol crate's record types, with no field those types do not know (the shim's
/// contract is its documented fields), and its `hello.config` exactly the protocol's `ShimConfig`.
fn assert_matches_protocol_types(record: &Value, run: &Run) {
    use leakscope_protocol::records::{Record, ShimConfig, decode, unknown_fields};
    let line = record.to_string();
    let (key, decoded) =
        decode(record.clone()).unwrap_or_else(|e| panic!("the protocol types refuse {line}: {e}\n{}", run.context()));
    assert_eq!(key.source.as_str(), "shim");
    let unknown = unknown_fields(&line).expect("decodes");
    assert!(unknown.is_empty(), "fields the protocol types do not know: {unknown:?} in {line}");
    match decoded {
        Record::Hello(hello) => {
            let config = hello.config.expect("hello.config");
            let config: ShimConfig = serde_json::from_value(config)
                .unwrap_or_else(|e| panic!("hello.config is not the protocol's ShimConfig: {e}: {line}"));
            assert!(config.max_tracked > 0 && config.table_bytes > 0, "{config:?}");
            assert!(hello.preload.is_some() && hello.native.is_some(), "{line}");
        }
        Record::Native(native) => assert!(native.live_bytes.is_some() && native.threads.is_some(), "{line}"),
        Record::Stack(_) | Record::Status(_) | Record::Bye(_) => {}
        other => panic!("the shim sent a record that is not the shim's: {other:?}"),
    }
}

fn assert_exact_totals(run: &Run) {
    let n = run.last_native();
    assert_eq!(n["live_bytes"].as_i64(), Some(run.expect("LIVE_BYTES")), "live bytes\n{}", run.context());
    assert_eq!(n["live_allocs"].as_i64(), Some(run.expect("LIVE_ALLOCS")), "live allocations\n{}", run.context());
}

// ------------------------------------------------------------ call sites --

#[test]
fn leak_from_here_is_the_top_native_site() {
    let prog = build_c("leak_site", false);
    let run = run_shim(&prog, &[], &[("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "32KiB")]);
    assert!(run.status.success(), "{}", run.context());
    assert_well_formed(&run, run.pid);
    assert_exact_totals(&run);
    let n = run.last_native();
    let sites = bytes_by_site(n);
    let (top, bytes) = sites.first().unwrap_or_else(|| panic!("no sites\n{}", run.context()));
    assert!(top.starts_with("leak_from_here (leak_site+0x"), "top site is {top:?}\n{}", run.context());
    let leaked = run.expect("LIVE_BYTES") as f64;
    assert!((bytes / leaked - 1.0).abs() < 0.2, "estimate {bytes} vs leaked {leaked}");
    // churn() freed everything it allocated: it must not show up.
    assert!(sites.iter().all(|(s, _)| !s.starts_with("churn")), "{sites:?}");
    // The full stack is symbolized late: leak_from_here <- main.
    let top_stack = n["sites"][0]["stack"].as_u64().expect("stack");
    let frames = &run.stacks()[&top_stack];
    assert!(frames.len() >= 2 && frames[1].starts_with("main (leak_site+0x"), "{frames:?}");
    assert_eq!(run.of("hello")[0]["mean_bytes"], 32768);
    assert!(run.stdout.lines().all(|l| l.starts_with("EXPECT_")), "the shim wrote to stdout: {}", run.stdout);
}

/// By default the shim counts nothing per call: the live totals are estimated from the samples,
/// and the record says so.
#[test]
fn sampled_totals_are_estimates_and_say_so() {
    let prog = build_c("leak_site", false);
    let run =
        run_shim(&prog, &[], &[("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "32KiB"), ("LEAKSCOPE_NATIVE_TOTALS", "sampled")]);
    assert!(run.status.success(), "{}", run.context());
    assert_well_formed(&run, run.pid);
    assert_eq!(run.of("hello")[0]["config"]["totals"], "sampled", "{}", run.context());
    let n = run.last_native();
    assert_eq!(n["totals"], "sampled", "{n}");
    for counted in ["total_allocs", "total_frees", "alloc_bytes_total"] {
        assert!(n.get(counted).is_none(), "{counted} needs every call counted: {n}");
    }
    let leaked = run.expect("LIVE_BYTES") as f64;
    let estimate = n["live_bytes"].as_f64().expect("live_bytes");
    let se = n["live_bytes_se"].as_f64().expect("a sampled estimate carries its standard error");
    // Within 4.5 of its standard errors. The error is estimated from the samples too, so it is
    // smaller exactly when too few blocks were drawn: 4 of them failed ~1 run in 10,000 (2000
    // blocks of 8000 B, each drawn with p = 1 - exp(-8000/32768) = 0.217; exact binomial tail),
    // 4.5 fail ~1 in 56,000. An estimate not scaled up by 1/p would be 78 % low, ~18 of them.
    assert!((estimate - leaked).abs() <= 4.5 * se, "estimated {estimate} ± {se} of {leaked} live bytes");
    assert!(se > 0.0 && se < 0.2 * leaked, "standard error {se} of {leaked}");
    let sites: f64 = bytes_by_site(n).iter().map(|(_, b)| b).sum();
    assert!((sites - estimate).abs() <= 1.0 + estimate * 1e-9, "the sites ({sites}) are the estimate ({estimate})");
    // Exact, on request.
    let run = run_shim(&prog, &[], &[("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "32KiB")]);
    assert_eq!(run.last_native()["totals"], "exact");
    assert_exact_totals(&run);
}

#[test]
fn dlopened_library_is_symbolized() {
    let plugin = build_c("plugin", true);
    let prog = build_c("dlopen", false);
    let run = run_shim(&prog, &[plugin.to_str().expect("path")], &[("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "64KiB")]);
    assert!(run.status.success(), "{}", run.context());
    assert_well_formed(&run, run.pid);
    let n = run.last_native();
    let sites = bytes_by_site(n);
    assert!(sites[0].0.starts_with("plugin_leak (libplugin.so+0x"), "{sites:?}");
    let leaked = run.expect("LIVE_BYTES");
    let live = n["live_bytes"].as_i64().expect("live");
    // The loaded plugin itself keeps a few loader allocations (link map...).
    assert!(live >= leaked && live - leaked < 64 * 1024, "live {live} vs leaked {leaked}");
    assert!((sites[0].1 / leaked as f64 - 1.0).abs() < 0.3, "{sites:?}");
}

#[test]
fn anonymous_mappings_are_exact_and_attributed() {
    let prog = build_c("mmap_track", false);
    let run = run_shim(&prog, &[], &[]);
    assert!(run.status.success(), "{}", run.context());
    assert_well_formed(&run, run.pid);
    let n = run.last_native();
    assert_eq!(n["mmap_bytes"].as_i64(), Some(run.expect("MMAP_BYTES")), "{}", run.context());
    let sites = bytes_by_site(n);
    let mapped: f64 = sites.iter().filter(|(s, _)| s.starts_with("mapping_leak (")).map(|(_, b)| b).sum();
    assert_eq!(mapped as i64, run.expect("MMAP_BYTES"), "{sites:?}");
}

// ------------------------------------------------------ hazards & totals --

#[test]
fn threads_cross_thread_frees_and_recycled_counters_are_exact() {
    let prog = build_c("threads", false);
    for mode in ["leak", "noleak"] {
        let run = run_shim(&prog, &[mode], &[("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "64KiB")]);
        assert!(run.status.success(), "{}", run.context());
        assert_well_formed(&run, run.pid);
        assert_exact_totals(&run);
        let n = run.last_native();
        assert!(n["total_allocs"].as_u64().unwrap_or(0) > 4_000_000, "{n}");
        // 24 threads came and went: their counter blocks were folded in.
        assert!(n["threads"].as_u64().unwrap_or(99) <= 2, "{n}");
        if mode == "noleak" {
            assert_eq!(n["live_samples"], 0, "every sample was freed: {n}");
        }
    }
}

#[test]
fn realloc_calloc_and_aligned_edge_cases() {
    let prog = build_c("realloc_edge", false);
    let run = run_shim(&prog, &[], &[]);
    assert!(run.status.success(), "{}", run.context());
    assert_eq!(run.expect("FAILS"), 0, "the host saw different allocator behaviour under the shim\n{}", run.context());
    assert_well_formed(&run, run.pid);
    assert_exact_totals(&run);
    // The same program without the shim behaves the same.
    let (status, stdout, _, _) = run_raw(&prog, &[], &[], Duration::from_secs(30));
    assert!(status.success());
    assert!(stdout.contains("EXPECT_FAILS=0"), "{stdout}");
}

/// Sampled blocks carry a tag in front of the host's pointer (shim/src/tag.rs). With every
/// allocation sampled, the host must not be able to tell: sizes, contents, zeroing, alignments,
/// glibc's own reallocs, frees from another thread and from a forked child.
#[test]
fn sampled_blocks_behave_exactly_like_glibc_blocks() {
    let prog = build_c("tagged_blocks", false);
    let (status, stdout, _, _) = run_raw(&prog, &[], &[], Duration::from_secs(60));
    assert!(status.success() && stdout.contains("EXPECT_FAILS=0"), "without the shim: {stdout}");
    for mean in ["1", "4KiB", "256KiB"] {
        let run = run_shim(&prog, &[], &[("LEAKSCOPE_NATIVE_SAMPLE_BYTES", mean)]);
        assert!(run.status.success(), "mean {mean}\n{}", run.context());
        assert_eq!(run.expect("FAILS"), 0, "mean {mean}: the host saw a difference\n{}", run.context());
        assert_well_formed(&run, run.pid);
        assert_exact_totals(&run);
        if mean == "1" {
            // Every block the program kept is a live sample, and no freed one is left over.
            let n = run.last_native();
            assert_eq!(n["live_samples"].as_i64(), Some(run.expect("LIVE_ALLOCS")), "{n}\n{}", run.context());
            let sampled: f64 = bytes_by_site(n).iter().map(|(_, b)| b).sum();
            let live = run.expect("LIVE_BYTES") as f64;
            assert!((sampled / live - 1.0).abs() < 0.02, "sites add up to {sampled} of {live} live bytes");
        }
    }
}

#[test]
fn frees_and_allocations_in_tls_destructors() {
    let prog = build_c("tls_dtor", false);
    let run = run_shim(&prog, &[], &[]);
    assert!(run.status.success(), "{}", run.context());
    assert_eq!(run.expect("HANDOFFS"), 16);
    assert_well_formed(&run, run.pid);
    assert_exact_totals(&run);
}

#[test]
fn signals_during_heavy_malloc() {
    let prog = build_c("signals", false);
    let run = run_shim(&prog, &[], &[("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "16KiB")]);
    assert!(run.status.success(), "{}", run.context());
    assert_eq!(run.expect("SIGNALS_OK"), 1, "the timer signals did not arrive");
    assert_well_formed(&run, run.pid);
    assert_exact_totals(&run);

    // exit() from the signal handler, with every allocation sampled so the
    // interrupted thread is often inside the shim: exits promptly with its code.
    for _ in 0..3 {
        let run =
            run_shim_timeout(&prog, &["exit"], &[("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "1")], Duration::from_secs(30));
        assert_eq!(run.status.code(), Some(9), "{}", run.context());
        assert_eq!(run.of("hello").len(), 1);
    }
}

#[test]
fn exit_paths_flush_a_final_report() {
    let prog = build_c("exit_modes", false);
    for (mode, code, reason) in [
        ("return", 2, "exit"),
        ("exit", 3, "exit"),
        ("_exit", 4, "_exit"),
        ("_Exit", 6, "_exit"),
        ("thread_exit", 5, "exit"),
    ] {
        // A long interval: the final record can only come from the exit path.
        let run = run_shim(&prog, &[mode], &[("LEAKSCOPE_INTERVAL", "1h")]);
        assert_eq!(run.status.code(), Some(code), "{mode}\n{}", run.context());
        assert_well_formed(&run, run.pid);
        if mode == "thread_exit" {
            // Still live at exit besides the leak: the exiting thread's TLS
            // vector (glibc) and the block the main thread may hold right now.
            let n = run.last_native();
            let extra = n["live_bytes"].as_i64().unwrap_or(0) - run.expect("LIVE_BYTES");
            let extra_allocs = n["live_allocs"].as_i64().unwrap_or(0) - run.expect("LIVE_ALLOCS");
            assert!(
                (0..1024).contains(&extra) && (0..=2).contains(&extra_allocs),
                "{extra} {extra_allocs}\n{}",
                run.context()
            );
        } else {
            assert_exact_totals(&run);
        }
        let bye = run.of("bye");
        assert_eq!(bye.last().expect("bye")["reason"], reason, "{mode}");
    }
}

#[test]
fn fork_child_goes_quiet_and_exec_starts_fresh() {
    let prog = build_c("fork", false);
    for mode in ["exit", "_exit"] {
        let run = run_shim(&prog, &[mode], &[]);
        assert!(run.status.success(), "{}", run.context());
        assert_eq!(run.expect("CHILD_STATUS"), 7, "child exit code changed\n{}", run.context());
        let child = run.expect("CHILD_PID") as u32;
        assert_well_formed(&run, run.pid);
        assert_exact_totals(&run); // the child's allocations are not the parent's
        assert!(run.records.iter().all(|r| r["pid"] == run.pid), "the forked child wrote records\n{}", run.context());
        assert!(run.log.contains(&format!("[{child}:")) && run.log.contains("forked child"), "{}", run.log);
    }
    // fork + exec: the exec'd program is tracked afresh, with its own hello.
    let run = run_shim(&prog, &["exec"], &[]);
    assert!(run.status.success(), "{}", run.context());
    assert_eq!(run.expect("CHILD_STATUS"), 0);
    let gc = run.expect("GC_PID") as u32;
    assert_well_formed(&run, run.pid);
    assert_well_formed(&run, gc);
    assert_exact_totals(&run);
    let gc_native = run.of_pid("native", gc);
    assert_eq!(gc_native.last().expect("grandchild native")["live_bytes"].as_i64(), Some(run.expect("GC_LIVE_BYTES")));
}

// ------------------------------------------------------------ robustness --

fn baseline_hello() -> (ExitStatus, String) {
    let prog = build_c("hello", false);
    let (status, stdout, stderr, _) = run_raw(&prog, &["x"], &[], Duration::from_secs(30));
    assert_eq!(status.code(), Some(3));
    assert!(stderr.is_empty());
    (status, stdout)
}

#[test]
fn shim_absent_leaves_the_host_alone() {
    let (base_status, base_out) = baseline_hello();
    let prog = build_c("hello", false);
    let missing = scratch().join("no-such-dir/libleakscope_shim.so");
    let (status, stdout, _stderr, _) =
        run_raw(&prog, &["x"], &[("LD_PRELOAD", missing.display().to_string())], Duration::from_secs(30));
    // ld.so prints its own "cannot be preloaded" line on stderr; the host runs unchanged.
    assert_eq!(status.code(), base_status.code());
    assert_eq!(stdout, base_out);
}

#[test]
fn unwritable_output_leaves_the_host_alone_and_says_why() {
    let (base_status, base_out) = baseline_hello();
    let prog = build_c("hello", false);
    let bad = scratch().join("no-such-dir/out.ndjson");
    let bad = bad.to_str().expect("path");
    let run = run_shim(&prog, &["x"], &[("LEAKSCOPE_OUTPUT", bad)]);
    assert_eq!(run.status.code(), base_status.code());
    assert_eq!(run.stdout, base_out);
    assert!(run.stderr.is_empty(), "a log file was given: stderr must stay clean: {}", run.stderr);
    assert!(
        run.log.contains("cannot open LEAKSCOPE_OUTPUT=") && run.log.contains("native tracking off"),
        "{}",
        run.log
    );

    // No log file either: the host's stdout and stderr stay untouched all the same.
    let (status, stdout, stderr, _) = run_raw(
        &prog,
        &["x"],
        &[("LD_PRELOAD", shim_path().display().to_string()), ("LEAKSCOPE_OUTPUT", bad.to_string())],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), base_status.code());
    assert_eq!(stdout, base_out);
    assert!(stderr.is_empty(), "the shim wrote to the host's stderr: {stderr}");
}

#[test]
fn bad_env_values_fall_back_with_a_clear_message() {
    let (base_status, base_out) = baseline_hello();
    let prog = build_c("hello", false);
    let run = run_shim(
        &prog,
        &["x"],
        &[
            ("LEAKSCOPE_INTERVAL", "banana"),
            ("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "-5"),
            ("LEAKSCOPE_NATIVE_MAX_TRACKED", "lots"),
            ("LEAKSCOPE_NATIVE_STACK_DEPTH", "1000"),
        ],
    );
    assert_eq!(run.status.code(), base_status.code());
    assert_eq!(run.stdout, base_out);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    assert_well_formed(&run, run.pid);
    let hello = run.of("hello")[0];
    assert_eq!(hello["interval_ms"], 5000);
    assert_eq!(hello["mean_bytes"], 262144);
    assert_eq!(hello["config"]["max_tracked"], 32768);
    assert_eq!(hello["config"]["max_depth"], 32);
    let statuses: Vec<String> =
        run.of("status").iter().map(|s| s["message"].as_str().unwrap_or("").to_string()).collect();
    for var in [
        "LEAKSCOPE_INTERVAL=\"banana\"",
        "LEAKSCOPE_NATIVE_SAMPLE_BYTES=\"-5\"",
        "LEAKSCOPE_NATIVE_MAX_TRACKED=\"lots\"",
        "LEAKSCOPE_NATIVE_STACK_DEPTH=\"1000\"",
    ] {
        assert!(statuses.iter().any(|m| m.contains(var)), "no status about {var}: {statuses:?}");
        assert!(run.log.contains(var), "log lacks {var}:\n{}", run.log);
    }
    assert!(run.of("status").iter().all(|s| s["level"] == "warn"));
}

#[test]
fn disabled_or_unconfigured_shim_is_pass_through_and_says_so() {
    let (base_status, base_out) = baseline_hello();
    let prog = build_c("hello", false);
    let run = run_shim(&prog, &["x"], &[("LEAKSCOPE_NATIVE", "0")]);
    assert_eq!(run.status.code(), base_status.code());
    assert_eq!(run.stdout, base_out);
    assert!(run.log.contains("disabled by LEAKSCOPE_NATIVE=0"), "{}", run.log);
    assert!(run.of("native").is_empty());
    assert_eq!(run.of("hello")[0]["native"], "off");
    assert!(run.of("status").iter().any(|s| { s["message"].as_str().unwrap_or("").contains("LEAKSCOPE_NATIVE=0") }));

    // Preloaded without any output: nothing written anywhere but the log.
    let dir = unique("unconfigured");
    let log = dir.join("shim.log");
    let (status, stdout, stderr, _) = run_raw(
        &prog,
        &["x"],
        &[("LD_PRELOAD", shim_path().display().to_string()), ("LEAKSCOPE_LOG", log.display().to_string())],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), base_status.code());
    assert_eq!(stdout, base_out);
    assert!(stderr.is_empty());
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(log.contains("neither LEAKSCOPE_SOCKET nor LEAKSCOPE_OUTPUT"), "{log}");
}

#[test]
fn not_first_in_lookup_order_is_detected_and_reported() {
    let other = build_c("other_malloc", true);
    let prog = build_c("hello", false);
    let (base_status, base_out) = baseline_hello();
    let preload = format!("{}:{}", other.display(), shim_path().display());
    let run = run_shim(&prog, &["x"], &[("LD_PRELOAD", &preload)]);
    assert_eq!(run.status.code(), base_status.code());
    assert_eq!(run.stdout, base_out);
    assert!(run.log.contains("not to the shim") && run.log.contains("libother_malloc.so"), "{}", run.log);
    assert!(run.of("native").is_empty(), "tracking must be off");
    let status = run.of("status");
    assert!(
        status.iter().any(|s| s["level"] == "error"
            && s["message"]
                .as_str()
                .unwrap_or("")
                .contains("first in the lookup order")),
        "{status:?}"
    );
}

#[test]
fn host_closing_and_reusing_descriptors_is_survived() {
    let prog = build_c("fd_hostile", false);
    let dir = unique("fd_hostile");
    let host_file = dir.join("host.txt");
    let run = run_shim(&prog, &[host_file.to_str().expect("path")], &[]);
    assert!(run.status.success(), "{}", run.context());
    // Not one byte of ours in the host's file, though it sits on our old numbers.
    assert_eq!(std::fs::read_to_string(&host_file).expect("host file"), "host data\n");
    // Our output was reopened by path: a second segment, starting with hello.
    let hellos = run.of("hello");
    assert!(hellos.len() >= 2, "no new segment after the host closed our descriptor\n{}", run.context());
    let last = run.last_native();
    assert_eq!(last["live_bytes"].as_i64(), Some(run.expect("LIVE_BYTES")));
    assert_eq!(run.records.last().expect("records")["type"], "bye");
}

#[test]
fn detection_api_reports_active_off_and_absent() {
    let probe = build_c("probe", false);
    let run = run_shim(&probe, &[], &[]);
    assert!(run.status.success(), "{}", run.context());
    assert!(run.stdout.contains("active=1 status=active"), "{}", run.stdout);
    let run = run_shim(&probe, &[], &[("LEAKSCOPE_NATIVE", "0")]);
    assert!(run.stdout.contains("active=0 status=native tracking disabled by LEAKSCOPE_NATIVE=0"), "{}", run.stdout);
    let (status, stdout, _, _) = run_raw(&probe, &[], &[], Duration::from_secs(30));
    assert!(status.success());
    assert!(stdout.contains("absent"), "{stdout}");
}

// ---------------------------------------------------------------- socket --

/// Accepts one connection and reads its lines into a shared list, tagged with
/// `conn_no`; hands a clone of the stream back so the test can cut it.
fn serve(
    listener: UnixListener,
    lines: std::sync::Arc<Mutex<Vec<(usize, Value)>>>,
    conn_no: usize,
) -> (std::thread::JoinHandle<()>, std::sync::mpsc::Receiver<std::os::unix::net::UnixStream>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        if let Ok(c) = stream.try_clone() {
            let _ = tx.send(c);
        }
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let v: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line on the socket ({e}): {line}"));
            lines.lock().unwrap_or_else(|e| e.into_inner()).push((conn_no, v));
        }
    });
    (h, rx)
}

#[test]
fn socket_output_reconnects_after_the_collector_goes_away() {
    let prog = build_c("slow_leak", false);
    let dir = unique("socket");
    let sock = dir.join("collector.sock");
    let lines = std::sync::Arc::new(Mutex::new(Vec::new()));
    let listener = UnixListener::bind(&sock).expect("bind");
    let (first, first_conn) = serve(listener, lines.clone(), 1);

    let log = dir.join("shim.log");
    let mut cmd = Command::new(&prog);
    cmd.args(["150"]) // 150 rounds x 20 ms
        .env_remove("LEAKSCOPE_OUTPUT")
        .env("LD_PRELOAD", shim_path())
        .env("LEAKSCOPE_SOCKET", &sock)
        .env("LEAKSCOPE_NATIVE_TOTALS", "exact")
        .env("LEAKSCOPE_LOG", &log)
        .env("LEAKSCOPE_INTERVAL", "100ms")
        .env("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "4KiB")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id();

    // Let the first connection see a few records, then drop the collector.
    let deadline = Instant::now() + Duration::from_secs(20);
    while lines.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|(_, v)| v["type"] == "native").count() < 3 {
        assert!(Instant::now() < deadline, "no native records on the socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The collector goes away (connection cut, socket file gone) and comes
    // back after a gap during which the shim must keep the host running.
    let conn = first_conn.recv_timeout(Duration::from_secs(5)).expect("first connection");
    let _ = conn.shutdown(std::net::Shutdown::Both);
    std::fs::remove_file(&sock).expect("unlink socket");
    let _ = first.join();
    std::thread::sleep(Duration::from_millis(400));
    let listener = UnixListener::bind(&sock).expect("rebind");
    let (second, _) = serve(listener, lines.clone(), 2);

    let status = wait_deadline(&mut child, Duration::from_secs(60), "slow_leak");
    assert!(status.success());
    let mut out = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut out).expect("read");
    let _ = second.join();
    let lines = lines.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let conn2: Vec<&Value> = lines.iter().filter(|(c, _)| *c == 2).map(|(_, v)| v).collect();
    assert!(!conn2.is_empty(), "the shim never reconnected\nlog:\n{log}");
    assert_eq!(conn2[0]["type"], "hello", "a new connection starts with hello");
    assert!(conn2.iter().any(|v| v["type"] == "status" && v["message"].as_str().unwrap_or("").contains("reconnected")));
    // Stacks are re-sent on the new connection before they are referenced.
    let mut sent = HashSet::new();
    for v in &conn2 {
        assert_eq!(v["pid"], pid);
        if v["type"] == "stack" {
            sent.insert(v["id"].as_u64().expect("id"));
        }
        if v["type"] == "native" {
            for s in v["sites"].as_array().expect("sites") {
                assert!(sent.contains(&s["stack"].as_u64().expect("stack")), "stack not re-sent: {v}");
            }
        }
    }
    let last = conn2.iter().rev().find(|v| v["type"] == "native").expect("native on connection 2");
    let leaked: i64 = out
        .lines()
        .find_map(|l| l.strip_prefix("EXPECT_LIVE_BYTES="))
        .and_then(|v| v.parse().ok())
        .expect("expect line");
    assert_eq!(last["live_bytes"].as_i64(), Some(leaked));
    assert!(bytes_by_site(last)[0].0.starts_with("slow_leak_here ("), "{last}");
    assert_eq!(conn2.last().expect("lines")["type"], "bye");
    assert!(log.contains("output lost") || log.contains("cannot connect"), "{log}");
}

#[test]
fn socket_nobody_listening_leaves_the_host_alone() {
    let (base_status, base_out) = baseline_hello();
    let prog = build_c("hello", false);
    let dir = unique("nosocket");
    let log = dir.join("shim.log");
    let (status, stdout, stderr, _) = run_raw(
        &prog,
        &["x"],
        &[
            ("LD_PRELOAD", shim_path().display().to_string()),
            ("LEAKSCOPE_SOCKET", dir.join("nobody.sock").display().to_string()),
            ("LEAKSCOPE_LOG", log.display().to_string()),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), base_status.code());
    assert_eq!(stdout, base_out);
    assert!(stderr.is_empty());
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(log.contains("cannot connect to LEAKSCOPE_SOCKET="), "{log}");
}

// ----------------------------------------------------------------- .NET --

/// Sites whose bytes grew by more than `min_growth` between the native
/// record at 40% of the run and the last one.
fn growing_sites(run: &Run, min_growth: f64) -> Vec<(String, f64)> {
    let natives = run.of_pid("native", run.pid);
    assert!(natives.len() >= 5, "too few records to judge growth\n{}", run.context());
    let early: HashMap<String, f64> = bytes_by_site(natives[natives.len() * 2 / 5]).into_iter().collect();
    bytes_by_site(natives[natives.len() - 1])
        .into_iter()
        .map(|(s, b)| {
            let g = b - early.get(&s).copied().unwrap_or(0.0);
            (s, g)
        })
        .filter(|(_, g)| *g > min_growth)
        .collect()
}

#[test]
fn dotnet_allochglobal_leak_is_named_at_the_managed_method() {
    let app = dotnet_app("NativeLeakApp", Build::FrameworkDependent);
    let dotnet = &app.program;
    let dir = unique("perfmap");
    let perf_dir = dir.display().to_string();
    // What `leakscope run` sets for the shim, plus a private perf-map dir.
    let env = [
        ("DOTNET_PerfMapEnabled", "3"),
        ("DOTNET_PerfMapJitDumpPath", perf_dir.as_str()),
        ("LEAKSCOPE_NATIVE_SAMPLE_BYTES", "64KiB"),
    ];
    let app_arg = app.leading_args[0].as_str();

    // Leaking: 10 rounds x 100 x 64 KiB = 62.5 MiB from LeakBuffers.
    let run = run_shim_timeout(dotnet, &[app_arg, "--rounds", "10"], &env, Duration::from_secs(120));
    assert!(run.status.success(), "{}", run.context());
    assert!(run.stdout.contains("leaked_bytes=65536000"), "{}", run.stdout);
    assert_well_formed(&run, run.pid);
    let n = run.last_native();
    let sites = bytes_by_site(n);
    assert_eq!(
        sites[0].0,
        "NativeLeakApp.Leaker.LeakBuffers",
        "top native sites: {:?}\n{}",
        &sites[..sites.len().min(5)],
        run.log
    );
    let est = sites[0].1;
    assert!((est / 65_536_000.0 - 1.0).abs() < 0.25, "estimate {est} for 65536000 leaked");
    assert!(n["live_bytes"].as_i64().unwrap_or(0) >= 65_536_000, "{n}");
    // The managed stack is there, innermost first: ... Marshal.AllocHGlobal, LeakBuffers, Main.
    let stacks = run.stacks();
    let leak_stack = n["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .find(|s| s["site"] == "NativeLeakApp.Leaker.LeakBuffers")
        .and_then(|s| stacks.get(&s["stack"].as_u64().unwrap_or(0)))
        .expect("stack of the leak site");
    let at = leak_stack.iter().position(|f| f == "NativeLeakApp.Leaker.LeakBuffers").expect("frame");
    assert_eq!(leak_stack.get(at + 1).map(String::as_str), Some("NativeLeakApp.Program.Main"), "{leak_stack:?}");
    let growing = growing_sites(&run, 4.0 * 1024.0 * 1024.0);
    assert!(
        growing.iter().any(|(s, _)| s == "NativeLeakApp.Leaker.LeakBuffers"),
        "the leak is not seen growing: {growing:?}"
    );

    // Freeing everything: nothing grows, the leak site is gone.
    let run = run_shim_timeout(dotnet, &[app_arg, "--rounds", "10", "--free"], &env, Duration::from_secs(120));
    assert!(run.status.success(), "{}", run.context());
    assert!(run.stdout.contains("leaked_bytes=0"), "{}", run.stdout);
    assert_well_formed(&run, run.pid);
    let growing = growing_sites(&run, 1024.0 * 1024.0);
    assert!(growing.is_empty(), "sites reported as growing in --free mode: {growing:?}");
    let sites = bytes_by_site(run.last_native());
    assert!(sites.iter().all(|(s, _)| s != "NativeLeakApp.Leaker.LeakBuffers"), "{sites:?}");
}
