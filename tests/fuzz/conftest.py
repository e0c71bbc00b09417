"""Fixtures for the hostile-input tests: a scratch database of their own, made and dropped here.

The database (tests/fuzz/scratch.py names it, at random) gets the head schema; nothing here
touches the stack's database, queue or ports.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from core import schema, store
from tests.fuzz.scratch import DSN, NAME, SERVER


@pytest.fixture(scope="session")
def fuzz_dsn() -> Iterator[str]:
    """A fresh database at the head schema revision, dropped at the end of the session."""
    schema.upgrade(DSN)  # creates the database, then migrates it
    try:
        yield DSN
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(NAME)))


@pytest.fixture(scope="session")
def fuzz_db(fuzz_dsn: str) -> Iterator[psycopg.Connection]:
    """A sync autocommit connection (dict rows) to the scratch database, for the whole session."""
    conn = store.connect_sync(fuzz_dsn)
    try:
        yield conn
    finally:
        conn.close()
