#!/usr/bin/env bash
# One-time machine set-up for building and testing leakscope.
#
# Where crates.io is reachable nothing is changed: cargo fetches as usual.
# Where it is not (these build machines), the Debian packages that carry the
# crates we use are installed and cargo is pointed at /usr/share/cargo/registry
# through $CARGO_HOME/config.toml — never through the repository, so the same
# Cargo.lock builds from crates.io anywhere else.
set -euo pipefail

say() { printf 'setup: %s\n' "$*" >&2; }

CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
DEBIAN_REGISTRY=/usr/share/cargo/registry

# Debian package names (librust-NAME-dev) of the crates we depend on directly;
# apt brings in their own dependencies.
DEBIAN_CRATES=(
  libc crossbeam-channel parking-lot once-cell serde serde-derive serde-json
  tracing tracing-subscriber clap clap-derive tempfile prost prost-derive flate2
  prometheus tiny-http serde-yaml rustc-hash
)

crates_io_reachable() {
  command -v curl >/dev/null 2>&1 || return 1
  curl -fsS --max-time 8 -o /dev/null https://index.crates.io/config.json 2>/dev/null
}

install_debian_crates() {
  local missing=()
  for c in "${DEBIAN_CRATES[@]}"; do
    dpkg-query -W -f='${Status}' "librust-$c-dev" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("librust-$c-dev")
  done
  if ((${#missing[@]})); then
    say "installing ${#missing[@]} Debian crate packages"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

point_cargo_at_debian() {
  mkdir -p "$CARGO_HOME"
  local cfg="$CARGO_HOME/config.toml"
  if [ -f "$cfg" ] && grep -q 'debian-registry' "$cfg"; then return; fi
  say "pointing cargo at $DEBIAN_REGISTRY in $cfg"
  cat >>"$cfg" <<CFG

# Added by leakscope scripts/setup.sh: crates.io is not reachable here.
[source.crates-io]
replace-with = "debian-registry"

[source.debian-registry]
directory = "$DEBIAN_REGISTRY"

[net]
offline = true
CFG
}

# .NET global tools the tests use as ground truth (dotnet-gcdump for heap contents), or those
# named as arguments.
install_dotnet_tools() {
  if ! command -v dotnet >/dev/null 2>&1; then
    say "error: dotnet is not installed; install the .NET SDK 10 (https://dot.net) and re-run"
    exit 1
  fi
  local tools_dir="$HOME/.dotnet/tools"
  local tools=("$@")
  ((${#tools[@]})) || tools=(dotnet-gcdump)
  for tool in "${tools[@]}"; do
    if [ ! -x "$tools_dir/$tool" ]; then
      say "installing $tool"
      DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 dotnet tool install -g "$tool" >/dev/null
    fi
  done
}

# Headless Chromium (Debian's `chromium` package) for the soak report test, which loads
# report.html and checks that the verdicts and the SVG charts are rendered.
install_chromium() {
  if [ -x /usr/bin/chromium ]; then return; fi
  say "installing chromium (headless browser for the report.html test)"
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
}

# Debian packages the tests need: musl-gcc (musl-tools) builds the musl program that checks
# leakscope never preloads the glibc-only shim into a musl process; `go tool pprof`
# (golang-go) must read the profiles `leakscope report --pprof` writes.
install_test_packages() {
  local missing=()
  command -v musl-gcc >/dev/null 2>&1 || missing+=(musl-tools)
  command -v go >/dev/null 2>&1 || missing+=(golang-go)
  ((${#missing[@]})) || return 0
  say "installing ${missing[*]} (for the musl and pprof tests)"
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The format and lint checks scripts/test.sh runs: rustfmt and clippy from the same toolchain.
install_rust_components() {
  local missing=()
  cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
  cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
  ((${#missing[@]})) || return 0
  if command -v rustup >/dev/null 2>&1; then
    say "installing ${missing[*]} (rustup component)"
    rustup component add "${missing[@]}"
  else
    # Debian's rustfmt and clippy belong to its older rustc, which cannot build this workspace.
    say "missing ${missing[*]} and no rustup to add them to the toolchain that builds leakscope"
    return 1
  fi
}

if crates_io_reachable; then
  say "crates.io reachable: using it"
else
  install_debian_crates
  point_cargo_at_debian
fi
# Debian's `prometheus` package: a real Prometheus server scrapes `listen --metrics` in the
# fleet test, and `promtool` checks and unit-tests the alert rules in deploy/prometheus.
install_prometheus() {
  if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; then return; fi
  say "installing prometheus (server and promtool, for the metrics and alert-rule tests)"
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}

# What the benchmarks (bench/*.py, bench/*.sh) drive or compare against: wrk for the service
# benchmark, heaptrack for the shim's, dotnet-trace and dotnet-gcdump as the runtime's own tools;
# perf (bench/agent_cpu_shares.py) and valgrind's callgrind (the shim's instruction counts) for
# what the cost is made of.
install_bench_tools() {
  local missing=()
  for tool in wrk heaptrack valgrind; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
  command -v perf >/dev/null 2>&1 || missing+=(linux-perf)
  if ((${#missing[@]})); then
    say "installing ${missing[*]} (benchmarks)"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  install_dotnet_tools dotnet-trace
}

case "${1:-}" in
  --with-test-tools)
    install_rust_components
    install_dotnet_tools
    install_chromium
    install_test_packages
    install_prometheus
    ;;
  --with-bench-tools)
    install_dotnet_tools
    install_bench_tools
    ;;
esac
