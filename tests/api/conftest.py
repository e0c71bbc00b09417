"""Fixtures for the api tests: a database of our own, the app over it, and a job factory."""

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
from core import store
from core.domain import JobSpec, ResultType
from core.settings import Settings
from tests.conftest import fresh_database

SERVER = "postgresql://postgres@127.0.0.1:5432"
DB_NAME = "qserver_test_api"
DSN = f"{SERVER}/{DB_NAME}"
BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'

MakeJob = Callable[..., Awaitable[uuid.UUID]]


@pytest.fixture(scope="session")
def dsn() -> Iterator[str]:
    """A fresh database at the head schema revision, dropped at the end of the session."""
    yield from fresh_database(DSN)


@pytest.fixture(scope="session")
def settings(dsn: str) -> Settings:
    """Settings pointing at the test database."""
    return Settings(database_url=dsn, db_pool_size=4)


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Any]:
    """The api app with its lifespan entered (schema check, pool open)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process (ASGI)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
async def make_job(dsn: str) -> AsyncIterator[MakeJob]:
    """Insert jobs through core.store and drive them to a status; delete them afterwards.

    ``await make_job(status="finished", results={...})`` returns the new job's id.
    """
    created: list[uuid.UUID] = []
    aconn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row)
    sconn = store.connect_sync(dsn)

    async def make(
        *,
        status: str = "pending",
        result_types: tuple[ResultType, ...] = (ResultType.COUNTS,),
        metadata: dict[str, Any] | None = None,
        results: dict[str, Any] | None = None,
        error: str = "boom",
        node_id: str = "node-1",
        qasm: str = BELL,
        backend: str = "aer",
    ) -> uuid.UUID:
        job_id = uuid.uuid4()
        spec = JobSpec(
            backend=backend,
            result_types=result_types,
            metadata={"shots": 1000} if metadata is None else metadata,
            qasm=qasm,
        )
        await store.insert_job(aconn, job_id=job_id, spec=spec)
        created.append(job_id)
        if status == "pending":
            return job_id
        assert await store.claim_jobs(aconn, job_ids=[job_id]) != []
        if status == "claimed":  # taken by the dispatcher, not started: pending to its user
            return job_id
        assert await asyncio.to_thread(store.mark_started_sync, sconn, job_id=job_id, node_id=node_id)
        if status == "finished":
            done = await asyncio.to_thread(
                store.finish_job_sync, sconn, job_id=job_id, results=results or {}, node_id=node_id
            )
            assert done
        elif status == "failed":
            done = await asyncio.to_thread(store.fail_job_sync, sconn, job_id=job_id, error=error, node_id=node_id)
            assert done
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


@pytest.fixture
def use_settings(app: Any, settings: Settings) -> Iterator[Callable[..., Settings]]:
    """Run the app with some settings changed: ``use_settings(plugin_index_url=...)``.

    Routes read ``app.state.settings`` per request; the original comes back afterwards.
    """

    def use(**changes: Any) -> Settings:
        app.state.settings = settings.model_copy(update=changes)
        return app.state.settings

    try:
        yield use
    finally:
        app.state.settings = settings


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection]:
    """A sync autocommit connection with dict rows, for setting up and checking rows."""
    conn = store.connect_sync(dsn)
    try:
        yield conn
    finally:
        conn.close()
