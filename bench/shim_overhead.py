#!/usr/bin/env python3
"""Shim overhead benchmark: bench/malloc_bench.c (nothing but malloc/free) without the shim, with
it at its defaults (sampled totals), with exact totals (LEAKSCOPE_NATIVE_TOTALS=exact), and once
under heaptrack, interleaved run by run with the order rotating, so drift hits every side alike.

Per side: the workload's own loop time and the process's CPU time (user + system, from
getrusage, microsecond resolution), as ratios against the baseline run of the same round, with
the median and a 95% bootstrap interval of the median.

usage: bench/shim_overhead.py [--threads T] [--ops N] [--rounds R] [--no-heaptrack]
                              [--side 'LABEL:KEY=VALUE,...']...
Needs: cargo build --release -p leakscope-shim; cc; (optional) heaptrack.
"""
import argparse, os, random, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bootstrap_median_ci(values, rounds=4000, seed=1):
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def run(cmd, env):
    """One run: (CPU seconds of the process, the workload's loop seconds)."""
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed with status {status}")
    return usage.ru_utime + usage.ru_stime, float(out.decode().split()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ops", type=int, default=10_000_000, help="allocations per thread")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--no-heaptrack", action="store_true")
    ap.add_argument("--side", action="append", default=[], metavar="LABEL:KEY=VALUE,...",
                    help="another shim side with these settings (repeatable)")
    a = ap.parse_args()
    shim = os.environ.get("LEAKSCOPE_SHIM") or os.path.join(ROOT, "target/release/libleakscope_shim.so")
    if not os.path.exists(shim):
        sys.exit("build first: cargo build --release -p leakscope-shim (or set LEAKSCOPE_SHIM)")
    work = tempfile.mkdtemp(prefix="leakscope-shim-bench-")
    exe = os.path.join(work, "malloc_bench")
    subprocess.run(["cc", "-O2", "-pthread", os.path.join(ROOT, "bench/malloc_bench.c"), "-o", exe], check=True)
    cmd = [exe, str(a.threads), str(a.ops)]
    base = {k: v for k, v in os.environ.items() if not k.startswith("LEAKSCOPE_") and k != "LD_PRELOAD"}
    shim_env = dict(base, LD_PRELOAD=shim, LEAKSCOPE_OUTPUT=os.path.join(work, "out.ndjson"))
    sides = {"baseline": base, "shim (default: sampled totals)": shim_env,
             "shim, exact totals": dict(shim_env, LEAKSCOPE_NATIVE_TOTALS="exact")}
    for spec in a.side:
        label, _, settings = spec.partition(":")
        sides[label] = dict(shim_env, **dict(kv.split("=", 1) for kv in settings.split(",") if kv))
    names = list(sides)
    results = {n: [] for n in names}
    for r in range(a.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            results[n].append(run(cmd, sides[n]))
        print(f"round {r + 1}/{a.rounds}", file=sys.stderr)

    print(f"malloc_bench: {a.threads} threads x {a.ops} allocations (+ frees), {a.rounds} interleaved "
          f"rounds, order rotating; {os.cpu_count()} CPUs; load average before the end "
          f"{os.getloadavg()[0]:.2f}")
    print("| side | CPU s (median) | loop s (median) | CPU ratio: per-round median (95% CI) | loop ratio: per-round median (95% CI) |")
    print("|---|---|---|---|---|")
    for n in names:
        cpu = [c for c, _ in results[n]]
        loop = [l for _, l in results[n]]
        rc = [x[0] / b[0] for x, b in zip(results[n], results["baseline"])]
        rl = [x[1] / b[1] for x, b in zip(results[n], results["baseline"])]
        (clo, chi), (llo, lhi) = bootstrap_median_ci(rc), bootstrap_median_ci(rl)
        print(f"| {n} | {statistics.median(cpu):.3f} | {statistics.median(loop):.3f} | "
              f"{statistics.median(rc):.3f} ({clo:.3f}-{chi:.3f}) | {statistics.median(rl):.3f} ({llo:.3f}-{lhi:.3f}) |")
    heaptrack = shutil.which("heaptrack")
    if heaptrack and not a.no_heaptrack:
        _, b_loop = run(cmd, base)
        t = time.monotonic()
        p = subprocess.run([heaptrack, "-o", os.path.join(work, "ht")] + cmd, env=base, capture_output=True, text=True)
        loops = [float(x) for x in p.stdout.split() if x.replace(".", "", 1).isdigit()]
        h_loop = loops[-1] if loops else time.monotonic() - t
        print(f"heaptrack: loop {h_loop:.3f} s against {b_loop:.3f} s for the baseline run just before: "
              f"{h_loop / b_loop:.1f}x (one run)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
