"""Session fixtures: the whole stack (Postgres, RabbitMQ, Ray, ingest, dispatcher, api, nginx) for real.

The stack under test gets its own database, queue, ports, Ray head and state
directory, all from QSERVER_* variables set here, so it never touches a stack
that a developer has running with `qserver up`.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

TEST_ENV = {
    "QSERVER_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/qserver_test",
    "QSERVER_QUEUE_NAME": "qserver.test.jobs",
    "QSERVER_INGEST_PORT": "51052",
    "QSERVER_API_PORT": "18001",
    "QSERVER_INGEST_MONITOR_PORT": "18002",
    "QSERVER_DISPATCHER_MONITOR_PORT": "18003",
    "QSERVER_NGINX_HTTP_PORT": "18080",
    "QSERVER_NGINX_GRPC_PORT": "15051",
    "QSERVER_RAY_HEAD_PORT": "6381",
    "QSERVER_RAY_DASHBOARD_PORT": "8266",
    "QSERVER_STATE_DIR": "/tmp/qserver-test",
    # TLS on 443 as the upstream client expects it (a dev CA made by ops.certs)
    "QSERVER_NGINX_TLS_PORT": "443",
    # the dispatcher's janitor runs every few seconds (retention stays 30 days)
    "QSERVER_JANITOR_INTERVAL_S": "3",
    # the sweeper looks for pending jobs without a message every 2 s
    "QSERVER_SWEEP_AFTER_S": "2",
    # small enough to test the limit cheaply
    "QSERVER_MAX_QASM_BYTES": str(1024 * 1024),
}
for key, value in TEST_ENV.items():
    os.environ.setdefault(key, value)

# The homelab tests (tests/cluster) run a Ray cluster inside this process, and Ray reads
# its authentication mode once, at import: token auth on, with the homelab stack's token.
HOMELAB_STATE_DIR = Path("/tmp/qserver-homelab")
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN_PATH"] = str(HOMELAB_STATE_DIR / "ray_auth_token")

# Fixtures that start services (a whole stack, a Ray cluster, private Postgres and RabbitMQ):
# every test that needs one, directly or through another fixture, is marked `stack`, so
# `pytest -m "not stack"` is the fast tier (it still needs Postgres and RabbitMQ running).
SERVICE_FIXTURES = frozenset({"stack", "homelab", "lab", "faults", "auth_stack"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark with `stack` each test whose fixture closure starts services."""
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def settings():
    """The settings of the stack under test."""
    from core.settings import Settings

    return Settings()


@pytest.fixture(scope="session")
def stack(settings):
    """A running stack (started once per session, stopped at the end) and a client for it."""
    from ops import certs, endpoints
    from ops import stack as stack_ops
    from tests.client import Stack

    stack_ops.down(settings)
    _drop_database(settings.database_dsn)
    certs.make_dev_certs(settings.tls_path, ["localhost", "127.0.0.1"])
    stack_ops.up(settings)
    client = Stack(**endpoints.client_address(settings))
    yield client
    client.close()
    stack_ops.down(settings)


@pytest.fixture
def db(settings):
    """A sync autocommit connection to the test database."""
    with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
        yield conn


def count_jobs(conn: psycopg.Connection) -> int:
    """How many job rows the database holds."""
    return conn.execute("SELECT count(*) FROM jobs").fetchone()[0]


def fresh_database(dsn: str):
    """A generator for session fixtures: the database of ``dsn`` created anew at the head
    schema revision, yielded, and dropped afterwards."""
    from core import schema

    _drop_database(dsn)
    schema.upgrade(dsn)
    yield dsn
    _drop_database(dsn)


def _drop_database(dsn: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    admin = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
