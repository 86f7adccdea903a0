#!/usr/bin/env python3
"""The agent's cost in a real ASP.NET Core service, measured inside each process: bench/Service
runs under `leakscope run` (agent + shim, defaults) with allocation sampling going on and off in
random phases of about a second (`LEAKSCOPE_BENCH_AB_PHASE_MS`, benchmarks only), wrk drives it
over loopback, and the service counts, every 100 ms on the agent's clock (`SERVICE_TICKS`), the
requests it finished, its CPU time, and how long each request spent in the app. The ratio of
on-phases to off-phases inside each process removes the spread between processes, which on this
VM is bimodal and ±10-20 % (bench/service_overhead.py, BENCHMARKS.md).

What it measures: requests/s, CPU time per request, the app-side p99 (time from the first
middleware to the response: queueing in the kernel and Kestrel before the app is not in it) and
the client's p99 (wrk_timed.lua stamps each request with its send time on the same clock, the
service echoes it, and wrk times the response: wrk's own view, per 100 ms) with sampling on
against sampling off. Not in it: the agent loaded but
idle and the shim, present in both phases (between processes: bench/service_overhead.py).

usage: bench/service_ab.py [--processes N] [--seconds S] [--warmup S] [--connections C] [--leak [N]] [--pin] [--perf [--perf-symbols OBJECT]] [--keep DIR]
       bench/service_ab.py --analyse DIR [DIR ...]   (pools the processes earlier runs of the same code kept)
Needs: cargo build --release --workspace; dotnet; wrk; perf for --perf (scripts/setup.sh --with-bench-tools).
"""
import argparse, collections, datetime, os, random, re, shutil, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import perf_phases  # noqa: E402
from agent_ab import SETTLE_NS, detrended, neighbour_slope, phases  # noqa: E402
from service_overhead import (CLI, bootstrap_median_ci, build_service, free_port, launch, leak_label,  # noqa: E402
                              report_text, require_leak_named, server_pid, stop, wait_healthy, wrk)

BUCKETS_PER_DOUBLING = 8
# The collector's retention search, in the agent's log (wall-clock stamps): asked for once when a
# type is confirmed growing (and at the end), it pauses the application for a full GC and a few
# heap walks. That is an investigation, not the always-on cost the phases compare: a phase that
# holds one is left out on both sides (and counted).
SEARCH_ASKED = re.compile(r"^(\S+Z) .*retention paths requested")
SEARCH_DONE = re.compile(r"^(\S+Z) .*retention: \d+ types? in")
PHASE_LOGGED = re.compile(r"^(\S+Z) .*bench a/b: phase \w+ between \d+ and (\d+) ns")
SEARCH_MARGIN_NS = 200_000_000


def read_ticks(path):
    rows = []
    for line in open(path):
        f = list(map(int, line.split()))
        rows.append((f[0], f[1], f[2], f[3:]))
    return rows


def quantile_us(histogram, q):
    """The q-quantile of a log-bucketed histogram (bucket b covers 2^(b/8) to 2^((b+1)/8) µs),
    interpolated geometrically inside its bucket."""
    total = sum(histogram)
    if total == 0:
        return None
    want, seen = q * total, 0
    for b, n in enumerate(histogram):
        if n and seen + n >= want:
            frac = (want - seen) / n
            return 2 ** ((b + frac) / BUCKETS_PER_DOUBLING)
        seen += n
    return 2 ** (len(histogram) / BUCKETS_PER_DOUBLING)


def settled_phase(spans, t0, t1, start_ns, end_ns):
    """The index of the settled phase that wholly holds the tick [t0, t1), if the tick is also
    inside the measured window; else None."""
    if t0 < start_ns or t1 > end_ns:
        return None
    return next((i for i, (lo, hi, _) in enumerate(spans) if lo <= t0 and t1 <= hi), None)


def merged(total, histogram):
    """`total` with `histogram` added bucket by bucket (a copy of it when `total` is None)."""
    return list(histogram) if total is None else [a + b for a, b in zip(total, histogram)]


def split(ticks, spans, start_ns, end_ns, on_of=None):
    """Sums per side (on/off): requests, CPU ns, wall ns and the merged histogram, over tick
    intervals wholly inside a settled phase and the measured window."""
    sums = {True: [0, 0, 0, None], False: [0, 0, 0, None]}
    rows = []  # (phase, on, requests, cpu_ns, wall_ns) per tick, as bench/agent_ab.py's
    per_phase = {}  # phase -> (on, merged histogram)
    intervals = []  # (t0, t1, on) of every tick interval counted
    for (t0, d0, c0, h0), (t1, d1, c1, _) in zip(ticks, ticks[1:]):
        i = settled_phase(spans, t0, t1, start_ns, end_ns)
        if i is None:
            continue
        on = spans[i][2]
        s = sums[on_of(i) if on_of else on]
        s[0] += d1 - d0; s[1] += c1 - c0; s[2] += t1 - t0
        s[3] = merged(s[3], h0)
        rows.append((i, on, d1 - d0, c1 - c0, t1 - t0))
        intervals.append((t0, t1, on))
        per_phase[i] = (on, merged(per_phase.get(i, (on, None))[1], h0))
    return sums, rows, [per_phase[i] for i in sorted(per_phase)], intervals


def read_client_ticks(path):
    """wrk_timed.lua's histograms of the client's latency: [(tick start ns, histogram)]."""
    return [(int(f[0]), list(map(int, f[1:]))) for f in (line.split() for line in open(path)) if f]


def split_client(client_ticks, spans, start_ns, end_ns, on_of=None):
    """The client's latency histograms per side (on/off, or as `on_of` relabels the phases) and per
    phase, over 100 ms ticks wholly inside a settled phase and the measured window (a response
    counts in the tick it arrived in)."""
    sums, per_phase = {True: None, False: None}, {}
    for t0, h in client_ticks:
        i = settled_phase(spans, t0, t0 + 100_000_000, start_ns, end_ns)
        if i is None:
            continue
        side = on_of(i) if on_of else spans[i][2]
        sums[side] = merged(sums[side], h)
        per_phase[i] = (side, merged(per_phase.get(i, (side, None))[1], h))
    return sums, [per_phase[i] for i in sorted(per_phase)]


def client_ratios(client_ticks, spans, start_ns, end_ns, on_of=None):
    """On/off ratios of the client's p99 and p50, pooled and (p99) phase by phase with drift removed."""
    sums, per_phase = split_client(client_ticks, spans, start_ns, end_ns, on_of)
    if sums[True] is None or sums[False] is None:
        return None
    p99 = (quantile_us(sums[True], 0.99), quantile_us(sums[False], 0.99))
    return {"client_p99": p99[0] / p99[1],
            "client_p50": quantile_us(sums[True], 0.5) / quantile_us(sums[False], 0.5),
            "client_p99_detrended": detrended_quantile(per_phase, 0.99),
            "client_p99_us": p99}


def detrended_quantile(per_phase, q):
    """Each phase's own q-quantile, then the drift-removed on/off ratio of those: a tail is
    compared phase by phase, so a few bad seconds weigh as phases, not as their requests."""
    values = [(on, quantile_us(h, q)) for on, h in per_phase if sum(h) >= 1 / (1 - q) * 10]
    return neighbour_slope(values)


def ratios(sums):
    (on_req, on_cpu, on_wall, on_h), (off_req, off_cpu, off_wall, off_h) = sums[True], sums[False]
    if not (on_req and off_req and on_wall and off_wall):
        return None
    return {
        "rps": (on_req / on_wall) / (off_req / off_wall),
        "cpu_per_request": (on_cpu / on_req) / (off_cpu / off_req),
        "p99": quantile_us(on_h, 0.99) / quantile_us(off_h, 0.99),
        "p50": quantile_us(on_h, 0.50) / quantile_us(off_h, 0.50),
        "on_share": on_wall / (on_wall + off_wall),
    }


def wall_ns(stamp):
    return int(datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1e9)


def retention_searches(log_path):
    """[(from_ns, to_ns)] on CLOCK_MONOTONIC of the retention searches in an agent log. The log's
    stamps are wall-clock; each phase switch logs its monotonic time too, which gives the offset."""
    offsets, asked, windows = [], None, []
    for line in open(log_path, errors="replace"):
        if m := PHASE_LOGGED.search(line):
            offsets.append(wall_ns(m.group(1)) - int(m.group(2)))
        elif m := SEARCH_ASKED.search(line):
            asked = wall_ns(m.group(1)) if asked is None else asked
        elif (m := SEARCH_DONE.search(line)) and asked is not None:
            windows.append((asked, wall_ns(m.group(1))))
            asked = None
    if asked is not None:
        windows.append((asked, float("inf")))
    if windows and not offsets:
        raise RuntimeError(f"{log_path}: retention searches but no phase switch to place them by")
    offset = statistics.median(offsets) if offsets else 0
    return [(lo - offset - SEARCH_MARGIN_NS, hi - offset + SEARCH_MARGIN_NS) for lo, hi in windows]


def analyse(ticks_path, client_path, log_path, start, end, rng):
    """One process's on/off ratios and its placebo's (phases relabelled at random), from its
    service ticks, its client ticks and its agent log: (ratios or None, placebo or None, per-side
    sums, the tick intervals counted)."""
    ticks = read_ticks(ticks_path)
    spans, switches = phases(log_path, ticks[0][0])
    searches = retention_searches(log_path)
    held = [span for span in spans if any(lo < span[1] and span[0] < hi for lo, hi in searches)]
    # Counted only inside the measured window (the search asked for at the end comes after it).
    left_out = sum(1 for lo, hi, _ in held if lo < end and start < hi)
    spans = [span for span in spans if span not in held]
    sums, rows, per_phase, intervals = split(ticks, spans, start, end)
    r = ratios(sums)
    if r is None:
        return None, None, sums, intervals
    # Drift removed (each phase against its neighbours): requests/s, and CPU per request
    # (the inverse of requests per CPU-second).
    r["rps_detrended"] = detrended(rows, key=4)
    r["cpu_per_request_detrended"] = 1 / detrended(rows, key=3)
    r["p99_detrended"] = detrended_quantile(per_phase, 0.99)
    r["switches"] = switches
    r["left_out"] = left_out
    client_ticks = read_client_ticks(client_path)
    client = client_ratios(client_ticks, spans, start, end)
    if client is None:
        raise RuntimeError(f"{client_path}: the client timed no response in an on- or an off-phase")
    r.update(client)
    phase_ids = {row[0] for row in rows}
    relabel = {i: rng.random() < 0.5 for i in phase_ids}
    # A phase that holds client ticks but no whole server tick (the two tick on their own
    # clocks' hundred-millisecond grids) gets its own draw.
    relabel = collections.defaultdict(lambda: rng.random() < 0.5, relabel)
    p = ratios(split(ticks, spans, start, end, on_of=lambda i: relabel[i])[0])
    if p:
        p["rps_detrended"] = detrended(rows, on_of=lambda i, _: relabel[i], key=4)
        p["cpu_per_request_detrended"] = 1 / detrended(rows, on_of=lambda i, _: relabel[i], key=3)
        relabelled = [(relabel[i], h) for i, (_, h) in zip(sorted(phase_ids), per_phase)]
        p["p99_detrended"] = detrended_quantile(relabelled, 0.99)
        p.update(client_ratios(client_ticks, spans, start, end, on_of=lambda i: relabel[i]) or {})
    return r, p, sums, intervals


def process_line(label, r):
    return (f"process {label}: on/off requests/s {r['rps']:.4f}, CPU per request "
            f"{r['cpu_per_request']:.4f}, app p99 {r['p99']:.4f}, p50 {r['p50']:.4f}, client p99 {r['client_p99']:.4f} "
            f"({r['client_p99_us'][0]:.0f}/{r['client_p99_us'][1]:.0f} µs), p50 {r['client_p50']:.4f}; "
            f"{r['switches']} phase changes, on-share {r['on_share']:.2f}"
            + (f"; {r['left_out']} phases holding a retention search left out" if r["left_out"] else ""))


def tally(label, r, p, results, placebo):
    """Adds one process's ratios (and its placebo's) to the pooled lists and prints its line."""
    if r is None:
        print(f"process {label}: no on- or no off-phase in the measured window; left out", file=sys.stderr)
        return
    results.append(r)
    if p:
        placebo.append(p)
    print(process_line(label, r), file=sys.stderr)


def summary(results, placebo):
    """Medians over processes of the on/off ratios and of the placebo's, with 95 % intervals."""
    def line(name, values):
        lo, hi = bootstrap_median_ci(values)
        return (f"{name}: median {statistics.median(values):.4f} (95% bootstrap CI {lo:.4f}-{hi:.4f}), "
                f"range {min(values):.3f}-{max(values):.3f}, {len(values)} processes")

    for key, label in (("rps", "requests/s"), ("rps_detrended", "requests/s, drift removed"),
                       ("cpu_per_request", "CPU per request"),
                       ("cpu_per_request_detrended", "CPU per request, drift removed"),
                       ("p99", "app-side p99"), ("p99_detrended", "app-side p99 phase by phase, drift removed"),
                       ("p50", "app-side p50"), ("client_p99", "client's p99 (wrk_timed.lua)"),
                       ("client_p99_detrended", "client's p99 phase by phase, drift removed"),
                       ("client_p50", "client's p50")):
        print(line(f"sampling on / off, {label}", [r[key] for r in results]))
    for key, label in (("rps", "requests/s"), ("rps_detrended", "requests/s, drift removed"),
                       ("cpu_per_request", "CPU per request"),
                       ("cpu_per_request_detrended", "CPU per request, drift removed"), ("p99", "app-side p99"),
                       ("p99_detrended", "app-side p99 phase by phase, drift removed"),
                       ("client_p99", "client's p99"), ("client_p99_detrended", "client's p99 phase by phase, drift removed")):
        print(line(f"placebo (phases relabelled at random), {label}", [r[key] for r in placebo if key in r]))


def analyse_kept(dirs):
    """--analyse: the processes that earlier runs kept (--keep), pooled in one summary. Pool only
    runs of the same code and settings: nothing here checks that."""
    rng = random.Random(7)
    results, placebo = [], []
    for d in dirs:
        kept = sorted(int(f.split(".")[0]) for f in os.listdir(d) if f.endswith(".window"))
        if not kept:
            sys.exit(f"{d}: no kept processes (*.window)")
        for n in kept:
            start, end = map(int, open(os.path.join(d, f"{n}.window")).read().split())
            r, p, _, _ = analyse(os.path.join(d, f"{n}.ticks"), os.path.join(d, f"{n}.client"),
                                 os.path.join(d, f"{n}.log"), start, end, rng)
            tally(f"{d} {n + 1}", r, p, results, placebo)
    print(f"\nservice, {len(results)} processes pooled from kept runs: {', '.join(dirs)}")
    summary(results, placebo)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--phase-ms", type=int, default=1000)
    ap.add_argument("--leak", nargs="?", type=int, const=1, default=0, metavar="N",
                    help="plant a leak (an audit line per order request, or one in N); every report.txt must name its call site")
    ap.add_argument("--pin", action="store_true", help="the server on CPU 1, wrk on CPU 0")
    ap.add_argument("--runtime-env", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting for the server (repeatable), e.g. DOTNET_TieredPGO=0")
    ap.add_argument("--keep", metavar="DIR", help="keep each process's ticks and agent log here (and, with --perf, its perf data)")
    ap.add_argument("--perf", action="store_true",
                    help="also profile the server (perf cpu-clock) and show where sampling's cost goes")
    ap.add_argument("--perf-symbols", metavar="OBJECT",
                    help="with --perf: the samples with a frame in this shared object (e.g. libleakscope_agent) "
                         "in rows by its outermost and innermost function there")
    ap.add_argument("--analyse", nargs="+", metavar="DIR",
                    help="measure nothing: pool the processes that earlier runs kept (--keep) in these directories")
    a = ap.parse_args()
    if a.analyse:
        return analyse_kept(a.analyse)
    if not os.path.exists(CLI):
        sys.exit("build first: cargo build --release --workspace")
    for tool in ["wrk"] + (["perf"] if a.perf else []):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: scripts/setup.sh --with-bench-tools")
    work = tempfile.mkdtemp(prefix="leakscope-service-ab-")
    dll = build_service(work)
    rng = random.Random(7)
    results, placebo, reports = [], [], []
    cpu_rows = {True: collections.Counter(), False: collections.Counter()}  # --perf: CPU seconds per row
    requests = {True: 0, False: 0}
    row_differences = collections.defaultdict(list)  # --perf: per process, µs per request on − off
    for n in range(a.processes):
        port, ticks_path = free_port(), os.path.join(work, f"{n}.ticks")
        client_path = os.path.join(work, f"{n}.client")
        proc, out_dir = launch("leakscope", dll, port, work, n, a, extra_env=[
            ("SERVICE_TICKS", ticks_path), ("LEAKSCOPE_BENCH_AB_PHASE_MS", str(a.phase_ms))])
        try:
            wait_healthy(port, proc)
            pid = server_pid(proc.pid, dll)
            if not pid:
                raise RuntimeError("cannot find the server process")
            # The warm-up in three runs of wrk: each opens its connections anew, and code that runs
            # once per connection reaches tier 1 after 30 calls. With one warm-up run, the measured
            # run's own connections tiered it up in its first second: a burst of JIT on the
            # background worker (seen by perf) that lands in whichever phase is current.
            for _ in range(3):
                wrk(port, max(1, a.warmup // 3), a.connections, a.pin)
            profiler = perf_phases.record(pid, os.path.join(work, f"{n}.perf")) if a.perf else None
            start = time.monotonic_ns()  # CLOCK_MONOTONIC, the agent's and the service's clock
            # The measured run times each response as the client sees it (wrk_timed.lua).
            wrk(port, a.seconds, a.connections, a.pin, script="wrk_timed.lua",
                env=dict(os.environ, WRK_TICKS=client_path))
            end = time.monotonic_ns()
            if profiler:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(timeout=120)
        finally:
            stop(proc)
        if a.keep:
            os.makedirs(a.keep, exist_ok=True)
            shutil.copy(ticks_path, a.keep)
            shutil.copy(client_path, a.keep)
            shutil.copy(os.path.join(out_dir, "agent.log"), os.path.join(a.keep, f"{n}.log"))
            with open(os.path.join(a.keep, f"{n}.window"), "w") as f:
                f.write(f"{start} {end}\n")
        r, p, sums, intervals = analyse(ticks_path, client_path, os.path.join(out_dir, "agent.log"), start, end, rng)
        if a.perf:
            split_rows = perf_phases.split(os.path.join(work, f"{n}.perf"), intervals, a.perf_symbols)
            for on, counter in split_rows.items():
                cpu_rows[on] += counter
                requests[on] += sums[on][0]
            for key in set(split_rows[True]) | set(split_rows[False]) | {"**total**"}:
                us = {on: (sum(split_rows[on].values()) if key == "**total**" else split_rows[on][key])
                      / max(sums[on][0], 1) * 1e6 for on in (True, False)}
                row_differences[key].append(us[True] - us[False])
            if a.keep:
                # Kept for a closer look (`perf script -i`), with the phases in N.ticks.
                shutil.move(os.path.join(work, f"{n}.perf"), os.path.join(a.keep, f"{n}.perf"))
            else:
                os.remove(os.path.join(work, f"{n}.perf"))
        reports.append(report_text(out_dir))
        tally(f"{n + 1}/{a.processes}", r, p, results, placebo)

    print(f"\nservice: bench/Service under `leakscope run` (agent + shim, defaults), wrk -t1 -c{a.connections}, "
          f"{a.seconds} s measured after {a.warmup} s warm-up{leak_label(a.leak)}"
          f"{', server on CPU 1 and wrk on CPU 0' if a.pin else ''}; sampling on or off in random phases of "
          f"{a.phase_ms} ms; 100 ms ticks, the first {SETTLE_NS // 1_000_000} ms after each phase change left out")
    summary(results, placebo)
    if a.perf:
        per_request = lambda on, seconds: seconds / max(requests[on], 1) * 1e6
        total = {on: per_request(on, sum(cpu_rows[on].values())) for on in (True, False)}
        print(f"\nwhere the server's CPU went (perf cpu-clock, {sum(requests.values())} requests in counted "
              f"intervals): µs per request, sampling on / off")
        # A process the host disturbed in one kind of phase weighs on the pooled columns; the
        # median over processes of each one's own difference does not follow it.
        median_difference = lambda key: statistics.median(row_differences[key] + [0.0] * (
            len(row_differences["**total**"]) - len(row_differences[key])))
        print("| where | on | off | on − off | on − off, median over processes |\n|---|---|---|---|---|")
        print(f"| **total** | {total[True]:.3f} | {total[False]:.3f} | {total[True] - total[False]:+.3f} | "
              f"{median_difference('**total**'):+.3f} |")
        for key in sorted(set(cpu_rows[True]) | set(cpu_rows[False]),
                          key=lambda k: -(cpu_rows[True][k] + cpu_rows[False][k])):
            on, off = per_request(True, cpu_rows[True][key]), per_request(False, cpu_rows[False][key])
            if max(on, off) >= 0.01:
                print(f"| {key} | {on:.3f} | {off:.3f} | {on - off:+.3f} | {median_difference(key):+.3f} |")
    if a.leak:
        require_leak_named(reports, work)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
