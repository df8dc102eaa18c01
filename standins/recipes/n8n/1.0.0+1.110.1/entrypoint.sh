#!/bin/sh
# n8n reads DB_POSTGRESDB_PASSWORD_FILE itself, but its encryption key only from the environment.
set -eu
N8N_ENCRYPTION_KEY=$(cat /run/secrets/encryption_key)
export N8N_ENCRYPTION_KEY
exec n8n "$@"
