# Config versions for this recipe; bump one when its config file changes.
export NGINX_CONF_VERSION=v1
