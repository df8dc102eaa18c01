#!/bin/sh
# The PDS reads its secrets from the environment only: export them from the docker secrets.
set -eu
PDS_JWT_SECRET=$(cat /run/secrets/jwt_secret)
PDS_ADMIN_PASSWORD=$(cat /run/secrets/admin_password)
# The PLC rotation key is a secp256k1 private key in hex; derived from the generated secret, so
# `abra app secret generate` can make it (any 32 bytes below the curve order will do).
PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX=$(sha256sum /run/secrets/plc_rotation_key | cut -c1-64)
export PDS_JWT_SECRET PDS_ADMIN_PASSWORD PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX
exec node --enable-source-maps /app/index.js
