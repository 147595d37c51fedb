#!/usr/bin/env bash
# Where one scenario's seeds spend their CPU, by category (scheduling, network, disk, engine,
# checkers, trace, harness), from a perf profile of a release build on one core.
#   scripts/profile.sh [SCENARIO] [SEEDS]      e.g. scripts/profile.sh steady 3
# Needs `perf` (Debian: linux-perf). Folded stacks go to target/profile/<scenario>.folded.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario="${1:-steady}"
seeds="${2:-3}"
command -v perf >/dev/null || { echo "profile.sh: perf not found (apt-get install linux-perf)" >&2; exit 2; }
cargo build --release -q
mkdir -p target/profile
data="target/profile/${scenario##*/}.perf.data"
perf record -q --call-graph dwarf,32768 -F 2000 -o "$data" \
    ./target/release/faultline run "$scenario" --seeds "$seeds" --jobs 1 >/dev/null || true
perf script -i "$data" -F ip,sym --inline 2>/dev/null \
    | python3 scripts/profile.py --folded "target/profile/${scenario##*/}.folded"
