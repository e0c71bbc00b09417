# One image for every QServer process (ingest, dispatcher, api, Ray head and workers).
# Used by compose.yml. Every Ray node must run the same Python, Ray and project
# version: build this image once and run it everywhere.
FROM python:3.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core core
COPY protos protos
COPY ingest ingest
COPY dispatcher dispatcher
COPY cluster cluster
COPY plugins plugins
COPY api api
RUN pip install --no-cache-dir .
ENV QSERVER_STATE_DIR=/var/lib/qserver
