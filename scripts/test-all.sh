#!/usr/bin/env bash
# The whole test suite: formatting and lints; unit, root integration and end-to-end tests
# on this host (cgroup v1); the cgroup v2 suites inside the emulated guest; the Python SDK
# compatibility suite; a fuzz run of the IPC decoder. Needs root.
#   SKIP_V2=1     skip the guest (needs scripts/vmkit/setup.sh once)
#   SKIP_FUZZ=1   skip the fuzz run (needs cargo-fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test-all: run as root (sudo $0)" >&2; exit 1; }
step() { printf '\n=== %s\n' "$*"; }

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "build"
cargo build --workspace --bins
cargo test --workspace --no-run

step "tests on this host (cgroup $(stat -fc %T /sys/fs/cgroup | sed 's/cgroup2fs/v2/;s/tmpfs/v1/'))"
cargo test --workspace

if [ "${SKIP_V2:-0}" != 1 ]; then
  step "cgroup v2 suites in the guest"
  scripts/test-v2.sh
fi

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  step "fuzz the IPC decoder (${FUZZ_SECONDS:-60} s)"
  (cd ipc-proto/fuzz && CARGO_TARGET_DIR=../../target/fuzz cargo fuzz run decode -s none -- \
     -max_total_time="${FUZZ_SECONDS:-60}" -rss_limit_mb=1024 2>&1 | tail -3)
fi
step "all tests passed"
