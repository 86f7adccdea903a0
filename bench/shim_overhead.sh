#!/usr/bin/env bash
# Shim overhead benchmark: a malloc-heavy C program (bench/malloc_bench.c)
# timed without the shim, with the shim, and under heaptrack, in the same run.
#
#   bench/shim_overhead.sh [THREADS] [OPS_PER_THREAD] [REPEATS]
#
# Env: LEAKSCOPE_SHIM=path/to/libleakscope_shim.so (default: build it into
# $CARGO_TARGET_DIR or ./target), NO_HEAPTRACK=1 to skip heaptrack, and any
# LEAKSCOPE_* variable (e.g. LEAKSCOPE_NATIVE_SAMPLE_BYTES) is passed through.
# Runs are interleaved (baseline, shim, baseline, shim, ...); the headline is
# the median of the per-pair ratios (each pair ran back to back, under the same
# background load), with the medians of each side for reference. heaptrack
# runs once, next to one more baseline run.
set -euo pipefail

threads=${1:-4}
ops=${2:-1000000}
repeats=${3:-7}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

shim=${LEAKSCOPE_SHIM:-}
if [ -z "$shim" ]; then
  target=${CARGO_TARGET_DIR:-$root/target}
  (cd "$root" && CARGO_TARGET_DIR="$target" cargo build --release -q -p leakscope-shim)
  shim=$target/release/libleakscope_shim.so
fi
[ -f "$shim" ] || { echo "no shim at $shim" >&2; exit 1; }

cc -O2 -pthread "$here/malloc_bench.c" -o "$work/malloc_bench"

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# CPU seconds (user + sys) of one run, from GNU time: steadier than elapsed time on a busy machine.
cpu_of() { awk '{ printf "%.4f\n", $1 + $2 }' "$work/time.txt"; }

base=() with=() base_cpu=() with_cpu=()
for ((i = 0; i < repeats; i++)); do
  base+=("$(/usr/bin/time -f '%U %S' -o "$work/time.txt" "$work/malloc_bench" "$threads" "$ops")")
  base_cpu+=("$(cpu_of)")
  with+=("$(LD_PRELOAD="$shim" LEAKSCOPE_OUTPUT="$work/out.ndjson" /usr/bin/time -f '%U %S' -o "$work/time.txt" "$work/malloc_bench" "$threads" "$ops")")
  with_cpu+=("$(cpu_of)")
done
b=$(printf '%s\n' "${base[@]}" | median)
w=$(printf '%s\n' "${with[@]}" | median)

ratio=$(for ((i = 0; i < repeats; i++)); do awk -v b="${base[$i]}" -v w="${with[$i]}" 'BEGIN { printf "%.4f\n", w / b }'; done | median)
cpu_ratio=$(for ((i = 0; i < repeats; i++)); do awk -v b="${base_cpu[$i]}" -v w="${with_cpu[$i]}" 'BEGIN { printf "%.4f\n", w / b }'; done | median)

h="" hb=""
if [ -z "${NO_HEAPTRACK:-}" ] && command -v heaptrack >/dev/null; then
  hb=$("$work/malloc_bench" "$threads" "$ops")
  h=$(cd "$work" && heaptrack -o "$work/ht" "$work/malloc_bench" "$threads" "$ops" 2>/dev/null | grep -E '^[0-9]+\.[0-9]+$' | tail -1)
fi

# The shim's own numbers from its last record, as a sanity check.
last=$(grep '"type":"native"' "$work/out.ndjson" | tail -1)
# The record's own total (the first one: its sites carry counts of their own).
samples=$(printf '%s' "$last" | grep -o '"total_allocs":[0-9]*' | head -1 | cut -d: -f2)

echo "malloc_bench: $threads threads x $ops allocations (+ frees), median of $repeats runs"
echo "  cpu:       $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(nproc) cores)"
echo "  baseline:  ${b}s   (runs: ${base[*]})"
echo "  shim:      ${w}s   (runs: ${with[*]})   mean sample ${LEAKSCOPE_NATIVE_SAMPLE_BYTES:-256KiB (default)}; allocations counted: ${samples:-?}"
awk -v r="$ratio" -v b="$b" -v w="$w" 'BEGIN { printf "  shim / baseline      = %.2fx   (median of per-pair ratios; ratio of medians %.2fx)\n", r, w / b }'
awk -v r="$cpu_ratio" 'BEGIN { printf "  shim / baseline, CPU time (user+sys) = %.2fx   (median of per-pair ratios)\n", r }'
if [ -n "$h" ]; then
  echo "  heaptrack: ${h}s   (one run; baseline run just before it: ${hb}s)"
  awk -v b="$hb" -v h="$h" 'BEGIN { printf "  heaptrack / baseline = %.1fx\n", h / b }'
fi
