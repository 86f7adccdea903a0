#!/usr/bin/env python3
"""Fleet benchmark: one `leakscope listen` fed by N simulated workers that replay a real
recording (agent + shim records of a real leaking .NET worker) at a fixed interval, with and
without `--metrics`, the two sides interleaved round by round.

Per side: the collector's CPU (% of one core, from /proc/PID/stat over the run), its peak RSS
(VmHWM) and, with --metrics, the latency of `GET /metrics` scraped every --scrape-every
seconds (p50/p99), plus the size of the exposition and its number of series.

Each simulated worker is one socket connection carrying the recording's agent and shim lines,
with its own pid; its stacks and hellos are sent first, then one interval's records per tick.
Time fields are rewritten so every worker's clock runs forward (the recording loops).

usage: bench/fleet.py RECORDING [--workers 50] [--interval 1] [--minutes 10] [--rounds 1]
       [--scrape-every 1] [--top 20]
RECORDING: a recording.ndjson made with a 1 s interval, e.g.
  leakscope run --interval 1s --duration 120s --out /tmp/rec -- dotnet LeakApp.dll strings 300
Needs: cargo build --release --workspace.
"""
import argparse, json, os, random, socket, statistics, subprocess, sys, tempfile, threading, time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(ROOT, "target/release/leakscope")
TICK_TYPES = ("summary", "native", "retained", "census")


def load_ticks(path):
    """(preamble lines, [tick]) where a tick is the records of one agent summary interval."""
    preamble, ticks, current = [], [], []
    for raw in open(path, encoding="utf-8"):
        raw = raw.strip()
        if not raw:
            continue
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        kind = rec.get("type")
        if kind in ("hello", "stack"):
            preamble.append(rec)
        elif kind in TICK_TYPES:
            if kind == "summary" and rec.get("source") == "agent" and current:
                ticks.append(current)
                current = []
            current.append(rec)
    if current:
        ticks.append(current)
    if not ticks:
        sys.exit(f"{path}: no summary records")
    return preamble, ticks


class Worker(threading.Thread):
    def __init__(self, sock_path, pid, preamble, ticks, interval, stop):
        super().__init__(daemon=True)
        self.sock_path, self.pid, self.preamble, self.ticks = sock_path, pid, preamble, ticks
        self.interval, self.stop, self.sent, self.error = interval, stop, 0, None

    def line(self, rec, t_offset_ms):
        rec = dict(rec, pid=self.pid)
        if "t_ms" in rec:
            rec["t_ms"] = rec["t_ms"] + t_offset_ms
        if "unix_ms" in rec:
            rec["unix_ms"] = int(time.time() * 1000)
        if rec.get("type") == "hello":
            rec["start_unix_ms"] = int(time.time() * 1000)
            rec["service"] = f"fleet-{self.pid % 5}"
        return (json.dumps(rec, separators=(",", ":")) + "\n").encode()

    def run(self):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.sock_path)
            s.sendall(b"".join(self.line(r, 0) for r in self.preamble))
            span_ms = max(r.get("t_ms", 0) for t in self.ticks for r in t) + 1000
            # Workers start at different points of the recording, as a real fleet would be.
            i = random.randrange(len(self.ticks))
            loops = 0
            next_at = time.monotonic()
            while not self.stop.is_set():
                s.sendall(b"".join(self.line(r, loops * span_ms) for r in self.ticks[i]))
                self.sent += 1
                i += 1
                if i == len(self.ticks):
                    i, loops = 0, loops + 1
                next_at += self.interval
                self.stop.wait(max(0.0, next_at - time.monotonic()))
            s.close()
        except OSError as e:
            self.error = str(e)


def proc_cpu_s(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_hwm_kb(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmHWM:"):
            return int(l.split()[1])
    return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def one_side(args, preamble, ticks, metrics):
    work = tempfile.mkdtemp(prefix="leakscope-fleet-")
    sock = os.path.join(work, "l.sock")
    cmd = [CLI, "listen", "--plain", "--socket", sock, "--out", os.path.join(work, "out"),
           "--duration", f"{int(args.minutes * 60) + 30}s"]
    port = None
    if metrics:
        port = free_port()
        cmd += ["--metrics", f"127.0.0.1:{port}", "--metrics-top", str(args.top)]
    env = dict(os.environ, TMPDIR=work)
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while not os.path.exists(sock) and time.time() < deadline:
        time.sleep(0.05)
    stop = threading.Event()
    workers = [Worker(sock, 200000 + i, preamble, ticks, args.interval, stop)
               for i in range(args.workers)]
    for w in workers:
        w.start()
    cpu0, t0 = proc_cpu_s(p.pid), time.monotonic()
    latencies, sizes, series = [], [], []
    end = t0 + args.minutes * 60
    while time.monotonic() < end:
        if metrics:
            s = time.monotonic()
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
            latencies.append((time.monotonic() - s) * 1000)
            sizes.append(len(body))
            series.append(sum(1 for l in body.split(b"\n") if l and not l.startswith(b"#")))
        time.sleep(args.scrape_every)
    cpu = (proc_cpu_s(p.pid) - cpu0) / (time.monotonic() - t0) * 100
    hwm = proc_hwm_kb(p.pid)
    load = os.getloadavg()
    stop.set()
    for w in workers:
        w.join(5)
    p.terminate()
    p.wait(60)
    errors = [w.error for w in workers if w.error]
    if args.keep_metrics and metrics:
        open(args.keep_metrics, "wb").write(body)
    subprocess.run(["rm", "-rf", work])
    out = {"metrics": metrics, "cpu_pct": cpu, "peak_rss_mb": hwm / 1024,
           "ticks_sent": sum(w.sent for w in workers), "worker_errors": errors,
           "loadavg_1_5_15": [round(x, 2) for x in load]}
    if latencies:
        q = statistics.quantiles(latencies, n=100, method="inclusive")
        out.update(scrapes=len(latencies), p50_ms=statistics.median(latencies), p99_ms=q[98],
                   max_ms=max(latencies), body_kb=statistics.median(sizes) / 1024,
                   series=int(statistics.median(series)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("recording")
    ap.add_argument("--workers", type=int, default=50)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--scrape-every", type=float, default=1.0)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--keep-metrics", help="write the last scrape here")
    args = ap.parse_args()
    preamble, ticks = load_ticks(args.recording)
    print(f"# {len(ticks)} ticks, {len(preamble)} preamble lines; {args.workers} workers every "
          f"{args.interval}s; {args.minutes} min per side; {args.rounds} round(s)", flush=True)
    results = []
    for r in range(args.rounds):
        sides = [True, False]
        random.shuffle(sides)
        for metrics in sides:
            res = one_side(args, preamble, ticks, metrics)
            res["round"] = r
            print(json.dumps(res), flush=True)
            results.append(res)
    for metrics in (True, False):
        rs = [x for x in results if x["metrics"] == metrics]
        cpu = [x["cpu_pct"] for x in rs]
        rss = [x["peak_rss_mb"] for x in rs]
        label = "listen --metrics" if metrics else "listen (baseline)"
        line = f"{label}: CPU {statistics.mean(cpu):.1f}% (runs {', '.join(f'{c:.1f}' for c in cpu)}), " \
               f"peak RSS {max(rss):.1f} MB (runs {', '.join(f'{m:.1f}' for m in rss)})"
        if metrics:
            line += "; scrape p50 " + ", ".join(f"{x['p50_ms']:.1f}" for x in rs) + " ms, p99 " + \
                    ", ".join(f"{x['p99_ms']:.1f}" for x in rs) + " ms, max " + \
                    ", ".join(f"{x['max_ms']:.1f}" for x in rs) + " ms; " + \
                    ", ".join(f"{x['series']} series / {x['body_kb']:.0f} KiB" for x in rs)
        print(line)


if __name__ == "__main__":
    main()
