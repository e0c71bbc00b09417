# One image for every QServer process in compose.yml: migrate, ingest, api, dispatcher, the Ray
# head and the Ray workers. Every Ray node must run the same Python, Ray and project version:
# build this image once and run it everywhere (a homelab node too: see README, Containers).
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    QSERVER_STATE_DIR=/var/lib/qserver

WORKDIR /app
# The dependencies of both packages first, in a layer of their own (it changes only with the
# pyproject.toml files): a change to the code reinstalls only the two packages below.
COPY pyproject.toml ./
COPY client/pyproject.toml client/
RUN python -c "import tomllib; print('\n'.join(d for f in ('pyproject.toml', 'client/pyproject.toml') \
        for d in tomllib.load(open(f, 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY README.md ./
COPY core core
COPY ops ops
COPY protos protos
COPY ingest ingest
COPY dispatcher dispatcher
COPY cluster cluster
COPY plugins plugins
COPY api api
# the client package (qserver-client, client/) owns the `qserver` script; the server's
# "qserver.commands" entry point adds the operator's commands (`qserver db upgrade`, `certs`)
COPY client client
RUN pip install --no-deps ./client . \
    && useradd --create-home --uid 1000 qserver \
    && mkdir -p /var/lib/qserver/tls \
    && chown -R qserver:qserver /var/lib/qserver \
    && chmod 0700 /var/lib/qserver/tls

# Not root: the services, Ray and the plugins it installs run as `qserver`.
USER qserver
