"""A job answered from the cache: an earlier finished job with the same digest (core/cache.py)."""

from __future__ import annotations

import uuid

import psycopg

from core.domain import JobSpec, JobStatus
from core.store.jobs import Move

FROM_CACHE = Move((JobStatus.PENDING,), JobStatus.FINISHED)

_HIT = """
SELECT j.id FROM jobs j JOIN results r ON r.job_id = j.id
 WHERE j.digest = %(digest)s AND j.status = 'finished' AND j.owner IS NOT DISTINCT FROM %(owner)s
   AND r.receipt IS NOT NULL AND (%(seeded)s OR coalesce((r.receipt->>'exact')::boolean, false))
 ORDER BY j.finish_time DESC LIMIT 1
"""
_COPY = f"""
WITH results_copied AS (
    INSERT INTO results (job_id, counts, quasi_dist, expval, receipt)
    SELECT %(new)s, counts, quasi_dist, expval, receipt || jsonb_build_object('cached_from', %(hit)s::text)
      FROM results WHERE job_id = %(hit)s
), items_copied AS (
    INSERT INTO sweep_items (job_id, first, count, items, node_id)
    SELECT %(new)s, first, count, items, node_id FROM sweep_items WHERE job_id = %(hit)s
)
UPDATE jobs SET {FROM_CACHE.set}, start_time = now(), finish_time = now(), waiting_for = NULL
 WHERE id = %(new)s AND {FROM_CACHE.where()}
"""


async def cached_source(
    conn: psycopg.AsyncConnection, *, digest: bytes, spec: JobSpec, owner: str | None
) -> uuid.UUID | None:
    """The latest finished job of ``owner`` with ``digest`` whose answer is determined (``spec``
    is seeded, or that job's receipt says its expectation values were exact), or None."""
    cur = await conn.execute(_HIT, {"digest": digest, "owner": owner, "seeded": "seed" in spec.metadata})
    row = await cur.fetchone()
    return None if row is None else row["id"]


async def finish_from_cache(conn: psycopg.AsyncConnection, *, job_id: uuid.UUID, source: uuid.UUID) -> bool:
    """Pending job ``job_id`` finished with the results, receipt (plus ``cached_from``) and
    sweep items of job ``source``. False (nothing changed) if it is not pending."""
    cur = await conn.execute(_COPY, {"new": job_id, "hit": source})
    return cur.rowcount == 1
