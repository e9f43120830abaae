#!/usr/bin/env bash
# flashgate's test command (the README's second command; `.ci/run` calls exactly this).
# On a fresh Debian machine: installs what is missing, builds the Cortex-M firmware, checks
# formatting and lints (host crates and firmware), then runs every test with cargo-nextest:
# unit tests, and end-to-end tests on real QEMU boards, a real etcd, real gRPC on loopback;
# the probe-rs (USB probe) backend built, linted and unit-tested on its own;
# then the bounded fuzz run (scripts/fuzz.sh: every target in fuzz/ for
# FLASHGATE_FUZZ_SECONDS seconds each, 10 by default, about 6 minutes for 31 targets; 0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

echo "== firmware (build + clippy)"
cargo xtask firmware --check
echo "== fmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== tests"
cargo nextest run --workspace --no-fail-fast "$@"
# The USB probe backend is off by default (no probe here); build, lint and test it anyway.
echo "== probe-rs backend"
cargo clippy -p flashgate-station --features probe-rs --all-targets --quiet -- -D warnings
cargo nextest run -p flashgate-station --features probe-rs --no-fail-fast -E 'test(probe_rs) | test(probes_)'
fuzz_seconds="${FLASHGATE_FUZZ_SECONDS:-10}"
if [ "$fuzz_seconds" != 0 ]; then
  echo "== fuzz"
  scripts/fuzz.sh --seconds "$fuzz_seconds"
fi
