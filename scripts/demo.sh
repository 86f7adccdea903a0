#!/usr/bin/env bash
# Builds leakscope and runs it on the bundled leaky demo worker.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
cargo build --release --workspace
exec target/release/leakscope demo "$@"
