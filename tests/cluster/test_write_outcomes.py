"""cluster.batch.write_outcomes (what a warm executor's child writes after a batch) against real
Postgres: finished and failed jobs are written in one statement, a job canceled meanwhile is left
alone and reported dropped, results Postgres refuses fail their own job only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from cluster.batch import write_outcomes
from cluster.messages import Report
from cluster.workerdb import WorkerDb
from core import store
from core.domain import JobSpec, Outcome, ResultType
from core.settings import get_settings
from tests.conftest import fresh_database

DSN = "postgresql://postgres@127.0.0.1:5432/qserver_test_write_outcomes"
SPEC = JobSpec(backend="aer", result_types=(ResultType.COUNTS,), metadata={}, qasm="OPENQASM 2.0;")


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    yield from fresh_database(DSN)


@pytest.fixture
def db(dsn, monkeypatch) -> Iterator[WorkerDb]:
    monkeypatch.setenv("QSERVER_DATABASE_URL", dsn)
    get_settings.cache_clear()
    worker = WorkerDb(synchronous_commit=False)
    yield worker
    worker.close()
    get_settings.cache_clear()


def _claimed(dsn: str, count: int) -> list[uuid.UUID]:
    async def claim() -> list[uuid.UUID]:
        ids = [uuid.uuid4() for _ in range(count)]
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            for job_id in ids:
                await store.insert_job(conn, job_id=job_id, spec=SPEC)
            await store.claim_jobs(conn, job_ids=ids)
        return ids

    return asyncio.run(claim())


def _row(dsn: str, job_id: uuid.UUID) -> tuple:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT j.status, j.error, j.node_id, r.counts FROM jobs j LEFT JOIN results r ON r.job_id = j.id"
            " WHERE j.id = %s",
            (job_id,),
        ).fetchone()


def test_a_batch_is_written_and_a_job_canceled_meanwhile_is_left_alone(dsn, db):
    done, broken, canceled = _claimed(dsn, 3)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET status = 'canceled', finish_time = now() WHERE id = %s", (canceled,))
    answers = [
        (Report(done, Outcome.FINISHED, 2.0, "n1"), {"counts": {"00": 512, "11": 488}}),
        (Report(broken, Outcome.FAILED, 1.0, "n1", error="CircuitError: no such gate 'foo'"), None),
        (Report(canceled, Outcome.FINISHED, 3.0, "n1"), {"counts": {"1": 10}}),
    ]
    reports = write_outcomes(db, answers, "n1")
    assert [r.outcome for r in reports] == [Outcome.FINISHED, Outcome.FAILED, Outcome.DROPPED]
    assert _row(dsn, done) == ("finished", None, "n1", {"00": 512, "11": 488})
    assert _row(dsn, broken) == ("failed", "CircuitError: no such gate 'foo'", "n1", None)
    assert _row(dsn, canceled) == ("canceled", None, None, None)


def test_results_postgres_refuses_fail_their_own_job_only(dsn, db):
    refused, fine = _claimed(dsn, 2)
    answers = [
        (Report(refused, Outcome.FINISHED, 2.0, "n1"), {"counts": {"a\u0000b": 1}}),  # jsonb holds no NUL
        (Report(fine, Outcome.FINISHED, 2.0, "n1"), {"counts": {"0": 7}}),
    ]
    reports = write_outcomes(db, answers, "n1")
    assert [r.outcome for r in reports] == [Outcome.FAILED, Outcome.FINISHED]
    assert "could not be stored" in reports[0].error and "\\u0000" in reports[0].error
    assert _row(dsn, refused)[0] == "failed"
    assert _row(dsn, fine) == ("finished", None, "n1", {"0": 7})
