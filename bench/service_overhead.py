#!/usr/bin/env python3
"""Service overhead benchmark: a real ASP.NET Core service (bench/Service: Kestrel, minimal APIs,
IMemoryCache, System.Text.Json) driven by wrk over loopback, run three ways, interleaved triple by
triple in one invocation (the order rotates each triple so no side always runs first):

  plain         dotnet Service.dll
  leakscope     leakscope run --plain -- dotnet Service.dll          (agent + shim, defaults)
  dotnet-trace  dotnet-trace collect --providers Microsoft-Windows-DotNETRuntime:0x80000000000:4
                -- dotnet Service.dll                                (the runtime's allocation sampling)

Each run: start the server on a free port, wait until /health answers, warm up with wrk, then
measure with wrk (--latency) for a fixed time while reading the server's CPU time (utime+stime
of the dotnet process, /proc/PID/stat) before and after. Reports requests/s, p99 latency and
server CPU time per request, with per-triple ratios against the plain run of the same triple and
95% bootstrap intervals of their medians.

With --leak the server also plants a leak (an audit line per order request, or one in N, kept in a
static list); the ratios are then measured with the leak present, and every leakscope run's
report.txt must name the leaking call site (AuditTrail.Record), or the benchmark fails.

usage: bench/service_overhead.py [--triples N] [--seconds S] [--warmup S] [--connections C] [--leak [N]]
                                 [--pin] [--runtime-env KEY=VALUE]...
Needs: cargo build --release --workspace; dotnet; wrk; dotnet-trace (scripts/setup.sh --with-bench-tools).
"""
import argparse, os, random, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(ROOT, "target/release/leakscope")
TICKS = os.sysconf("SC_CLK_TCK")
LEAK_SITE = "AuditTrail.Record"


def build_service(work):
    src = os.path.join(work, "src")
    shutil.copytree(os.path.join(ROOT, "bench/Service"), src, ignore=shutil.ignore_patterns("bin", "obj"))
    out = os.path.join(work, "service")
    subprocess.run(["dotnet", "build", "-c", "Release", "-o", out], cwd=src, check=True, stdout=subprocess.DEVNULL)
    return os.path.join(out, "Service.dll")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            found.append(c)
            todo.append(c)
    return found


def server_pid(launcher, dll):
    """The dotnet process running the service: the launcher itself or one of its descendants."""
    for pid in [launcher] + descendants(launcher):
        try:
            # `leakscope run` and `dotnet-trace` carry the same arguments: the server is the `dotnet` one.
            if dll in open(f"/proc/{pid}/cmdline").read().replace("\0", " ") and open(f"/proc/{pid}/comm").read().strip() == "dotnet":
                return pid
        except OSError:
            pass
    return None


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_healthy(port, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server never answered /health")


def wrk(port, seconds, connections, pin, script="wrk.lua", env=None):
    cmd = (["taskset", "-c", "0"] if pin else []) + ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
           os.path.join(ROOT, "bench/Service", script), f"http://127.0.0.1:{port}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99_ms = float(p99.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses:\n{out}")
    return rps, p99_ms, requests


def launch(side, dll, port, work, i, a, extra_env=()):
    """Starts one side's server; `extra_env` (KEY, VALUE) pairs are set after the cleaning."""
    server = ["dotnet", dll, "--urls", f"http://127.0.0.1:{port}"] + (["--leak", str(a.leak)] if a.leak else [])
    env = dict(os.environ, DOTNET_CLI_TELEMETRY_OPTOUT="1", DOTNET_NOLOGO="1")
    for k in [k for k in env if k.startswith(("CORECLR_", "LEAKSCOPE_")) or k in ("LD_PRELOAD", "DOTNET_PerfMapEnabled")]:
        del env[k]
    env.update(kv.split("=", 1) for kv in a.runtime_env)
    env.update(extra_env)
    out_dir = None
    if side == "plain":
        cmd = server
    elif side == "leakscope":
        out_dir = os.path.join(work, f"leakscope{i}")
        cmd = [CLI, "run", "--plain", "--out", out_dir, "--"] + server
    else:
        trace = shutil.which("dotnet-trace") or os.path.expanduser("~/.dotnet/tools/dotnet-trace")
        cmd = [trace, "collect", "-o", os.path.join(work, f"trace{i}.nettrace"),
               "--providers", "Microsoft-Windows-DotNETRuntime:0x80000000000:4", "--"] + server
    if a.pin:
        # The server side (and whatever launches it) on CPU 1, wrk on CPU 0: neither takes the
        # other's core, which on a 2-core machine is most of the run-to-run spread.
        cmd = ["taskset", "-c", "1"] + cmd
    log = open(os.path.join(work, f"{side}{i}.log"), "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, out_dir


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def one_run(side, dll, work, i, a):
    port = free_port()
    proc, out_dir = launch(side, dll, port, work, i, a)
    try:
        wait_healthy(port, proc)
        pid = None
        for _ in range(50):
            pid = server_pid(proc.pid, dll)
            if pid:
                break
            time.sleep(0.1)
        if not pid:
            raise RuntimeError("cannot find the server process")
        wrk(port, a.warmup, a.connections, a.pin)
        cpu0 = cpu_seconds(pid)
        rps, p99, requests = wrk(port, a.seconds, a.connections, a.pin)
        cpu = cpu_seconds(pid) - cpu0
    finally:
        stop(proc)
    result = {"rps": rps, "p99_ms": p99, "cpu_us_per_request": cpu / max(requests, 1) * 1e6}
    if out_dir:
        result["report"] = report_text(out_dir)
    return result


def bootstrap_median_ci(values, rounds=4000, seed=1):
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--triples", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=20, help="seconds of load before measuring: tiered JIT settles")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--leak", nargs="?", type=int, const=1, default=0, metavar="N",
                    help="plant a leak (an audit line per order request, or one in N); leakscope must name its call site")
    ap.add_argument("--pin", action="store_true", help="the server side on CPU 1, wrk on CPU 0 (taskset)")
    ap.add_argument("--runtime-env", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting for every side's server (repeatable), e.g. DOTNET_TieredPGO=0")
    a = ap.parse_args()
    if not os.path.exists(CLI):
        sys.exit("build first: cargo build --release --workspace")
    for tool in ("wrk",):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: scripts/setup.sh --with-bench-tools")
    work = tempfile.mkdtemp(prefix="leakscope-service-bench-")
    dll = build_service(work)
    sides = ["plain", "leakscope", "dotnet-trace"]
    results = {s: [] for s in sides}
    for i in range(a.triples):
        order = sides[i % 3:] + sides[:i % 3]
        for side in order:
            results[side].append(one_run(side, dll, work, i, a))
        print(f"triple {i + 1}/{a.triples}: " + ", ".join(
            f"{s} {results[s][-1]['rps']:.0f} req/s p99 {results[s][-1]['p99_ms']:.2f} ms "
            f"{results[s][-1]['cpu_us_per_request']:.1f} us CPU/req" for s in sides), file=sys.stderr)

    med = lambda side, key: statistics.median(r[key] for r in results[side])
    print(f"\nservice: bench/Service under wrk -t1 -c{a.connections}, {a.seconds} s measured after {a.warmup} s warm-up, "
          f"{a.triples} interleaved triples{leak_label(a.leak)}"
          f"{', server on CPU 1 and wrk on CPU 0' if a.pin else ''}"
          f"{''.join(', ' + kv for kv in a.runtime_env)}, medians")
    print("| side | requests/s | p99 (ms) | server CPU per request (us) |")
    print("|---|---|---|---|")
    for side in sides:
        print(f"| {side} | {med(side, 'rps'):.0f} | {med(side, 'p99_ms'):.2f} | {med(side, 'cpu_us_per_request'):.1f} |")
    for side in sides[1:]:
        for key, label in (("rps", "requests/s"), ("p99_ms", "p99 latency"), ("cpu_us_per_request", "CPU per request")):
            pairs = [r[key] / b[key] for r, b in zip(results[side], results["plain"])]
            lo, hi = bootstrap_median_ci(pairs)
            print(f"{side}: {label} ratio vs plain (same triple): median {statistics.median(pairs):.3f} "
                  f"(95% bootstrap CI {lo:.3f}-{hi:.3f}), range {min(pairs):.3f}-{max(pairs):.3f}, {len(pairs)} triples")
    if a.leak:
        require_leak_named([r.get("report", "") for r in results["leakscope"]], work)
    shutil.rmtree(work, ignore_errors=True)


def report_text(out_dir):
    path = os.path.join(out_dir, "report.txt")
    return open(path).read() if os.path.exists(path) else ""


def leak_label(one_in):
    """How the run's header says which leak was planted."""
    if not one_in:
        return ""
    return " (planted leak: an audit line per order request)" if one_in == 1 else \
        f" (planted leak: an audit line per {one_in} order requests)"


def require_leak_named(reports, work):
    """Prints how many leakscope runs' report.txt named the planted leak; fails unless all did."""
    named = [LEAK_SITE in text for text in reports]
    print(f"planted leak: report.txt names {LEAK_SITE} in {sum(named)} of {len(named)} leakscope runs")
    if not all(named):
        print(f"reports kept in {work}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
