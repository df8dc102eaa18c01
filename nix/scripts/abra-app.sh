# Reconciles one Co-op Cloud app (a recipe deployed with abra) with its declaration:
#   1. the app exists in $ABRA_DIR (abra app new, once);
#   2. its .env is exactly the declared one (static part from the Nix store, values that are
#      secrets read from systemd credentials), rewritten only when it differs;
#   3. every declared docker secret version exists (abra app secret insert … -f from a
#      credential file; docker secrets are immutable, so rotating means a new version);
#   4. the stack is deployed, at the declared version, with that .env; it is (re)deployed only
#      when it is missing, its configuration or secrets changed, the running version differs,
#      or a service is not running all its replicas;
#   5. every service runs all its replicas, within a bound.
# A failed deploy restores the previous .env, so the next run sees the difference again (no
# marker files: the host's own state is the record).
#
# Environment (set by the unit): APP_DOMAIN, APP_RECIPE, APP_VERSION (empty: unpinned),
# APP_ENV_FILE, APP_SECRET_ENV ("VAR=credential …", each VAR's value APP_SECRET_TEMPLATE_<VAR>
# with @value@ replaced by the credential), APP_SECRETS ("name:version:credential …"),
# ABRA_DIR, ABRA_FLAGS, DEPLOY_FLAGS, NETWORK_NAME, CONVERGE_TIMEOUT; CREDENTIALS_DIRECTORY
# from systemd.

: "${APP_DOMAIN:?}" "${APP_RECIPE:?}" "${APP_ENV_FILE:?}" "${ABRA_DIR:?}" "${NETWORK_NAME:?}"
stack=${APP_DOMAIN//./_}
envfile="$ABRA_DIR/servers/default/$APP_DOMAIN.env"
read -r -a abra_flags <<<"${ABRA_FLAGS:-}"
read -r -a deploy_flags <<<"${DEPLOY_FLAGS:-}"

credential() {
  local path="${CREDENTIALS_DIRECTORY:-/nonexistent}/$1"
  [ -r "$path" ] || die "credential $1 is missing (is its sops secret declared and decrypted?)"
  printf '%s' "$path"
}

require_swarm
require_network "$NETWORK_NAME"
[ -d "$ABRA_DIR/servers/default" ] || die "abra has no server 'default' in $ABRA_DIR; see cc-ci-abra-server.service"

# 1. The app.
if [ ! -e "$envfile" ]; then
  info "creating app app=$APP_DOMAIN recipe=$APP_RECIPE"
  abra app new "${abra_flags[@]}" --server default --domain "$APP_DOMAIN" "$APP_RECIPE"
  [ -e "$envfile" ] || die "abra app new did not create $envfile"
fi

# 2. Its .env.
desired=$(mktemp)
previous=""
deployed=false
cleanup() {
  if [ -n "$previous" ] && [ "$deployed" != true ]; then
    warn "restoring the previous .env so that the next run retries app=$APP_DOMAIN"
    cp "$previous" "$envfile"
  fi
  rm -f "$desired" "$previous"
}
trap cleanup EXIT
cat "$APP_ENV_FILE" >"$desired"
for pair in ${APP_SECRET_ENV:-}; do
  template_var="APP_SECRET_TEMPLATE_${pair%%=*}"
  template=${!template_var:-@value@}
  secret=$(<"$(credential "${pair#*=}")")
  # Quoted: bash 5.2 would otherwise read an & in the secret as the matched text.
  value=${template//@value@/"$secret"}
  case "$value" in
    *"'"* | *$'\n'*) die "credential ${pair#*=} holds a quote or a newline and cannot be written to an abra .env" ;;
  esac
  printf "%s='%s'\n" "${pair%%=*}" "$value" >>"$desired"
done
reasons=()
if ! cmp -s "$desired" "$envfile"; then
  previous=$(mktemp)
  cp "$envfile" "$previous"
  install -m 0600 "$desired" "$envfile"
  reasons+=("configuration changed")
fi

# 3. Its secrets.
for spec in ${APP_SECRETS:-}; do
  IFS=: read -r name version cred <<<"$spec"
  if docker secret inspect "${stack}_${name}_${version}" >/dev/null 2>&1; then
    continue
  fi
  info "inserting secret app=$APP_DOMAIN secret=$name version=$version"
  abra app secret insert "${abra_flags[@]}" -f "$APP_DOMAIN" "$name" "$version" "$(credential "$cred")"
  reasons+=("secret $name $version inserted")
done

# 4. The deployment.
mapfile -t services < <(docker service ls --filter "label=com.docker.stack.namespace=$stack" --format '{{.Name}} {{.Replicas}}')
if [ "${#services[@]}" -eq 0 ]; then
  reasons+=("not deployed")
else
  for line in "${services[@]}"; do
    replicas=${line#* }
    replicas=${replicas%% *}
    [ "${replicas%%/*}" = "${replicas#*/}" ] || reasons+=("${line%% *} runs $replicas")
  done
  if [ -n "${APP_VERSION:-}" ]; then
    # Recipes label their services coop-cloud.<stack>.version=<version>.
    running=$(docker service inspect --format "{{ index .Spec.Labels \"coop-cloud.$stack.version\" }}" "${services[@]%% *}" | sed '/^$/d' | sort -u | paste -sd, -)
    if [ -z "$running" ]; then
      warn "no service of stack=$stack carries a coop-cloud.$stack.version label; cannot compare versions"
    elif [ "$running" != "$APP_VERSION" ]; then
      reasons+=("running $running, declared $APP_VERSION")
    fi
  fi
fi

if [ "${#reasons[@]}" -gt 0 ]; then
  force=()
  [ "${#services[@]}" -eq 0 ] || force=(--force)
  info "deploying app=$APP_DOMAIN version=${APP_VERSION:-latest} because: $(IFS=';' && echo "${reasons[*]}")"
  abra app deploy "${abra_flags[@]}" "${force[@]}" "${deploy_flags[@]}" "$APP_DOMAIN"
else
  info "app up to date app=$APP_DOMAIN version=${APP_VERSION:-unpinned}"
fi

# 5. Running.
wait_converged "$stack" "${CONVERGE_TIMEOUT:-600}"
deployed=true
