#!/bin/sh
# The nginx image's entrypoint, reduced: run each executable /docker-entrypoint.d/*.sh, then nginx.
set -eu
if [ "${1:-}" = "nginx" ]; then
    for script in /docker-entrypoint.d/*.sh; do
        if [ -x "$script" ]; then
            echo "$0: running $script"
            "$script"
        fi
    done
fi
exec "$@"
