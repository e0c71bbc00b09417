"""Idempotency keys in ingest, per owner: an in-process grpc.aio server with authentication on
(or off), real Postgres and RabbitMQ.

The queue is one of our own that nothing consumes, so accepted jobs stay pending and the
messages ingest published can be counted.
"""

from __future__ import annotations

import uuid

import grpc
import pytest

from core import queue, store
from ingest.server import build_server
from protos.generated import jobs_pb2_grpc
from tests.auth.conftest import BELL
from tests.client import chunks, properties

QUEUE = "qserver.test.auth.idempotency"


@pytest.fixture(scope="module")
def idem_settings(auth_settings):
    return auth_settings.model_copy(update={"queue_name": QUEUE})


@pytest.fixture(scope="module")
async def broker(idem_settings):
    """A publisher channel and our own queue, deleted at the end."""
    connection = await queue.connect(str(idem_settings.amqp_url))
    channel = await queue.publisher_channel(connection)
    await queue.declare(channel, QUEUE)
    yield channel
    await channel.queue_delete(QUEUE)
    await channel.queue_delete(f"{QUEUE}.dead")
    await connection.close()


@pytest.fixture(scope="module")
async def pool(idem_settings):
    pool = await store.open_pool(idem_settings.database_dsn, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def ingest(idem_settings, pool, broker, db):
    """``await ingest(settings=None, channel=None)`` -> a stub of a started ingest server
    (stopped afterwards). Jobs it accepted are deleted afterwards, and their keys with them."""
    servers, channels = [], []

    async def start(settings=None, channel=None):
        server, address = build_server(settings or idem_settings, pool, channel or broker, port=0)
        await server.start()
        servers.append(server)
        grpc_channel = grpc.aio.insecure_channel(address)
        channels.append(grpc_channel)
        return jobs_pb2_grpc.JobsStub(grpc_channel)

    before = {r["id"] for r in db.execute("SELECT id FROM jobs").fetchall()}
    yield start
    for grpc_channel in channels:
        await grpc_channel.close()
    for server in servers:
        await server.stop(None)
    db.execute("DELETE FROM jobs WHERE NOT id = ANY(%s)", (list(before),))


async def add_job(stub, key, api_key=None, shots=100):
    metadata = [("idempotency-key", key)] + ([("x-api-key", api_key)] if api_key else [])
    messages = iter([properties(counts=True, metadata={"shots": shots}), *chunks(BELL)])
    return (await stub.AddJob(messages, metadata=metadata, timeout=20)).id


def stored_keys(db, key):
    return db.execute("SELECT owner, job_id FROM idempotency_keys WHERE key = %s ORDER BY owner", (key,)).fetchall()


async def test_each_owner_has_keys_of_their_own(ingest, make_key, db):
    stub = await ingest()
    alice, bob = make_key("alice"), make_key("bob")
    key = f"shared-{uuid.uuid4().hex}"
    for_alice = await add_job(stub, key, alice)
    for_bob = await add_job(stub, key, bob)
    assert for_alice != for_bob
    assert await add_job(stub, key, alice) == for_alice
    assert await add_job(stub, key, bob) == for_bob
    rows = stored_keys(db, key)
    assert sorted((r["owner"], str(r["job_id"])) for r in rows) == sorted(
        [(make_key.owner(alice), for_alice), (make_key.owner(bob), for_bob)]
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await add_job(stub, key, bob, shots=101)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert refused.value.details() == (
        f"idempotency key '{key}' was already used for a different request (job {for_bob}): use a new key for a new job"
    )
    owners = db.execute("SELECT owner FROM jobs WHERE id = ANY(%s::uuid[])", ([for_alice, for_bob],)).fetchall()
    assert sorted(r["owner"] for r in owners) == sorted([make_key.owner(alice), make_key.owner(bob)])


async def test_a_repeat_is_not_queued_again(ingest, broker, make_key):
    stub = await ingest()
    alice = make_key("alice")
    key = uuid.uuid4().hex
    before = await queue.ready_count(broker, QUEUE)
    first = await add_job(stub, key, alice)
    assert await add_job(stub, key, alice) == first
    assert await add_job(stub, key, alice) == first
    assert await queue.ready_count(broker, QUEUE) == before + 1


async def test_a_repeat_is_answered_even_at_the_cap_on_pending_jobs(ingest, idem_settings, make_key, db):
    stub = await ingest(idem_settings.model_copy(update={"max_pending_per_user": 1}))
    alice = make_key("alice")
    key = uuid.uuid4().hex
    first = await add_job(stub, key, alice)
    assert await add_job(stub, key, alice) == first  # its job, not RESOURCE_EXHAUSTED
    other = uuid.uuid4().hex
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await add_job(stub, other, alice)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stored_keys(db, other) == []  # a refused job leaves its key free


async def test_with_authentication_off_keys_belong_to_no_one(ingest, idem_settings, db):
    stub = await ingest(idem_settings.model_copy(update={"auth": "off"}))
    key = uuid.uuid4().hex
    first = await add_job(stub, key)
    assert await add_job(stub, key) == first
    assert [(r["owner"], str(r["job_id"])) for r in stored_keys(db, key)] == [("", first)]
    assert db.execute("SELECT owner FROM jobs WHERE id = %s", (first,)).fetchone()["owner"] is None


async def test_a_job_the_queue_refused_or_that_was_deleted_frees_its_key(ingest, idem_settings, make_key, db):
    alice = make_key("alice")
    key = uuid.uuid4().hex
    connection = await queue.connect(str(idem_settings.amqp_url))
    closed = await queue.publisher_channel(connection)
    await closed.close()
    try:
        refusing = await ingest(channel=closed)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await add_job(refusing, key, alice)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert stored_keys(db, key) == []
    finally:
        await connection.close()
    stub = await ingest()
    first = await add_job(stub, key, alice)
    assert [str(r["job_id"]) for r in stored_keys(db, key)] == [first]
    db.execute("DELETE FROM jobs WHERE id = %s", (first,))
    assert stored_keys(db, key) == []
    second = await add_job(stub, key, alice)
    assert second != first
