#!/usr/bin/env python3
"""The agent's cost measured inside each process: allocation sampling (and so the following of
samples) goes on and off in random phases of about a second in one alloc-bench process
(`LEAKSCOPE_BENCH_AB_PHASE_MS`, benchmarks only), the workload counts its operations and the
process's CPU time every 100 ms on the agent's clock (`ALLOC_BENCH_TICKS`), and the ratio of
on-phases to off-phases is taken inside each process. Processes on this kind of VM differ from
one another by far more than the cost being measured (alloc-bench's CV between runs is
0.06-0.13); inside one process, on- and off-phases interleave every second and share it.

What it measures: the cost of sampling being on (the runtime's sampling and events, the stack
capture, following and resolving samples) against the agent loaded with sampling off. The cost
of the agent loaded but idle (its callbacks at GCs, its thread) is in neither phase: it is
measured between processes by `bench/agent_overhead.py --side 'events:LEAKSCOPE_MAX_SAMPLES_PER_SEC=1'`.
Samples taken in an on-phase are followed through the GCs of the next phase too, which moves a
little of the cost into off-phases: the ratio is a slight underestimate of that part.

A placebo check shows the method's own resolution: the same ticks with each phase's label drawn
again at random (seeded) give a ratio whose spread is what noise alone produces.

usage: bench/agent_ab.py [--processes N] [--seconds S] [--warmup W] [--phase-ms MS] [--threads T]
Needs: cargo build --release --workspace; dotnet.
"""
import argparse, math, os, random, re, shutil, statistics, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agent_overhead import AGENT, agent_env, bootstrap_median_ci, build_app  # noqa: E402

SWITCH = re.compile(r"bench a/b: phase (on|off) between (\d+) and (\d+) ns")
# A tick interval this close after a switch is left out: events already queued drain, and the
# runtime's sampling state settles.
SETTLE_NS = 100_000_000


def phases(log_path, started_ns):
    """[(from_ns, to_ns, on)] of settled phases; the agent starts with sampling on."""
    switches = [(m.group(1) == "on", int(m.group(2)), int(m.group(3)))
                for m in map(SWITCH.search, open(log_path, errors="replace")) if m]
    out, on, since = [], True, started_ns
    for now_on, before, after in switches:
        out.append((since, before, on))
        on, since = now_on, after + SETTLE_NS
    out.append((since, float("inf"), on))
    return out, len(switches)


def label_ticks(ticks, spans, warmup_ns):
    """(phase index, on, ops, cpu_ns, wall_ns) for each tick interval wholly inside a settled phase."""
    start = ticks[0][0] + warmup_ns
    rows = []
    for (t0, d0, c0), (t1, d1, c1) in zip(ticks, ticks[1:]):
        if t0 < start:
            continue
        for i, (lo, hi, on) in enumerate(spans):
            if lo <= t0 and t1 <= hi:
                rows.append((i, on, d1 - d0, c1 - c0, t1 - t0))
                break
    return rows


def ratios(rows, on_of=lambda i, on: on):
    """(ops per CPU-second, ops per second): on-phases over off-phases."""
    sums = {True: [0, 0, 0], False: [0, 0, 0]}
    for i, on, ops, cpu, wall in rows:
        s = sums[on_of(i, on)]
        s[0] += ops; s[1] += cpu; s[2] += wall
    (on_ops, on_cpu, on_wall), (off_ops, off_cpu, off_wall) = sums[True], sums[False]
    if not (on_cpu and off_cpu and on_wall and off_wall):
        return None
    return (on_ops / on_cpu) / (off_ops / off_cpu), (on_ops / on_wall) / (off_ops / off_wall)


def detrended(rows, on_of=lambda i, on: on, key=3):
    """On/off ratio with slow drift removed: each phase's log-rate (ops per CPU-second with
    key=3, per second with key=4) against the mean of its two neighbours, the same done to its
    on/off label, then the least-squares slope through the origin. Drift inside a process (the
    host's load changing over seconds) moves neighbours alike and cancels; the phases' random
    order keeps the slope unbiased."""
    per_phase = {}
    for i, on, ops, cpu, wall in rows:
        p = per_phase.setdefault(i, [on_of(i, on), 0, 0])
        p[1] += ops
        p[2] += (cpu, wall)[key - 3]
    phases_in_order = [per_phase[i] for i in sorted(per_phase)]
    return neighbour_slope([(on, ops / t) for on, ops, t in phases_in_order if ops and t])


def neighbour_slope(phases_in_order):
    """exp of the slope of log(value) on the on/off label, each phase taken against the mean of
    its two neighbours (label and value alike): the on/off ratio with slow drift removed."""
    ys = [math.log(v) for _, v in phases_in_order]
    xs = [float(on) for on, _ in phases_in_order]
    num = den = 0.0
    for j in range(1, len(ys) - 1):
        y = ys[j] - (ys[j - 1] + ys[j + 1]) / 2
        x = xs[j] - (xs[j - 1] + xs[j + 1]) / 2
        num += x * y
        den += x * x
    return math.exp(num / den) if den else None


def summarize(name, values):
    lo, hi = bootstrap_median_ci(values)
    return (f"{name}: median {statistics.median(values):.4f} (95% bootstrap CI {lo:.4f}-{hi:.4f}), "
            f"range {min(values):.3f}-{max(values):.3f}, {len(values)} processes")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30, help="measured seconds per process")
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--phase-ms", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--agent-env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--keep", metavar="DIR", help="keep each process's ticks and agent log here")
    a = ap.parse_args()
    if not os.path.exists(AGENT):
        sys.exit("build first: cargo build --release --workspace")
    work = tempfile.mkdtemp(prefix="leakscope-ab-")
    dll = build_app(work)
    cmd = ["dotnet", dll, "alloc-bench", str(a.seconds), str(a.threads), str(a.warmup)]
    base_env = dict(os.environ, DOTNET_CLI_TELEMETRY_OPTOUT="1")
    rng = random.Random(7)
    cpu_r, tput_r, placebo_cpu, placebo_tput, on_share, switch_counts = [], [], [], [], [], []
    det_cpu, det_tput = [], []
    for n in range(a.processes):
        out, log, ticks_path = (os.path.join(work, f"{n}.{ext}") for ext in ("ndjson", "log", "ticks"))
        env = agent_env(base_env, out)
        env.update({"LEAKSCOPE_BENCH_AB_PHASE_MS": str(a.phase_ms), "LEAKSCOPE_LOG": log,
                    "LEAKSCOPE_LOG_LEVEL": "info", "ALLOC_BENCH_TICKS": ticks_path})
        env.update(kv.split("=", 1) for kv in a.agent_env)
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        ticks = [tuple(map(int, line.split())) for line in open(ticks_path)]
        spans, switches = phases(log, ticks[0][0])
        rows = label_ticks(ticks, spans, int(a.warmup * 1e9))
        r = ratios(rows)
        if r is None:
            print(f"process {n + 1}: no on- or no off-phase after warm-up; left out", file=sys.stderr)
            continue
        cpu_r.append(r[0]); tput_r.append(r[1]); switch_counts.append(switches)
        det_cpu.append(detrended(rows)); det_tput.append(detrended(rows, key=4))
        on_share.append(sum(w for _, on, _, _, w in rows if on) / sum(w for *_, w in rows))
        # Placebo: each phase relabelled on or off at random; the real effect is averaged out.
        relabel = {i: rng.random() < 0.5 for i in {row[0] for row in rows}}
        p = ratios(rows, lambda i, on: relabel[i])
        if p is not None:
            placebo_cpu.append(p[0]); placebo_tput.append(p[1])
        print(f"process {n + 1}/{a.processes}: on/off per CPU-second {r[0]:.4f}, throughput {r[1]:.4f}, "
              f"{switches} switches, {len(rows)} settled ticks", file=sys.stderr)

    print(f"\nworkload: LeakApp alloc-bench, {a.threads} threads, {a.warmup:.0f} s warm-up + {a.seconds:.0f} s, "
          f"phases of {a.phase_ms} ms on or off at random, {len(cpu_r)} processes; "
          f"ticks of 100 ms, the first {SETTLE_NS // 1_000_000} ms after each switch left out")
    print(f"on-time share {statistics.median(on_share):.2f}, {statistics.median(switch_counts):.0f} switches per process (medians)")
    print(summarize("sampling on / off, ops per CPU-second", cpu_r))
    print(summarize("sampling on / off, throughput", tput_r))
    print(summarize("sampling on / off, ops per CPU-second, drift removed", det_cpu))
    print(summarize("sampling on / off, throughput, drift removed", det_tput))
    if placebo_cpu:
        print(summarize("placebo (phases relabelled at random), ops per CPU-second", placebo_cpu))
        print(summarize("placebo (phases relabelled at random), throughput", placebo_tput))
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
        for name in os.listdir(work):
            if name.endswith((".ticks", ".log")):
                shutil.copy(os.path.join(work, name), a.keep)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
