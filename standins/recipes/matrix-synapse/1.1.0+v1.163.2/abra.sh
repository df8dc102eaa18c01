# Config versions for this recipe; bump one when its config file changes.
export HOMESERVER_YAML_VERSION=v1
