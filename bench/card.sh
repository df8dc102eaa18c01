#!/usr/bin/env bash
# The run's summary card (issue 13): how long stage-runner's two best-effort steps take and how
# big the card is. A local page (python's http.server on 127.0.0.1) stands in for the app's
# landing page; the summary is a red run with failing tests, the card's fullest case.
#   card: landing    the screenshot (browser start, page, viewport PNG), per run
#   card: render     the card from the summary and that screenshot, per run
#   card: size       the card PNG's bytes
# BENCH_RUNS=N (default 5) repeats both; prints the median and the slowest. No engine needed.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${CCCI_PYTHON:-.venv/bin/python}
runs=${BENCH_RUNS:-5}
work=$(mktemp -d)
server=
trap '[ -z "$server" ] || kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/site" "$work/run"
cat >"$work/site/index.html" <<'HTML'
<!doctype html><title>Welcome</title><style>body{font:16px sans-serif;margin:0}
header{background:#2b4c7e;color:#fff;padding:24px}main{padding:24px;columns:2}</style>
<header><h1>A recipe's landing page</h1></header><main>
<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut
labore et dolore magna aliqua.</p><p>Ut enim ad minim veniam, quis nostrud exercitation ullamco
laboris nisi ut aliquip ex ea commodo consequat.</p><img alt="" width=400 height=200
src="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'%3E%3Crect width='400' height='200' fill='%23c96'/%3E%3C/svg%3E"></main>
HTML
echo '{}' >"$work/run/values.json"
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$py" -m http.server -b 127.0.0.1 -d "$work/site" "$port" >/dev/null 2>&1 &
server=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done
"$py" - "$work/summary.json" <<'PY'
import json, sys
fail = [{"name": f"custom-html/test_upgrade.py::test_seed_{i}_survives", "message": "assert 1 == 2"} for i in range(7)]
st = lambda n, s, r="", f=(): {"name": n, "status": s, "reason": r, "started": 1, "duration_ms": 1000,
                                "tests": {"total": 3, "passed": 3 - len(f), "failed": len(f), "skipped": 0},
                                "failures": list(f), "artifacts": []}
json.dump({"schema": 1, "build": 57, "recipe": "custom-html", "ref": "3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e",
           "pr": 4, "src": "", "domain": "", "version": "1.1.0+1.27.2", "upgrade_base": "1.0.0+1.25.0",
           "started": 1, "finished": 2,
           "stages": [st("prepare", "passed"), st("install", "passed"),
                      st("upgrade", "failed", "tests failed in phase post_upgrade", fail),
                      st("backup", "skipped", "install failed"), st("teardown", "passed")]},
          open(sys.argv[1], "w"))
PY
export PYTHONPATH=tests CCCI_RECIPE=custom-html CCCI_DOMAIN=127.0.0.1 \
  CCCI_BASE_URL="http://127.0.0.1:$port" CCCI_RUN_DIR="$work/run"
ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }
landing=() render=()
for i in $(seq "$runs"); do
  t=$(ms); "$py" -m ccci_harness.card landing --out "$work/landing.png" --path / ; landing+=($(( $(ms) - t )))
  t=$(ms); "$py" -m ccci_harness.card render --summary "$work/summary.json" --out "$work/card.png" \
    --level 1 --level-name installs --screenshot "$work/landing.png"; render+=($(( $(ms) - t )))
done
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "median %d ms, slowest %d ms", a[int((NR+1)/2)], a[NR]}'; }
echo "card: landing  $(stats "${landing[@]}") over $runs runs"
echo "card: render   $(stats "${render[@]}") over $runs runs (goal <= 3000 ms)"
echo "card: size     $(stat -c %s "$work/card.png") bytes (goal <= 200000), screenshot $(stat -c %s "$work/landing.png") bytes"
