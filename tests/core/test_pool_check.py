"""core.store.open_pool's checkout check against real Postgres: a connection whose server process
went away is replaced before anyone uses it, and a quiet one is handed out without a round trip."""

from __future__ import annotations

import asyncio

import psycopg
from psycopg_pool import AsyncConnectionPool

from core import store

DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def test_a_terminated_connection_is_replaced_before_use():
    async def scenario() -> tuple[int, int, int]:
        pool = await store.open_pool(DSN, max_size=1)
        try:
            async with pool.connection() as conn:
                first = (await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone())["pid"]
            async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as admin:
                await admin.execute("SELECT pg_terminate_backend(%s)", (first,))
            await asyncio.sleep(0.2)  # the server's goodbye reaches the idle socket
            async with pool.connection() as conn:  # the only connection: it must be a new one
                second = (await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone())["pid"]
                answer = (await (await conn.execute("SELECT 41 + 1 AS n")).fetchone())["n"]
            return first, second, answer
        finally:
            await pool.close()

    first, second, answer = asyncio.run(scenario())
    assert second != first
    assert answer == 42


def test_a_quiet_connection_costs_no_round_trip(monkeypatch):
    checks: list[object] = []
    real = AsyncConnectionPool.check_connection

    async def counted(conn):
        checks.append(conn)
        await real(conn)

    monkeypatch.setattr(AsyncConnectionPool, "check_connection", staticmethod(counted))

    async def scenario() -> list[int]:
        pool = await store.open_pool(DSN, max_size=1)
        try:
            pids = []
            for _ in range(5):
                async with pool.connection() as conn:
                    pids.append((await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone())["pid"])
            return pids
        finally:
            await pool.close()

    pids = asyncio.run(scenario())
    assert len(set(pids)) == 1  # the same connection each time, never replaced
    assert checks == []  # and never asked a round trip: its socket stayed quiet
