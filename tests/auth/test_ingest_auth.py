"""ingest with authentication on: an in-process grpc.aio server, real Postgres and RabbitMQ.

The queue is one of our own that nothing consumes, so accepted jobs stay pending.
"""

from __future__ import annotations

import grpc
import pytest

from core import auth, queue, store
from ingest.server import build_server
from protos.generated import jobs_pb2, jobs_pb2_grpc
from tests.auth.conftest import BELL
from tests.client import chunks, properties


@pytest.fixture(scope="module")
async def broker(auth_settings):
    """A publisher channel and our own queue, deleted at the end."""
    connection = await queue.connect(str(auth_settings.amqp_url))
    channel = await queue.publisher_channel(connection)
    await queue.declare(channel, auth_settings.queue_name)
    yield channel
    await channel.queue_delete(auth_settings.queue_name)
    await channel.queue_delete(f"{auth_settings.queue_name}.dead")
    await connection.close()


@pytest.fixture(scope="module")
async def pool(auth_settings):
    pool = await store.open_pool(auth_settings.database_dsn, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def ingest(auth_settings, pool, broker, db):
    """``await ingest(settings=None)`` -> a stub of a started ingest server (stopped afterwards).

    Jobs it accepted are deleted afterwards.
    """
    servers, channels = [], []

    async def start(settings=None):
        server, address = build_server(settings or auth_settings, pool, broker, port=0)
        await server.start()
        servers.append(server)
        channel = grpc.aio.insecure_channel(address)
        channels.append(channel)
        return jobs_pb2_grpc.JobsStub(channel)

    before = {r["id"] for r in db.execute("SELECT id FROM jobs").fetchall()}
    yield start
    for channel in channels:
        await channel.close()
    for server in servers:
        await server.stop(None)
    db.execute("DELETE FROM jobs WHERE NOT id = ANY(%s)", (list(before),))


def submission():
    return iter([properties(counts=True), *chunks(BELL)])


async def add_job(stub, metadata=()):
    return await stub.AddJob(submission(), metadata=tuple(metadata), timeout=20)


def jobs_of(db, owner):
    return db.execute("SELECT id, owner, status FROM jobs WHERE owner IS NOT DISTINCT FROM %s", (owner,)).fetchall()


async def test_a_key_in_either_metadata_submits_as_its_owner(ingest, make_key, db):
    stub = await ingest()
    key = make_key("alice")
    owner = make_key.owner(key)
    first = await add_job(stub, [("authorization", f"Bearer {key}")])
    second = await add_job(stub, [("x-api-key", key)])
    rows = {str(r["id"]): r for r in jobs_of(db, owner)}
    assert set(rows) == {first.id, second.id}
    assert all(r["status"] == "pending" for r in rows.values())


async def test_missing_wrong_malformed_or_revoked_key_is_unauthenticated(ingest, make_key, db):
    stub = await ingest()
    key = make_key("bob")
    revoked = make_key("bob")
    store.revoke_api_key_sync(db, key_id=auth.parse_key(revoked))
    wrong = f"qsk_{auth.parse_key(key)}_" + "W" * 43
    count = db.execute("SELECT count(*) AS n FROM jobs").fetchone()["n"]
    cases = [
        ([], "missing API key"),
        ([("authorization", f"Bearer {wrong}")], "invalid API key"),
        ([("x-api-key", wrong)], "invalid API key"),
        ([("authorization", "Bearer nope")], "malformed API key"),
        ([("authorization", f"Basic {key}")], "Bearer <key>"),
        ([("authorization", f"Bearer {revoked}")], "was revoked"),
    ]
    for metadata, message in cases:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await add_job(stub, metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
        assert message in refused.value.details(), metadata
    assert db.execute("SELECT count(*) AS n FROM jobs").fetchone()["n"] == count


async def test_health_check_needs_no_key(ingest):
    stub = await ingest()
    assert (await stub.HealthCheck(jobs_pb2.HealthCheckInput(), timeout=10)).status == "OK"


async def test_the_per_user_cap_on_pending_jobs(ingest, auth_settings, make_key, db):
    stub = await ingest(auth_settings.model_copy(update={"max_pending_per_user": 2}))
    alice, bob = make_key("alice"), make_key("bob")
    for _ in range(2):
        await add_job(stub, [("x-api-key", alice)])
    count = db.execute("SELECT count(*) AS n FROM jobs").fetchone()["n"]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await add_job(stub, [("x-api-key", alice)])
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "already has 2 pending jobs" in refused.value.details()
    assert "QSERVER_MAX_PENDING_PER_USER" in refused.value.details()
    assert db.execute("SELECT count(*) AS n FROM jobs").fetchone()["n"] == count  # nothing stored
    assert len(jobs_of(db, make_key.owner(alice))) == 2

    await add_job(stub, [("x-api-key", bob)])  # another user is not affected
    # a job that starts frees a place
    first = jobs_of(db, make_key.owner(alice))[0]["id"]
    db.execute("UPDATE jobs SET status = 'claimed' WHERE id = %s", (first,))  # taken, not started: still pending
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await add_job(stub, [("x-api-key", alice)])
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    db.execute("UPDATE jobs SET status = 'running' WHERE id = %s", (first,))
    await add_job(stub, [("x-api-key", alice)])
    assert len(jobs_of(db, make_key.owner(alice))) == 3


async def test_with_authentication_off_jobs_have_no_owner_and_no_cap(ingest, auth_settings, db):
    off = auth_settings.model_copy(update={"auth": "off", "max_pending_per_user": 1})
    stub = await ingest(off)
    ids = [(await add_job(stub)).id for _ in range(2)]
    rows = db.execute("SELECT owner FROM jobs WHERE id = ANY(%s::uuid[])", (ids,)).fetchall()
    assert [r["owner"] for r in rows] == [None, None]


def test_build_server_refuses_unsafe_settings(auth_settings, pool, broker):
    from core.errors import UnsafeSettings

    with pytest.raises(UnsafeSettings):
        build_server(auth_settings.model_copy(update={"auth_secret": None}), pool, broker, port=0)
    with pytest.raises(UnsafeSettings):
        build_server(auth_settings.model_copy(update={"auth": "off", "ingest_host": "0.0.0.0"}), pool, broker, port=0)
