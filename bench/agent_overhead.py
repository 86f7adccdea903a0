#!/usr/bin/env python3
"""Agent overhead benchmark: an allocation-heavy .NET workload with and without the agent,
interleaved run by run in one session, so drift on the machine hits both sides alike.

Reports throughput (operations/s), GC pause (total and per GC), peak RSS, and the agent's own
heap, with ratios against the baseline measured in the same run. Optionally a peer: the same
workload under `dotnet-trace` collecting allocation ticks (the closest built-in alternative).

usage: bench/agent_overhead.py [--runs N] [--seconds S] [--threads T] [--peer]
                              [--side 'LABEL:KEY=VALUE,...']...   (more agent configurations)
What the cost is made of: add sides such as 'snapshot:LEAKSCOPE_STACK_CAPTURE=snapshot' (every
stack by DoStackSnapshot, as before the frame walk) and 'events:LEAKSCOPE_MAX_SAMPLES_PER_SEC=1'
(the runtime's sampling and event delivery, almost nothing followed); every agent side also
reports its followed samples (over the whole run, and delivered/followed per second after the first
second, once thinning has been picked), the allocating threads' time per followed sample, the frame
walk's share and the agent thread's own CPU time, from the agent's summaries.
Needs: cargo build --release --workspace; dotnet; (for --peer) dotnet-trace.
"""
import argparse, json, os, random, re, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = os.path.join(ROOT, "target/release/libleakscope_agent.so")
CLSID = "{E3F826A5-7C38-4392-A672-1BB85AF76D18}"


def build_app(work):
    out = os.path.join(work, "LeakApp")
    src = os.path.join(ROOT, "integration-tests/dotnet/LeakApp")
    copy = os.path.join(work, "src")
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("bin", "obj"))
    subprocess.run(["dotnet", "build", "-c", "Release", "-o", out], cwd=copy, check=True,
                   stdout=subprocess.DEVNULL)
    return os.path.join(out, "LeakApp.dll")


def run(cmd, env, work):
    """Runs once; returns the workload's printed figures plus peak RSS (KiB) from GNU time."""
    timing = os.path.join(work, "time.txt")
    full = ["/usr/bin/time", "-f", "%M %U %S", "-o", timing] + cmd
    p = subprocess.run(full, env=env, capture_output=True, text=True, check=True)
    figures = dict(re.findall(r"^(\w+) (.*)$", p.stdout, re.M))
    rss_kb, user_s, sys_s = open(timing).read().split()[-3:]
    if "window_ops_per_sec" in figures:
        # Steady state only (--warmup): the workload's own window, CPU time of the whole process
        # (all threads, the agent's included) over that window.
        ops = float(figures["window_ops_per_sec"])
        return {
            "ops": ops,
            "pause_ms": float(figures["window_gc_pause_ms"]),
            "gcs": max(1, int(figures["window_gcs"])),
            "rss_kb": int(rss_kb),
            "ops_per_cpu_s": ops * float(figures["window_s"]) / float(figures["window_cpu_s"]),
        }
    return {
        "ops": float(figures["ops_per_sec"]),
        "pause_ms": float(figures["gc_pause_ms"]),
        "gcs": int(figures["gc_count"].split()[0]),
        "rss_kb": int(rss_kb),
        # Operations per CPU-second of the whole process (all threads, the agent's included):
        # the cost measure that other load on the machine does not distort.
        "ops_per_cpu_s": float(figures["ops_per_sec"]) * float(figures["elapsed_s"]) / (float(user_s) + float(sys_s)),
    }


def agent_env(base, output):
    env = dict(base)
    env.update({
        "CORECLR_ENABLE_PROFILING": "1", "CORECLR_PROFILER": CLSID,
        "CORECLR_PROFILER_PATH": AGENT, "LEAKSCOPE_OUTPUT": output, "LEAKSCOPE_INTERVAL": "1s",
    })
    return env


def last_agent_record(path):
    last = None
    first_pick = None
    for line in open(path):
        r = json.loads(line)
        if r.get("type") == "summary":
            last = r
            # The first summary once a second has passed: by then thinning has been picked.
            if first_pick is None and r["t_ms"] >= 1000:
                first_pick = r
    # Steady state (after the first second): samples the runtime delivered and the agent followed,
    # per second. The run's totals also hold the first moments, when every sample is followed.
    if last is not None and first_pick is not None and last["t_ms"] > first_pick["t_ms"]:
        span = (last["t_ms"] - first_pick["t_ms"]) / 1000
        a, b = first_pick["agent"], last["agent"]
        last["agent"]["steady_delivered_per_s"] = (b["samples"] - a["samples"]) / span
        last["agent"]["steady_followed_per_s"] = ((b["samples"] - b["thinned"]) - (a["samples"] - a["thinned"])) / span
    return last


def bootstrap_median_ci(values, rounds=4000, seed=1):
    """95% percentile-bootstrap interval of the median: how sure the headline ratio is."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=float, default=0,
                    help="seconds of warm-up before the measured window (steady state; 0: the whole run)")
    ap.add_argument("--peer", action="store_true", help="also run under dotnet-trace")
    ap.add_argument("--agent-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra LEAKSCOPE_* settings for the agent side (repeatable)")
    ap.add_argument("--runtime-env", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting for every side, the baseline's too (repeatable), e.g. DOTNET_TieredPGO=0")
    ap.add_argument("--side", action="append", default=[], metavar="LABEL:KEY=VALUE,...",
                    help="another agent side with these settings, interleaved with the rest (repeatable), "
                         "e.g. 'exact:LEAKSCOPE_EXACT=System.String'")
    a = ap.parse_args()
    extra = {}
    for spec in a.side:
        label, _, settings = spec.partition(":")
        extra[label] = dict(kv.split("=", 1) for kv in settings.split(",") if kv)
    if not os.path.exists(AGENT):
        sys.exit("build first: cargo build --release --workspace")
    work = tempfile.mkdtemp(prefix="leakscope-bench-")
    dll = build_app(work)
    cmd = ["dotnet", dll, "alloc-bench", str(a.seconds), str(a.threads), str(a.warmup)]
    base_env = dict(os.environ, DOTNET_CLI_TELEMETRY_OPTOUT="1")
    base_env.update(kv.split("=", 1) for kv in a.runtime_env)
    sides = {"baseline": [], "agent": [], **{label: [] for label in extra}, "dotnet-trace": []}
    extra_records = {label: [] for label in extra}
    agent_mem, per_sample, samples = [], [], []
    records = {"agent": []}
    trace = shutil.which("dotnet-trace") or os.path.expanduser("~/.dotnet/tools/dotnet-trace")
    def run_baseline(i):
        sides["baseline"].append(run(cmd, base_env, work))

    def run_agent(i):
        out = os.path.join(work, f"agent{i}.ndjson")
        env = agent_env(base_env, out)
        env.update(kv.split("=", 1) for kv in a.agent_env)
        sides["agent"].append(run(cmd, env, work))
        s = last_agent_record(out)
        records["agent"].append(s["agent"])
        agent_mem.append(s["agent"]["memory_bytes"])
        per_sample.append(s["agent"]["capture_us_per_sample"])
        samples.append(s["agent"]["samples"])

    def run_extra(label, settings):
        def go(i):
            out = os.path.join(work, f"{label}{i}.ndjson")
            env = agent_env(base_env, out)
            env.update(settings)
            sides[label].append(run(cmd, env, work))
            extra_records[label].append(last_agent_record(out)["agent"])
        return go

    def run_peer(i):
        nettrace = os.path.join(work, f"peer{i}.nettrace")
        sides["dotnet-trace"].append(run(
            [trace, "collect", "--show-child-io", "-o", nettrace, "--providers",
             "Microsoft-Windows-DotNETRuntime:0x1:5", "--"] + cmd, base_env, work))

    steps = [run_baseline, run_agent, *(run_extra(k, v) for k, v in extra.items())]
    if a.peer:
        steps.append(run_peer)
    for i in range(a.runs):
        # The order turns every round (a side is first, second, … equally often), so that
        # nothing that favours a position in the round (a warm page cache, the previous run's
        # exit) favours a side.
        k = i % len(steps)
        for step in steps[k:] + steps[:k]:
            step(i)
        print(f"run {i + 1}/{a.runs}: " + ", ".join(
            f"{k} {v[-1]['ops']:.0f} ops/s" for k, v in sides.items() if v), file=sys.stderr)

    med = lambda side, key: statistics.median(r[key] for r in sides[side])
    b_ops = med("baseline", "ops")
    window = f", measured after {a.warmup:.0f} s of warm-up" if a.warmup else ""
    print(f"\nworkload: LeakApp alloc-bench, {a.threads} threads x {a.seconds:.0f} s{window}, "
          f"{a.runs} interleaved runs per side, medians")
    print("| side | ops/s | ratio vs baseline | ops per CPU-second | ratio | GC pause total (ms) | pause per GC (ms) | GCs | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    b_ppg = med("baseline", "pause_ms") / med("baseline", "gcs")
    for side, rs in sides.items():
        if not rs:
            continue
        ppg = med(side, "pause_ms") / med(side, "gcs")
        print(f"| {side} | {med(side, 'ops'):.0f} | {med(side, 'ops') / b_ops:.3f} | "
              f"{med(side, 'ops_per_cpu_s'):.0f} | {med(side, 'ops_per_cpu_s') / med('baseline', 'ops_per_cpu_s'):.3f} | "
              f"{med(side, 'pause_ms'):.0f} | {ppg:.3f} ({ppg - b_ppg:+.3f}) | {med(side, 'gcs'):.0f} | "
              f"{med(side, 'rss_kb') / 1024:.0f} |")
    for side in ("agent", *extra, "dotnet-trace"):
        if sides[side]:
            for key, label in (("ops", "throughput"), ("ops_per_cpu_s", "ops per CPU-second")):
                pairs = [r[key] / b[key] for r, b in zip(sides[side], sides["baseline"])]
                lo, hi = bootstrap_median_ci(pairs)
                print(f"{side}: per-round {label} ratio vs the baseline run of the same round: median "
                      f"{statistics.median(pairs):.3f} (95% bootstrap CI {lo:.3f}-{hi:.3f}), "
                      f"range {min(pairs):.3f}-{max(pairs):.3f}, {len(pairs)} pairs")
    print(f"\nagent: heap {statistics.median(agent_mem) / 2**20:.1f} MB (max {max(agent_mem) / 2**20:.1f} MB), "
          f"{statistics.median(samples):.0f} samples per run, "
          f"{statistics.median(per_sample):.2f} us per sample on the allocating thread")
    for label, recs in extra_records.items():
        if recs and recs[-1].get("exact"):
            print(f"{label}: {json.dumps(recs[-1]['exact'])}")
    print("\nwhat each agent side spent (medians over its runs; followed = not thinned):")
    print("| side | followed samples/s (whole run) | after the first second: delivered / followed samples/s | us per followed sample (allocating thread, wall) | frame walk / fell back | agent thread CPU (ms/s) | agent heap (MB) |")
    print("|---|---|---|---|---|---|---|")
    for label, recs in {**records, **extra_records}.items():
        if not recs:
            continue
        followed = statistics.median((r["samples"] - r["thinned"]) / (a.seconds + a.warmup) for r in recs)
        walked = sum(r.get("stack_capture", {}).get("walked", 0) for r in recs)
        fell = sum(r.get("stack_capture", {}).get("fell_back", 0) for r in recs)
        cpu = statistics.median(r.get("thread_cpu_ms", 0) / (a.seconds + a.warmup) for r in recs)
        steady = lambda key: statistics.median(r.get(key, 0) for r in recs)
        print(f"| {label} | {followed:.0f} | {steady('steady_delivered_per_s'):.0f} / {steady('steady_followed_per_s'):.0f} | "
              f"{statistics.median(r['capture_us_per_sample'] for r in recs):.2f} | "
              f"{walked} / {fell} | {cpu:.1f} | {statistics.median(r['memory_bytes'] for r in recs) / 2**20:.1f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
