# cc-ci-swarm: makes this host a single-node Docker swarm manager, and only that.
# Inspects the node's swarm state; initialises a swarm when the node is in none; accepts an
# active manager as it is; refuses everything else (locked, pending, error, a worker of another
# swarm), which needs a human. Environment: SWARM_ADVERTISE_ADDR (optional).

live_restore=$(docker info --format '{{.LiveRestoreEnabled}}') || die "cannot reach the Docker daemon"
# dockerd refuses swarm mode with live-restore on; the module sets it off, so this only trips
# when someone overrode virtualisation.docker.liveRestore.
[ "$live_restore" = false ] || die "Docker's live-restore is on; swarm mode needs virtualisation.docker.liveRestore = false"

state=$(docker info --format '{{.Swarm.LocalNodeState}}')
case "$state" in
  active)
    [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ] ||
      die "this node is a worker in another swarm; cc-ci needs its own single-node swarm (docker swarm leave, then restart this unit)"
    info "swarm active, this node is a manager node=$(docker info --format '{{.Swarm.NodeID}}')"
    ;;
  inactive)
    args=()
    [ -z "${SWARM_ADVERTISE_ADDR:-}" ] || args+=(--advertise-addr "$SWARM_ADVERTISE_ADDR")
    info "initialising a single-node swarm ${SWARM_ADVERTISE_ADDR:+advertise_addr=$SWARM_ADVERTISE_ADDR}"
    docker swarm init "${args[@]}" >/dev/null
    [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = active ] || die "docker swarm init returned but the swarm is not active"
    info "swarm initialised"
    ;;
  *)
    die "the node's swarm state is '$state'; resolve it by hand (docker info, docker swarm unlock/leave)"
    ;;
esac
