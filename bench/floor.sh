#!/usr/bin/env bash
# The floor under a custom-html run (issue 12): the docker work of one run, done bare by this
# script — no abra, no stage-runner, no tests — on the project's engine behind its Traefik:
#   install  secret create, stack deploy (fresh), wait until the task runs healthy and Traefik
#            serves the app
#   upgrade  stack rm + wait for the containers, volume rm, stack deploy of the base (fresh),
#            wait, stack deploy again (the PR's version), wait
#   backup   tar of the volume out of the container, tar back in
#   teardown stack rm + wait for the containers, volume rm, secret rm
# Prints `floor:` per step and in all; compare with `cargo bench -p cc-ci-stage-runner --bench
# overhead` (same run through stage-runner). Needs the engine and proxy up (dev/engine, dev/proxy).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(./dev/engine env)"
eval "$(./dev/proxy env)"

recipe=standins/recipes/custom-html/1.1.0+1.27.2
export DOMAIN="floor-$$.$CCCI_BASE_DOMAIN"
export STACK_NAME=${DOMAIN//./_} LETS_ENCRYPT_ENV= SECRET_ADMIN_PASSWORD_VERSION=v1 TIMEOUT=120
work=$(mktemp -d)
trap 'docker stack rm "$STACK_NAME" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
# No IPVS in this kernel: the stand-in abra deploys with endpoint_mode dnsrr; so does the floor.
printf '{"version":"3.8","services":{"app":{"deploy":{"endpoint_mode":"dnsrr"}}}}\n' >"$work/dnsrr.yml"

ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }
step_start=0 total=0
begin() { step_start=$(ms); }
end() { local took=$(( $(ms) - step_start )); total=$(( total + took )); printf 'floor: %-9s %6d ms\n' "$1" "$took"; }

deploy() { docker stack deploy --resolve-image never -c "$recipe/compose.yml" -c "$work/dnsrr.yml" "$STACK_NAME" >/dev/null 2>&1; }
# Until the service's one task of the current spec runs healthy and Traefik answers 200.
wait_up() {
  local i
  for i in $(seq 1200); do
    local cid
    cid=$(docker ps -q --filter "label=com.docker.swarm.service.name=${STACK_NAME}_app" --filter health=healthy | head -1)
    if [ -n "$cid" ] && [ "$(curl -sk -o /dev/null -w '%{http_code}' --resolve "$DOMAIN:443:127.0.0.1" "https://$DOMAIN/")" = 200 ]; then
      return 0
    fi
    sleep 0.1
  done
  echo "floor: $STACK_NAME never came up" >&2; exit 1
}
gone() {
  docker stack rm "$STACK_NAME" >/dev/null
  local i
  for i in $(seq 1200); do
    [ -z "$(docker ps -aq --filter "label=com.docker.stack.namespace=$STACK_NAME")" ] && return 0
    sleep 0.1
  done
  echo "floor: $STACK_NAME containers never went" >&2; exit 1
}
volume_rm() {
  local i
  # The network and volume go a moment after the containers.
  for i in $(seq 100); do docker volume rm "${STACK_NAME}_content" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "floor: volume ${STACK_NAME}_content stayed" >&2; exit 1
}

begin
head -c 32 /dev/urandom | base64 | docker secret create "${STACK_NAME}_admin_password_v1" - >/dev/null
deploy; wait_up
end install

begin
gone; volume_rm
deploy; wait_up
# The PR's version: custom-html's PR changes no service, so the same spec is deployed again.
deploy; wait_up
end upgrade

begin
cid=$(docker ps -q --filter "label=com.docker.swarm.service.name=${STACK_NAME}_app" | head -1)
docker exec "$cid" tar -C /usr/share/nginx/html -cf - . >"$work/backup.tar"
docker exec -i "$cid" tar -C /usr/share/nginx/html -xf - <"$work/backup.tar"
end backup

begin
gone; volume_rm
docker secret rm "${STACK_NAME}_admin_password_v1" >/dev/null
end teardown
printf 'floor: run %.1f s\n' "$(echo "$total / 1000" | bc -l)"
