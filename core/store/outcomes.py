"""What an execution ends as, written: finished with results, failed, a batch's outcomes in one
statement; and the recovery of jobs whose worker vanished. Every status change is one guarded
UPDATE, built with core.store.jobs.Move from core.domain.TRANSITIONS."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from core.domain import JobStatus
from core.store.jobs import ACTIVE, Move, status_in

CLAIMED, RUNNING = JobStatus.CLAIMED, JobStatus.RUNNING
# the worker's writes: only a job it started (mark_started_sync) has an outcome to write ...
FINISH = Move((RUNNING,), JobStatus.FINISHED)
FAIL = Move((RUNNING,), JobStatus.FAILED)
# ... except on a warm executor, whose job may finish still claimed: one that finished within
# settings.batch_running_after_s was never marked started (nor shown running); its start_time
# is set from its run time then (seconds, the parameter)
QUICK_FINISH = Move((CLAIMED, RUNNING), JobStatus.FINISHED)
QUICK_FAIL = Move((CLAIMED, RUNNING), JobStatus.FAILED)
_STARTED = "start_time = coalesce(start_time, now() - make_interval(secs => {}))"

# the dispatcher's: a claimed job can fail before it starts (no node for it, its runtime_env,
# its timeout in Ray's queue, lost on its last attempt)
STOP = Move(ACTIVE, JobStatus.FAILED)
# a job whose Ray work is gone: pending again (a claimed one, never started, always, its
# attempt not counted), or failed after its last attempt
RECOVER = Move(ACTIVE, JobStatus.PENDING)
GIVE_UP = Move((RUNNING,), JobStatus.FAILED)

_FINISH, _QUICK_FINISH = (
    f"""
UPDATE jobs SET {move.set}, finish_time = now(), node_id = %s, error = NULL, {_STARTED.format("%s")}
 WHERE id = %s AND {move.where()}
"""
    for move in (FINISH, QUICK_FINISH)
)
_INSERT_RESULTS = """
INSERT INTO results (job_id, counts, quasi_dist, expval, receipt) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (job_id) DO NOTHING
"""
_FAIL, _QUICK_FAIL = (
    f"""
UPDATE jobs SET {move.set}, finish_time = now(), error = %s,
       node_id = coalesce(%s, node_id), {_STARTED.format("%s")}
 WHERE id = %s AND {move.where()}
"""
    for move in (FAIL, QUICK_FAIL)
)
_STOP = f"""
UPDATE jobs SET {STOP.set}, finish_time = now(), error = %s,
       node_id = coalesce(%s, node_id)
 WHERE id = %s AND {STOP.where()}
"""


def finish_job_sync(
    conn: psycopg.Connection,
    *,
    job_id: uuid.UUID,
    results: dict[str, Any],
    node_id: str | None,
    run_s: float | None = None,
) -> bool:
    """Record a job's results and mark it finished, if it is still running; with ``run_s`` (its
    run time, seconds: a warm executor's job), also if it is still claimed (never marked
    started), its ``start_time`` that long before now.

    ``results`` maps result type names to JSON-ready values, and ``receipt`` to the run's
    receipt (seed, method, versions: cluster/executor.py). Returns False (and
    writes nothing) when the job was canceled, failed or deleted meanwhile.
    """
    with conn.transaction():
        cur = conn.execute(_FINISH if run_s is None else _QUICK_FINISH, (node_id, run_s or 0.0, job_id))
        if cur.rowcount != 1:
            return False
        conn.execute(
            _INSERT_RESULTS,
            (
                job_id,
                _jsonb_or_none(results.get("counts")),
                _jsonb_or_none(results.get("quasi_dist")),
                _jsonb_or_none(results.get("expval")),
                _jsonb_or_none(results.get("receipt")),
            ),
        )
    return True


_RECORD_MANY = f"""
WITH done_input AS (
    SELECT * FROM unnest(
        %(ids)s::uuid[], %(counts)s::jsonb[], %(quasi)s::jsonb[], %(expval)s::jsonb[], %(receipt)s::jsonb[],
        %(run_s)s::float8[]
    ) AS t(id, counts, quasi_dist, expval, receipt, run_s)
), done AS (
    UPDATE jobs j SET {QUICK_FINISH.set}, finish_time = now(), node_id = %(node)s, error = NULL,
           {_STARTED.format("i.run_s")}
      FROM done_input i
     WHERE j.id = i.id AND {QUICK_FINISH.where("j")}
    RETURNING j.id
), saved AS (
    INSERT INTO results (job_id, counts, quasi_dist, expval, receipt)
    SELECT i.id, i.counts, i.quasi_dist, i.expval, i.receipt FROM done_input i JOIN done d ON d.id = i.id
    ON CONFLICT (job_id) DO NOTHING
), failed AS (
    UPDATE jobs j SET {QUICK_FAIL.set}, finish_time = now(), error = t.error,
           node_id = coalesce(%(node)s, j.node_id), {_STARTED.format("t.run_s")}
      FROM unnest(%(failed_ids)s::uuid[], %(errors)s::text[], %(failed_run_s)s::float8[]) AS t(id, error, run_s)
     WHERE j.id = t.id AND {QUICK_FAIL.where("j")}
    RETURNING j.id
)
SELECT id FROM done UNION ALL SELECT id FROM failed
"""


def record_outcomes_sync(
    conn: psycopg.Connection,
    *,
    finished: list[tuple[uuid.UUID, dict[str, Any]]],
    failed: list[tuple[uuid.UUID, str]],
    node_id: str | None,
    run_s: Mapping[uuid.UUID, float] | None = None,
) -> set[uuid.UUID]:
    """Record many jobs' outcomes in one statement (one transaction, one round trip).

    Args:
        finished: (job id, {result type: JSON-ready value}) per job that finished.
        failed: (job id, error text) per job that failed.
        node_id: the node that ran them.
        run_s: {job id: run time in seconds}: the ``start_time`` of a job still claimed (a warm
            executor's job never marked started) is that long before now; missing: 0.

    Returns:
        The ids written; a job missing from it was no longer running or claimed (canceled or
        deleted meanwhile) and nothing of it was written.

    Raises:
        psycopg.DataError: Postgres refused a result value (nothing is written then).
    """
    run_s = run_s or {}
    cur = conn.execute(
        _RECORD_MANY,
        {
            "ids": [job_id for job_id, _ in finished],
            "counts": [_jsonb_or_none(results.get("counts")) for _, results in finished],
            "quasi": [_jsonb_or_none(results.get("quasi_dist")) for _, results in finished],
            "expval": [_jsonb_or_none(results.get("expval")) for _, results in finished],
            "receipt": [_jsonb_or_none(results.get("receipt")) for _, results in finished],
            "run_s": [run_s.get(job_id, 0.0) for job_id, _ in finished],
            "failed_ids": [job_id for job_id, _ in failed],
            "errors": [error for _, error in failed],
            "failed_run_s": [run_s.get(job_id, 0.0) for job_id, _ in failed],
            "node": node_id,
        },
    )
    return {row["id"] for row in cur.fetchall()}


def fail_job_sync(
    conn: psycopg.Connection, *, job_id: uuid.UUID, error: str, node_id: str | None, run_s: float | None = None
) -> bool:
    """Mark a running job failed with ``error`` (with ``run_s``, a claimed one too, as
    :func:`finish_job_sync`). False if it was no longer running (or claimed)."""
    cur = conn.execute(_FAIL if run_s is None else _QUICK_FAIL, (error, node_id, run_s or 0.0, job_id))
    return cur.rowcount == 1


async def fail_job(
    conn: psycopg.AsyncConnection,
    *,
    job_id: uuid.UUID,
    error: str,
    node_id: str | None = None,
) -> bool:
    """Mark a claimed or running job failed with ``error`` (the dispatcher's verdict: it may
    never have started). False if it was neither."""
    cur = await conn.execute(_STOP, (error, node_id, job_id))
    return cur.rowcount == 1


def _jsonb_or_none(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


_RECOVER = f"""
WITH failed AS (
    UPDATE jobs SET {GIVE_UP.set}, finish_time = now(),
           error = format('worker lost: the job was running when the dispatcher stopped, '
                          'and it has had %%s attempts', attempts)
     WHERE {GIVE_UP.where()} AND attempts >= %(max_attempts)s AND id = ANY(%(ids)s)
    RETURNING id
), requeued AS (
    UPDATE jobs SET {RECOVER.set}, start_time = NULL, node_id = NULL, claimed_at = NULL,
           attempts = attempts - ({status_in([CLAIMED])})::int
     WHERE {RECOVER.where()} AND (attempts < %(max_attempts)s OR {status_in([CLAIMED])})
       AND id = ANY(%(ids)s)
    RETURNING id
)
SELECT 'failed' AS outcome, id FROM failed UNION ALL SELECT 'requeued', id FROM requeued
"""


async def running_job_ids(conn: psycopg.AsyncConnection) -> list[uuid.UUID]:
    """Ids of all jobs a dispatcher holds: claimed or running."""
    cur = await conn.execute(f"SELECT id FROM jobs WHERE {status_in(ACTIVE)}")
    return [row["id"] for row in await cur.fetchall()]


async def recover_orphans(
    conn: psycopg.AsyncConnection, *, job_ids: list[uuid.UUID], max_attempts: int
) -> dict[str, list[uuid.UUID]]:
    """Claimed or running jobs among ``job_ids`` whose Ray work is gone (their worker, executor,
    node or owner died).

    A running one goes back to pending (to be published again) or, after ``max_attempts`` runs,
    ends failed with "worker lost"; a claimed one never started: it goes back to pending, its
    claim not counted as an attempt. Assumes one dispatcher per database.

    Returns:
        {"requeued": [job ids], "failed": [job ids]}
    """
    cur = await conn.execute(_RECOVER, {"max_attempts": max_attempts, "ids": list(job_ids)})
    outcome: dict[str, list[uuid.UUID]] = {"requeued": [], "failed": []}
    for row in await cur.fetchall():
        outcome[row["outcome"]].append(row["id"])
    return outcome
