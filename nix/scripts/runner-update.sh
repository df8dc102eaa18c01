# cc-ci-runner-update: the runner runs its current definition. The runner is never restarted by
# a switch (it would cancel its builds); this compares the generation it was started as (its
# unit file and the RPC secret's digest, written by cc-ci-runner-start) with the current one,
# and restarts it once no build is in flight: no stage-runner run directory exists (one lives
# from prepare to teardown) and the runner has no process but its own. It waits at most
# DRAIN_SECS (Drone's build timeout: no build outlives it), then restarts anyway.
# A build Drone hands over between the last check and the restart is cancelled, and its
# stage-runner tears its app down on SIGTERM.
# Environment: RUNNER_UNIT, RUNS_DIR, DRAIN_SECS; the credential rpc-secret.

: "${RUNNER_UNIT:?}" "${RUNS_DIR:?}" "${DRAIN_SECS:?}"
secret="${CREDENTIALS_DIRECTORY:-/nonexistent}/rpc-secret"
[ -r "$secret" ] || die "credential rpc-secret is missing"
record="/run/${RUNNER_UNIT%.service}/generation"

# Builds in flight: run directories, or processes of the unit besides the runner itself.
in_flight() {
  local runs procs main cgroup
  runs=$(find "$RUNS_DIR" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)
  main=$(systemctl show -p MainPID --value "$RUNNER_UNIT")
  cgroup=$(systemctl show -p ControlGroup --value "$RUNNER_UNIT")
  procs=0
  if [ -n "$cgroup" ] && [ -r "/sys/fs/cgroup$cgroup/cgroup.procs" ]; then
    procs=$(grep -cvx -- "$main" "/sys/fs/cgroup$cgroup/cgroup.procs" || true)
  fi
  echo $((runs + procs))
}

if ! systemctl is-active --quiet "$RUNNER_UNIT"; then
  info "the runner is not running; starting it unit=$RUNNER_UNIT"
  systemctl start "$RUNNER_UNIT"
  exit 0
fi
if [ -r "$record" ] && [ "$(<"$record")" = "$(runner_generation "$RUNNER_UNIT" "$secret")" ]; then
  info "the runner runs its current definition unit=$RUNNER_UNIT"
  exit 0
fi

start=$(date +%s)
last=0
while :; do
  busy=$(in_flight)
  now=$(date +%s)
  [ "$busy" -gt 0 ] || break
  if [ $((now - start)) -ge "$DRAIN_SECS" ]; then
    warn "builds still in flight after ${DRAIN_SECS}s; restarting the runner anyway in_flight=$busy"
    break
  fi
  if [ $((now - last)) -ge 60 ]; then
    info "waiting: the runner's definition changed; it restarts when its builds end in_flight=$busy waited=$((now - start))s limit=${DRAIN_SECS}s"
    last=$now
  fi
  sleep 10
done
info "restarting the runner into its current definition unit=$RUNNER_UNIT"
systemctl restart "$RUNNER_UNIT"
