# cc-ci-runner-start: drone-runner-exec reads its settings from the environment, or from the env
# file named on its command line: the RPC secret reaches it in such a file, written from the
# unit's credential into its private runtime directory. Beside it, the generation the runner
# was started as, which cc-ci-runner-update compares.
# Environment: RUNNER_EXE (set by the script's build); CREDENTIALS_DIRECTORY and
# RUNTIME_DIRECTORY from systemd.

: "${RUNNER_EXE:?}"
secret="${CREDENTIALS_DIRECTORY:-/nonexistent}/rpc-secret"
[ -r "$secret" ] || die "credential rpc-secret is missing"
umask 077
printf 'DRONE_RPC_SECRET=%s\n' "$(<"$secret")" >"$RUNTIME_DIRECTORY/runner.env"
runner_generation cc-ci-runner.service "$secret" >"$RUNTIME_DIRECTORY/generation"
exec "$RUNNER_EXE" daemon "$RUNTIME_DIRECTORY/runner.env"
