//! The agent thread stays a thread the runtime does not know, so that its synchronous profiling
//! calls (code extents, IL-to-native maps, names) keep working outside callbacks.
//!
//! Starting or stopping an EventPipe session, or `ForceGC`, makes the caller a runtime thread for
//! good. On
//! .NET 10 the agent switches allocation sampling on and off (its own session) several times a
//! second once thinning is needed, as under alloc-bench; done on the agent thread, the first
//! switch made the runtime refuse every later synchronous call from it. The summary says whether
//! the runtime knows the agent thread (`agent.thread_known_to_runtime`, asked with the
//! asynchronous `GetCurrentThreadID`) and how many of its calls were refused
//! (`agent.sync_refused`). Refused calls cost the frame walk its classification of hot methods and
//! frames their source lines.

use integration_tests::*;
use serde_json::Value;
use std::time::Duration;

fn number(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("not a count: {value}"))
}

/// Every summary of the run says the runtime does not know the agent thread.
fn assert_agent_thread_unknown_throughout(bench: &AllocBenchRun, run: &str) {
    for summary in of_type(&bench.records, "summary") {
        assert_eq!(
            summary["agent"]["thread_known_to_runtime"], false,
            "{run}summary {}: the runtime knows the agent thread\n{}",
            summary["seq"], bench.log
        );
    }
}

#[test]
fn switching_allocation_sampling_leaves_the_agent_thread_unknown_to_the_runtime_in_every_run() {
    let app = dotnet_app("LeakApp", Build::FrameworkDependent);
    for run in 1..=3 {
        let bench = run_alloc_bench(&app, 4, &[]);
        let records = &bench.records;
        let summaries = of_type(records, "summary");
        let last = &last_summary(records)["agent"];
        let switches = number(&last["sampling_windows"]["switches"]);
        eprintln!(
            "run {run}: {} summaries, {switches} switches, sync_refused {}, walked {}, fell back {}",
            summaries.len(),
            last["sync_refused"],
            last["stack_capture"]["walked"],
            last["stack_capture"]["fell_back"]
        );
        // The test means something only if sessions were stopped and started while it ran.
        assert!(switches >= 2, "run {run}: allocation sampling was never switched: {last:#}");
        assert_agent_thread_unknown_throughout(&bench, &format!("run {run}, "));
        assert_eq!(number(&last["sync_refused"]), 0, "run {run}: {last:#}");
        // A refused IL-to-native map left a frame without its line for good: a site in
        // `Operation` with a sample or two had none in some runs.
        let summary = last_summary(records);
        let lineless: Vec<_> = sites(summary)
            .iter()
            .filter(|s| s["site"].as_str().unwrap().starts_with("LeakApp."))
            .filter(|s| s["location"].is_null())
            .collect();
        assert!(lineless.is_empty(), "run {run}: sites of the app without a line: {lineless:#?}");
        let warned = of_type(records, "status")
            .into_iter()
            .find(|s| s["message"].as_str().is_some_and(|m| m.contains("come to know the agent thread")));
        assert!(warned.is_none(), "run {run}: {warned:?}");
    }
}

/// `ForceGC` makes its caller a runtime thread too: soak mode's induced full GCs, each followed
/// by a census and a retention report, leave the agent thread unknown to the runtime.
#[test]
fn induced_full_gcs_leave_the_agent_thread_unknown_to_the_runtime() {
    let app = dotnet_app("LeakApp", Build::FrameworkDependent);
    let bench =
        run_alloc_bench(&app, 4, &[("LEAKSCOPE_INDUCE_FULL_GC", "1s"), ("LEAKSCOPE_RETENTION", "System.String")]);
    let records = &bench.records;
    let last = last_summary(records);
    let induced = number(&last["gc"]["induced"]);
    let (censuses, retentions) = (of_type(records, "census").len(), of_type(records, "retention").len());
    eprintln!("{induced} induced GCs, {censuses} censuses, {retentions} retention reports");
    assert!(induced >= 2 && censuses >= 2 && retentions >= 2, "{induced} {censuses} {retentions}: {last:#}");
    assert_agent_thread_unknown_throughout(&bench, "");
    assert_eq!(number(&last["agent"]["sync_refused"]), 0, "{last:#}");
}

/// The scheduling policy of every thread of `pid` by name (field 41 of `/proc/PID/task/TID/stat`,
/// counted after the parenthesised name, which may hold spaces).
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let (Ok(comm), Ok(stat)) =
            (std::fs::read_to_string(task.path().join("comm")), std::fs::read_to_string(task.path().join("stat")))
        else {
            continue; // the thread ended meanwhile
        };
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        // Fields from the third (state) on; the policy is the 41st field overall.
        let policy = after_name.split(' ').nth(41 - 3).unwrap().parse().unwrap();
        threads.push((comm.trim_end().to_string(), policy));
    }
    threads
}

/// The agent thread's bursts (resolving samples, writing records) give way to the application:
/// the live agent thread runs under SCHED_BATCH, and the application's threads keep the default.
#[test]
fn the_agent_thread_runs_under_sched_batch_and_the_application_threads_do_not() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    let dir = tempfile::tempdir().unwrap();
    let (out, log) = (dir.path().join("out.ndjson"), dir.path().join("agent.log"));
    let mut c = dotnet_app("LeakApp", Build::FrameworkDependent).command();
    c.args(["strings", "20"]).envs(agent_env(&out, &log, "1s"));
    let mut run = Running::start(c);
    run.wait_for_line("ready", Duration::from_secs(60));
    wait_for_summaries(&out, 1, Duration::from_secs(30));
    let threads = thread_policies(run.pid());
    eprintln!("{threads:?}");
    let agent: Vec<_> = threads.iter().filter(|(name, _)| name == "leakscope-agent").collect();
    assert_eq!(agent.len(), 1, "one agent thread: {threads:?}");
    assert_eq!(agent[0].1, SCHED_BATCH, "the agent thread's policy: {threads:?}");
    let others: Vec<_> = threads.iter().filter(|(name, _)| !name.starts_with("leakscope")).collect();
    assert!(others.len() >= 3, "the application's threads: {threads:?}");
    assert!(others.iter().all(|(_, policy)| *policy == SCHED_OTHER), "the application's threads: {threads:?}");
}
