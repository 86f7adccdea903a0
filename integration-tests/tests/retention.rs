//! Retention paths end to end: a real .NET app under the real agent, asked over its two-way
//! socket (`{"cmd":"retention",…}`) which chains of references keep its leaked objects alive.
//! The event-handler leak must be traced to the static event, the static-list leaks to their
//! static fields; objects held by a stack frame or a GC handle to those roots, named, with
//! background GC on (the default); a budget too small gives `unknown`, never a root; and the
//! retained size of a subscriber is what it owns.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use integration_tests::*;
use serde_json::{Value, json};

/// The app under the agent, with the collector's end of the agent's connection.
struct Session {
    run: Running,
    to_agent: UnixStream,
    from_agent: Receiver<String>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Session {
    fn start(args: &[&str], extra_env: &[(&str, &str)]) -> Session {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("collector.sock");
        let log = dir.path().join("agent.log");
        let listener = UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut c = dotnet_app("LeakApp", Build::FrameworkDependent).command();
        c.args(args)
            .env("CORECLR_ENABLE_PROFILING", "1")
            .env("CORECLR_PROFILER", AGENT_CLSID)
            .env("CORECLR_PROFILER_PATH", agent_path())
            .env("LEAKSCOPE_SOCKET", &socket)
            .env("LEAKSCOPE_LOG", &log)
            .env("LEAKSCOPE_INTERVAL", "1s")
            .env("DOTNET_CLI_TELEMETRY_OPTOUT", "1")
            .envs(extra_env.iter().copied());
        let run = Running::start(c);
        let deadline = Instant::now() + Duration::from_secs(60);
        let conn = loop {
            match listener.accept() {
                Ok((conn, _)) => break conn,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("the agent never connected: {e}\n{}", log_text(&log)),
            }
        };
        conn.set_nonblocking(false).unwrap();
        let reader = conn.try_clone().unwrap();
        let (tx, from_agent) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Session { run, to_agent: conn, from_agent, log, _dir: dir }
    }

    /// Sends a command and returns the first record of `kind` that follows.
    fn ask(&mut self, command: &Value, kind: &str, timeout: Duration) -> Value {
        writeln!(self.to_agent, "{command}").unwrap();
        self.next(kind, timeout)
    }

    fn next(&mut self, kind: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .from_agent
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {kind} record within {timeout:?}\n{}", log_text(&self.log)));
            let record: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {e}: {line}"));
            if record["type"] == kind {
                return record;
            }
        }
    }

    /// The app runs to its end as it would have without us.
    fn finishes_normally(mut self) {
        let done = self.run.wait_for_line("done", Duration::from_secs(120));
        assert!(done.starts_with("done "), "{done}");
        let status = self.run.wait(Duration::from_secs(30));
        assert!(status.success(), "the app's exit changed: {status:?}\n{}", log_text(&self.log));
    }
}

fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `ready subscribers=5000 sessions=20002 listed=20000` → (5000, 20002, 20000).
fn created(ready: &str) -> (u64, u64, u64) {
    let value = |key: &str| -> u64 {
        ready.split_whitespace().find_map(|w| w.strip_prefix(key)).and_then(|v| v.parse().ok()).unwrap()
    };
    (value("subscribers="), value("sessions="), value("listed="))
}

fn of_type<'a>(record: &'a Value, type_name: &str) -> &'a Value {
    record["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type_name"] == type_name)
        .unwrap_or_else(|| panic!("no entry for {type_name}: {record}"))
}

fn step_types(path: &Value) -> Vec<&str> {
    path["steps"].as_array().unwrap().iter().map(|s| s["type_name"].as_str().unwrap()).collect()
}

fn render(path: &Value) -> String {
    let root = &path["root"];
    let mut text = match root["name"].as_str() {
        Some(name) => format!("{} {name}", root["kind"].as_str().unwrap()),
        None => root["kind"].as_str().unwrap().to_string(),
    };
    for step in path["steps"].as_array().unwrap() {
        text.push_str(" → ");
        text.push_str(step["type_name"].as_str().unwrap());
        if let Some(field) = step["field"].as_str() {
            text.push_str(&format!(" ({field})"));
        }
        if step["repeated"] == true {
            text.push_str(" ⟲");
        }
    }
    format!("{text}: {} instances, {} bytes", path["instances"], path["bytes"])
}

#[test]
fn event_handler_and_static_list_leaks_are_traced_to_their_static_fields() {
    let mut session = Session::start(&["retention", "40", "5000", "20000"], &[]);
    let ready = session.run.wait_for_line("ready", Duration::from_secs(60));
    let (subscribers, sessions, listed) = created(&ready);
    let command = json!({
        "cmd": "retention",
        "types": ["LeakApp.Subscriber", "LeakApp.Session", "System.String", "LeakApp.Tag", "LeakApp.NoSuchType"],
        "max_paths": 5,
    });
    let record = session.ask(&command, "retention", Duration::from_secs(60));
    eprintln!(
        "retention: {} objects, {} references, pause {} ms, elapsed {} ms, {} MB of {} MB, statics {}",
        record["objects"],
        record["references"],
        record["pause_ms"],
        record["elapsed_ms"],
        record["memory_bytes"].as_u64().unwrap() >> 20,
        record["memory_budget_bytes"].as_u64().unwrap() >> 20,
        record["statics"]
    );
    for t in record["types"].as_array().unwrap() {
        for path in t["paths"].as_array().unwrap() {
            eprintln!("  {}: {}", t["type_name"].as_str().unwrap(), render(path));
        }
    }
    assert!(record["error"].is_null(), "{}", record["error"]);
    assert_eq!(record["truncated"], false, "{record}");
    assert!(record["gc"].as_u64().unwrap() > 0);
    assert!(record["elapsed_ms"].as_f64().unwrap() > 0.0 && record["pause_ms"].as_f64().unwrap() > 0.0);
    assert!(record["time_budget_ms"].as_u64().unwrap() > 0 && record["memory_budget_bytes"].as_u64().unwrap() > 0);
    assert!(record["memory_bytes"].as_u64().unwrap() <= record["memory_budget_bytes"].as_u64().unwrap());
    assert_eq!(record["statics"]["stale"], false);
    // Two sessions are held from outside the heap: with background GC on (the default) the
    // runtime's heap dump names what holds them.
    assert_eq!(record["roots"]["reported"], true, "{}", record["roots"]);
    assert_eq!(record["roots"]["source"], "heap-dump", "{}", record["roots"]);
    assert!(record["statics"]["with_value"].as_u64().unwrap() >= 3, "{}", record["statics"]);
    // Small heap: every subscriber and session is followed, not a sample.
    assert!(record["walks"].as_array().unwrap().len() >= 2, "{}", record["walks"]);

    // The event-handler leak: the static event, its invocation list, one handler per subscriber.
    let subscriber = of_type(&record, "LeakApp.Subscriber");
    let found = subscriber["instances"].as_u64().unwrap();
    assert!(found * 10 >= subscribers * 9 && found <= subscribers, "{found} subscribers of {subscribers} created");
    let top = &subscriber["paths"][0];
    assert_eq!(top["root"]["kind"], "static", "{}", render(top));
    assert_eq!(top["root"]["name"], "LeakApp.Clock.Tick", "{}", render(top));
    assert_eq!(
        step_types(top),
        ["System.EventHandler", "System.Object[]", "System.EventHandler", "LeakApp.Subscriber"],
        "{}",
        render(top)
    );
    assert!(top["instances"].as_u64().unwrap() * 10 >= subscribers * 9, "{}", render(top));
    assert_eq!(top["steps"][2]["field"], "[]");
    // What one subscriber keeps alive by itself: itself and its 32-byte state array.
    let retained = &top["retained"];
    assert_eq!(retained["type_name"], "LeakApp.Subscriber", "{retained}");
    let per = retained["bytes_per_instance"].as_u64().unwrap();
    assert!((80..=120).contains(&per), "{retained}");
    assert_eq!(retained["lower_bound"], false, "{retained}");

    // The static-list leak: the list field, its backing array, the sessions.
    let session_type = of_type(&record, "LeakApp.Session");
    let found = session_type["instances"].as_u64().unwrap();
    assert!(found * 10 >= sessions * 9 && found <= sessions, "{found} sessions of {sessions} created");
    let top = &session_type["paths"][0];
    assert_eq!(
        (&top["root"]["kind"], &top["root"]["name"]),
        (&json!("static"), &json!("LeakApp.SessionRegistry.Sessions"))
    );
    assert_eq!(*step_types(top).last().unwrap(), "LeakApp.Session", "{}", render(top));
    assert!(top["instances"].as_u64().unwrap() * 10 >= listed * 9, "{}", render(top));

    // The original string leak, among all the process's strings: through StringLeak.Retained.
    let strings = of_type(&record, "System.String");
    let audit = strings["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["root"]["name"] == "LeakApp.StringLeak.Retained")
        .unwrap_or_else(|| panic!("no path through StringLeak.Retained: {}", strings["paths"]));
    let strings_summary: Vec<_> = strings.as_object().unwrap().iter().filter(|(k, _)| *k != "paths").collect();
    eprintln!("strings: {strings_summary:?}");
    assert!(audit["instances"].as_u64().unwrap() >= 4500, "{}\n{strings_summary:?}", render(audit));
    assert_eq!(*step_types(audit).last().unwrap(), "System.String");
    // The sessions' ids, each reached through its session (which the search follows down for
    // its retained size): sampled like any other string, so about one per listed session.
    let ids = strings["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["root"]["name"] == "LeakApp.SessionRegistry.Sessions")
        .unwrap_or_else(|| panic!("no path through SessionRegistry.Sessions: {}", strings["paths"]));
    assert!(ids["instances"].as_u64().unwrap() * 10 >= listed * 9, "{}\n{strings_summary:?}", render(ids));
    assert!(step_types(ids).ends_with(&["LeakApp.Session", "System.String"]), "{}", render(ids));

    // A generic class's static: the runtime gives no address, so it is named by the type it
    // holds, and says so.
    let tags = of_type(&record, "LeakApp.Tag");
    let top = &tags["paths"][0];
    assert_eq!(top["root"]["name"], "LeakApp.Registry<Tag>.Items", "{}", render(top));
    assert!(top["root"]["detail"].as_str().unwrap().contains("named by the type"), "{}", render(top));
    assert_eq!(top["instances"].as_u64(), Some(1000), "{}", render(top));

    let missing = of_type(&record, "LeakApp.NoSuchType");
    assert_eq!((missing["instances"].as_u64(), missing["paths"].as_array().map(Vec::len)), (Some(0), Some(0)));

    // The agent carries on: summaries still flow, and the app ends as it would have.
    session.next("summary", Duration::from_secs(10));
    session.finishes_normally();
}

/// A budget too small to follow the instances up to their roots: the search stops, says where
/// and why, and names the budget that would have been needed; the paths it did not finish are
/// `unknown`, never a root kind guessed from a cut-off walk.
#[test]
fn a_budget_too_small_gives_unknown_paths_and_the_budget_needed() {
    let mut session = Session::start(&["retention", "25", "20000", "20000"], &[]);
    session.run.wait_for_line("ready", Duration::from_secs(60));
    let command = json!({
        "cmd": "retention",
        "types": ["LeakApp.Subscriber", "LeakApp.Session", "System.String"],
        "max_memory_mb": 1,
    });
    let record = session.ask(&command, "retention", Duration::from_secs(60));
    assert!(record["error"].is_null(), "{record}");
    assert_eq!(record["truncated"], true, "{record}");
    assert_eq!(record["truncated_by"], json!(["memory"]), "{record}");
    assert!(record["memory_bytes"].as_u64().unwrap() <= 1 << 20, "{record}");
    let cut = record["cut_short"].as_str().unwrap_or_else(|| panic!("no cut_short: {record}"));
    assert!(cut.contains("memory budget 1 MB"), "{cut}");
    let needed: u64 = cut
        .split("at least ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no budget named in: {cut}"));
    assert!(needed > 1, "{cut}");
    let mut unknown = 0;
    for t in record["types"].as_array().unwrap() {
        for path in t["paths"].as_array().unwrap() {
            let kind = path["root"]["kind"].as_str().unwrap();
            // A cut-off walk never yields "referenced by no object" or a GC root kind.
            assert!(kind == "unknown" || kind == "static", "{}", render(path));
            if kind == "unknown" {
                assert_eq!(path["root"]["detail"].as_str(), Some(cut), "{}", render(path));
                unknown += path["instances"].as_u64().unwrap();
            }
        }
    }
    assert!(unknown > 0, "{record}");

    let bad = session.ask(&json!({"cmd": "retention"}), "status", Duration::from_secs(10));
    assert!(bad["message"].as_str().unwrap().contains("retention"), "{bad}");
    session.finishes_normally();
}

/// With background GC on (the default), what no static holds starts at the stack frame (and
/// its method) or the GC handle (and its kind) that holds it: the runtime's heap dump says so.
#[test]
fn with_background_gc_on_paths_start_at_named_stack_frames_and_handles() {
    let mut session = Session::start(&["retention", "25", "1000", "3000"], &[]);
    session.run.wait_for_line("ready", Duration::from_secs(60));
    let command = json!({"cmd": "retention", "types": ["LeakApp.Session"], "max_paths": 10});
    let record = session.ask(&command, "retention", Duration::from_secs(60));
    let session_type = of_type(&record, "LeakApp.Session");
    for path in session_type["paths"].as_array().unwrap() {
        eprintln!("  {}", render(path));
    }
    assert_eq!(record["roots"]["reported"], true, "{}", record["roots"]);
    assert_eq!(record["roots"]["source"], "heap-dump", "{}", record["roots"]);
    assert!(record["roots"]["pause_ms"].as_f64().unwrap() > 0.0, "{}", record["roots"]);
    let paths = session_type["paths"].as_array().unwrap();
    let by_root = |kind: &str| {
        paths.iter().find(|p| p["root"]["kind"] == kind).unwrap_or_else(|| panic!("no {kind} root: {record}"))
    };
    assert_eq!(paths[0]["root"]["name"], "LeakApp.SessionRegistry.Sessions");
    let stack = by_root("stack");
    assert_eq!(stack["root"]["name"], "LeakApp.RetentionLeaks.Run", "{}", render(stack));
    assert_eq!((stack["instances"].as_u64(), step_types(stack)), (Some(1), vec!["LeakApp.Session"]));
    let handle = by_root("handle");
    assert_eq!(handle["root"]["detail"], "strong", "{}", render(handle));
    assert_eq!(
        (handle["instances"].as_u64(), step_types(handle)),
        (Some(1), vec!["LeakApp.Session"]),
        "{}",
        render(handle)
    );
    // The heap dump's session was started and stopped off the agent thread, which the runtime
    // therefore still does not know (it would refuse its synchronous calls).
    let agent = &session.next("summary", Duration::from_secs(10))["agent"];
    assert_eq!((&agent["thread_known_to_runtime"], &agent["sync_refused"]), (&json!(false), &json!(0)), "{agent:#}");
    session.finishes_normally();
}

/// A `[ThreadStatic]` list on a long-lived thread: the path starts at the thread static, named
/// with its field and the thread's OS id (as SOS shows it), not at "referenced by no object".
#[test]
fn a_thread_static_list_is_named_with_its_thread() {
    let mut session = Session::start(&["thread-static", "25"], &[]);
    let ready = session.run.wait_for_line("ready", Duration::from_secs(60));
    let tid: u64 = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("tid="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no tid in {ready}"));
    let command = json!({"cmd": "retention", "types": ["LeakApp.Note"]});
    let record = session.ask(&command, "retention", Duration::from_secs(60));
    let notes = of_type(&record, "LeakApp.Note");
    for path in notes["paths"].as_array().unwrap() {
        eprintln!("  {}", render(path));
    }
    assert!(record["error"].is_null(), "{record}");
    assert_eq!(record["truncated"], false, "{record}");
    let top = &notes["paths"][0];
    assert_eq!(top["root"]["kind"], "thread-static", "{}", render(top));
    assert_eq!(top["root"]["name"], format!("LeakApp.NoteKeeper.t_notes (thread {tid:#x})"), "{}", render(top));
    assert_eq!(top["instances"].as_u64(), Some(700), "{}", render(top));
    assert_eq!(
        step_types(top),
        ["System.Collections.Generic.List<Note>", "LeakApp.Note[]", "LeakApp.Note"],
        "{}",
        render(top)
    );
    session.finishes_normally();
}

/// What the application allocated since the last GC is left out of the sample (the runtime's
/// generation bounds, kept up to date with `COR_PRF_HIGH_BASIC_GC`): under a string churn the
/// strings the search meets are the live ones, and almost none of those sampled die while it
/// runs. (When GetGenerationBounds answered E_FAIL, 4800 were met for 1370 live, and the
/// fresh ones sampled died during the search: `collected`.)
#[test]
fn strings_allocated_since_the_last_gc_are_left_out_of_the_sample() {
    let mut session = Session::start(&["thread-static", "25"], &[]);
    session.run.wait_for_line("ready", Duration::from_secs(60));
    let command = json!({"cmd": "retention", "types": ["System.String"]});
    let record = session.ask(&command, "retention", Duration::from_secs(60));
    let strings = of_type(&record, "System.String");
    let summary: Vec<_> = strings.as_object().unwrap().iter().filter(|(k, _)| *k != "paths").collect();
    eprintln!("strings: {summary:?}");
    assert!(record["error"].is_null(), "{record}");
    let census = strings["instances"].as_u64().unwrap();
    let walked = strings["walked"].as_u64().unwrap();
    let collected = strings["collected"].as_u64().unwrap();
    // The census and the sampling walk are two walks with the application running between
    // them: a GC in that gap promotes strings allocated after the census, which the walk then
    // rightly meets (1 370 met against 1 369 counted, seen once). Without the filter the walk
    // would also meet every string allocated since the last GC, and most would die during the
    // search (the assertion on `collected` below).
    assert!(walked > 500 && walked <= census + census / 20, "{walked} met, {census} in the census: {summary:?}");
    assert!(collected * 10 <= walked, "{collected} of {walked} died during the search: {summary:?}");
    session.finishes_normally();
}

/// A static list in a type of an assembly loaded into a collectible AssemblyLoadContext: the
/// path names the static, as for any other assembly's.
#[test]
fn a_static_of_a_collectible_assembly_is_named() {
    let mut session = Session::start(&["collectible", "25", "3000"], &[]);
    let ready = session.run.wait_for_line("ready", Duration::from_secs(60));
    assert!(ready.contains("entries=3000 collectible=True"), "{ready}");
    let command = json!({"cmd": "retention", "types": ["LeakApp.PluginEntry"]});
    let record = session.ask(&command, "retention", Duration::from_secs(60));
    let entries = of_type(&record, "LeakApp.PluginEntry");
    for path in entries["paths"].as_array().unwrap() {
        eprintln!("  {}", render(path));
    }
    assert!(record["error"].is_null(), "{record}");
    assert_eq!(record["truncated"], false, "{record}");
    assert_eq!(entries["instances"].as_u64(), Some(3000), "{entries}");
    let top = &entries["paths"][0];
    assert_eq!(
        (&top["root"]["kind"], &top["root"]["name"]),
        (&json!("static"), &json!("LeakApp.PluginCache.Entries")),
        "{}",
        render(top)
    );
    assert_eq!(top["instances"].as_u64(), Some(3000), "{}", render(top));
    session.finishes_normally();
}

/// Retained size: a subscriber that owns a 1 KB payload keeps about that much alive by itself.
#[test]
fn a_subscribers_retained_size_is_its_payload() {
    let mut session = Session::start(&["retained", "25", "3000", "1024"], &[]);
    session.run.wait_for_line("ready", Duration::from_secs(60));
    let command = json!({"cmd": "retention", "types": ["LeakApp.PayloadSubscriber"]});
    let record = session.ask(&command, "retention", Duration::from_secs(60));
    let t = of_type(&record, "LeakApp.PayloadSubscriber");
    let top = &t["paths"][0];
    eprintln!("{}: {}", render(top), top["retained"]);
    assert_eq!(top["root"]["name"], "LeakApp.Ticker.Tick", "{}", render(top));
    let retained = &top["retained"];
    assert_eq!(retained["type_name"], "LeakApp.PayloadSubscriber", "{retained}");
    assert_eq!(retained["lower_bound"], false, "{retained}");
    assert!(retained["measured"].as_u64().unwrap() >= 8, "{retained}");
    let per = retained["bytes_per_instance"].as_u64().unwrap() as f64;
    assert!((per - 1024.0).abs() <= 102.4, "retained {per} B per subscriber, planted 1024 B: {retained}");
    // Beside the shallow bytes: the subscribers' own size is far less.
    let shallow = top["bytes"].as_u64().unwrap() as f64 / top["instances"].as_u64().unwrap() as f64;
    assert!(shallow < 100.0, "{shallow}");
    assert!(retained["bytes"].as_u64().unwrap() >= 3000 * 1024, "{retained}");
    session.finishes_normally();
}

/// A heap of a million objects: the closures' dominant path is found within the default
/// budgets (64 MB agent memory, 10 s), a third of the heap, and the search keeps only a few MB.
#[test]
fn a_million_object_heap_is_traced_within_the_default_budgets() {
    let mut session = Session::start(&["big-heap", "25", "1000000"], &[]);
    session.run.wait_for_line("ready", Duration::from_secs(120));
    let command = json!({"cmd": "retention", "types": ["System.Int32[]", "System.Func<Int32>"]});
    let record = session.ask(&command, "retention", Duration::from_secs(60));
    eprintln!(
        "{} objects, {} walks, pause {} ms (longest {} ms), {} ms, {} KB, {} followed",
        record["objects"],
        record["walks"].as_array().unwrap().len(),
        record["pause_ms"],
        record["max_pause_ms"],
        record["elapsed_ms"],
        record["memory_bytes"].as_u64().unwrap() >> 10,
        record["followed"]
    );
    assert!(record["objects"].as_u64().unwrap() >= 1_000_000, "{record}");
    assert_eq!(record["truncated"], false, "{record}");
    assert!(record["memory_bytes"].as_u64().unwrap() < 16 << 20, "{record}");
    assert!(record["elapsed_ms"].as_f64().unwrap() < 10_000.0, "{record}");
    for type_name in ["System.Int32[]", "System.Func<Int32>"] {
        let t = of_type(&record, type_name);
        let top = &t["paths"][0];
        eprintln!("  {type_name}: {} of {}, sampled {}", render(top), t["instances"], t["sampled"]);
        assert_eq!(top["root"]["name"], "LeakApp.BigHeap.Retries", "{}", render(top));
        assert!(t["sampled"].as_u64().unwrap() < t["instances"].as_u64().unwrap(), "{t}");
        assert!(top["instances"].as_u64().unwrap() * 10 >= t["instances"].as_u64().unwrap() * 9, "{}", render(top));
    }
    session.finishes_normally();
}

/// With background GC off the runtime reports its roots: what no static holds starts at the
/// stack frame or the GC handle that holds it.
#[test]
fn with_background_gc_off_paths_start_at_stack_frames_and_handles() {
    let mut session = Session::start(&["retention", "25", "1000", "3000"], &[("DOTNET_gcConcurrent", "0")]);
    let ready = session.run.wait_for_line("ready", Duration::from_secs(60));
    let (subscribers, sessions, listed) = created(&ready);
    let command = json!({"cmd": "retention", "types": ["LeakApp.Session", "LeakApp.Subscriber"], "max_paths": 10});
    let record = session.ask(&command, "retention", Duration::from_secs(60));
    let session_type = of_type(&record, "LeakApp.Session");
    for path in session_type["paths"].as_array().unwrap() {
        eprintln!("  {}", render(path));
    }
    assert_eq!(record["roots"]["reported"], true, "{}", record["roots"]);
    assert!(record["roots"]["count"].as_u64().unwrap() > 10, "{}", record["roots"]);
    assert_eq!(session_type["instances"].as_u64(), Some(sessions));
    let paths = session_type["paths"].as_array().unwrap();
    let by_root = |kind: &str| {
        paths.iter().find(|p| p["root"]["kind"] == kind).unwrap_or_else(|| panic!("no {kind} root: {record}"))
    };
    assert_eq!(paths[0]["root"]["name"], "LeakApp.SessionRegistry.Sessions");
    assert_eq!(paths[0]["instances"].as_u64(), Some(listed));
    let stack = by_root("stack");
    assert_eq!(stack["root"]["name"], "LeakApp.RetentionLeaks.Run", "{}", render(stack));
    assert_eq!((stack["instances"].as_u64(), step_types(stack)), (Some(1), vec!["LeakApp.Session"]));
    let handle = by_root("handle");
    assert_eq!(
        (handle["instances"].as_u64(), step_types(handle)),
        (Some(1), vec!["LeakApp.Session"]),
        "{}",
        render(handle)
    );
    // Statics still come first.
    let subscriber = of_type(&record, "LeakApp.Subscriber");
    assert_eq!(subscriber["instances"].as_u64(), Some(subscribers));
    assert_eq!(subscriber["paths"][0]["root"]["name"], "LeakApp.Clock.Tick");
    session.finishes_normally();
}

/// Soak mode with `LEAKSCOPE_RETENTION`: a retention record after each induced full GC.
#[test]
fn soak_mode_reports_retention_after_each_census() {
    let mut session = Session::start(
        &["retention", "12", "2000", "1000"],
        &[("LEAKSCOPE_INDUCE_FULL_GC", "3s"), ("LEAKSCOPE_RETENTION", "LeakApp.Subscriber")],
    );
    session.run.wait_for_line("ready", Duration::from_secs(60));
    let mut seen = 0;
    while seen < 2 {
        let record = session.next("retention", Duration::from_secs(30));
        let subscriber = of_type(&record, "LeakApp.Subscriber");
        if subscriber["instances"] == 2000 {
            assert_eq!(subscriber["paths"][0]["root"]["name"], "LeakApp.Clock.Tick", "{record}");
            seen += 1;
        }
    }
    session.finishes_normally();
}
