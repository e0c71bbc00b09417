"""Fixtures of the ops tests: a scratch database of their own (real Postgres, the newest schema)."""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest

from core import schema


@pytest.fixture(scope="module")
def scratch_dsn():
    """A database of its own at the migrations' head; dropped afterwards."""
    base = os.environ.get("QSERVER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/qserver")
    dsn = f"{base.split('?')[0].rsplit('/', 1)[0]}/qserver_nodes_{uuid.uuid4().hex[:8]}"
    try:
        schema.upgrade(dsn)
    except psycopg.OperationalError as error:
        pytest.skip(f"no Postgres for the scratch database: {error}")
    yield dsn
    admin = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
