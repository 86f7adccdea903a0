#!/usr/bin/env python3
"""Long-soak cost of a recording: size per hour, and `leakscope report` time and peak memory on
recordings synthesised to days of data from a real one.

    python3 bench/long_soak.py SOURCE_RECORDING --days 1,2,4,7 --runs 3 [--keep DIR]

SOURCE_RECORDING is a real recording.ndjson (e.g. from `leakscope soak --duration 5m -- SoakApp
steady-leak`). Its steady-state part (after the first 40 % of each producer's span) is repeated
with every record's `t_ms`, `unix_ms` and `seq` shifted by one cycle per copy, so the synthetic
recording has the real records' shapes, sizes, sites and interval (5 s by default), but values
that repeat cycle after cycle. Stack records are kept once (their ids stay defined); hello records
open it and bye records close it; answers to one-time questions (retention, peek) are left out.

For each length, `leakscope report DIR/recording.ndjson --json` (with the source's session.json
beside it, so a soak is judged as one) runs `--runs` times, the lengths interleaved
(1, 2, 4, 7, 1, 2, 4, 7, …) so machine drift hits them alike. Printed: the file size, the median
wall time with its range, and the peak RSS (GNU time's %M), per length and per day.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ONE_OFF = {"hello", "stack", "bye"}
# Answers to the collector's one-time questions (the paths asked at a soak's end): not repeated.
ANSWERS = {"retention", "peek"}
DAY_MS = 24 * 3600 * 1000


def load(path):
    records = []
    with open(path, "rb") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                pass  # a torn last line
    return records


def split(records):
    """(preamble, cycle, cycle_ms, closing): the records before the steady state, the steady
    state's periodic records, its length in ms, and the bye records."""
    spans = {}
    for r in records:
        if "t_ms" in r and r.get("type") not in ONE_OFF:
            key = (r.get("source"), r.get("pid"))
            lo, hi = spans.get(key, (r["t_ms"], r["t_ms"]))
            spans[key] = (min(lo, r["t_ms"]), max(hi, r["t_ms"]))
    start = {k: lo + 0.4 * (hi - lo) for k, (lo, hi) in spans.items()}
    cycle_ms = min(hi - lo for lo, hi in spans.values()) * 0.6
    cycle_ms = int(cycle_ms) - int(cycle_ms) % 1000
    preamble, cycle, closing = [], [], []
    for r in records:
        key = (r.get("source"), r.get("pid"))
        kind = r.get("type")
        if kind == "bye":
            closing.append(r)
        elif kind in ANSWERS:
            continue
        elif kind in ONE_OFF or "t_ms" not in r or key not in start:
            preamble.append(r)
        elif r["t_ms"] < start[key]:
            preamble.append(r)
        elif r["t_ms"] < start[key] + cycle_ms:
            cycle.append(r)
    cycle.sort(key=lambda r: r.get("unix_ms", 0))
    return preamble, cycle, cycle_ms, closing


def synthesise(records, days, out_path):
    preamble, cycle, cycle_ms, closing = split(records)
    if not cycle or cycle_ms <= 0:
        sys.exit("the source recording has no steady-state records to repeat")
    seq_step = {}
    for r in cycle:
        if "seq" in r:
            key = (r.get("source"), r.get("pid"))
            seq_step[key] = seq_step.get(key, 0) + 1
    last_t = max((r["t_ms"] for r in preamble if "t_ms" in r), default=0)
    copies = max(1, int(days * DAY_MS / cycle_ms))
    with open(out_path, "w") as f:
        for r in preamble:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
        for k in range(copies):
            shift = k * cycle_ms
            for r in cycle:
                c = dict(r)
                c["t_ms"] = r["t_ms"] + shift
                if "unix_ms" in r:
                    c["unix_ms"] = r["unix_ms"] + shift
                if "seq" in r:
                    c["seq"] = r["seq"] + k * seq_step[(r.get("source"), r.get("pid"))]
                f.write(json.dumps(c, separators=(",", ":")) + "\n")
                last_t = max(last_t, c["t_ms"])
        for r in closing:
            c = dict(r)
            if "t_ms" in c:
                c["t_ms"] = last_t + 1
            f.write(json.dumps(c, separators=(",", ":")) + "\n")
    return copies * cycle_ms


def run_report(cli, path):
    """(wall seconds, peak RSS bytes) of one `leakscope report`. GNU time measures it: a Python
    parent's fork would count Python's own pages in the child's ru_maxrss until the exec."""
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", cli, "report", path, "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    if out.returncode not in (0, 1):  # a soak's verdict: 0 pass, 1 fail; 2 is an error
        sys.exit(f"leakscope report {path} failed ({out.returncode}):\n{out.stderr}")
    elapsed, rss_kb = out.stderr.strip().splitlines()[-1].split()
    return float(elapsed), int(rss_kb) * 1024


def size_per_hour(records):
    """Bytes per hour of each producer's steady state, from the source recording itself."""
    preamble, cycle, cycle_ms, _ = split(records)
    total = sum(len(json.dumps(r, separators=(",", ":"))) + 1 for r in cycle)
    return total * 3600_000 / cycle_ms, cycle_ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("source")
    ap.add_argument("--days", default="1,2,4,7")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cli", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "leakscope"))
    ap.add_argument("--keep", help="write the synthetic recordings here (default: a temp dir, removed)")
    args = ap.parse_args()
    records = load(args.source)
    per_hour, cycle_ms = size_per_hour(records)
    print(f"source: {args.source}: {os.path.getsize(args.source)} bytes; steady state "
          f"{per_hour / 1e6:.2f} MB/hour (over {cycle_ms / 1000:.0f} s)")
    days = [float(d) for d in args.days.split(",")]
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        files = {}
        session = os.path.join(os.path.dirname(os.path.abspath(args.source)), "session.json")
        for d in days:
            # recording.ndjson beside the source's session.json: re-rendered as that session
            # (a soak's verdicts included), and nothing written into the directory.
            run_dir = os.path.join(tmp, f"{d:g}d")
            os.makedirs(run_dir)
            if os.path.isfile(session):
                shutil.copy(session, run_dir)
            path = os.path.join(run_dir, "recording.ndjson")
            span = synthesise(records, d, path)
            files[d] = path
            print(f"{d:g} days: {os.path.getsize(path) / 1e6:.0f} MB, {span / DAY_MS:.2f} days of records")
        results = {d: [] for d in days}
        for _ in range(args.runs):
            for d in days:
                results[d].append(run_report(args.cli, files[d]))
        print("| days | size (MB) | report time s (median, range) | s per day | peak RSS (MB, max) |")
        print("|---|---|---|---|---|")
        for d in days:
            times = [t for t, _ in results[d]]
            rss = max(m for _, m in results[d])
            med = statistics.median(times)
            print(f"| {d:g} | {os.path.getsize(files[d]) / 1e6:.0f} | {med:.1f} ({min(times):.1f}–{max(times):.1f}) "
                  f"| {med / d:.2f} | {rss / 1e6:.0f} |")


if __name__ == "__main__":
    main()
