#!/usr/bin/env python3
"""What the heap benchmarks (census_pause.py, retention_paths.py) share: the paths and the agent's
CLSID, building bench/HeapBuilder, one HeapBuilder process (its ready line, the ticker's late
wake-ups, its CPU time and RSS), the environment that loads the agent into it, the dotnet-gcdump
side of the comparison, the common set-up of a run, and medians with their spread."""
import os, re, shutil, statistics, subprocess, sys, tempfile, threading, time

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


def agent_env(base_env, work, objects, **settings):
    """The environment that loads the private copy of the agent (see `setup`) into HeapBuilder,
    logging to the work directory; `settings` add or override LEAKSCOPE_* variables."""
    env = dict(base_env)
    env.update({
        "CORECLR_ENABLE_PROFILING": "1", "CORECLR_PROFILER": CLSID,
        "CORECLR_PROFILER_PATH": os.path.join(work, "libleakscope_agent.so"),
        "LEAKSCOPE_INTERVAL": "1s", "LEAKSCOPE_LOG": os.path.join(work, f"agent-{objects}.log"),
    })
    env.update(settings)
    return env


def setup(prefix, need_gcdump):
    """Checks what a run needs, makes its work directory with a private copy of the agent (the one
    in target/ may be rebuilt meanwhile) and HeapBuilder built there: (work, dll, base_env,
    gcdump, commit)."""
    if not os.path.exists(AGENT):
        sys.exit("build first: cargo build --release -p leakscope-agent")
    gcdump = shutil.which("dotnet-gcdump") or os.path.expanduser("~/.dotnet/tools/dotnet-gcdump")
    if need_gcdump and not os.path.exists(gcdump):
        sys.exit("install dotnet-gcdump: dotnet tool install -g dotnet-gcdump")
    work = tempfile.mkdtemp(prefix=prefix)
    shutil.copy(AGENT, os.path.join(work, "libleakscope_agent.so"))
    dll = build_app(work)
    base_env = dict(os.environ, DOTNET_CLI_TELEMETRY_OPTOUT="1")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    return work, dll, base_env, gcdump, commit
