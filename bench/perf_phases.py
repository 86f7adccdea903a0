"""Where a process's CPU goes in sampling-on against sampling-off phases: perf's cpu-clock samples
(recorded with `-k CLOCK_MONOTONIC -g`, so their times are on the agent's clock) assigned to the
tick intervals a within-process A/B counted, and sorted into rows by the code they were in. Used
by bench/service_ab.py --perf; the difference between the sides, per request, is what sampling
costs and where."""
import bisect, collections, os, re, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agent_cpu_shares import FREQ  # noqa: E402  (perf's cpu-clock rate, shared with that script)

FRAME = re.compile(r"\s*[0-9a-f]+ (.*?) \((.*)\)$")


def record(pid, data):
    return subprocess.Popen(["perf", "record", "-q", "-k", "CLOCK_MONOTONIC", "-e", "cpu-clock", "-F", str(FREQ),
                             "-g", "-p", str(pid), "-o", data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def row_of(frames, by_symbol=None):
    """The row a sample counts in: leakscope's agent (its own code and the runtime code it
    calls), the JIT (tiering's background compiles), otherwise the shared object it was in; for
    a sample with a frame in the object named by `by_symbol` (e.g. libleakscope_agent), that object
    and its outermost and innermost functions there."""
    objects = [obj.rsplit("/", 1)[-1] for _, obj in frames]
    if by_symbol:
        # The outermost frame in that object (whose work it is) and the innermost (where the
        # time went).
        inside = [sym.split("+")[0].replace("leakscope_agent::", "") for (sym, _), o in zip(frames, objects)
                  if by_symbol in o]
        if inside:
            return f"{by_symbol}: {inside[-1][:50]} › {inside[0][:60]}"
    if any("libleakscope_agent" in o for o in objects):
        return "leakscope agent (with the runtime code it calls)"
    if any("libleakscope_shim" in o for o in objects):
        return "leakscope shim"
    if any("libclrjit" in o for o in objects):
        return "JIT (libclrjit and what it calls)"
    top = objects[0]
    if "kallsyms" in top:
        return "kernel"
    if "doublemapper" in top or top.startswith("perf-"):
        return "JIT-compiled code"
    return top


def split(data, intervals, by_symbol=None):
    """{on: Counter(row -> CPU seconds)} over perf samples inside `intervals` [(t0_ns, t1_ns, on)];
    `by_symbol`: see `row_of`."""
    intervals = sorted(intervals)
    starts = [t0 for t0, _, _ in intervals]
    out = {True: collections.Counter(), False: collections.Counter()}
    script = subprocess.run(["perf", "script", "-i", data, "-F", "time,ip,sym,dso"], capture_output=True,
                            text=True, check=True).stdout

    def flush(t, frames):
        k = bisect.bisect_right(starts, t) - 1
        if frames and k >= 0 and t < intervals[k][1]:
            out[intervals[k][2]][row_of(frames, by_symbol)] += 1 / FREQ

    t, frames = None, []
    for line in script.splitlines():
        if not line.strip():
            continue
        if not line.startswith("\t"):
            if t is not None:
                flush(t, frames)
            t, frames = int(float(line.split(":")[0]) * 1e9), []
        else:
            m = FRAME.match(line)
            if m:
                frames.append((m.group(1), m.group(2)))
    if t is not None:
        flush(t, frames)
    return out
