"""Connections to Postgres: the async pool (ingest, dispatcher, api) and plain sync
connections (executors, the CLI). Rows come back as dicts (``dict_row``)."""

from __future__ import annotations

import json
import select
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import psycopg
import psycopg.sql
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from core.store.reads import RESULT_TYPES  # a JobChange's result lines come in this order (0014)

PAGE_SIZE = 20  # rows a page of every keyset-paged listing


_JSON = json.JSONDecoder()


def _json_loads(data: bytes) -> Any:
    """``json.loads`` of a json or jsonb value as Postgres sends it (UTF-8), without the encoding
    sniffing that json.loads does on bytes (several times the work for a small value such as a
    row's ``metadata``)."""
    return _JSON.decode(data.decode("utf-8", "surrogatepass"))


async def _configure(conn: psycopg.AsyncConnection) -> None:
    set_json_loads(_json_loads, conn)


async def open_pool(
    dsn: str, *, max_size: int = 8, min_size: int = 1, checkout_timeout_s: float = 10.0
) -> AsyncConnectionPool:
    """An open async pool whose connections return dict rows and are checked on checkout
    (:func:`check_idle`: one that broke, e.g. in a Postgres restart, is replaced before anyone
    uses it; tests/faults).

    Raises:
        psycopg_pool.PoolTimeout: the database was not reachable within 30 s.
    """
    pool = AsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        kwargs={"row_factory": dict_row, "autocommit": True},
        check=check_idle,
        configure=_configure,
        timeout=checkout_timeout_s,  # then PoolTimeout: the caller answers "unavailable"
        open=False,
    )
    await pool.open(wait=True, timeout=30)
    return pool


async def check_idle(conn: psycopg.AsyncConnection) -> None:
    """The pool's check of a connection it hands out: a round trip only when the server has
    said something since the connection went idle.

    An idle autocommit connection of the pool hears nothing from Postgres unless its server
    process is going away: a restart or a terminated backend first sends an error and closes
    the socket, which is then readable. Only then is the connection asked a round trip
    (``AsyncConnectionPool.check_connection``), which raises for a broken one so that the pool
    replaces it. A quiet socket is taken as it is, saving the round trip that checking every
    checkout cost (0.23 ms and 0.19 ms of CPU per checkout on the 2-core test machine).

    Raises:
        psycopg.OperationalError: the connection is broken (the pool discards it).
    """
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()  # not select.select: a busy process's descriptors pass 1023
    poller.register(conn.pgconn.socket, select.POLLIN)
    if poller.poll(0):
        await AsyncConnectionPool.check_connection(conn)


def connect_sync(dsn: str) -> psycopg.Connection:
    """A plain autocommit connection with dict rows (for the executor)."""
    return psycopg.connect(dsn, autocommit=True, row_factory=dict_row)


# The channels the schema's triggers notify on (migrations 0003, 0011, 0014); each payload is text.
JOB_STATUS_CHANNEL = "qserver_job_status"  # a change its user sees: JobChange.parse reads it
DELETED = "deleted"  # the status a JOB_STATUS_CHANNEL notification gives a job deleted before it ran
CANCEL_CHANNEL = "qserver_cancel"  # a running job was canceled: its id
PLUGINS_CHANNEL = "qserver_plugins"  # a plugin was admitted: its name
SUBMIT_CHANNEL = "qserver_submit"  # a job stored outside ingest (a rerun): its id, to be queued


async def listen(conn: psycopg.AsyncConnection, channel: str) -> None:
    """LISTEN on ``channel`` (one of the *_CHANNEL names) over an autocommit connection."""
    await conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))


@dataclass(frozen=True)
class JobChange:
    """One notification on JOB_STATUS_CHANNEL (migration 0011): job ``id`` became ``status`` (the
    status users see, or DELETED: deleted before it ran) at ``time``; ``owner`` is None for a
    job without one (authentication off).

    A job that became finished may come with its results (migration 0014: small ones, written by
    the statement that finished it): ``results`` is then the raw results row as
    ``store.get_results`` reads it, {id, job_id, counts, quasi_dist, expval}, each type its JSON
    text (or None), and ``results_bytes`` their stored size (compare with the reader's inline
    limit). Both None when the notification carried none: read the job."""

    id: uuid.UUID
    status: str
    time: datetime
    owner: str | None
    results: Mapping[str, Any] | None = None
    results_bytes: int | None = None

    @classmethod
    def parse(cls, payload: str) -> JobChange | None:
        """The change a payload ``"<id> <status> <epoch seconds> <owner>"`` names, with the
        results that follow it on five more lines (migration 0014; any other tail is ignored);
        None for one that does not read so (nothing of ours sends it)."""
        head, _, tail = payload.partition("\n")
        parts = head.split(" ", 3)
        if len(parts) != 4:
            return None
        try:
            change = cls(uuid.UUID(parts[0]), parts[1], datetime.fromtimestamp(float(parts[2]), UTC), parts[3] or None)
        except (ValueError, OverflowError):
            return None
        lines = tail.split("\n") if tail else []
        if len(lines) != 2 + len(RESULT_TYPES) or not lines[0].isdecimal() or not lines[1]:
            return change
        stored, results_id, *texts = lines
        results = {
            "id": results_id,
            "job_id": change.id,
            **{name: text or None for name, text in zip(RESULT_TYPES, texts, strict=True)},
        }
        return replace(change, results=results, results_bytes=int(stored))
