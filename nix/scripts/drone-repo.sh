# cc-ci-drone-repo: makes sure Drone builds the cc-ci repository: the bot's token is accepted,
# the repository is known to Drone (syncing the bot's repository list once if not), active, and
# has the declared timeout. Acts only where Drone differs; fails with the step a human must take
# when it cannot (the bot never logged in to Drone, lacks admin rights on the repository in
# Gitea, or is not a Drone administrator), or waits (exit 75, retried every minute) for the one
# step expected to come later: the bot's first login to Drone.
# Environment: DRONE_URL, DRONE_REPO, DRONE_TIMEOUT_MINUTES, BOT_USER, WAIT_SECS; the token is the
# credential drone-token.

: "${DRONE_URL:?}" "${DRONE_REPO:?}" "${DRONE_TIMEOUT_MINUTES:?}" "${BOT_USER:?}"
# Not a failure: the unit waits for something outside the host (mkReconcileService's `waits`).
wait_for() {
  printf 'WARN %s: waiting: %s\n' "${UNIT_NAME:-cc-ci}" "$*" >&2
  exit 75
}

token_file="${CREDENTIALS_DIRECTORY:-/nonexistent}/drone-token"
[ -r "$token_file" ] || die "credential drone-token is missing"
body=$(mktemp)
trap 'rm -f "$body"' EXIT

# The token goes to curl through its config on stdin, never through argv.
api() {
  local method=$1 path=$2
  shift 2
  printf 'header = "Authorization: Bearer %s"\n' "$(<"$token_file")" |
    curl --silent --show-error --config - --max-time 30 --proto =https,http \
      -X "$method" -o "$body" -w '%{http_code}' "$@" "$DRONE_URL$path"
}

deadline=$(($(date +%s) + ${WAIT_SECS:-300}))
until curl --silent --fail --max-time 10 -o /dev/null "$DRONE_URL/healthz"; do
  [ "$(date +%s)" -lt "$deadline" ] || wait_for "Drone does not answer at $DRONE_URL/healthz after ${WAIT_SECS:-300}s; see cc-ci-drone.service and cc-ci-proxy.service"
  sleep 5
done

status=$(api GET /api/user)
[ "$status" = 200 ] || die "Drone refuses the bot's token (GET /api/user: $status); check the drone-token secret (docs/secrets.md)"
login=$(jq -r .login "$body")
[ "$login" = "$BOT_USER" ] || warn "the Drone token belongs to '$login', not to $BOT_USER"
admin=$(jq -r .admin "$body")

status=$(api GET "/api/repos/$DRONE_REPO")
if [ "$status" = 404 ]; then
  info "Drone does not know repo=$DRONE_REPO; syncing the bot's repositories"
  status=$(api POST /api/user/repos)
  [ "$status" = 200 ] || wait_for "syncing the bot's repositories failed ($status): the bot must log in to $DRONE_URL once through Gitea (docs/install.md, \"Log in to Drone once as the bot\"); this unit retries every minute"
  status=$(api GET "/api/repos/$DRONE_REPO")
fi
[ "$status" = 200 ] || die "Drone cannot see $DRONE_REPO (GET: $status): does $BOT_USER have admin rights on it in Gitea?"

if [ "$(jq -r .active "$body")" != true ]; then
  info "activating repo=$DRONE_REPO"
  status=$(api POST "/api/repos/$DRONE_REPO")
  [ "$status" = 200 ] || die "activating $DRONE_REPO failed ($status): the bot needs admin rights on it in Gitea"
fi

current=$(jq -r .timeout "$body")
if [ "$current" != "$DRONE_TIMEOUT_MINUTES" ]; then
  # Drone applies `timeout` only for system administrators and answers 200 either way.
  [ "$admin" = true ] || die "repo timeout is ${current} min, declared $DRONE_TIMEOUT_MINUTES; only a Drone administrator can change it and $login is not one"
  info "setting timeout repo=$DRONE_REPO from=${current}min to=${DRONE_TIMEOUT_MINUTES}min"
  status=$(api PATCH "/api/repos/$DRONE_REPO" -H 'Content-Type: application/json' --data "{\"timeout\":$DRONE_TIMEOUT_MINUTES}")
  if [ "$status" != 200 ] || [ "$(jq -r .timeout "$body")" != "$DRONE_TIMEOUT_MINUTES" ]; then
    die "Drone did not apply the timeout (PATCH: $status)"
  fi
fi
info "repo ready repo=$DRONE_REPO active=true timeout=${DRONE_TIMEOUT_MINUTES}min"
