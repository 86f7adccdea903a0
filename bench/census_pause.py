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
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# LEAKSCOPE_AGENT: another build of the agent (as in the integration tests).
AGENT = os.environ.get("LEAKSCOPE_AGENT") or os.path.join(ROOT, "target/release/libleakscope_agent.so")
CLSID = "{E3F826A5-7C38-4392-A672-1BB85AF76D18}"
TICKS = os.sysconf("SC_CLK_TCK")
# Late wake-ups the ticker reports (ms). A 2-core VM shared with other work shows 3-15 ms
# scheduling hiccups; the pauses measured here are far longer.
TICKER_MS = 5


def build_app(work):
    out = os.path.join(work, "HeapBuilder")
    copy = os.path.join(work, "src")
    shutil.copytree(os.path.join(ROOT, "bench/HeapBuilder"), copy,
                    ignore=shutil.ignore_patterns("bin", "obj"))
    subprocess.run(["dotnet", "build", "-c", "Release", "-o", out], cwd=copy, check=True,
                   stdout=subprocess.DEVNULL)
    return os.path.join(out, "HeapBuilder.dll")


def now_ms():
    return time.time() * 1000


class Target:
    """One HeapBuilder process: its stdout (ready, gap, stats lines) and its CPU time, sampled."""

    def __init__(self, dll, objects, env, leaks=False):
        self.p = subprocess.Popen(["dotnet", dll, str(objects), "0", str(TICKER_MS), "1" if leaks else "0"], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.lock = threading.Lock()
        self.ready = None          # (unix ms, objects, heap bytes, customers, orders)
        self.ready_rss_kb = 0
        self.gaps = []             # (unix ms at the end, ms)
        self.stats = []
        self.cpu = []              # (unix ms, CPU seconds of the whole process)
        self.done = False
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._sample_cpu, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            f = line.split()
            with self.lock:
                if f and f[0] == "ready":
                    self.ready = (now_ms(), *map(int, f[1:5]))
                    self.ready_rss_kb = self.rss_kb("VmRSS")
                elif f and f[0] == "gap":
                    self.gaps.append((int(f[1]), float(f[2])))
                elif f and f[0] == "stats":
                    self.stats.append(float(f[2]))

    def _sample_cpu(self):
        while not self.done and self.p.poll() is None:
            try:
                fields = open(f"/proc/{self.p.pid}/stat").read().rsplit(")", 1)[1].split()
                with self.lock:
                    self.cpu.append((now_ms(), (int(fields[11]) + int(fields[12])) / TICKS))
            except OSError:
                break
            time.sleep(0.05)

    def wait_ready(self, timeout):
        deadline = time.time() + timeout
        while self.ready is None:
            if self.p.poll() is not None or time.time() > deadline:
                code = self.p.poll()
                self.quit()
                sys.exit(f"HeapBuilder did not get ready (exit code {code})")
            time.sleep(0.1)
        return self.ready

    def gc_pause_total(self):
        """The runtime's own total GC pause so far (GC.GetTotalPauseDuration), in ms."""
        with self.lock:
            n = len(self.stats)
        self.p.stdin.write("stats\n")
        self.p.stdin.flush()
        deadline = time.time() + 30
        while len(self.stats) == n and time.time() < deadline:
            time.sleep(0.01)
        return self.stats[-1]

    def stall(self, start, end):
        """Late wake-ups of the ticker overlapping [start, end] (unix ms): (longest, total, all as
        [unix ms at the end, ms])."""
        with self.lock:
            gaps = [[e, g] for e, g in self.gaps if e >= start and e - g <= end]
        return max((g for _, g in gaps), default=0.0), sum(g for _, g in gaps), gaps

    def cpu_at(self, t):
        with self.lock:
            before = [c for s, c in self.cpu if s <= t]
            after = [c for s, c in self.cpu if s >= t]
        return before[-1] if before else (after[0] if after else 0.0)

    def rss_kb(self, field="VmHWM"):
        """VmHWM: the target's peak resident set so far; VmRSS: now."""
        try:
            for line in open(f"/proc/{self.p.pid}/status"):
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def quit(self):
        self.done = True
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
            self.p.wait(60)
        except (OSError, subprocess.TimeoutExpired):
            self.p.kill()
            self.p.wait()


def idle_cpu_rate(target, windows, start, end):
    """CPU seconds per second the target burns outside the snapshot windows (the ticker, the
    agent's summaries): subtracted so that per-snapshot CPU is the snapshot's own."""
    busy = sorted(windows)
    free, t = [], start
    for s, e in busy:
        if s - t > 500:
            free.append((t + 100, s - 100))
        t = max(t, e)
    if end - t > 500:
        free.append((t + 100, end - 100))
    secs = sum(e - s for s, e in free) / 1000
    used = sum(target.cpu_at(e) - target.cpu_at(s) for s, e in free)
    return used / secs if secs > 1 else 0.0


def census_types(record):
    return {t["type_name"]: t["count"] for t in record["types"]}


def leakscope_side(dll, objects, runs, period, work, base_env):
    out = os.path.join(work, f"agent-{objects}.ndjson")
    env = dict(base_env)
    env.update({
        "CORECLR_ENABLE_PROFILING": "1", "CORECLR_PROFILER": CLSID,
        "CORECLR_PROFILER_PATH": os.path.join(work, "libleakscope_agent.so"),
        "LEAKSCOPE_OUTPUT": out, "LEAKSCOPE_INTERVAL": "1s",
        "LEAKSCOPE_LOG": os.path.join(work, f"agent-{objects}.log"),
        "LEAKSCOPE_INDUCE_FULL_GC": f"{period}s", "LEAKSCOPE_CENSUS": "1",
    })
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


def gcdump_side(dll, objects, runs, work, base_env, gcdump, leaks=False):
    t = Target(dll, objects, base_env, leaks)
    ready_ms, allocated, heap_bytes, customers, orders = t.wait_ready(600)
    time.sleep(3)  # idle, for the idle CPU rate
    runs_out, windows = [], []
    for i in range(runs):
        path = os.path.join(work, f"heap-{objects}-{i}.gcdump")
        gc_before = t.gc_pause_total()
        start = now_ms()
        p = subprocess.Popen([gcdump, "collect", "-p", str(t.p.pid), "-o", path, "--timeout", "900"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        end = now_ms()
        p.returncode = os.waitstatus_to_exitcode(status)
        time.sleep(0.5)  # let the ticker report the last late wake-up
        gc_after = t.gc_pause_total()
        if p.returncode != 0 or not os.path.exists(path):
            t.quit()
            sys.exit(f"dotnet-gcdump collect failed ({p.returncode}):\n{output}")
        windows.append((start, end))
        longest, total, gaps = t.stall(start, end)
        report = subprocess.run([gcdump, "report", path], capture_output=True, text=True, check=True).stdout
        heap_objects = re.search(r"([\d,]+)\s+GC Heap objects", report)
        counts = {}
        for m in re.finditer(r"^\s*[\d,]+\s+([\d,]+)\s+(\S+)", report, re.M):
            counts[m.group(2)] = counts.get(m.group(2), 0) + int(m.group(1).replace(",", ""))
        runs_out.append({
            "wall_ms": end - start, "gc_pause_ms": gc_after - gc_before,
            "felt_longest_ms": longest, "felt_total_ms": total, "felt_gaps_ms": gaps,
            "target_cpu_s": t.cpu_at(end + 300) - t.cpu_at(start - 300),  # idle part removed below
            "tool_cpu_s": usage.ru_utime + usage.ru_stime, "tool_peak_rss_kb": usage.ru_maxrss,
            "file_bytes": os.path.getsize(path),
            "objects": int(heap_objects.group(1).replace(",", "")) if heap_objects else None,
            "orders": counts.get("HeapBuilder.Order"), "customers": counts.get("HeapBuilder.Customer"),
            "order_lines": counts.get("HeapBuilder.OrderLine"),
        })
        os.remove(path)
        time.sleep(2)
    end_ms = now_ms()
    peak_rss = t.rss_kb()
    t.quit()
    idle = idle_cpu_rate(t, windows, ready_ms, end_ms)
    for r, (s, e) in zip(runs_out, windows):
        r["target_cpu_s"] -= idle * (e - s + 600) / 1000
    return {"allocated": allocated, "heap_bytes": heap_bytes, "customers": customers, "orders": orders,
            "runs": runs_out, "idle_cpu_per_s": idle, "ready_rss_kb": t.ready_rss_kb, "peak_rss_kb": peak_rss}


def med(rs, key):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def spread(rs, key, fmt="{:.0f}"):
    vals = [r[key] for r in rs if r.get(key) is not None]
    if not vals:
        return "n/a"
    m = statistics.median(vals)
    return fmt.format(m) + (f" ({fmt.format(min(vals))}–{fmt.format(max(vals))})" if len(vals) > 1 else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=lambda s: int(s.replace("_", "")), nargs="+",
                    default=[1_000_000, 10_000_000], help="heap sizes (live objects)")
    ap.add_argument("--runs", type=int, default=3, help="snapshots per side and heap size")
    ap.add_argument("--period", type=float, default=4, help="LEAKSCOPE_INDUCE_FULL_GC, seconds")
    ap.add_argument("--json", help="also write the full results here")
    a = ap.parse_args()
    if not os.path.exists(AGENT):
        sys.exit("build first: cargo build --release -p leakscope-agent")
    gcdump = shutil.which("dotnet-gcdump") or os.path.expanduser("~/.dotnet/tools/dotnet-gcdump")
    if not os.path.exists(gcdump):
        sys.exit("install dotnet-gcdump: dotnet tool install -g dotnet-gcdump")
    work = tempfile.mkdtemp(prefix="leakscope-census-")
    # A private copy: the agent in target/ may be rebuilt while this runs.
    shutil.copy(AGENT, os.path.join(work, "libleakscope_agent.so"))
    dll = build_app(work)
    base_env = dict(os.environ, DOTNET_CLI_TELEMETRY_OPTOUT="1")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
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
