#!/usr/bin/env bash
# Builds everything and runs the whole test suite: unit tests, and integration tests that run
# the real agent inside real dotnet processes, the real shim under LD_PRELOAD, and the real CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --with-test-tools
export PATH="$HOME/.dotnet/tools:$PATH" DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
# Formatting (rustfmt.toml) and lints, warnings as errors, before anything slow.
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --release --workspace
cargo test --release --workspace --no-fail-fast "$@"
