#!/usr/bin/env bash
# The bridge under crashes and faults at scale (issue 8): 500 comments on 20 PRs from 5 users
# (members, allowlisted, outsiders, near misses), by webhook and polling at once,
#   1. with the bridge SIGKILLed at 20 random moments and restarted, and
#   2. with the stand-in Gitea and Drone failing ~10 % of requests (500s, hangs, garbage).
# Prints, for each: comments, builds expected, builds made, duplicates, missed, and the
# bridge's memory before and after (faults). Replay a run with CRASH_SEED=<seed it printed>.
# The stage-runner side: `cargo bench -p cc-ci-stage-runner --bench kills`.
set -euo pipefail
cd "$(dirname "$0")/.."
CRASH_COMMENTS=${CRASH_COMMENTS:-500} CRASH_PRS=${CRASH_PRS:-20} CRASH_KILLS=${CRASH_KILLS:-20} \
  cargo test --release -q -p cc-ci-bridge --test crash -- --nocapture --test-threads 1 2>&1 |
  grep -E '^(crash|faults|exactly-once|settled)|test result|panicked'
