# cc-ci-status: what of this host is converged, what waits and why, what failed.
#   cc-ci-status              one line per unit: its state and its last log line
#   cc-ci-status --reconcile  what cc-ci-reconcile.service runs: re-run the reconcile chain
#                             (restart cc-ci-reconcile.target, in the background), then follow
#                             it, logging each unit once it settled, until every unit settled or
#                             RECONCILE_SECS passed; exit 1 only if a unit failed (waiting for a
#                             human step is not a failure)
# Environment: RECONCILE_UNITS, SERVICES (unit names, space-separated), RECONCILE_SECS.

: "${RECONCILE_UNITS:?}" "${RECONCILE_SECS:=3600}"

# converged | running | waiting | failed | not-run (a unit it requires did not converge)
state_of() {
  local line active="" sub="" result=""
  while IFS= read -r line; do
    case "$line" in
      ActiveState=*) active=${line#*=} ;;
      SubState=*) sub=${line#*=} ;;
      Result=*) result=${line#*=} ;;
    esac
  done < <(systemctl show -p ActiveState -p SubState -p Result "$1.service")
  if grep -qxF -- "$1.service" <<<"$jobs"; then
    echo running
    return
  fi
  case "$active/$sub" in
    active/*) echo converged ;;
    activating/auto-restart) echo waiting ;;
    activating/* | deactivating/* | reloading/*) echo running ;;
    failed/*) echo failed ;;
    *) if [ "$result" = success ]; then echo not-run; else echo failed; fi ;;
  esac
}

# The unit's own last log line (systemd's lines about it excluded).
reason_of() {
  journalctl --no-pager -o cat -n 1 "_SYSTEMD_UNIT=$1.service" 2>/dev/null | cut -c1-400
}

queued_jobs() {
  systemctl list-jobs --no-legend --plain 2>/dev/null | awk '{print $2}'
}

show() {
  local unit=$1 state=$2
  printf '%-28s %-10s %s\n' "$unit" "$state" "$(reason_of "$unit")"
}

if [ "${1:-}" != --reconcile ]; then
  jobs=$(queued_jobs)
  for unit in $RECONCILE_UNITS; do
    show "$unit" "$(state_of "$unit")"
  done
  for unit in ${SERVICES:-}; do
    state=$(systemctl is-active "$unit.service" || true)
    show "$unit" "$state"
  done
  systemctl list-timers --no-pager 'cc-ci-*'
  exit 0
fi

info "re-running the reconcile chain"
systemctl --no-block restart cc-ci-reconcile.target || die "systemd refused to re-run the reconcile chain"
start=$(date +%s)
declare -A told=()
while :; do
  jobs=$(queued_jobs)
  pending=()
  for unit in $RECONCILE_UNITS; do
    state=$(state_of "$unit")
    if [ "$state" = running ]; then
      pending+=("$unit")
      continue
    fi
    [ "${told[$unit]:-}" != "$state" ] || continue
    told[$unit]=$state
    case "$state" in
      converged) info "converged unit=$unit" ;;
      waiting) warn "waiting unit=$unit reason=$(reason_of "$unit")" ;;
      not-run) warn "not run unit=$unit reason=a unit it requires did not converge" ;;
      failed) printf 'ERROR %s: failed unit=%s reason=%s\n' "$UNIT_NAME" "$unit" "$(reason_of "$unit")" >&2 ;;
    esac
  done
  [ "${#pending[@]}" -gt 0 ] || break
  if [ $(($(date +%s) - start)) -ge "$RECONCILE_SECS" ]; then
    warn "still running after ${RECONCILE_SECS}s: ${pending[*]}"
    break
  fi
  sleep 5
done

summary=()
failed=0
for unit in $RECONCILE_UNITS; do
  state=${told[$unit]:-running}
  summary+=("$unit=$state")
  [ "$state" != failed ] || failed=1
done
info "reconcile chain settled after $(($(date +%s) - start))s: ${summary[*]}"
exit "$failed"
