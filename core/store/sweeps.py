"""A sweep's bindings and its results per chunk of bindings (table ``sweep_items``, migration 0009);
a job run again from its receipt.

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
from core.errors import Conflict, JobNotFound, TooManyPending
from core.store.connect import SUBMIT_CHANNEL
from core.store.jobs import status_in
from core.store.reads import get_job_status, owned_by


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


_RERUN = f"""
WITH source AS (
    SELECT j.target_simulator, j.qasm, j.bindings, j.owner,
           j.metadata - 'rerun_of' || jsonb_build_object('seed', (r.receipt->>'seed')::bigint, 'rerun_of', j.id)
               AS metadata
      FROM jobs j JOIN results r ON r.job_id = j.id
     WHERE j.id = %(id)s AND r.receipt ? 'seed'{{mine}}
), job AS (
    INSERT INTO jobs (id, target_simulator, qasm, bindings, metadata, owner)
    SELECT %(new)s, s.target_simulator, s.qasm, s.bindings, s.metadata, s.owner FROM source s
     WHERE %(max)s::int IS NULL OR s.owner IS NULL
        OR (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE owner = s.owner
                                  AND {status_in([JobStatus.PENDING, JobStatus.CLAIMED])} LIMIT %(max)s) AS p) < %(max)s
    RETURNING id
), types AS (
    INSERT INTO result_types (job_id, counts, quasi_dist, expval)
    SELECT job.id, rt.counts, rt.quasi_dist, rt.expval FROM job, result_types rt WHERE rt.job_id = %(id)s
)
SELECT (SELECT count(*) FROM source) AS found, (SELECT count(*) FROM job) AS made,
       CASE WHEN EXISTS (SELECT 1 FROM job) THEN pg_notify('{SUBMIT_CHANNEL}', %(new)s::text) END AS notified
"""


async def rerun_job(
    conn: psycopg.AsyncConnection,
    *,
    job_id: uuid.UUID,
    source: uuid.UUID,
    owner: str | None,
    max_pending: int | None,
    owner_filter: str | None = None,
) -> None:
    """Store job ``job_id``: job ``source`` again, from its receipt (same program, bindings,
    backend, result types and metadata, the seed it ran with; metadata ``rerun_of`` names the
    job), pending, and tell the dispatcher (NOTIFY on SUBMIT_CHANNEL) to queue it. ``owner``
    (the caller, None with authentication off) and ``owner_filter`` (theirs only; None: an
    admin, any job) as the other job routes; the new job keeps the source's owner.

    Raises:
        JobNotFound: no such job (with ``owner``: of theirs).
        Conflict: the job has no receipt with a seed (it never finished on a simulator that
            keeps one: a third-party plugin's job, or one not finished).
        TooManyPending: its owner already has ``max_pending`` pending jobs.
    """
    query = _RERUN.replace("{mine}", "" if owner_filter is None else " AND j.owner = %(owner)s")
    cur = await conn.execute(query, {"id": source, "new": job_id, "max": max_pending, "owner": owner_filter})
    row = await cur.fetchone()
    if row["found"] == 0:
        status = await get_job_status(conn, job_id=source, owner=owner_filter)
        if status is None:
            raise JobNotFound(f"job {source} not found")
        raise Conflict(
            f"job {source} is {JobStatus(status['status']).visible().value} and has no receipt with a seed: "
            "only a finished job of the built-in aer backends can be run again from its receipt"
        )
    if row["made"] == 0:
        raise TooManyPending(f"user {owner} already has {max_pending} pending jobs, the most a user may have waiting")
