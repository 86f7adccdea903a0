#!/usr/bin/env bash
# Shim overhead benchmark: bench/shim_overhead.sh [THREADS] [OPS_PER_THREAD] [ROUNDS]
# Builds the shim (unless LEAKSCOPE_SHIM names one) and runs bench/shim_overhead.py, which
# interleaves the baseline, the shim at its defaults and the shim with exact totals, and runs
# heaptrack once (NO_HEAPTRACK=1 to skip it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
if [ -z "${LEAKSCOPE_SHIM:-}" ]; then
  (cd "$root" && cargo build --release -q -p leakscope-shim)
fi
exec python3 "$here/shim_overhead.py" --threads "${1:-2}" --ops "${2:-10000000}" --rounds "${3:-21}" \
  ${NO_HEAPTRACK:+--no-heaptrack}
