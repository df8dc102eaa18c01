# Shared by the cc-ci reconcile scripts (sourced; the unit sets UNIT_NAME for log lines).
# Log lines follow the project's format: `LEVEL target: message key=value`, on stderr.

info() { printf 'INFO %s: %s\n' "${UNIT_NAME:-cc-ci}" "$*" >&2; }
warn() { printf 'WARN %s: %s\n' "${UNIT_NAME:-cc-ci}" "$*" >&2; }
die() {
  printf 'ERROR %s: %s\n' "${UNIT_NAME:-cc-ci}" "$*" >&2
  exit 1
}

# The swarm is the precondition of everything else the host deploys.
require_swarm() {
  local state
  state=$(docker info --format '{{.Swarm.LocalNodeState}}') || die "cannot reach the Docker daemon"
  [ "$state" = active ] || die "the Docker swarm is not active (state=$state); see cc-ci-swarm.service"
}

require_network() {
  docker network inspect "$1" >/dev/null 2>&1 ||
    die "the overlay network $1 does not exist; see cc-ci-proxy-network.service"
}

# Waits until every service of a stack runs all its replicas, printing progress every 10 s;
# fails after $2 seconds with the state of the tasks that did not start.
wait_converged() {
  local stack=$1 limit=$2 start now line name replicas pending last=0
  start=$(date +%s)
  while :; do
    pending=()
    while read -r name replicas _; do
      [ -n "$name" ] || continue
      # "1/1", or "0/1 (max 1 per node)": compare running with desired.
      [ "${replicas%%/*}" = "${replicas#*/}" ] || pending+=("$name=$replicas")
    done < <(docker service ls --filter "label=com.docker.stack.namespace=$stack" --format '{{.Name}} {{.Replicas}}' | sed 's/ (.*//')
    now=$(date +%s)
    if [ "${#pending[@]}" -eq 0 ]; then
      line=$(docker service ls --filter "label=com.docker.stack.namespace=$stack" -q | wc -l)
      [ "$line" -gt 0 ] || die "stack $stack has no services"
      info "stack converged stack=$stack elapsed=$((now - start))s"
      return 0
    fi
    if [ $((now - start)) -ge "$limit" ]; then
      for line in "${pending[@]}"; do
        docker service ps --no-trunc --format '{{.Name}} {{.CurrentState}} {{.Error}}' "${line%%=*}" >&2 || true
      done
      die "stack $stack did not converge within ${limit}s: ${pending[*]}"
    fi
    if [ $((now - last)) -ge 10 ]; then
      info "waiting for stack=$stack elapsed=$((now - start))s limit=${limit}s pending=${pending[*]}"
      last=$now
    fi
    sleep 2
  done
}

# The generation a runner runs: its unit file's store path and the RPC secret's digest. Written
# by cc-ci-runner-start when the runner starts, compared by cc-ci-runner-update.
runner_generation() { # unit secret-file
  printf '%s %s\n' "$(readlink -f "/etc/systemd/system/$1")" "$(sha256sum <"$2" | cut -d' ' -f1)"
}
