#!/usr/bin/env bash
# The whole demo on the embedded default: coordinator, product, signed releases, an order of 6,
# a station with 4 emulated boards (one probe actor each), then the registry and a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo xtask firmware
cargo run --release -p flashgate-demo -- "$@"
