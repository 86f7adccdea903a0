#!/usr/bin/env python3
"""Heap census pause: how long leakscope's soak-mode census pauses an application holding about
1M and 10M live objects, against dotnet-gcdump's pause on the same heap.

For each heap size, bench/HeapBuilder builds the same heap (fixed seed) twice:
  - under the agent with LEAKSCOPE_INDUCE_FULL_GC (soak mode, census on): each cycle is a full
    blocking GC (ForceGC) and then a walk of the heap (EnumerateGCHeapObjects); the agent reports
    the walk's length (`census.pause_ms`) and the GC's (`summary.gc.recent[].pause_ms`);
  - without the agent, while `dotnet-gcdump collect -p PID` runs --runs times (one at a time).
In both, a ticker thread inside HeapBuilder sleeps 1 ms at a time and reports every late wake-up:
a thread cannot return to managed code while the runtime is suspended, so its late wake-ups are the
stall the application felt, measured the same way on both sides. "Stalled" is their sum over one
snapshot (a census cycle's GC and walk come back to back, so the ticker may see one gap or two);
"longest" is the longest of them. The ratios in the summary are leakscope / dotnet-gcdump, from
runs made in the same invocation.

Also recorded: the target's CPU time per snapshot (above its idle rate), the agent's own heap,
dotnet-gcdump's wall time, CPU and peak RSS, and object counts against what HeapBuilder allocated.

usage: bench/census_pause.py [--objects N ...] [--runs R] [--period S] [--json FILE]
Needs: cargo build --release -p leakscope-agent (or LEAKSCOPE_AGENT=path/to/libleakscope_agent.so);
dotnet (.NET 10 SDK); dotnet-gcdump (on PATH or in ~/.dotnet/tools). About 3 minutes with --runs 5
and 3 GB of free memory at 10M objects (the target ~0.6-1.2 GB, dotnet-gcdump ~1.4 GB).
"""
import argparse, json, os, re, shutil, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from heap_bench import (AGENT, ROOT, TICKER_MS, Target, agent_env, gcdump_side,  # noqa: E402
                        idle_cpu_rate, med, now_ms, setup, spread)

def census_types(record):
    return {t["type_name"]: t["count"] for t in record["types"]}


def leakscope_side(dll, objects, runs, period, work, base_env):
    out = os.path.join(work, f"agent-{objects}.ndjson")
    env = agent_env(base_env, work, objects, LEAKSCOPE_OUTPUT=out, LEAKSCOPE_INDUCE_FULL_GC=f"{period}s",
                    LEAKSCOPE_CENSUS="1")
    t = Target(dll, objects, env)
    ready_ms, allocated, heap_bytes, customers, orders = t.wait_ready(600)

    def records():
        rs = []
        if os.path.exists(out):
            for line in open(out):
                try:
                    rs.append(json.loads(line))
                except ValueError:
                    pass
        return rs

    def cycles(rs):
        """Census records whose induced GC started after the heap was ready, each with that GC
        (matched by number in a later summary's gc.recent) once it is known."""
        recent = {g["n"]: g for r in rs if r["type"] == "summary" for g in r["gc"]["recent"]}
        got = []
        for c in (r for r in rs if r["type"] == "census"):
            gc = recent.get(c["gc"])
            if gc is None:
                continue
            start = c["unix_ms"] - c["pause_ms"] - gc["pause_ms"] - 200
            if start > ready_ms:
                got.append((c, gc, start))
        return got

    deadline = time.time() + 120 + runs * (period + 60)
    while len(cycles(records())) < runs:
        if t.p.poll() is not None or time.time() > deadline:
            t.quit()
            sys.exit(f"leakscope side: only {len(cycles(records()))} census cycles (log: {env['LEAKSCOPE_LOG']})")
        time.sleep(0.5)
    time.sleep(1.5)  # a little idle time after the last cycle, for the idle CPU rate
    end_ms = now_ms()
    peak_rss = t.rss_kb()
    rs = records()
    t.quit()
    got = cycles(rs)[:runs]
    windows = [(start, c["unix_ms"] + 100) for c, gc, start in cycles(rs)]
    idle = idle_cpu_rate(t, windows, ready_ms, end_ms)
    runs_out = []
    for c, gc, start in got:
        end = c["unix_ms"] + 100
        longest, total, gaps = t.stall(start, end)
        types = census_types(c)
        runs_out.append({
            "census_pause_ms": c["pause_ms"], "gc_pause_ms": gc["pause_ms"], "gc_reason": gc["reason"],
            "gc_gen": gc["gen"], "felt_longest_ms": longest, "felt_total_ms": total, "felt_gaps_ms": gaps,
            "cpu_s": t.cpu_at(end + 300) - t.cpu_at(start - 300) - idle * (end - start + 600) / 1000,
            "objects": c["objects"], "bytes": c["bytes"], "unreadable": c["unreadable"],
            "orders": types.get("HeapBuilder.Order"), "customers": types.get("HeapBuilder.Customer"),
            "order_lines": types.get("HeapBuilder.OrderLine"),
        })
    summaries = [r for r in rs if r["type"] == "summary"]
    statuses = [r["message"] for r in rs if r["type"] == "status" and r.get("level") != "info"]
    return {
        "allocated": allocated, "heap_bytes": heap_bytes, "customers": customers, "orders": orders,
        "runs": runs_out, "idle_cpu_per_s": idle, "ready_rss_kb": t.ready_rss_kb, "peak_rss_kb": peak_rss,
        "agent_memory_max_bytes": max((s["agent"]["memory_bytes"] for s in summaries), default=None),
        "warnings": statuses,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=lambda s: int(s.replace("_", "")), nargs="+",
                    default=[1_000_000, 10_000_000], help="heap sizes (live objects)")
    ap.add_argument("--runs", type=int, default=3, help="snapshots per side and heap size")
    ap.add_argument("--period", type=float, default=4, help="LEAKSCOPE_INDUCE_FULL_GC, seconds")
    ap.add_argument("--json", help="also write the full results here")
    a = ap.parse_args()
    work, dll, base_env, gcdump, commit = setup("leakscope-census-", need_gcdump=True)
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(AGENT)))
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "agent"],
                           capture_output=True, text=True).stdout.strip()
    if dirty and "LEAKSCOPE_AGENT" not in os.environ:
        print("note: agent/ has uncommitted changes; the agent in target/ may include them", file=sys.stderr)
    tool = subprocess.run([gcdump, "--version"], capture_output=True, text=True).stdout.strip()
    runtimes = subprocess.run(["dotnet", "--list-runtimes"], capture_output=True, text=True).stdout
    runtime = max(re.findall(r"Microsoft\.NETCore\.App (\S+)", runtimes), default="?",
                  key=lambda v: [int(x) if x.isdigit() else 0 for x in re.split(r"[.-]", v)])
    results = {"commit": commit, "agent": AGENT, "agent_built": built, "dotnet_gcdump": tool, "runtime": runtime,
               "cpus": os.cpu_count(), "runs": a.runs, "period_s": a.period, "ticker_threshold_ms": TICKER_MS,
               "loadavg_start": os.getloadavg(), "heaps": {}}
    for n in a.objects:
        print(f"{n} objects: leakscope census ({a.runs} cycles)...", file=sys.stderr)
        ls = leakscope_side(dll, n, a.runs, a.period, work, base_env)
        print(f"{n} objects: dotnet-gcdump ({a.runs} collects)...", file=sys.stderr)
        gd = gcdump_side(dll, n, a.runs, work, base_env, gcdump)
        results["heaps"][n] = {"leakscope": ls, "gcdump": gd}
    results["loadavg_end"] = os.getloadavg()

    print(f"\nrepository at {commit}, agent {AGENT} built {built}; .NET {runtime}; dotnet-gcdump {tool}; "
          f"{os.cpu_count()} CPUs, load average {results['loadavg_start'][0]:.2f} at the start, "
          f"{results['loadavg_end'][0]:.2f} at the end")
    print(f"{a.runs} snapshots per side; medians (min–max). 'stalled' = the late "
          f"wake-ups (>= {TICKER_MS} ms) of a 1 ms ticker thread in the target during one snapshot, summed; "
          f"'longest' = the longest of them")
    print("| heap | side | objects counted (allocated) | stalled per snapshot (ms) | longest stall (ms) | "
          "full GC (ms) | heap walk (ms) | target CPU per snapshot (s) | tool wall / CPU (s) | tool peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, h in results["heaps"].items():
        ls, gd = h["leakscope"], h["gcdump"]
        print(f"| {n:,} | leakscope census | {med(ls['runs'], 'objects'):,.0f} ({ls['allocated']:,}) | "
              f"{spread(ls['runs'], 'felt_total_ms')} | {spread(ls['runs'], 'felt_longest_ms')} | "
              f"{spread(ls['runs'], 'gc_pause_ms')} | {spread(ls['runs'], 'census_pause_ms')} | "
              f"{spread(ls['runs'], 'cpu_s', '{:.2f}')} | in process | "
              f"agent heap {(ls['agent_memory_max_bytes'] or 0) / 2**20:.1f} |")
        wall = [{"w": r["wall_ms"] / 1000} for r in gd["runs"]]
        print(f"| {n:,} | dotnet-gcdump | {med(gd['runs'], 'objects') or 0:,.0f} ({gd['allocated']:,}) | "
              f"{spread(gd['runs'], 'felt_total_ms')} | {spread(gd['runs'], 'felt_longest_ms')} | "
              f"{spread(gd['runs'], 'gc_pause_ms')} | – | {spread(gd['runs'], 'target_cpu_s', '{:.2f}')} | "
              f"{spread(wall, 'w', '{:.1f}')} / {spread(gd['runs'], 'tool_cpu_s', '{:.1f}')} | "
              f"{med(gd['runs'], 'tool_peak_rss_kb') / 1024:.0f} |")
    print("full GC: leakscope's from the agent's gc.recent; dotnet-gcdump's is the target's "
          "GC.GetTotalPauseDuration() across the collect, for comparison with the stall the ticker saw.")
    for n, h in results["heaps"].items():
        print(f"{n:,} objects, target RSS when ready / peak: " + "; ".join(
            f"{side} {h[side]['ready_rss_kb'] / 1024:.0f} / {h[side]['peak_rss_kb'] / 1024:.0f} MB"
            for side in ("leakscope", "gcdump")))
    summary = {}
    for n, h in results["heaps"].items():
        ls, gd = h["leakscope"]["runs"], h["gcdump"]["runs"]
        exact = all(r["orders"] == h["leakscope"]["orders"] and r["customers"] == h["leakscope"]["customers"]
                    and r["order_lines"] == 2 * h["leakscope"]["orders"] for r in ls)
        gd_exact = all(r["orders"] == h["gcdump"]["orders"] and r["customers"] == h["gcdump"]["customers"]
                       and r["order_lines"] == 2 * h["gcdump"]["orders"] for r in gd)
        summary[n] = {
            "leakscope_stalled_ms": med(ls, "felt_total_ms"), "leakscope_longest_ms": med(ls, "felt_longest_ms"),
            "leakscope_gc_ms": med(ls, "gc_pause_ms"), "leakscope_walk_ms": med(ls, "census_pause_ms"),
            "leakscope_walk_ns_per_object": med(ls, "census_pause_ms") * 1e6 / med(ls, "objects"),
            "leakscope_target_cpu_s": med(ls, "cpu_s"),
            "gcdump_stalled_ms": med(gd, "felt_total_ms"), "gcdump_longest_ms": med(gd, "felt_longest_ms"),
            "gcdump_gc_ms": med(gd, "gc_pause_ms"), "gcdump_wall_ms": med(gd, "wall_ms"),
            "gcdump_target_cpu_s": med(gd, "target_cpu_s"), "gcdump_tool_cpu_s": med(gd, "tool_cpu_s"),
            "gcdump_tool_peak_rss_mb": med(gd, "tool_peak_rss_kb") / 1024,
            "ratio_stalled_leakscope_over_gcdump": med(ls, "felt_total_ms") / med(gd, "felt_total_ms"),
            "ratio_longest_leakscope_over_gcdump": med(ls, "felt_longest_ms") / med(gd, "felt_longest_ms"),
            "census_objects": med(ls, "objects"), "gcdump_objects": med(gd, "objects"),
            "allocated": h["leakscope"]["allocated"],
            "census_exact_for_heapbuilder_types": exact, "gcdump_exact_for_heapbuilder_types": gd_exact,
            "agent_memory_max_bytes": h["leakscope"]["agent_memory_max_bytes"],
        }
        x = summary[n]
        print(f"\n{n:,} objects: stalled per snapshot leakscope/gcdump = {x['ratio_stalled_leakscope_over_gcdump']:.2f}, "
              f"longest stall = {x['ratio_longest_leakscope_over_gcdump']:.2f}; census walk "
              f"{x['leakscope_walk_ns_per_object']:.0f} ns/object; HeapBuilder's types counted exactly: "
              f"census {exact}, gcdump {gd_exact}")
        for w in h["leakscope"]["warnings"]:
            print(f"  agent status: {w}")
    results["summary"] = summary
    print("\n" + json.dumps(summary, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
