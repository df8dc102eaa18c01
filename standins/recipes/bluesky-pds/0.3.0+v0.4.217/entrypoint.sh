#!/bin/sh
# The PDS reads its secrets from the environment only: this exports them from the docker
# secrets, then runs the PDS. `entrypoint.sh restart` (the restore's post-hook) starts the PDS
# again in place, on the restored files, and returns once it answers: the PDS keeps its SQLite
# files open, and a restarted container would come back only after the hook had returned.
set -eu
if [ "${1:-}" = restart ]; then
  old=$(cat /tmp/pds.pid)
  touch /tmp/pds.restart
  kill -TERM "$old"
  i=0
  while kill -0 "$old" 2>/dev/null || ! curl -fsS -o /dev/null http://localhost:3000/xrpc/_health; do
    i=$((i + 1))
    [ "$i" -lt 120 ] || { echo "entrypoint.sh: the PDS did not answer again within 60 s" >&2; exit 1; }
    sleep 0.5
  done
  exit 0
fi
PDS_JWT_SECRET=$(cat /run/secrets/jwt_secret)
PDS_ADMIN_PASSWORD=$(cat /run/secrets/admin_password)
# The PLC rotation key is a secp256k1 private key in hex; derived from the generated secret, so
# `abra app secret generate` can make it (any 32 bytes below the curve order will do).
PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX=$(sha256sum /run/secrets/plc_rotation_key | cut -c1-64)
export PDS_JWT_SECRET PDS_ADMIN_PASSWORD PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX
pid=
trap '[ -z "$pid" ] || { kill -TERM "$pid" 2>/dev/null; wait "$pid"; }; exit 0' TERM INT
# The PDS runs again only when a restart asked for it; any other end is the container's.
while :; do
  rm -f /tmp/pds.restart
  node --enable-source-maps /app/index.js &
  pid=$!
  echo "$pid" >/tmp/pds.pid
  status=0
  wait "$pid" || status=$?
  [ -f /tmp/pds.restart ] || exit "$status"
done
