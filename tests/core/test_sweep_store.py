"""core.store.sweeps against real Postgres: a sweep's items are written only while its job runs,
replaced chunk by chunk, and cleared for a new attempt."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from core import store
from core.domain import JobSpec, ResultType
from tests.conftest import fresh_database

DSN = "postgresql://postgres@127.0.0.1:5432/qserver_test_sweep_store"
SWEEP = {"sweep": {"parameters": ["a"], "shape": [3]}}
SPEC = JobSpec(backend="aer", result_types=(ResultType.COUNTS,), metadata=SWEEP)


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    yield from fresh_database(DSN)


def job_in(dsn: str, status: str) -> uuid.UUID:
    async def insert() -> uuid.UUID:
        job_id = uuid.uuid4()
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await store.insert_job(conn, job_id=job_id, spec=SPEC)
            await conn.execute("UPDATE jobs SET status = %s WHERE id = %s", (status, job_id))
        return job_id

    return asyncio.run(insert())


def rows(conn: psycopg.Connection, job_id: uuid.UUID) -> list[tuple]:
    query = "SELECT first, count, items, node_id FROM sweep_items WHERE job_id = %s ORDER BY first"
    return [tuple(row.values()) for row in conn.execute(query, (job_id,)).fetchall()]


def test_items_are_saved_while_running_replaced_and_cleared(dsn):
    job_id = job_in(dsn, "running")
    with store.connect_sync(dsn) as conn:
        assert store.save_items_sync(conn, job_id=job_id, first=0, items=[{"counts": {"0": 1}}], node_id="n1")
        assert store.save_items_sync(conn, job_id=job_id, first=1, items=[{"counts": {"1": 1}}] * 2, node_id="n2")
        assert store.save_items_sync(conn, job_id=job_id, first=0, items=[{"counts": {"1": 1}}], node_id="n3")
        found = [(first, count, node) for first, count, _, node in rows(conn, job_id)]
        assert found == [(0, 1, "n3"), (1, 2, "n2")]
        assert store.clear_items_sync(conn, job_id=job_id) == 2
        assert rows(conn, job_id) == []


@pytest.mark.parametrize("status", ["pending", "claimed", "finished", "failed", "canceled"])
def test_items_of_a_job_that_does_not_run_are_not_saved(dsn, status):
    job_id = job_in(dsn, status)
    with store.connect_sync(dsn) as conn:
        assert not store.save_items_sync(conn, job_id=job_id, first=0, items=[{"counts": {"0": 1}}], node_id="n")
        assert rows(conn, job_id) == []
