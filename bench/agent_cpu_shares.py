#!/usr/bin/env python3
"""What the agent's cost is made of, by a measure that other load on the machine does not distort:
the process's own CPU time (perf's cpu-clock samples, counted only while its threads run) per
million operations of alloc-bench, by shared object, baseline and agent sides interleaved run by
run. Totals still drift with the machine's load (caches, frequency); the rows that exist only on
an agent side (the agent's library, libm's `log` from the runtime's sampling draws) and the
differences that repeat across invocations are what to read.

usage: bench/agent_cpu_shares.py [--runs N] [--seconds S] [--side 'LABEL:KEY=VALUE,...']...
       [--symbols]   (also the top functions outside JIT-compiled code)
e.g.   bench/agent_cpu_shares.py --runs 4 --side 'always-on:LEAKSCOPE_MAX_SAMPLES_PER_SEC=1000000'
Needs: cargo build --release --workspace; dotnet; perf (scripts/setup.sh --with-bench-tools).
"""
import argparse, collections, json, os, re, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agent_overhead import AGENT, agent_env, build_app  # noqa: E402

# perf's cpu-clock at this frequency: one sample is 1/FREQ s of one thread's CPU time.
FREQ = 4000


def perf_rows(data, sort):
    out = subprocess.run(["perf", "report", "-i", data, "--no-children", "-g", "none", "--sort", sort, "-n",
                          "--stdio"], capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        m = re.match(r"\s+[\d.]+%\s+(\d+)\s+(.*\S)", line)
        if m:
            key = m.group(2)
            # JIT-compiled code lives in a memfd mapping perf cannot name: one row for all of it.
            if "memfd:doublemapper" in key:
                key = "JIT-compiled code"
            rows[key] = rows.get(key, 0) + int(m.group(1))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--symbols", action="store_true")
    ap.add_argument("--side", action="append", default=[], metavar="LABEL:KEY=VALUE,...")
    a = ap.parse_args()
    if not shutil.which("perf"):
        sys.exit("needs perf: scripts/setup.sh --with-bench-tools")
    if not os.path.exists(AGENT):
        sys.exit("build first: cargo build --release --workspace")
    sides = {"baseline": None, "agent": {}}
    for spec in a.side:
        label, _, settings = spec.partition(":")
        sides[label] = dict(kv.split("=", 1) for kv in settings.split(",") if kv)
    work = tempfile.mkdtemp(prefix="leakscope-shares-")
    dll = build_app(work)
    # The same perf map on every side, so that JIT-compiled code is one row everywhere.
    base_env = dict(os.environ, DOTNET_CLI_TELEMETRY_OPTOUT="1", DOTNET_PerfMapEnabled="1")
    cost = {s: collections.Counter() for s in sides}
    ops = collections.Counter()
    delivered = collections.Counter()
    for i in range(a.runs):
        for side, settings in sides.items():
            env = dict(base_env)
            out = os.path.join(work, f"{side}{i}.ndjson")
            if settings is not None:
                env = agent_env(base_env, out)
                env.update(settings)
            data = os.path.join(work, f"{side}{i}.data")
            p = subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(FREQ), "-g", "-o", data,
                                "dotnet", dll, "alloc-bench", str(a.seconds), str(a.threads)],
                               env=env, capture_output=True, text=True, check=True)
            figures = dict(re.findall(r"^(\w+) (.*)$", p.stdout, re.M))
            ops[side] += float(figures["ops_per_sec"]) * float(figures["elapsed_s"])
            for key, n in perf_rows(data, "dso,sym" if a.symbols else "dso").items():
                cost[side][key] += n
            if settings is not None:
                last = None
                for line in open(out):
                    r = json.loads(line)
                    if r.get("type") == "summary":
                        last = r
                delivered[side] += last["agent"]["samples"]
            os.remove(data)
        print(f"run {i + 1}/{a.runs} done", file=sys.stderr)
    per_mops = lambda side, n: n / FREQ * 1000 / ops[side] * 1e6  # CPU ms per million operations
    names = list(sides)
    print(f"\nalloc-bench, {a.threads} threads x {a.seconds:.0f} s, {a.runs} interleaved runs per side: "
          "CPU ms per million operations (perf cpu-clock samples of the process)")
    print("| " + " | ".join(["where"] + names) + " |")
    print("|---" * (len(names) + 1) + "|")
    print("| **total** | " + " | ".join(f"{per_mops(s, sum(cost[s].values())):.1f}" for s in names) + " |")
    keys = sorted({k for s in names for k in cost[s]}, key=lambda k: -max(per_mops(s, cost[s][k]) for s in names))
    for k in keys[:25]:
        if max(per_mops(s, cost[s][k]) for s in names) >= 0.3:
            print(f"| {k} | " + " | ".join(f"{per_mops(s, cost[s][k]):.2f}" for s in names) + " |")
    print("| samples the runtime delivered, per million operations | " + " | ".join(
        "—" if sides[s] is None else f"{delivered[s] / ops[s] * 1e6:.0f}" for s in names) + " |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
