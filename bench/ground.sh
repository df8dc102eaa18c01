#!/usr/bin/env bash
# The ground's cost (issue 12): the project's engine, the images and the real Traefik, cold
# (a fresh engine directory and image cache, so every Debian root filesystem is made and every
# image built) and warm (the same again, everything reused). Prints `ground:` lines.
#
# It starts its own engine in a scratch directory, so no other engine of the project may run
# meanwhile (two dockerds would fight over the swarm port and the bridge network): stop yours
# with dev/engine stop first. The scratch engine is stopped and removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if ./dev/engine status 2>/dev/null; then
  echo "ERROR ground: the project's engine runs; stop it first (dev/engine stop)" >&2
  exit 2
fi
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ccci-ground-bench.XXXXXX")
export CCCI_ENGINE_DIR="$scratch/engine" CCCI_IMAGE_CACHE="$scratch/images"
cleanup() { ./dev/engine stop >/dev/null 2>&1 || true; rm -rf "$scratch"; }
trap cleanup EXIT

t() { local s=$EPOCHREALTIME; "$@" >/dev/null 2>&1; echo "$EPOCHREALTIME - $s" | bc; }

for round in cold warm; do
  engine=$(t ./dev/engine start)
  images=$(t ./dev/images)
  proxy=$(t ./dev/proxy up)
  printf 'ground: %s engine %.1f s, images %.1f s, traefik %.1f s\n' "$round" "$engine" "$images" "$proxy"
  if [ "$round" = cold ]; then
    ./dev/engine stop >/dev/null 2>&1
  fi
done
eval "$(./dev/engine env)"
printf 'ground: disk: engine data %s, image cache %s\n' \
  "$(du -sh "$CCCI_ENGINE_DIR/data" | cut -f1)" "$(du -sh "$CCCI_IMAGE_CACHE" | cut -f1)"
