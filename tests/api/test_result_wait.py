"""GET /job/result/{id}?wait_s=: the answer waits for the job to end (Postgres LISTEN/NOTIFY,
migration 0011), against the real database; the job's end is written by another connection,
as the executor would."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import psycopg
import pytest

from core import store
from tests.api.conftest import MakeJob

V1 = "/api/v1"
COUNTS = {"00": 498, "11": 502}
# The waits below ask for 30 s but must be woken by the job's end: a wait that ran out
# would give the same answer, so the request itself is cut off at WOKEN_WITHIN_S.
WAIT = {"wait_s": 30}
WOKEN_WITHIN_S = 10


async def _get(client: httpx.AsyncClient, path: str) -> httpx.Response:
    return await asyncio.wait_for(client.get(path, params=WAIT), WOKEN_WITHIN_S)


async def _later(seconds: float, action) -> None:
    await asyncio.sleep(seconds)
    await asyncio.to_thread(action)


async def test_wait_returns_the_results_once_the_job_finishes(
    client: httpx.AsyncClient, make_job: MakeJob, dsn: str
) -> None:
    job_id = await make_job(status="running")
    with store.connect_sync(dsn) as conn:
        finish = asyncio.create_task(
            _later(
                0.3, lambda: store.finish_job_sync(conn, job_id=job_id, results={"counts": COUNTS}, node_id="node-1")
            )
        )
        # without the wait this would be a 404 "it is running" (tests/api/test_api.py)
        response = await _get(client, f"{V1}/job/result/{job_id}")
        await finish
    assert response.status_code == 200, response.text
    assert response.json()["counts"] == COUNTS


async def test_wait_ends_with_the_failure_when_the_job_fails(
    client: httpx.AsyncClient, make_job: MakeJob, dsn: str
) -> None:
    job_id = await make_job(status="running")
    with store.connect_sync(dsn) as conn:
        fail = asyncio.create_task(
            _later(
                0.3,
                lambda: store.fail_job_sync(
                    conn, job_id=job_id, error="Aer could not run the circuit", node_id="node-1"
                ),
            )
        )
        response = await _get(client, f"{V1}/job/result/{job_id}")
        await fail
    assert response.status_code == 404
    assert response.json() == {"detail": f"job {job_id} has no results: it failed: Aer could not run the circuit"}


async def test_wait_ends_when_the_job_is_canceled(client: httpx.AsyncClient, make_job: MakeJob) -> None:
    job_id = await make_job(status="pending")
    waiting = asyncio.create_task(_get(client, f"{V1}/job/result/{job_id}"))
    await asyncio.sleep(0.3)
    assert (await client.put(f"{V1}/job/cancel/{job_id}")).status_code == 200
    response = await waiting
    assert response.status_code == 404
    assert response.json() == {"detail": f"job {job_id} has no results: it was canceled"}


async def test_wait_that_runs_out_names_the_status(client: httpx.AsyncClient, make_job: MakeJob) -> None:
    job_id = await make_job(status="pending")
    response = await client.get(f"{V1}/job/result/{job_id}", params={"wait_s": 0.2})
    assert response.status_code == 404
    assert response.json() == {"detail": f"job {job_id} has no results: it is pending"}


async def test_wait_on_unknown_job_is_404_at_once(client: httpx.AsyncClient) -> None:
    job_id = uuid.uuid4()
    response = await _get(client, f"{V1}/job/result/{job_id}")
    assert response.status_code == 404
    assert response.json() == {"detail": f"job {job_id} not found"}


@pytest.mark.parametrize("wait_s", ["-1", "soon", "nan"])
async def test_bad_wait_is_400_naming_it(client: httpx.AsyncClient, make_job: MakeJob, wait_s: str) -> None:
    job_id = await make_job(status="pending")
    response = await client.get(f"{V1}/job/result/{job_id}", params={"wait_s": wait_s})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("wait_s: ")


async def test_job_end_notification_carries_the_job_id_and_status(make_job: MakeJob, dsn: str) -> None:
    """Migration 0011's trigger: one notification per job that ends, whatever ends it."""
    job_id = await make_job(status="running")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listener:
        await listener.execute(f"LISTEN {store.JOB_STATUS_CHANNEL}")
        with store.connect_sync(dsn) as conn:
            store.fail_job_sync(conn, job_id=job_id, error="boom", node_id=None)
        notes = listener.notifies(timeout=10, stop_after=1)
        changes = [store.JobChange.parse(note.payload) async for note in notes]
    assert [(change.id, change.status, change.owner) for change in changes] == [(job_id, "failed", None)]
