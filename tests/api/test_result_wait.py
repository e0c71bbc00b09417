"""GET /job/result/{id}?wait_s=: the answer waits for the job to end (Postgres LISTEN/NOTIFY,
migration 0011), against the real database; the job's end is written by another connection,
as the executor would."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from core import store
from core.settings import Settings
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


# --- a finished job's notification carries its small results (migration 0014) ------------------

QUASI = {"0": 0.5, "3": 0.5}
EXPVAL = [0.25, -1.0, 0.00000000000000001]
RESULTS = {
    "counts": {"counts": COUNTS},
    "quasi_dist": {"quasi_dist": QUASI},
    "expval": {"expval": EXPVAL},
    "all three": {"counts": COUNTS, "quasi_dist": QUASI, "expval": EXPVAL},
}


async def _changes(dsn: str, write, job_ids: list[uuid.UUID]) -> list[store.JobChange]:
    """The JOB_STATUS_CHANNEL changes of ``job_ids`` that ``write()`` (on a sync connection) made."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listener:
        await listener.execute(f"LISTEN {store.JOB_STATUS_CHANNEL}")
        with store.connect_sync(dsn) as conn:
            await asyncio.to_thread(write, conn)
        notes = listener.notifies(timeout=2)
        changes = [store.JobChange.parse(note.payload) async for note in notes]
    return [change for change in changes if change is not None and change.id in job_ids]


def _record(job_id: uuid.UUID, results: dict):
    """The warm executor's write: the job's end and its results in ONE statement."""
    return lambda conn: store.record_outcomes_sync(conn, finished=[(job_id, results)], failed=[], node_id="node-1")


async def _stored(dsn: str, job_id: uuid.UUID) -> dict:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        return await store.get_results(conn, job_id=job_id, inline_bytes=10**9)


@pytest.mark.parametrize("kind", list(RESULTS))
async def test_one_statement_end_notifies_with_the_results(make_job: MakeJob, dsn: str, kind: str) -> None:
    """An AFTER ROW trigger on the UPDATE sees the same statement's INSERT of the results."""
    job_id = await make_job(status="claimed")
    [change] = await _changes(dsn, _record(job_id, RESULTS[kind]), [job_id])
    stored = await _stored(dsn, job_id)
    assert (change.status, change.owner) == ("finished", None)
    assert change.results == {**stored["results"], "id": str(stored["results"]["id"])}
    assert change.results_bytes == stored["results_bytes"] > 0


async def test_update_then_insert_end_notifies_without_results(make_job: MakeJob, dsn: str) -> None:
    """finish_job_sync updates the job before it inserts the results: the trigger ran before."""
    job_id = await make_job(status="running")
    finish = lambda conn: store.finish_job_sync(conn, job_id=job_id, results={"counts": COUNTS}, node_id="n")  # noqa: E731
    [change] = await _changes(dsn, finish, [job_id])
    assert (change.status, change.results, change.results_bytes) == ("finished", None, None)


async def test_a_cache_hit_notifies_with_the_copied_results(make_job: MakeJob, dsn: str) -> None:
    """The cache's copy inserts the results and finishes the job in one statement too."""
    source = await make_job(status="finished", results=RESULTS["all three"])
    job_id = await make_job(status="pending")

    def copy(_conn) -> None:
        async def run() -> None:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                assert await store.finish_from_cache(conn, job_id=job_id, source=source)

        asyncio.run(run())

    [change] = await _changes(dsn, copy, [job_id])
    stored = await _stored(dsn, job_id)
    assert change.results == {**stored["results"], "id": str(stored["results"]["id"])}


async def test_results_too_big_for_a_notification_are_left_out(make_job: MakeJob, dsn: str) -> None:
    small, big = await make_job(status="claimed"), await make_job(status="claimed")
    sizes = {}
    for job_id, keys in ((small, 300), (big, 600)):  # ~4.5 and ~9 KB of JSON text
        counts = {format(i, "012b"): i + 1 for i in range(keys)}
        sizes[job_id] = len(json.dumps(counts))
        [change] = await _changes(dsn, _record(job_id, {"counts": counts}), [job_id])
        assert (change.results is not None) == (job_id == small), sizes
        assert change.results is None or json.loads(change.results["counts"]) == counts


async def test_a_notification_stays_under_the_limit_near_it(make_job: MakeJob, dsn: str) -> None:
    """Whatever the results' size around PAYLOAD_BYTES, the payload stays under it (or the
    NOTIFY, hence the executor's write, would fail at 8000 bytes)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listener:
        await listener.execute(f"LISTEN {store.JOB_STATUS_CHANNEL}")
        carried = []
        with store.connect_sync(dsn) as conn:
            for pad in range(6750, 7100, 25):
                job_id = await make_job(status="claimed")
                await asyncio.to_thread(_record(job_id, {"counts": {"0" * pad: 1}}), conn)
        async for note in listener.notifies(timeout=2):
            assert len(note.payload.encode()) < 7000
            change = store.JobChange.parse(note.payload)
            carried.append(change.results is not None)
    assert True in carried and False in carried  # both sides of the limit were written


async def test_a_sweep_end_notifies_without_results(make_job: MakeJob, dsn: str) -> None:
    job_id = await make_job(status="claimed", metadata={"sweep": {"parameters": ["t"], "shape": [2]}})
    [change] = await _changes(dsn, _record(job_id, {"counts": COUNTS}), [job_id])
    assert (change.status, change.results) == ("finished", None)


def test_a_payload_without_results_parses_as_before() -> None:
    job_id = uuid.uuid4()
    change = store.JobChange.parse(f"{job_id} finished 1700000000.5 ")
    assert (change.id, change.status, change.owner, change.results, change.results_bytes) == (
        job_id,
        "finished",
        None,
        None,
        None,
    )
    assert store.JobChange.parse(f"{job_id} running 1700000000.5 alice").owner == "alice"
    with_results = store.JobChange.parse(f"{job_id} finished 1700000000.5 alice\n12\nrid\n{{}}\n\n[1.0]")
    assert with_results.owner == "alice"
    assert with_results.results == {
        "id": "rid",
        "job_id": job_id,
        "counts": "{}",
        "quasi_dist": None,
        "expval": "[1.0]",
    }
    assert with_results.results_bytes == 12
    assert store.JobChange.parse(f"{job_id} finished 1700000000.5 alice\nnot results").results is None


# --- the wait answers from the notification: the same bytes, one read --------------------------


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[uuid.UUID]:
    """The job ids store.get_results is asked for (the result route's reads), in order."""
    asked: list[uuid.UUID] = []
    read = store.get_results

    async def counted(conn, *, job_id, **kwargs):
        asked.append(job_id)
        return await read(conn, job_id=job_id, **kwargs)

    monkeypatch.setattr(store, "get_results", counted)
    return asked


async def _wait_while(client: httpx.AsyncClient, job_id: uuid.UUID, dsn: str, write) -> httpx.Response:
    """A wait on ``job_id`` during which another connection ``write``s (after the wait's first read)."""
    waiting = asyncio.create_task(_get(client, f"{V1}/job/result/{job_id}"))
    await asyncio.sleep(0.3)
    with store.connect_sync(dsn) as conn:
        await asyncio.to_thread(write, conn)
    return await waiting


@pytest.mark.parametrize("kind", list(RESULTS))
async def test_wait_answered_from_the_notification_is_the_reads_answer_in_one_read(
    client: httpx.AsyncClient, make_job: MakeJob, dsn: str, reads: list[uuid.UUID], kind: str
) -> None:
    job_id = await make_job(status="claimed")
    waited = await _wait_while(client, job_id, dsn, _record(job_id, RESULTS[kind]))
    assert reads == [job_id]  # the first read only: the end carried the results
    plain = await client.get(f"{V1}/job/result/{job_id}")
    assert waited.status_code == plain.status_code == 200
    assert waited.content == plain.content  # byte for byte
    assert waited.headers["content-type"] == plain.headers["content-type"]
    assert {name: waited.json()[name] for name in RESULTS[kind]} == RESULTS[kind]


async def test_wait_reads_again_when_the_end_carried_no_results(
    client: httpx.AsyncClient, make_job: MakeJob, dsn: str, reads: list[uuid.UUID]
) -> None:
    job_id = await make_job(status="running")
    finish = lambda conn: store.finish_job_sync(conn, job_id=job_id, results={"counts": COUNTS}, node_id="n")  # noqa: E731
    waited = await _wait_while(client, job_id, dsn, finish)
    assert reads == [job_id, job_id]
    assert waited.content == (await client.get(f"{V1}/job/result/{job_id}")).content


async def test_wait_reads_results_over_the_inline_limit(
    client: httpx.AsyncClient,
    make_job: MakeJob,
    dsn: str,
    reads: list[uuid.UUID],
    use_settings: Callable[..., Settings],
) -> None:
    """Results the read would not answer inline are read (under the admission of large
    reads), not taken from the notification."""
    use_settings(api_inline_result_bytes=10)
    job_id = await make_job(status="claimed")
    waited = await _wait_while(client, job_id, dsn, _record(job_id, RESULTS["all three"]))
    assert reads == [job_id, job_id]
    plain = await client.get(f"{V1}/job/result/{job_id}")
    assert waited.status_code == 200 and waited.content == plain.content


async def test_a_failure_still_ends_the_wait_with_the_read(
    client: httpx.AsyncClient, make_job: MakeJob, dsn: str, reads: list[uuid.UUID]
) -> None:
    job_id = await make_job(status="claimed")
    fail = lambda conn: store.record_outcomes_sync(conn, finished=[], failed=[(job_id, "boom")], node_id="n")  # noqa: E731
    waited = await _wait_while(client, job_id, dsn, fail)
    assert waited.status_code == 404 and reads == [job_id, job_id]
    assert waited.json() == {"detail": f"job {job_id} has no results: it failed: boom"}
