"""When RabbitMQ does not take the message, the client gets UNAVAILABLE and no job stays behind.

Real Postgres and a real RabbitMQ connection; an in-process ingest server whose
channel is closed, or whose queue does not exist (the broker returns the message).
"""

from __future__ import annotations

import grpc
import pytest

from core import queue, schema, store
from protos.generated import jobs_pb2_grpc
from tests.circuits import BELL
from tests.client import chunks, properties


async def _submit(settings, pool, channel):
    from ingest.server import build_server

    server, address = build_server(settings, pool, channel, port=0)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(address) as ch:
            stub = jobs_pb2_grpc.JobsStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.AddJob(iter([properties(counts=True), *chunks(BELL)]), timeout=20)
            return info.value
    finally:
        await server.stop(None)


async def _count(pool) -> int:
    async with pool.connection() as conn:
        return (await (await conn.execute("SELECT count(*) AS n FROM jobs")).fetchone())["n"]


@pytest.fixture
async def pool(settings):
    schema.upgrade(settings.database_dsn)
    pool = await store.open_pool(settings.database_dsn, max_size=2)
    yield pool
    await pool.close()


async def test_closed_channel_gives_unavailable_and_no_row(settings, pool):
    connection = await queue.connect(str(settings.amqp_url))
    channel = await queue.publisher_channel(connection)
    await channel.close()
    before = await _count(pool)
    error = await _submit(settings, pool, channel)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "job queue did not accept the job" in error.details()
    assert await _count(pool) == before
    await connection.close()


async def test_unroutable_message_gives_unavailable_and_no_row(settings, pool):
    connection = await queue.connect(str(settings.amqp_url))
    channel = await queue.publisher_channel(connection)
    missing = settings.model_copy(update={"queue_name": "qserver.test.no-such-queue"})
    before = await _count(pool)
    error = await _submit(missing, pool, channel)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert await _count(pool) == before
    await connection.close()
