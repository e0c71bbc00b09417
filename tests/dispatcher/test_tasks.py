"""The dispatcher's background tasks: a failing run is caught, logged and counted and the task
keeps running; the republish paths share one long-lived publisher channel (real Postgres and
RabbitMQ, no stack); the notification listener connects again after its connection is killed."""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from functools import partial

import psycopg
import pytest
from tenacity import wait_fixed

from core import queue, store
from core.domain import JobSpec, ResultType
from core.settings import Settings
from dispatcher import cluster, notifications, service
from dispatcher.tasks import Task, Tasks
from tests.circuits import BELL

DSN = "postgresql://postgres@127.0.0.1:5432/qserver_test_tasks"
QUEUE = "qserver.test.tasks"


async def _until(condition, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_failing_run_is_caught_logged_counted_and_the_task_keeps_running(caplog):
    runs = []

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) in (2, 3):
            raise RuntimeError(f"run {len(runs)} broke")

    tasks = Tasks()
    tasks.start(Task("flaky", flaky, interval_s=0.01, retry_wait=wait_fixed(0.02)))
    with caplog.at_level(logging.WARNING, logger="dispatcher.tasks"):
        await _until(lambda: len(runs) >= 6)
    assert tasks.running() == ["flaky"]
    await tasks.stop()
    assert tasks.running() == []
    assert tasks.failures == {"flaky": 2}
    failed = [r for r in caplog.records if r.name == "dispatcher.tasks"]
    assert [r.getMessage() for r in failed] == [
        "task flaky failed (RuntimeError: run 2 broke); runs again in 0.02 s; 1 failures so far",
        "task flaky failed (RuntimeError: run 3 broke); runs again in 0.02 s; 2 failures so far",
    ]
    assert failed[0].exc_info is not None and failed[1].exc_info is None  # one traceback per streak
    count = len(runs)
    await asyncio.sleep(0.05)
    assert len(runs) == count  # stopped means stopped


async def test_the_interval_spaces_runs_and_the_first_run_can_wait():
    starts = []

    async def note() -> None:
        starts.append(asyncio.get_running_loop().time())

    tasks = Tasks()
    began = asyncio.get_running_loop().time()
    tasks.start(Task("spaced", note, interval_s=0.1, first_after_s=0.1))
    await _until(lambda: len(starts) >= 3)
    await tasks.stop()
    assert starts[0] - began >= 0.09  # the loop's clock may wake a hair early
    assert all(b - a >= 0.09 for a, b in itertools.pairwise(starts))


async def test_a_one_shot_task_runs_once_and_a_failure_is_counted_not_retried(caplog):
    runs = []

    async def broken() -> None:
        runs.append(1)
        raise ValueError("no")

    tasks = Tasks()
    with caplog.at_level(logging.WARNING, logger="dispatcher.tasks"):
        tasks.start(Task("once", broken, interval_s=None))
        await _until(lambda: not tasks.running())
    assert runs == [1]
    assert tasks.failures == {"once": 1}
    assert "task once failed (ValueError: no); not run again; 1 failures so far" in caplog.messages


async def test_stop_ends_tasks_started_by_other_tasks():
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    tasks = Tasks()

    async def spawner() -> None:
        tasks.start(Task("child", forever, interval_s=None))

    tasks.start(Task("spawner", spawner, interval_s=None))
    await asyncio.wait_for(started.wait(), 5)
    assert tasks.running() == ["child"]
    await tasks.stop()
    assert tasks.running() == [] and not tasks.failures


@pytest.fixture(scope="module")
def dsn():
    from tests.conftest import fresh_database

    yield from fresh_database(DSN)


@pytest.fixture
async def rabbit():
    """A robust connection, its publisher channel (as the dispatcher makes them at start-up)
    and a purged test queue; deleted afterwards."""
    connection = await queue.connect("amqp://guest:guest@127.0.0.1:5672/")
    publisher = await queue.publisher_channel(connection)
    jobs = await queue.declare(publisher, QUEUE)
    await jobs.purge()
    yield connection, publisher
    await publisher.queue_delete(QUEUE)
    await publisher.queue_delete(f"{QUEUE}.dead")
    await connection.close()


async def _jobs(pool, count: int, waiting_for: str | None = None) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(count)]
    spec = JobSpec(backend="aer", result_types=(ResultType.COUNTS,), metadata={}, qasm=BELL)
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM jobs")
        for job_id in ids:
            await store.insert_job(conn, job_id=job_id, spec=spec)
        await conn.execute("UPDATE jobs SET waiting_for = %s", (waiting_for,))
    return ids


async def _drain(channel, expected: int) -> list[uuid.UUID]:
    got = []
    jobs = await channel.declare_queue(QUEUE, passive=True)
    for _ in range(50):
        message = await jobs.get(fail=False)
        if message is None:
            if len(got) >= expected:
                break
            await asyncio.sleep(0.05)
            continue
        await message.ack()
        got.append(uuid.UUID(message.body.decode()))
    return got


async def test_parked_jobs_and_swept_jobs_go_out_on_the_one_publisher_channel(dsn, rabbit):
    connection, publisher = rabbit
    settings = Settings(database_url=dsn, queue_name=QUEUE, sweep_after_s=0.05)
    pool = await store.open_pool(dsn, max_size=2)
    try:
        parked = await _jobs(pool, 3, waiting_for="gpu")
        for _ in range(2):  # the same channel, call after call
            assert await cluster.republish_parked(settings, pool, publisher) == 3
            assert await _drain(publisher, 3) == parked
        assert not publisher.is_closed and not connection.is_closed

        pending = await _jobs(pool, 2)
        await asyncio.sleep(0.1)  # older than sweep_after_s
        await queue.publish_job(publisher, QUEUE, uuid.uuid4())
        await service.sweep(settings, pool, publisher)  # the queue is not empty: nothing swept
        assert len(await _drain(publisher, 1)) == 1
        await service.sweep(settings, pool, publisher)
        assert await _drain(publisher, 2) == pending
        assert not publisher.is_closed
    finally:
        await pool.close()


class _FakeDispatcher:
    def __init__(self) -> None:
        self.canceled: list[uuid.UUID] = []

    def inflight(self) -> list[uuid.UUID]:
        return []

    def cancel(self, job_id: uuid.UUID) -> None:
        self.canceled.append(job_id)


async def test_the_listener_connects_again_after_its_connection_is_killed(dsn):
    settings = Settings(database_url=dsn)
    pool = await store.open_pool(dsn, max_size=2)
    dispatcher = _FakeDispatcher()
    tasks = Tasks()
    tasks.start(
        Task(
            "notifications",
            partial(notifications.listen, settings, pool, dispatcher, tasks),
            interval_s=0,
            retry_wait=wait_fixed(0.1),
        )
    )
    listeners = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'"
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:

            async def listening() -> list[int]:
                return [row[0] for row in await (await admin.execute(listeners)).fetchall()]

            for _ in range(200):
                if await listening():
                    break
                await asyncio.sleep(0.02)
            first = uuid.uuid4()
            await admin.execute("SELECT pg_notify(%s, %s)", (store.CANCEL_CHANNEL, str(first)))
            await _until(lambda: dispatcher.canceled == [first])

            old = await listening()
            await admin.execute("SELECT pg_terminate_backend(%s)", (old[0],))
            await _until(lambda: tasks.failures["notifications"] == 1)
            for _ in range(200):
                now = await listening()
                if now and now != old:
                    break
                await asyncio.sleep(0.02)
            second = uuid.uuid4()
            await admin.execute("SELECT pg_notify(%s, %s)", (store.CANCEL_CHANNEL, str(second)))
            await _until(lambda: dispatcher.canceled == [first, second])
        assert tasks.running() == ["notifications"]
    finally:
        await tasks.stop()
        await pool.close()
