# Config versions for this recipe; bump one when its config file changes.
export ENTRYPOINT_VERSION=v1
