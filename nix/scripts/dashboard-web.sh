# cc-ci-dashboard-web: serves the generated dashboard through the host's Traefik as a one-replica
# swarm service: a static file server (image built by Nix, loaded from the store, never pulled)
# with dashboard-gen's output directory bind-mounted read-only. dashboard-gen publishes by
# swapping the symlink `current` to a new complete site; the server's root is the output
# directory and Traefik prefixes every path with /current, so each request follows the symlink
# as it is now (a mount of, or a server rooted at, the symlink would stay on the old site).
# The service carries a label with a fingerprint of its declared specification; it is
# recreated only when that fingerprint differs. Environment: IMAGE_STREAM, IMAGE_REF,
# SERVICE_NAME, NETWORK_NAME, SITE_DIR, SITE_USER, CURRENT, DOMAIN, ENTRYPOINT, PORT, CONVERGE_TIMEOUT.

: "${IMAGE_STREAM:?}" "${IMAGE_REF:?}" "${SERVICE_NAME:?}" "${NETWORK_NAME:?}" "${SITE_DIR:?}" "${SITE_USER:?}" "${CURRENT:?}" "${DOMAIN:?}"
require_swarm
require_network "$NETWORK_NAME"
[ -d "$SITE_DIR" ] || die "$SITE_DIR does not exist; see cc-ci-dashboard-gen.service"

if ! docker image inspect "$IMAGE_REF" >/dev/null 2>&1; then
  info "loading image image=$IMAGE_REF"
  "$IMAGE_STREAM" | docker load >/dev/null
fi

# The server reads the site as its owner: nothing of it need be readable by anyone else.
owner="$(id -u "$SITE_USER"):$(id -g "$SITE_USER")" || die "no user $SITE_USER"
router=$SERVICE_NAME
args=(
  --name "$SERVICE_NAME"
  --user "$owner"
  --replicas 1
  --constraint node.role==manager
  --network "$NETWORK_NAME"
  --mount "type=bind,source=$SITE_DIR,target=/srv,readonly"
  --label traefik.enable=true
  --label "traefik.swarm.network=$NETWORK_NAME"
  --label "traefik.docker.network=$NETWORK_NAME"
  --label "traefik.http.routers.$router.rule=Host(\`$DOMAIN\`)"
  --label "traefik.http.routers.$router.entrypoints=$ENTRYPOINT"
  --label "traefik.http.routers.$router.tls=true"
  --label "traefik.http.routers.$router.middlewares=$router-current"
  --label "traefik.http.middlewares.$router-current.addprefix.prefix=/$CURRENT"
  --label "traefik.http.services.$router.loadbalancer.server.port=$PORT"
  "$IMAGE_REF"
  --host 0.0.0.0 --port "$PORT" --root /srv
)
spec=$(printf '%s\n' "${args[@]}" | sha256sum | cut -c1-32)

current=$(docker service inspect --format '{{ index .Spec.Labels "cc-ci.spec" }}' "$SERVICE_NAME" 2>/dev/null) || current=absent
if [ "$current" = "$spec" ]; then
  info "service up to date service=$SERVICE_NAME"
else
  if [ "$current" != absent ]; then
    info "specification changed, recreating service=$SERVICE_NAME"
    docker service rm "$SERVICE_NAME" >/dev/null
  else
    info "creating service=$SERVICE_NAME domain=$DOMAIN"
  fi
  docker service create --detach --label "cc-ci.spec=$spec" "${args[@]}" >/dev/null
fi

deadline=$(($(date +%s) + ${CONVERGE_TIMEOUT:-120}))
until [ "$(docker service ls --filter "name=$SERVICE_NAME" --format '{{.Replicas}}' | sed 's/ (.*//')" = 1/1 ]; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    docker service ps --no-trunc "$SERVICE_NAME" >&2 || true
    die "service $SERVICE_NAME is not running after ${CONVERGE_TIMEOUT:-120}s"
  fi
  sleep 2
done
info "serving domain=$DOMAIN service=$SERVICE_NAME"
