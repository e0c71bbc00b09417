"""Idempotency keys (migration 0010): a submission sent again under its key finds the job stored
the first time instead of storing another."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from core.errors import IdempotencyConflict
from core.store.jobs import JOB_INSERT, UNDER_CAP, insert_job, job_parameters, too_many_pending

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


# The same in one statement (one round trip, autocommit) for a job stored by insert_job: the key
# is claimed only under the owner's cap (else the stored job, if any, answers); the job is
# stored only when the key is new (its reference to the job is checked at commit).
_INSERT_KEYED = f"""
WITH existing AS (
    SELECT job_id, digest FROM idempotency_keys WHERE owner = %(key_owner)s AND key = %(key)s
), key_row AS (
    INSERT INTO idempotency_keys (owner, key, digest, job_id)
    SELECT %(key_owner)s, %(key)s, %(key_digest)s, %(id)s WHERE {UNDER_CAP}
    ON CONFLICT (owner, key) DO UPDATE SET key = EXCLUDED.key
    RETURNING job_id, digest
), {JOB_INSERT.format(source="key_row WHERE key_row.job_id = %(id)s")}
SELECT coalesce((SELECT job_id FROM key_row), (SELECT job_id FROM existing)) AS job_id,
       coalesce((SELECT digest FROM key_row), (SELECT digest FROM existing)) AS digest
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
    if store_job is insert_job:
        max_pending = job.get("max_pending") if owner is not None else None
        parameters = job_parameters(job_id, job["spec"], owner, max_pending, job.get("answer_digest"))
        parameters.update(key_owner=owner or "", key=key, key_digest=digest)
        stored = await (await conn.execute(_INSERT_KEYED, parameters)).fetchone()
        if stored["job_id"] is None:
            raise too_many_pending(owner, max_pending)
        if stored["job_id"] == job_id:
            return job_id
        return _same_request(stored, key, digest)
    async with conn.transaction():
        cur = await conn.execute(_CLAIM_KEY, {"owner": owner or "", "key": key, "digest": digest, "job_id": job_id})
        stored = await cur.fetchone()
        if stored["job_id"] == job_id:
            await store_job(conn, job_id=job_id, owner=owner, **job)
            return job_id
    return _same_request(stored, key, digest)


def _same_request(stored: dict[str, Any], key: str, digest: bytes) -> uuid.UUID:
    """The stored job of ``key`` when it was made for the same request (``digest``).

    Raises:
        IdempotencyConflict: it was made for another request.
    """
    if bytes(stored["digest"]) != digest:
        raise IdempotencyConflict(
            f"idempotency key {key!r} was already used for a different request (job {stored['job_id']}):"
            " use a new key for a new job"
        )
    return stored["job_id"]
