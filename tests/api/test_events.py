"""Live status as server-sent events (api/events.py), read by the real client over real HTTP from
the api served by uvicorn, against the real database: each job change is written by another
connection, as the dispatcher and the executors write it, and reaches the stream through
Postgres's notification (migration 0011) and the api's one LISTEN connection."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from core import store
from core.domain import WAITING_FOR_EXECUTOR, WAITING_IN_QUEUE
from core.settings import Settings
from qserver_client import Client
from qserver_client.errors import BadRequest, JobNotFound, TooManyRequests, Unavailable
from tests.api.conftest import MakeJob
from tests.served import Reader, Served, serve, until_true

COUNTS = {"00": 498, "11": 502}


def any_event(event: dict[str, Any]) -> bool:
    """Reader(..., until=any_event): close the stream after its first event."""
    return True


EVENT_KEYS = {
    "event",
    "id",
    "status",
    "time",
    "attempts",
    "waiting_for",
    "node_id",
    "start_time",
    "finish_time",
    "backend",
    "owner",
    "submission_date",
}


@pytest.fixture(scope="module")
def served(settings: Settings) -> Iterator[Served]:
    """The api over the test database, on real HTTP."""
    with serve(settings) as server:
        yield server


@pytest.fixture(scope="module")
def tight(settings: Settings) -> Iterator[Served]:
    """Another api with small limits: 2 streams a caller, 3 in all, a keep-alive every 0.3 s,
    every result read as a large one."""
    changed = settings.model_copy(
        update={
            "events_streams_per_caller": 2,
            "events_streams": 3,
            "events_keepalive_s": 0.3,
            "api_inline_result_bytes": 0,
        }
    )
    with serve(changed) as server:
        yield server


@pytest.fixture
def client(served: Served) -> Iterator[Client]:
    """The real client, for REST only (no ingest runs here)."""
    with Client(url=served.url, grpc="127.0.0.1:1") as real:
        yield real


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[psycopg.AsyncConnection]:
    """An async connection with dict rows, to change jobs as the dispatcher does."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as connection:
        yield connection


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_a_job_is_read_from_pending_to_its_end_with_results(
    client: Client, make_job: MakeJob, db: psycopg.Connection, conn: psycopg.AsyncConnection
) -> None:
    job_id = await make_job(status="pending")
    reader = Reader(client.events(str(job_id)))
    pending = await reader.next()
    assert set(pending) == EVENT_KEYS
    assert pending["event"] == "status" and pending["status"] == "pending" and pending["id"] == str(job_id)
    assert pending["waiting_for"] == WAITING_IN_QUEUE and pending["attempts"] == 0 and pending["backend"] == "aer"
    assert pending["node_id"] is None and pending["start_time"] is None and pending["owner"] is None
    assert pending["time"] == pending["submission_date"]

    assert await store.claim_jobs(conn, job_ids=[job_id])  # users do not see a claim: no event
    assert await asyncio.to_thread(store.mark_started_sync, db, job_id=job_id, node_id="node-7")
    running = await reader.next()
    assert running["event"] == "status" and running["status"] == "running", running
    assert running["node_id"] == "node-7" and running["attempts"] == 1 and running["waiting_for"] is None
    assert running["time"] == running["start_time"] and _time(running["time"]) >= _time(pending["time"])

    assert await asyncio.to_thread(
        store.finish_job_sync, db, job_id=job_id, results={"counts": COUNTS}, node_id="node-7"
    )
    finished, end = await reader.next(), await reader.next()
    assert (finished["event"], finished["status"]) == ("status", "finished")
    assert finished["time"] == finished["finish_time"] and _time(finished["time"]) >= _time(running["time"])
    assert end["event"] == "end" and end["status"] == "finished"
    assert end["results"] == {"counts": COUNTS, "quasi_dist": None, "expval": None}
    assert await reader.next() is Reader.CLOSED


async def test_event_ids_grow_by_one_and_follow_last_event_id(
    served: Served, make_job: MakeJob, db: psycopg.Connection
) -> None:
    job_id = await make_job(status="finished", results={"counts": COUNTS})
    async with httpx.AsyncClient(base_url=served.url) as http:
        plain = await http.get(f"/api/v1/job/{job_id}/events")
        resumed = await http.get(f"/api/v1/job/{job_id}/events", headers={"Last-Event-ID": "41"})
        malformed = await http.get(f"/api/v1/job/{job_id}/events", headers={"Last-Event-ID": "x"})
    assert plain.headers["content-type"].startswith("text/event-stream")
    assert [line for line in plain.text.splitlines() if line.startswith(("id:", "event:"))] == [
        "id: 1",
        "event: status",
        "id: 2",
        "event: end",
    ]
    assert [line for line in resumed.text.splitlines() if line.startswith("id:")] == ["id: 42", "id: 43"]
    assert [line for line in malformed.text.splitlines() if line.startswith("id:")] == ["id: 1", "id: 2"]


async def test_an_ended_job_gives_its_status_and_end_at_once(client: Client, make_job: MakeJob) -> None:
    job_id = await make_job(status="failed", error="Aer could not run the circuit")
    events = await asyncio.to_thread(lambda: list(client.events(str(job_id))))
    assert [(e["event"], e["status"]) for e in events] == [("status", "failed"), ("end", "failed")]
    assert events[1]["error"] == "Aer could not run the circuit" and "results" not in events[1]


async def test_a_failed_job_ends_with_its_error(client: Client, make_job: MakeJob, db: psycopg.Connection) -> None:
    job_id = await make_job(status="running")
    reader = Reader(client.events(str(job_id)))
    assert (await reader.next())["status"] == "running"
    assert await asyncio.to_thread(store.fail_job_sync, db, job_id=job_id, error="out of memory", node_id="node-1")
    events = await reader.rest()
    assert [(e["event"], e["status"]) for e in events] == [("status", "failed"), ("end", "failed")]
    assert events[1]["error"] == "out of memory" and events[1]["finish_time"] is not None


async def test_cancel_gives_canceled(client: Client, make_job: MakeJob) -> None:
    job_id = await make_job(status="pending")
    reader = Reader(client.events(str(job_id)))
    assert (await reader.next())["status"] == "pending"
    await asyncio.to_thread(client.cancel, str(job_id))
    events = await reader.rest()
    assert [(e["event"], e["status"]) for e in events] == [("status", "canceled"), ("end", "canceled")]
    assert events[1]["error"] is None


async def test_back_to_pending_and_waiting_for_are_shown(
    client: Client, make_job: MakeJob, db: psycopg.Connection, conn: psycopg.AsyncConnection
) -> None:
    job_id = await make_job(status="running")
    reader = Reader(client.events(str(job_id)), until=lambda event: event["waiting_for"] == "a node with the tag gpu")
    assert (await reader.next())["status"] == "running"
    assert await store.requeue_job(conn, job_id=job_id)  # its worker died
    requeued = await reader.next()
    assert (requeued["status"], requeued["waiting_for"], requeued["node_id"]) == ("pending", WAITING_IN_QUEUE, None)
    assert requeued["attempts"] == 1 and _time(requeued["time"]) > _time(requeued["submission_date"])
    assert await store.claim_jobs(conn, job_ids=[job_id])
    assert await store.park_job(conn, job_id=job_id, waiting_for="a node with the tag gpu")
    parked = await reader.next()
    assert (parked["status"], parked["waiting_for"], parked["attempts"]) == ("pending", "a node with the tag gpu", 1)
    assert await reader.next() is Reader.CLOSED
    assert WAITING_FOR_EXECUTOR not in (requeued["waiting_for"], parked["waiting_for"])


async def test_a_job_deleted_before_it_ran_ends_its_stream(client: Client, make_job: MakeJob) -> None:
    job_id = await make_job(status="pending")
    reader = Reader(client.events(str(job_id)))
    pending = await reader.next()
    waiting = asyncio.create_task(asyncio.to_thread(client.result, str(job_id), wait_s=20))
    await asyncio.sleep(0.3)
    await asyncio.to_thread(client.delete, str(job_id))
    events = await reader.rest()
    assert [(e["event"], e["status"], e.get("deleted")) for e in events] == [("end", "pending", True)]
    assert {**events[0], "event": "status", "deleted": None} == {**pending, "deleted": None}
    with pytest.raises(JobNotFound):  # the long-poll wait ends too, at once
        await asyncio.wait_for(waiting, 5)


async def test_unknown_or_malformed_job_is_refused_before_any_stream(client: Client, served: Served) -> None:
    with pytest.raises(JobNotFound, match="not found"):
        await asyncio.to_thread(lambda: next(client.events(str(uuid.uuid4()))))
    async with httpx.AsyncClient(base_url=served.url) as http:
        response = await http.get("/api/v1/job/not-a-uuid/events")
    assert response.status_code == 400 and "not-a-uuid" in response.json()["detail"]
    await until_true(lambda: served.app.state.streams.open == 0 and served.app.state.waiters.watch_count == 0)


async def test_all_events_sees_every_jobs_changes_and_filters_by_status(
    client: Client, served: Served, make_job: MakeJob, db: psycopg.Connection
) -> None:
    first, second = await make_job(status="running"), await make_job(status="running")
    await until_true(lambda: served.app.state.waiters.watch_count == 0)  # earlier tests' streams closed
    everything = Reader(client.all_events(), until=lambda event: event["id"] == str(second))
    only_failed = Reader(client.all_events(status=["failed", "canceled"]), until=lambda e: e["id"] == str(second))
    await until_true(lambda: served.app.state.waiters.watch_count == 2)
    assert await asyncio.to_thread(store.finish_job_sync, db, job_id=first, results={}, node_id="node-1")
    assert await asyncio.to_thread(store.fail_job_sync, db, job_id=second, error="boom", node_id="node-1")
    seen = await _of_jobs(everything, {first, second})
    assert [(e["event"], e["id"], e["status"]) for e in seen] == [
        ("status", str(first), "finished"),
        ("status", str(second), "failed"),
    ]
    assert all(set(event) == EVENT_KEYS for event in seen)  # no results, no error
    assert [(e["id"], e["status"]) for e in await _of_jobs(only_failed, {second})] == [(str(second), "failed")]
    assert await everything.next() is Reader.CLOSED and await only_failed.next() is Reader.CLOSED


async def _of_jobs(reader: Reader, job_ids: set[uuid.UUID]) -> list[dict[str, Any]]:
    """The events of ``job_ids`` (others' tests may share the database), one per job."""
    events: list[dict[str, Any]] = []
    while len(events) < len(job_ids):
        event = await reader.next()
        assert event["status"] not in ("pending", "running") or uuid.UUID(event["id"]) not in job_ids, event
        events += [event] if uuid.UUID(event["id"]) in job_ids else []
    return events


async def test_an_unknown_status_filter_is_400_naming_it(client: Client) -> None:
    with pytest.raises(BadRequest, match="unknown status claimed, done"):
        await asyncio.to_thread(lambda: next(client.all_events(status="finished,claimed,done")))


async def test_a_client_that_goes_away_frees_its_stream(
    client: Client, served: Served, make_job: MakeJob, db: psycopg.Connection
) -> None:
    state = served.app.state
    job_id = await make_job(status="running")
    await Reader(client.events(str(job_id)), until=any_event).rest()  # once, for what lives as long as the loop
    await until_true(lambda: state.streams.open == 0)
    tasks_before, listening = served.tasks(), _listening(db)

    # the real client, closing its iterators early
    other = await make_job(status="running")
    everything = Reader(client.all_events(), until=lambda event: event["id"] == str(other))
    await until_true(lambda: state.waiters.watch_count == 1)
    one = Reader(client.events(str(job_id)), until=any_event)
    assert (await one.next())["status"] == "running"
    assert await asyncio.to_thread(store.fail_job_sync, db, job_id=other, error="boom", node_id=None)
    assert (await _of_jobs(everything, {other}))[0]["status"] == "failed"
    assert [await one.next(), await everything.next()] == [Reader.CLOSED, Reader.CLOSED]
    await until_true(lambda: state.streams.open == 0 and state.waiters.watch_count == 0)
    await until_true(lambda: served.tasks() <= tasks_before)

    # clients that drop the connection mid-stream
    async with contextlib.AsyncExitStack() as streams:
        http = await streams.enter_async_context(httpx.AsyncClient(base_url=served.url))
        for path in [f"/api/v1/job/{job_id}/events"] * 3 + ["/api/v1/events"]:
            response = await streams.enter_async_context(http.stream("GET", path))
            assert response.status_code == 200
        assert state.streams.open == 4 and state.waiters.watch_count == 4
        assert served.tasks() > tasks_before
        assert _listening(db) == listening  # the api's one LISTEN connection serves them all
    await until_true(lambda: state.streams.open == 0 and state.waiters.watch_count == 0)
    await until_true(lambda: served.tasks() <= tasks_before)


async def test_streams_are_bounded_per_caller_and_in_all(tight: Served, make_job: MakeJob) -> None:
    url, app = tight.url, tight.app
    job_id = await make_job(status="running")

    def caller(address: str) -> httpx.AsyncClient:  # nginx says who the client is
        return httpx.AsyncClient(base_url=url, headers={"X-Real-IP": address}, timeout=10)

    async with caller("10.0.0.1") as alice, caller("10.0.0.2") as bob, caller("10.0.0.3") as carol:
        async with alice.stream("GET", f"/api/v1/job/{job_id}/events") as one, alice.stream("GET", "/api/v1/events"):
            assert one.status_code == 200
            refused = await alice.get("/api/v1/events")
            assert refused.status_code == 429 and refused.headers["Retry-After"] == "5"
            assert "QSERVER_EVENTS_STREAMS_PER_CALLER" in refused.json()["detail"]
            async with bob.stream("GET", f"/api/v1/job/{job_id}/events") as bobs:  # alice does not starve bob
                assert bobs.status_code == 200
                full = await carol.get(f"/api/v1/job/{job_id}/events")
                assert full.status_code == 503 and "QSERVER_EVENTS_STREAMS" in full.json()["detail"]
            await until_true(lambda: app.state.streams.open == 2)
            async with carol.stream("GET", "/api/v1/events") as carols:
                assert carols.status_code == 200
        await until_true(lambda: app.state.streams.open == 0)
        async with alice.stream("GET", "/api/v1/events") as again:
            assert again.status_code == 200


async def test_the_client_names_refused_streams(tight: Served, make_job: MakeJob) -> None:
    job_id = await make_job(status="running")
    path = f"/api/v1/job/{job_id}/events"
    with Client(url=tight.url, grpc="127.0.0.1:1") as client:  # the address 127.0.0.1
        async with httpx.AsyncClient(base_url=tight.url) as mine, httpx.AsyncClient(base_url=tight.url) as other:
            async with mine.stream("GET", path), mine.stream("GET", path):
                with pytest.raises(TooManyRequests, match="event streams open"):
                    await asyncio.to_thread(lambda: next(client.all_events()))
            await until_true(lambda: tight.app.state.streams.open == 0)
            async with other.stream("GET", path, headers={"X-Real-IP": "10.0.0.7"}):
                async with other.stream("GET", path, headers={"X-Real-IP": "10.0.0.8"}):
                    async with mine.stream("GET", path):
                        with pytest.raises(Unavailable, match="QSERVER_EVENTS_STREAMS"):
                            await asyncio.to_thread(lambda: next(client.events(str(job_id))))


async def test_an_idle_stream_carries_keep_alives(tight: Served, make_job: MakeJob) -> None:
    url = tight.url
    job_id = await make_job(status="running")
    lines = []
    async with httpx.AsyncClient(base_url=url) as http:
        async with http.stream("GET", f"/api/v1/job/{job_id}/events") as response:
            started = time.monotonic()
            async for line in response.aiter_lines():
                lines.append(line)
                if lines.count(": keep-alive") == 2:
                    break
    assert 0.5 <= time.monotonic() - started < 5
    assert lines[:2] == ["id: 1", "event: status"] and lines.count(": keep-alive") == 2


async def test_large_results_come_with_the_end(tight: Served, make_job: MakeJob) -> None:
    url = tight.url  # every result is read as a large one there
    job_id = await make_job(status="finished", results={"counts": COUNTS, "expval": [0.25]})
    with Client(url=url, grpc="127.0.0.1:1") as client:
        events = await asyncio.to_thread(lambda: list(client.events(str(job_id))))
    assert events[-1]["results"] == {"counts": COUNTS, "quasi_dist": None, "expval": [0.25]}
    assert "results_error" not in events[-1]


async def test_one_notification_per_visible_change(make_job: MakeJob, dsn: str, conn: psycopg.AsyncConnection) -> None:
    """Migration 0011's triggers: a quick job (pending, claimed, finished at once) notifies once,
    at its end; a claim never does; a start, a requeue, a cancel and the delete of a job that
    has not run do; the delete of an ended job does not."""
    quick, slow, dropped = [await make_job(status="pending") for _ in range(3)]
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listener:
        await listener.execute(f"LISTEN {store.JOB_STATUS_CHANNEL}")
        assert await store.claim_jobs(conn, job_ids=[quick, slow])
        with store.connect_sync(dsn) as sync:
            assert store.finish_job_sync(sync, job_id=quick, results={}, node_id="node-1", run_s=0.01)
            assert store.mark_started_sync(sync, job_id=slow, node_id="node-2")
        assert await store.requeue_job(conn, job_id=slow)
        await conn.execute("UPDATE jobs SET status = 'canceled' WHERE id = %s", (slow,))
        await conn.execute("DELETE FROM jobs WHERE id = ANY(%s)", ([quick, slow, dropped],))
        notes = [n.payload async for n in listener.notifies(timeout=2)]
    changes = [c for c in map(store.JobChange.parse, notes) if c.id in (quick, slow, dropped)]  # the database's
    assert [(c.id, c.status, c.owner) for c in changes] == [
        (quick, "finished", None),
        (slow, "running", None),
        (slow, "pending", None),
        (slow, "canceled", None),
        (dropped, "deleted", None),
    ]
    assert all(abs((c.time - datetime.now(c.time.tzinfo)).total_seconds()) < 60 for c in changes)


@pytest.mark.parametrize("payload", ["", "not a change", f"{uuid.uuid4()} running soon alice", "x pending 1.0 "])
def test_a_payload_that_does_not_read_as_a_change_is_none(payload: str) -> None:
    assert store.JobChange.parse(payload) is None


def _listening(db: psycopg.Connection) -> int:
    """Connections to the test database that LISTEN (the last statement they ran)."""
    query = "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'"
    return db.execute(query).fetchone()["n"]
