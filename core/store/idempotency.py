"""Idempotency keys (migration 0010): a submission sent again under its key finds the job stored
the first time instead of storing another."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from core.errors import IdempotencyConflict
from core.store.jobs import insert_job

# The key's row, new or the one stored before (then locked until the transaction ends, so its job
# cannot be deleted between this statement and the answer; a concurrent submission under the same
# key waits here until this one commits or rolls back). The no-op update only makes RETURNING
# give the stored row.
_CLAIM_KEY = """
INSERT INTO idempotency_keys (owner, key, digest, job_id)
VALUES (%(owner)s, %(key)s, %(digest)s, %(job_id)s)
ON CONFLICT (owner, key) DO UPDATE SET key = EXCLUDED.key
RETURNING job_id, digest
"""


async def insert_job_once(
    conn: psycopg.AsyncConnection,
    *,
    key: str | None,
    digest: bytes | None,
    job_id: uuid.UUID,
    owner: str | None,
    **job: Any,
) -> uuid.UUID:
    """Store a new job as :func:`insert_job` does, unless ``owner`` already submitted one under
    ``key``; returns the id of the job that answers the submission.

    The key and the job are stored in one transaction, the key first: a submission sent again
    (or concurrently) under its key finds the stored job, and gets it whatever the per-user cap
    on pending jobs says; a refused or failed job leaves the key free. ``key`` None stores the
    job with no key. ``digest`` is core.idempotency.request_digest of the request; ``owner`` is
    None with authentication off (its keys are stored under ''); ``job`` holds insert_job's other
    arguments (``spec``, ``max_pending``, ...), passed on as they are, or ``store_job``: another
    function that stores the job (called as insert_job is, e.g. core.store.rerun_job).

    Returns:
        ``job_id`` when this call stored the job; the earlier job's id when the key was used
        before for the same request (nothing stored: the caller must not queue it again).

    Raises:
        IdempotencyConflict: the key was used before for a different request; nothing stored.
        TooManyPending: as insert_job; nothing stored, the key stays free.
    """
    store_job = job.pop("store_job", insert_job)
    if key is None:
        await store_job(conn, job_id=job_id, owner=owner, **job)
        return job_id
    if digest is None:
        raise ValueError("a job stored under an idempotency key needs its request's digest")
    async with conn.transaction():
        cur = await conn.execute(_CLAIM_KEY, {"owner": owner or "", "key": key, "digest": digest, "job_id": job_id})
        stored = await cur.fetchone()
        if stored["job_id"] == job_id:
            await store_job(conn, job_id=job_id, owner=owner, **job)
            return job_id
    if bytes(stored["digest"]) != digest:
        raise IdempotencyConflict(
            f"idempotency key {key!r} was already used for a different request (job {stored['job_id']}):"
            " use a new key for a new job"
        )
    return stored["job_id"]
