"""Fixtures for the authentication tests: a database of our own, the api with auth on, keys, jobs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from api.app import create_app
from core import auth, store
from core.domain import JobSpec, ResultType
from core.settings import Settings
from tests.conftest import fresh_database

SERVER = "postgresql://postgres@127.0.0.1:5432"
DB_NAME = "qserver_test_auth"
DSN = f"{SERVER}/{DB_NAME}"
SECRET = "test-server-secret-" + "s" * 40
BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'

MakeKey = Callable[..., str]
MakeJob = Callable[..., Awaitable[uuid.UUID]]


@pytest.fixture(scope="session")
def auth_dsn() -> Iterator[str]:
    """A fresh database at the head schema revision, dropped at the end of the session."""
    yield from fresh_database(DSN)


@pytest.fixture(scope="session")
def auth_settings(auth_dsn: str) -> Settings:
    """Authentication on, keys looked up on every request (no cache: revocation is immediate)."""
    return Settings(
        database_url=auth_dsn,
        db_pool_size=4,
        auth="on",
        auth_secret=SECRET,
        auth_cache_ttl_s=0,
        queue_name="qserver.test.auth.jobs",
    )


@pytest.fixture(scope="session")
async def auth_app(auth_settings: Settings) -> AsyncIterator[Any]:
    """The api app with authentication on, its lifespan entered."""
    application = create_app(auth_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def api(auth_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the auth-on app in-process (ASGI)."""
    transport = httpx.ASGITransport(app=auth_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
def db(auth_dsn: str) -> Iterator[psycopg.Connection]:
    """A sync autocommit connection with dict rows."""
    conn = store.connect_sync(auth_dsn)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def make_key(db: psycopg.Connection) -> Iterator[MakeKey]:
    """``make_key("alice", role="user")`` -> a new key for a unique user name based on "alice";
    ``make_key.owner(key)`` is the name it was made for. Keys are deleted afterwards."""
    made: dict[str, str] = {}

    def make(name: str = "user", *, role: str = "user", exact: bool = False) -> str:
        owner = name if exact else f"{name}-{uuid.uuid4().hex[:8]}"
        key_id, key = auth.create_key_sync(db, secret=SECRET, owner=owner, role=role)
        made[key] = key_id
        return key

    def owner(key: str) -> str:
        return db.execute("SELECT owner FROM api_keys WHERE key_id = %s", (auth.parse_key(key),)).fetchone()["owner"]

    make.owner = owner  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        db.execute("DELETE FROM api_keys WHERE key_id = ANY(%s)", (list(made.values()),))


@pytest.fixture
async def make_job(auth_dsn: str) -> AsyncIterator[MakeJob]:
    """``await make_job(owner="alice", status="finished", results={...})`` -> the job id.

    Jobs and their history rows are deleted afterwards.
    """
    created: list[uuid.UUID] = []
    aconn = await psycopg.AsyncConnection.connect(auth_dsn, autocommit=True, row_factory=dict_row)
    sconn = store.connect_sync(auth_dsn)

    async def make(*, owner: str | None, status: str = "pending", results: dict[str, Any] | None = None) -> uuid.UUID:
        job_id = uuid.uuid4()
        spec = JobSpec(backend="aer", result_types=(ResultType.COUNTS,), metadata={}, qasm=BELL)
        await store.insert_job(aconn, job_id=job_id, spec=spec, owner=owner)
        created.append(job_id)
        if status == "pending":
            return job_id
        assert await store.claim_jobs(aconn, job_ids=[job_id]) != []
        assert await asyncio.to_thread(store.mark_started_sync, sconn, job_id=job_id, node_id="node-1")
        if status == "finished":
            assert await asyncio.to_thread(
                store.finish_job_sync,
                sconn,
                job_id=job_id,
                results=results or {"counts": {"11": 7}},
                node_id="node-1",
            )
        elif status == "failed":
            assert await asyncio.to_thread(store.fail_job_sync, sconn, job_id=job_id, error="boom", node_id="node-1")
        else:
            assert status == "running", status
        return job_id

    try:
        yield make
    finally:
        if created:
            await aconn.execute("DELETE FROM jobs WHERE id = ANY(%s)", (created,))
            await aconn.execute("DELETE FROM history WHERE job_id = ANY(%s)", (created,))
        await aconn.close()
        sconn.close()


def bearer(key: str) -> dict[str, str]:
    """The Authorization header for ``key``."""
    return {"Authorization": f"Bearer {key}"}
