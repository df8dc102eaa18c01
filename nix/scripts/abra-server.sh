# Registers the local Docker daemon as abra's server `default` in $ABRA_DIR (abra names the
# local server `default`; apps then live in $ABRA_DIR/servers/default/<domain>.env).
# Environment: ABRA_DIR.

server_dir="$ABRA_DIR/servers/default"
if [ -d "$server_dir" ]; then
  info "abra server registered server=default abra_dir=$ABRA_DIR"
  exit 0
fi
require_swarm
info "registering the local server with abra abra_dir=$ABRA_DIR"
abra server add --local
[ -d "$server_dir" ] || die "abra server add --local succeeded but $server_dir does not exist"
