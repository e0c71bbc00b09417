"""Dispatcher semantics on the real queue: canceled jobs stay canceled, redeliveries are dropped,
undecodable messages go to the dead-letter queue."""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika

from core import queue, store
from core.domain import JobSpec, ResultType
from tests.circuits import BELL


async def _publish(settings, body: bytes) -> None:
    connection = await queue.connect(str(settings.amqp_url))
    async with connection:
        channel = await queue.publisher_channel(connection)
        await channel.default_exchange.publish(
            aio_pika.Message(body=body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=settings.queue_name,
        )


async def _insert(settings) -> uuid.UUID:
    pool = await store.open_pool(settings.database_dsn, max_size=1)
    job_id = uuid.uuid4()
    spec = JobSpec(backend="aer", result_types=(ResultType.COUNTS,), metadata={}, qasm=BELL)
    async with pool.connection() as conn:
        await store.insert_job(conn, job_id=job_id, spec=spec)
    await pool.close()
    return job_id


def _row(db, job_id):
    return db.execute("SELECT status, attempts, start_time FROM jobs WHERE id = %s", (job_id,)).fetchone()


async def test_canceled_job_stays_canceled(stack, settings, db):
    job_id = await _insert(settings)
    db.execute("UPDATE jobs SET status = 'canceled', finish_time = now() WHERE id = %s", (job_id,))
    await _publish(settings, str(job_id).encode())
    # a job published after it yields a marker: once it has finished, ours was handled
    marker = await asyncio.to_thread(stack.run, BELL, counts=True)
    assert marker["status"] == "finished"
    assert _row(db, job_id) == ("canceled", 0, None)
    assert db.execute("SELECT count(*) FROM results WHERE job_id = %s", (job_id,)).fetchone()[0] == 0


async def test_job_canceled_over_rest_while_pending_never_runs(stack, settings, db):
    job_id = await _insert(settings)  # pending, its message not yet published
    response = await asyncio.to_thread(stack.http.put, f"/api/v1/job/cancel/{job_id}")
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    await _publish(settings, str(job_id).encode())
    marker = await asyncio.to_thread(stack.run, BELL, counts=True)
    assert marker["status"] == "finished"
    assert _row(db, job_id)[:2] == ("canceled", 0)
    again = await asyncio.to_thread(stack.http.put, f"/api/v1/job/cancel/{job_id}")
    assert again.status_code == 409


async def test_redelivered_id_of_a_finished_job_is_dropped(stack, settings, db):
    job = await asyncio.to_thread(stack.run, BELL, counts=True)
    assert job["status"] == "finished"
    before = _row(db, job["id"])
    await _publish(settings, job["id"].encode())
    await asyncio.to_thread(stack.run, BELL, counts=True)
    assert _row(db, job["id"]) == before
    again = await asyncio.to_thread(stack.job, job["id"])
    assert again["results"] == job["results"] and again["attempts"] == 1


async def test_undecodable_message_goes_to_the_dead_letter_queue(stack, settings):
    connection = await queue.connect(str(settings.amqp_url))
    async with connection:
        channel = await connection.channel()
        dead = await channel.declare_queue(f"{settings.queue_name}.dead", passive=True)
        await dead.purge()
        await _publish(settings, b"this is not a job id")
        deadline = time.monotonic() + 20
        message = None
        while message is None and time.monotonic() < deadline:
            message = await dead.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.1)
        assert message is not None and message.body == b"this is not a job id"
    # and the dispatcher still runs jobs
    assert (await asyncio.to_thread(stack.run, BELL, counts=True))["status"] == "finished"
