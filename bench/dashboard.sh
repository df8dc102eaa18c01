#!/usr/bin/env bash
# Benchmarks cc-ci-dashboard-gen against the stand-in Drone: 200 recipes x 50 runs (10,000
# builds the stand-in's runner really ran, each with a run summary), then
#   cold: first generation (empty cache and output), three times: median wall time, worst
#         peak RSS and Drone requests
#   warm: regeneration after one new build, three times: the same
#   size: index.html bytes
# Goals (issue 6): cold < 2 s and < 50 MB; warm < 200 ms with <= 3 requests; index < 150 KB.
# Usage: bench/dashboard.sh [RECIPES] [RUNS]   (defaults 200 50)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q -p cc-ci-dashboard-gen -p cc-ci-standins --bin cc-ci-dashboard-gen --bin standin-drone
exec .venv/bin/python bench/dashboard/bench.py "$target/release" "${1:-200}" "${2:-50}"
