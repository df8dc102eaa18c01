# cc-ci-proxy-network: the attachable overlay network Traefik and every Co-op Cloud app share
# (recipes expect it to be called `proxy`). Environment: NETWORK_NAME.

require_swarm
if found=$(docker network inspect --format '{{.Driver}} {{.Scope}}' "$NETWORK_NAME" 2>/dev/null); then
  [ "$found" = "overlay swarm" ] ||
    die "network $NETWORK_NAME exists but is '$found', not a swarm overlay; remove it by hand (docker network rm $NETWORK_NAME) and restart this unit"
  info "network present network=$NETWORK_NAME"
else
  info "creating overlay network network=$NETWORK_NAME"
  docker network create --driver overlay --scope swarm "$NETWORK_NAME" >/dev/null
fi
