#!/bin/sh
# The rabbitmq:3.13 image's contract, reduced: the default user from RABBITMQ_DEFAULT_USER /
# RABBITMQ_DEFAULT_PASS (used on the first start only, as RabbitMQ does), AMQP on 5672 for every
# address, logs on the console; the server runs as the rabbitmq user.
set -eu
if [ "${1:-}" != "rabbitmq-server" ]; then exec "$@"; fi
: "${RABBITMQ_DEFAULT_USER:=guest}"
: "${RABBITMQ_DEFAULT_PASS:=guest}"
mkdir -p /var/lib/rabbitmq /var/log/rabbitmq
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
cat > /etc/rabbitmq/rabbitmq.conf <<CONF
listeners.tcp.default = 5672
loopback_users = none
default_user = $RABBITMQ_DEFAULT_USER
default_pass = $RABBITMQ_DEFAULT_PASS
log.console = true
log.file = false
CONF
exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server
