"""A sweep's bindings and its results per chunk of bindings (table ``sweep_items``, migration 0009).

The executor reads the bindings (:func:`job_bindings_sync`) and writes each chunk of results as
it is computed (:func:`save_items_sync`, only while the job runs); the api pages the items in
flat order (:func:`read_items_raw`), each item as the JSON text Postgres holds, never parsed.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from core.domain import JobStatus
from core.store.jobs import status_in
from core.store.reads import owned_by


def job_bindings_sync(conn: psycopg.Connection, *, job_id: uuid.UUID) -> bytes | None:
    """The sweep's bindings as sent (an NPY file), or None (not a sweep, or no such job)."""
    row = conn.execute("SELECT bindings FROM jobs WHERE id = %s", (job_id,)).fetchone()
    return None if row is None or row["bindings"] is None else bytes(row["bindings"])


def clear_items_sync(conn: psycopg.Connection, *, job_id: uuid.UUID) -> int:
    """Remove the items an earlier attempt of the sweep stored (a new attempt may draw another
    seed: its items must all come from one run). Returns how many rows went."""
    with conn.transaction():
        return conn.execute("DELETE FROM sweep_items WHERE job_id = %s", (job_id,)).rowcount


_SAVE_ITEMS = f"""
INSERT INTO sweep_items (job_id, first, count, items, node_id)
SELECT id, %(first)s, %(count)s, %(items)s, %(node)s FROM jobs WHERE id = %(id)s AND {status_in([JobStatus.RUNNING])}
ON CONFLICT (job_id, first) DO UPDATE SET count = excluded.count, items = excluded.items, node_id = excluded.node_id
"""


def save_items_sync(
    conn: psycopg.Connection, *, job_id: uuid.UUID, first: int, items: list[dict[str, Any]], node_id: str | None
) -> bool:
    """Store one chunk of a running sweep's results: ``items`` (one JSON object per binding)
    for the bindings from ``first`` on, computed on Ray node ``node_id``; an earlier run's
    chunk at ``first`` is replaced.

    Returns False (nothing written) when the job is no longer running (canceled, failed,
    deleted): the sweep should stop.
    """
    with conn.transaction():
        cur = conn.execute(
            _SAVE_ITEMS, {"id": job_id, "first": first, "count": len(items), "items": Jsonb(items), "node": node_id}
        )
    return cur.rowcount == 1


async def read_items_raw(
    conn: psycopg.AsyncConnection, *, job_id: uuid.UUID, owner: str | None, offset: int, limit: int
) -> tuple[dict[str, Any], list[tuple[int, str]]] | None:
    """A sweep's items ``offset`` to ``offset + limit`` (flat C order of its shape) that have
    results so far, as (index, the item's JSON text); with the job's ``metadata.sweep``.

    Returns None when the job does not exist (with ``owner``: is another user's) and
    ({}, []) when it is not a sweep.
    """
    mine, param = owned_by("j.owner", owner)
    cur = await conn.execute(f"SELECT j.metadata->'sweep' AS sweep FROM jobs j WHERE j.id = %s{mine}", (job_id, *param))
    row = await cur.fetchone()
    if row is None:
        return None
    if not row["sweep"]:
        return {}, []
    cur = await conn.execute(
        "SELECT s.first + e.n - 1 AS index, e.item::text AS item"
        " FROM sweep_items s, jsonb_array_elements(s.items) WITH ORDINALITY AS e(item, n)"
        " WHERE s.job_id = %(id)s AND s.first < %(end)s AND s.first + s.count > %(offset)s"
        " AND s.first + e.n - 1 >= %(offset)s AND s.first + e.n - 1 < %(end)s ORDER BY 1",
        {"id": job_id, "offset": offset, "end": offset + limit},
    )
    return row["sweep"], [(item["index"], item["item"]) for item in await cur.fetchall()]
