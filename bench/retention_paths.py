#!/usr/bin/env python3
"""Retention paths on big heaps: does leakscope find what keeps four planted leaks alive on heaps
of 1M, 5M and 10M live objects within its default budgets (64 MB of agent memory, 10 s), and
what does it cost the application, next to a census and a dotnet-gcdump of the same heap?

bench/HeapBuilder builds the heap with leaks planted (a fifth of the objects, see its header):
  System.Int32[]          static HeapBuilder.Leaks.Retries       (closures in a List<Func<int>>)
  HeapBuilder.Response    static HeapBuilder.Leaks.ResponseCache (a ConcurrentDictionary)
  HeapBuilder.Subscriber  static HeapBuilder.Clock.Tick          (an event never unsubscribed)
  HeapBuilder.Widget      static HeapBuilder.Registry<Widget>.Items (a generic class's static)
For each type the share of its instances whose path starts at the planted static is reported
(the dominant path must be it, covering >= 90 %).

leakscope side: HeapBuilder under the agent (default settings), connected to this script's
socket; --runs times, interleaved: {"cmd":"census"} (an induced full GC, then a census walk)
and {"cmd":"retention", "types": [the four]} (an induced full GC, then the search's walks, and
the GC's roots when needed). The pause the application feels is measured as in
census_pause.py: a 1 ms ticker thread in HeapBuilder reports every wake-up >= 5 ms late; per
request the late wake-ups are summed ("stalled") and the longest kept. The agent's own figures
(per-walk pauses, elapsed, memory held for the request) come from its records.
dotnet-gcdump side: the same heap without the agent, `dotnet-gcdump collect` --runs times.

usage: bench/retention_paths.py [--objects N ...] [--runs R] [--json FILE]
Needs: cargo build --release -p leakscope-agent (or LEAKSCOPE_AGENT=...); dotnet (.NET 10 SDK);
dotnet-gcdump. About 10 minutes with the defaults, and 3 GB of free memory at 10M objects.
"""
import argparse, json, os, shutil, socket, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from heap_bench import Target, agent_env, gcdump_side, med, now_ms, setup, spread  # noqa: E402

PLANTED = {
    "System.Int32[]": "HeapBuilder.Leaks.Retries",
    "HeapBuilder.Response": "HeapBuilder.Leaks.ResponseCache",
    "HeapBuilder.Subscriber": "HeapBuilder.Clock.Tick",
    "HeapBuilder.Widget": "HeapBuilder.Registry<Widget>.Items",
}


class Agent:
    """The agent's connection: records in, commands out."""

    def __init__(self, listener):
        listener.settimeout(120)
        self.conn, _ = listener.accept()
        self.records = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.conn.makefile("r"):
            try:
                r = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.records.append(r)

    def ask(self, command, kind, timeout):
        with self.lock:
            n = len(self.records)
        sent = now_ms()
        self.conn.sendall((json.dumps(command) + "\n").encode())
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                for r in self.records[n:]:
                    if r.get("type") == kind:
                        return sent, now_ms(), r
            time.sleep(0.02)
        sys.exit(f"no {kind} record within {timeout} s")


def coverage(record):
    """Per planted type: (instances, share on a path from the planted static, top path)."""
    out = {}
    for t in record["types"]:
        planted = PLANTED.get(t["type_name"])
        total = t["instances"] or 1
        on = sum(p["instances"] for p in t["paths"] if p["root"].get("name") == planted)
        top = t["paths"][0] if t["paths"] else None
        out[t["type_name"]] = {
            "instances": t["instances"], "sampled": t["sampled"], "share": on / total,
            "top_root": top and (top["root"]["kind"] + " " + (top["root"].get("name") or top["root"].get("detail") or "")),
            "top_is_planted": bool(top and top["root"].get("name") == planted),
            "retained_per_instance": top and top.get("retained") and top["retained"]["bytes_per_instance"],
        }
    return out


def leakscope_side(dll, objects, runs, work, base_env):
    sock = os.path.join(work, f"agent-{objects}.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(sock)
    listener.listen(1)
    env = agent_env(base_env, work, objects, LEAKSCOPE_SOCKET=sock)
    t = Target(dll, objects, env, leaks=True)
    agent = Agent(listener)
    ready_ms, allocated, heap_bytes, _, _ = t.wait_ready(900)
    time.sleep(2)
    census_runs, retention_runs = [], []
    for _ in range(runs):
        sent, got, c = agent.ask({"cmd": "census"}, "census", 120)
        time.sleep(0.3)
        longest, total, _ = t.stall(sent, got)
        census_runs.append({"stalled_ms": total, "longest_ms": longest, "walk_ms": c["pause_ms"],
                            "gc_ms": c.get("gc_ms"), "objects": c["objects"], "elapsed_ms": got - sent})
        time.sleep(2)
        command = {"cmd": "retention", "types": list(PLANTED)}
        sent, got, r = agent.ask(command, "retention", 120)
        time.sleep(0.3)
        longest, total, gaps = t.stall(sent, got)
        retention_runs.append({
            "stalled_ms": total, "longest_ms": longest, "gaps": len(gaps),
            "pause_ms": r["pause_ms"], "max_pause_ms": r["max_pause_ms"], "elapsed_ms": r["elapsed_ms"],
            "walks": [w["pause_ms"] for w in r["walks"]], "roots_ms": r["roots"]["pause_ms"],
            "roots_source": r["roots"].get("source"), "memory_bytes": r["memory_bytes"],
            "memory_budget_bytes": r["memory_budget_bytes"], "objects": r["objects"], "followed": r["followed"],
            "samples": r["samples"], "truncated": r["truncated"], "error": r["error"], "coverage": coverage(r),
        })
        time.sleep(2)
    peak_rss = t.rss_kb()
    t.quit()
    summaries = [r for r in agent.records if r.get("type") == "summary"]
    return {"allocated": allocated, "heap_bytes": heap_bytes, "census": census_runs, "retention": retention_runs,
            "ready_rss_kb": t.ready_rss_kb, "peak_rss_kb": peak_rss,
            "agent_memory_max_bytes": max((s["agent"]["memory_bytes"] for s in summaries), default=None)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=lambda s: int(s.replace("_", "")), nargs="+",
                    default=[1_000_000, 5_000_000, 10_000_000])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-gcdump", action="store_true", help="skip the dotnet-gcdump side")
    ap.add_argument("--json", help="also write the full results here")
    a = ap.parse_args()
    work, dll, base_env, gcdump, commit = setup("leakscope-retention-", need_gcdump=not a.no_gcdump)
    results = {"commit": commit, "cpus": os.cpu_count(), "runs": a.runs, "loadavg_start": os.getloadavg(), "heaps": {}}
    for n in a.objects:
        print(f"{n:,} objects: leakscope census and retention ({a.runs} each, interleaved)...", file=sys.stderr)
        ls = leakscope_side(dll, n, a.runs, work, base_env)
        gd = None
        if not a.no_gcdump:
            print(f"{n:,} objects: dotnet-gcdump ({a.runs} collects)...", file=sys.stderr)
            gd = gcdump_side(dll, n, a.runs, work, base_env, gcdump, leaks=True)
        results["heaps"][n] = {"leakscope": ls, "gcdump": gd}
    results["loadavg_end"] = os.getloadavg()

    print(f"\ncommit {commit}; {os.cpu_count()} CPUs; load average {results['loadavg_start'][0]:.2f} at the start, "
          f"{results['loadavg_end'][0]:.2f} at the end; {a.runs} runs per side, medians (min–max)")
    print("| heap | what | stalled per request (ms) | longest pause (ms) | walks (pauses, ms) | total time (s) | "
          "peak memory |")
    print("|---|---|---|---|---|---|---|")
    for n, h in results["heaps"].items():
        ls, gd = h["leakscope"], h["gcdump"]
        c, r = ls["census"], ls["retention"]
        print(f"| {n:,} | census (GC + walk) | {spread(c, 'stalled_ms')} | {spread(c, 'longest_ms')} | 1 "
              f"({spread(c, 'walk_ms')}) | {spread(c, 'elapsed_ms', '{:.0f}')} ms | agent heap "
              f"{(ls['agent_memory_max_bytes'] or 0) / 2**20:.1f} MB |")
        walks = "; ".join("/".join(f"{w:.0f}" for w in x["walks"]) + f" + roots {x['roots_ms']:.0f}" for x in r)
        print(f"| {n:,} | retention paths | {spread(r, 'stalled_ms')} | {spread(r, 'longest_ms')} | {walks} | "
              f"{med(r, 'elapsed_ms') / 1000:.1f} | {med(r, 'memory_bytes') / 2**20:.1f} MB of "
              f"{r[0]['memory_budget_bytes'] / 2**20:.0f} MB budget |")
        if gd:
            runs = gd["runs"]
            print(f"| {n:,} | dotnet-gcdump | {spread(runs, 'felt_total_ms')} | {spread(runs, 'felt_longest_ms')} | – | "
                  f"{med(runs, 'wall_ms') / 1000:.1f} | tool {med(runs, 'tool_peak_rss_kb') / 1024:.0f} MB, target "
                  f"+{(gd['peak_rss_kb'] - gd['ready_rss_kb']) / 1024:.0f} MB |")
    print()
    ok = True
    for n, h in results["heaps"].items():
        for x in h["leakscope"]["retention"]:
            for type_name, cov in x["coverage"].items():
                good = cov["top_is_planted"] and cov["share"] >= 0.9
                ok &= good
            if x["truncated"] or x["error"]:
                ok = False
        last = h["leakscope"]["retention"][-1]["coverage"]
        print(f"{n:,} objects: " + "; ".join(
            f"{t}: {c['share'] * 100:.1f} % via the planted static (top: {c['top_root']}), {c['sampled']} of "
            f"{c['instances']} followed, retained {c['retained_per_instance']} B each" for t, c in last.items()))
    print("\nevery run, every type: dominant path = the planted static covering >= 90 %:", "yes" if ok else "NO")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
