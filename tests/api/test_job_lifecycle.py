"""Cancel, delete, history and the janitor, against a real Postgres through the ASGI app."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from core import store

V1 = "/api/v1"
MakeJob = Callable[..., Awaitable[uuid.UUID]]
HISTORY_KEYS = {
    "id",
    "pointer",
    "job_id",
    "target_simulator",
    "status",
    "metadata",
    "error",
    "node_id",
    "attempts",
    "submission_date",
    "start_time",
    "finish_time",
    "result_types",
    "results",
    "owner",
    "sweep",
}
NO_RESULTS = {"counts": None, "quasi_dist": None, "expval": None}


def history(db: psycopg.Connection, job_id: uuid.UUID) -> list[dict]:
    return db.execute("SELECT status, results FROM history WHERE job_id = %s", (job_id,)).fetchall()


def status_of(db: psycopg.Connection, job_id: uuid.UUID) -> str | None:
    row = db.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()
    return None if row is None else row["status"]


# --- cancel ---------------------------------------------------------------------------


async def test_cancel_pending(client: httpx.AsyncClient, make_job: MakeJob, db: psycopg.Connection, dsn: str) -> None:
    job_id = await make_job()
    before = datetime.now(UTC)
    response = await client.put(f"{V1}/job/cancel/{job_id}")
    assert response.status_code == 200
    job = response.json()
    assert job["id"] == str(job_id)
    assert job["status"] == "canceled"
    assert job["start_time"] is None
    assert abs(datetime.fromisoformat(job["finish_time"]) - before) < timedelta(minutes=1)
    assert job["results"] == NO_RESULTS
    assert job["result_types"] == {"counts": True, "quasi_dist": False, "expval": False}
    assert (await client.get(f"{V1}/job/{job_id}")).json() == job
    assert history(db, job_id) == [{"status": "canceled", "results": None}]
    # the dispatcher's claim of the queued id finds nothing to run
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as a:
        assert await store.claim_jobs(a, job_ids=[job_id]) == []
    assert status_of(db, job_id) == "canceled"


async def test_cancel_running_wins_over_a_later_finish(
    client: httpx.AsyncClient, make_job: MakeJob, db: psycopg.Connection, dsn: str
) -> None:
    job_id = await make_job(status="running")
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN qserver_cancel")
        response = await client.put(f"{V1}/job/cancel/{job_id}")
        assert response.status_code == 200
        assert response.json()["status"] == "canceled"
        assert response.json()["start_time"] is not None
        notes = [n.payload for n in listener.notifies(timeout=2, stop_after=1)]
    assert notes == [str(job_id)]

    # the executor finishes afterwards: its guarded write changes nothing
    sconn = store.connect_sync(dsn)
    try:
        wrote = await asyncio.to_thread(
            store.finish_job_sync,
            sconn,
            job_id=job_id,
            results={"counts": {"11": 1000}},
            node_id="node-9",
        )
    finally:
        sconn.close()
    assert wrote is False
    job = (await client.get(f"{V1}/job/{job_id}")).json()
    assert job["status"] == "canceled"
    assert job["results"] == NO_RESULTS
    assert job["node_id"] == "node-1"  # where it started, not the late finisher's
    assert (await client.get(f"{V1}/job/result/{job_id}")).json() == {
        "detail": f"job {job_id} has no results: it was canceled"
    }
    assert history(db, job_id) == [{"status": "canceled", "results": None}]


async def test_cancel_racing_completion_has_one_winner(
    client: httpx.AsyncClient, make_job: MakeJob, db: psycopg.Connection, dsn: str
) -> None:
    ids = [await make_job(status="running") for _ in range(12)]
    sconn = [store.connect_sync(dsn) for _ in range(3)]

    def finish(i: int, job_id: uuid.UUID) -> bool:
        return store.finish_job_sync(sconn[i % 3], job_id=job_id, results={"counts": {"1": 1}}, node_id="n")

    async def finish_all() -> list[bool]:
        out = []
        for i, job_id in enumerate(ids):
            out.append(await asyncio.to_thread(finish, i, job_id))
        return out

    try:
        cancels, finished = await asyncio.gather(
            asyncio.gather(*(client.put(f"{V1}/job/cancel/{job_id}") for job_id in ids)),
            finish_all(),
        )
    finally:
        for conn in sconn:
            conn.close()
    for job_id, cancel, wrote in zip(ids, cancels, finished, strict=True):
        status = status_of(db, job_id)
        assert history(db, job_id)[0]["status"] == status
        assert len(history(db, job_id)) == 1
        if wrote:  # completion landed first
            assert status == "finished" and cancel.status_code == 409
            assert cancel.json()["detail"].startswith(f"job {job_id} is already finished")
        else:
            assert status == "canceled" and cancel.status_code == 200
            assert history(db, job_id)[0]["results"] is None


async def test_finish_then_cancel_is_409(client: httpx.AsyncClient, make_job: MakeJob, db: psycopg.Connection) -> None:
    job_id = await make_job(status="finished", results={"counts": {"11 0": 1000}})
    response = await client.put(f"{V1}/job/cancel/{job_id}")
    assert response.status_code == 409
    assert response.json() == {
        "detail": f"job {job_id} is already finished; only pending or running jobs can be canceled"
    }
    job = (await client.get(f"{V1}/job/{job_id}")).json()
    assert job["status"] == "finished"
    assert job["results"]["counts"] == {"11 0": 1000}
    assert history(db, job_id) == [
        {"status": "finished", "results": {"counts": {"11 0": 1000}, **{"quasi_dist": None, "expval": None}}}
    ]


@pytest.mark.parametrize("status", ["failed", "canceled"])
async def test_cancel_terminal_is_409(client: httpx.AsyncClient, make_job: MakeJob, status: str) -> None:
    job_id = await make_job(status="failed" if status == "failed" else "pending")
    if status == "canceled":
        assert (await client.put(f"{V1}/job/cancel/{job_id}")).status_code == 200
    response = await client.put(f"{V1}/job/cancel/{job_id}")
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"job {job_id} is already {status}; only pending or running jobs can be canceled"
    )


async def test_cancel_unknown_and_malformed(client: httpx.AsyncClient) -> None:
    job_id = uuid.uuid4()
    response = await client.put(f"{V1}/job/cancel/{job_id}")
    assert response.status_code == 404
    assert response.json() == {"detail": f"job {job_id} not found"}
    response = await client.put(f"{V1}/job/cancel/not-a-uuid")
    assert response.status_code == 400
    assert response.json() == {"detail": "job id 'not-a-uuid' is not a UUID"}


# --- delete ---------------------------------------------------------------------------


async def test_delete_finished_keeps_history(
    client: httpx.AsyncClient, make_job: MakeJob, db: psycopg.Connection
) -> None:
    job_id = await make_job(status="finished", results={"counts": {"11 0": 1000}})
    response = await client.delete(f"{V1}/job/{job_id}")
    assert response.status_code == 200
    assert response.json() == {"id": str(job_id), "deleted": True}
    gone = await client.get(f"{V1}/job/{job_id}")
    assert gone.status_code == 404
    assert gone.json() == {"detail": f"job {job_id} not found"}
    assert (await client.get(f"{V1}/job/result/{job_id}")).status_code == 404
    for table in ("result_types", "results"):
        count = db.execute(f"SELECT count(*) AS n FROM {table} WHERE job_id = %s", (job_id,))
        assert count.fetchone()["n"] == 0, table
    assert history(db, job_id) == [
        {"status": "finished", "results": {"counts": {"11 0": 1000}, "quasi_dist": None, "expval": None}}
    ]
    again = await client.delete(f"{V1}/job/{job_id}")
    assert again.status_code == 404
    assert again.json() == {"detail": f"job {job_id} not found"}


async def test_delete_running_is_409(client: httpx.AsyncClient, make_job: MakeJob, db: psycopg.Connection) -> None:
    job_id = await make_job(status="running")
    response = await client.delete(f"{V1}/job/{job_id}")
    assert response.status_code == 409
    assert response.json() == {"detail": f"job {job_id} is running: cancel it first (PUT /api/v1/job/cancel/{job_id})"}
    assert status_of(db, job_id) == "running"


async def test_delete_pending(client: httpx.AsyncClient, make_job: MakeJob, db: psycopg.Connection) -> None:
    job_id = await make_job()
    response = await client.delete(f"{V1}/job/{job_id}")
    assert response.status_code == 200
    assert response.json() == {"id": str(job_id), "deleted": True}
    assert status_of(db, job_id) is None
    assert history(db, job_id) == []  # it never reached a terminal status


async def test_delete_unknown_and_malformed(client: httpx.AsyncClient) -> None:
    job_id = uuid.uuid4()
    response = await client.delete(f"{V1}/job/{job_id}")
    assert response.status_code == 404
    assert response.json() == {"detail": f"job {job_id} not found"}
    response = await client.delete(f"{V1}/job/nope")
    assert response.status_code == 400
    assert response.json() == {"detail": "job id 'nope' is not a UUID"}


# --- history ---------------------------------------------------------------------------


async def test_history_keyset_paging(client: httpx.AsyncClient, make_job: MakeJob, db: psycopg.Connection) -> None:
    ids = []
    for i in range(25):
        if i % 5 == 4:
            ids.append(await make_job(status="failed", error=f"error {i}"))
        else:
            ids.append(await make_job(status="finished", results={"counts": {"11": i}}))
    first = db.execute("SELECT pointer FROM history WHERE job_id = %s", (ids[0],)).fetchone()

    page1 = await client.get(f"{V1}/history", params={"cursor": first["pointer"] - 1})
    assert page1.status_code == 200
    rows = page1.json()
    assert len(rows) == 20
    assert [row["job_id"] for row in rows] == [str(i) for i in ids[:20]]
    assert all(set(row) == HISTORY_KEYS for row in rows)
    pointers = [row["pointer"] for row in rows]
    assert pointers == sorted(pointers)
    assert rows[0]["status"] == "finished"
    assert rows[0]["results"] == {"counts": {"11": 0}, "quasi_dist": None, "expval": None}
    assert rows[0]["result_types"] == {"counts": True, "quasi_dist": False, "expval": False}
    assert rows[0]["target_simulator"] == "aer"
    assert rows[0]["attempts"] == 1 and rows[0]["node_id"] == "node-1"
    assert rows[4]["status"] == "failed" and rows[4]["error"] == "error 4"
    assert rows[4]["results"] == NO_RESULTS
    assert rows[0]["finish_time"].endswith("Z")

    page2 = (await client.get(f"{V1}/history", params={"cursor": pointers[-1]})).json()
    assert [row["job_id"] for row in page2] == [str(i) for i in ids[20:]]
    page3 = (await client.get(f"{V1}/history", params={"cursor": page2[-1]["pointer"]})).json()
    assert page3 == []

    # deleting a job keeps its history row
    assert (await client.delete(f"{V1}/job/{ids[0]}")).status_code == 200
    again = (await client.get(f"{V1}/history", params={"cursor": first["pointer"] - 1})).json()
    assert again == rows


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", str(2**63)])
async def test_history_bad_cursor_is_400(client: httpx.AsyncClient, cursor: str) -> None:
    response = await client.get(f"{V1}/history", params={"cursor": cursor})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("cursor: ")


# --- janitor ------------------------------------------------------------------------------


async def test_janitor_deletes_only_old_terminal_jobs(make_job: MakeJob, db: psycopg.Connection, dsn: str) -> None:
    old = [
        await make_job(status="finished", results={"counts": {"0": 1}}),
        await make_job(status="failed"),
        await make_job(),  # canceled below
    ]
    db.execute("UPDATE jobs SET status = 'canceled', finish_time = now() WHERE id = %s", (old[2],))
    recent = await make_job(status="finished", results={"counts": {"0": 1}})
    pending = await make_job()
    running = await make_job(status="running")
    db.execute("UPDATE jobs SET finish_time = now() - interval '40 days' WHERE id = ANY(%s)", (old,))
    db.execute("UPDATE jobs SET finish_time = now() - interval '29 days' WHERE id = %s", (recent,))
    # no pending or running job has a finish time; give them one to prove status decides
    db.execute(
        "UPDATE jobs SET submission_date = now() - interval '90 days',"
        " finish_time = now() - interval '90 days' WHERE id = ANY(%s)",
        ([pending, running],),
    )

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        assert await store.delete_expired_jobs(conn, older_than_days=30) == 3
        assert await store.delete_expired_jobs(conn, older_than_days=30) == 0

    for job_id in old:
        assert status_of(db, job_id) is None
        n = db.execute("SELECT count(*) AS n FROM results WHERE job_id = %s", (job_id,))
        assert n.fetchone()["n"] == 0
    assert [h["status"] for job_id in old for h in history(db, job_id)] == ["finished", "failed", "canceled"]
    assert status_of(db, recent) == "finished"
    assert status_of(db, pending) == "pending"
    assert status_of(db, running) == "running"

    assert store.delete_expired_jobs_sync(db, older_than_days=28.5) == 1
    assert status_of(db, recent) is None
    assert history(db, recent)[0]["status"] == "finished"
    with pytest.raises(ValueError, match="older_than_days must be >= 0"):
        store.delete_expired_jobs_sync(db, older_than_days=-1)
