#!/bin/sh
# Renders QServer's nginx config in the nginx container (run by the image's entrypoint from
# /docker-entrypoint.d before nginx starts; tests/ops/test_compose.py runs it too).
#   QSERVER_API_UPSTREAM      the api, host:port              (default api:8000)
#   QSERVER_INGEST_UPSTREAM   ingest's gRPC server, host:port (default ingest:50052)
#   QSERVER_MAX_QASM_BYTES    the largest program; nginx's body limit is this + the next + 1 MiB
#   QSERVER_MAX_BINDINGS_BYTES  the largest bindings file of a sweep (default 64 MiB)
#   QSERVER_TLS_DIR           server.crt and server.key; TLS on 443 only when both are there
#   QSERVER_NGINX_TEMPLATES / QSERVER_NGINX_CONF_D   where templates are / where configs go
set -eu

: "${QSERVER_API_UPSTREAM:=api:8000}"
: "${QSERVER_INGEST_UPSTREAM:=ingest:50052}"
: "${QSERVER_MAX_QASM_BYTES:=33554432}"
: "${QSERVER_MAX_BINDINGS_BYTES:=67108864}"
: "${QSERVER_TLS_DIR:=/etc/qserver/tls}"
: "${QSERVER_NGINX_TEMPLATES:=/etc/nginx/qserver}"
: "${QSERVER_NGINX_CONF_D:=/etc/nginx/conf.d}"
NGINX_CLIENT_MAX_BODY_SIZE=$((QSERVER_MAX_QASM_BYTES + QSERVER_MAX_BINDINGS_BYTES + 1048576))
export QSERVER_API_UPSTREAM QSERVER_INGEST_UPSTREAM NGINX_CLIENT_MAX_BODY_SIZE QSERVER_NGINX_TEMPLATES

# Only our variables: nginx's own ($host, $remote_addr, ...) stay as they are.
envsubst '${QSERVER_API_UPSTREAM} ${QSERVER_INGEST_UPSTREAM} ${NGINX_CLIENT_MAX_BODY_SIZE} ${QSERVER_NGINX_TEMPLATES}' \
    < "$QSERVER_NGINX_TEMPLATES/qserver.conf.template" > "$QSERVER_NGINX_CONF_D/qserver.conf"

tls_conf="$QSERVER_NGINX_CONF_D/qserver-tls.conf"
if [ -f "$QSERVER_TLS_DIR/server.crt" ] && [ -f "$QSERVER_TLS_DIR/server.key" ]; then
    case "$QSERVER_TLS_DIR" in *"|"*|*'$'*|*'"'*)
        echo "$0: QSERVER_TLS_DIR must not contain | \$ or \"" >&2; exit 1;;
    esac
    # The same TLS server `qserver up` renders (ops/proxy.py): string.Template placeholders,
    # and $$ for nginx's own variables.
    sed -e "s|\$tls_listen|443|" \
        -e "s|\$tls_cert|$QSERVER_TLS_DIR/server.crt|" \
        -e "s|\$tls_key|$QSERVER_TLS_DIR/server.key|" \
        -e "s|\$locations|$QSERVER_NGINX_TEMPLATES/locations|" \
        -e 's|\$\$|$|g' \
        "$QSERVER_NGINX_TEMPLATES/tls-server.conf.template" > "$tls_conf"
    echo "$0: TLS on: REST and gRPC on 443 with $QSERVER_TLS_DIR/server.crt"
else
    rm -f "$tls_conf"
    echo "$0: TLS off: no server.crt and server.key in $QSERVER_TLS_DIR (README: TLS)"
fi
