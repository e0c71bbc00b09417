"""A job's life before its outcome: submission, claiming, parking, requeueing, start and heartbeat,
cancel, delete, retention. Every status change is one guarded UPDATE, built with :class:`Move`
from core.domain.TRANSITIONS.

The dispatcher's claim makes a job ``claimed`` (internal; users see ``pending``); its worker makes
it ``running``, with ``start_time`` and ``node_id``, when the simulation starts (:func:`mark_started_sync`),
or hands it back ``claimed`` when it did not simulate it (:func:`hand_back_sync`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from core.domain import TERMINAL_STATUSES, JobSpec, JobStatus, ResultType, can_move
from core.errors import Conflict, JobNotFound, TooManyPending
from core.store.connect import SUBMIT_CHANNEL
from core.store.reads import JOB_COLUMNS, get_job_status, job_json, owned_by

PENDING, CLAIMED, RUNNING, CANCELED = JobStatus.PENDING, JobStatus.CLAIMED, JobStatus.RUNNING, JobStatus.CANCELED
# the jobs the dispatcher holds: claimed (not started yet) or running
ACTIVE = (CLAIMED, RUNNING)


def status_in(statuses: Iterable[JobStatus], alias: str = "") -> str:
    """The SQL condition "status is one of ``statuses``": ``status = 'running'`` or
    ``status IN ('pending', 'running')`` (``alias`` qualifies the column: ``j.status``)."""
    wanted = set(statuses)
    names = [f"'{status.value}'" for status in JobStatus if status in wanted]
    if not names:
        raise ValueError("status_in needs at least one status")
    column = f"{alias}.status" if alias else "status"
    return f"{column} = {names[0]}" if len(names) == 1 else f"{column} IN ({', '.join(names)})"


@dataclass(frozen=True)
class Move:
    """One guarded status change, from any of ``sources`` to ``target``, as SQL: :attr:`set`
    goes in the UPDATE's SET list, :meth:`where` in its WHERE clause. Every status change of
    the store is made of one; they are built at import.

    Raises:
        ValueError: (at construction) ``sources`` is empty, or core.domain.TRANSITIONS does
            not allow one of them to move to ``target``.
    """

    sources: tuple[JobStatus, ...]
    target: JobStatus

    def __post_init__(self) -> None:
        refused = [source.value for source in self.sources if not can_move(source, self.target)]
        if refused or not self.sources:
            raise ValueError(f"no status change {refused or '[]'} -> {self.target.value} in core.domain.TRANSITIONS")

    @property
    def set(self) -> str:
        """``status = 'TARGET'``, for the SET list."""
        return f"status = '{self.target.value}'"

    def where(self, alias: str = "") -> str:
        """The guard: the job's status is one of the sources."""
        return status_in(self.sources, alias)


CLAIM = Move((PENDING,), CLAIMED)
START = Move((CLAIMED,), RUNNING)
HAND_BACK = Move((RUNNING,), CLAIMED)
PARK = Move(ACTIVE, PENDING)
REQUEUE = Move(ACTIVE, PENDING)
CANCEL = Move((PENDING, *ACTIVE), CANCELED)


async def insert_job(
    conn: psycopg.AsyncConnection,
    *,
    job_id: uuid.UUID,
    spec: JobSpec,
    owner: str | None = None,
    max_pending: int | None = None,
    answer_digest: bytes | None = None,
) -> None:
    """Store a new pending job, its result types and QASM text in one statement;
    ``answer_digest`` (core/cache.py) lets a later job with the same answer find it.

    ``owner`` is the user who submitted it (None with authentication off). With
    ``max_pending``, the INSERT itself checks that ``owner`` has fewer pending jobs
    (one statement; concurrent submissions of one user may overshoot by their number).

    Raises:
        TooManyPending: ``owner`` already has ``max_pending`` pending jobs; nothing stored.
    """
    capped = owner is not None and max_pending is not None
    cur = await conn.execute(
        _INSERT_CAPPED if capped else _INSERT, job_parameters(job_id, spec, owner, max_pending, answer_digest)
    )
    if cur.rowcount != 1:
        raise too_many_pending(owner, max_pending)


def job_parameters(
    job_id: uuid.UUID, spec: JobSpec, owner: str | None, max_pending: int | None, answer_digest: bytes | None
) -> dict[str, Any]:
    """The named parameters of the statements that store a job (JOB_INSERT, UNDER_CAP)."""
    return {
        "id": job_id,
        "backend": spec.backend,
        "qasm": spec.qasm,
        "bindings": spec.bindings,
        "digest": answer_digest,
        "metadata": Jsonb(spec.metadata),
        "owner": owner,
        "max": max_pending,
        "counts": ResultType.COUNTS in spec.result_types,
        "quasi_dist": ResultType.QUASI_DIST in spec.result_types,
        "expval": ResultType.EXPVAL in spec.result_types,
    }


def too_many_pending(owner: str | None, max_pending: int | None) -> TooManyPending:
    """The refusal of a job over its owner's cap on pending jobs."""
    return TooManyPending(
        f"user {owner} already has {max_pending} pending jobs, the most a user may have"
        " waiting (QSERVER_MAX_PENDING_PER_USER): wait for some to start, or cancel some"
    )


# SQL: the owner (%(owner)s) has fewer than %(max)s pending jobs (true without a cap or an owner)
UNDER_CAP = f"""(%(max)s::int IS NULL OR %(owner)s::text IS NULL
 OR (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE owner = %(owner)s AND {status_in([PENDING, CLAIMED])}
                           LIMIT %(max)s) AS p) < %(max)s)"""
# SQL: the job's row and its result types' (CTEs ``job`` and ``types``) from the rows of {source}
JOB_INSERT = """
job AS (
    INSERT INTO jobs (id, target_simulator, qasm, bindings, metadata, owner, digest)
    SELECT %(id)s, %(backend)s, %(qasm)s, %(bindings)s, %(metadata)s, %(owner)s, %(digest)s FROM {source}
    RETURNING id
), types AS (
    INSERT INTO result_types (job_id, counts, quasi_dist, expval)
    SELECT id, %(counts)s, %(quasi_dist)s, %(expval)s FROM job
)"""

# One statement (one round trip, its own transaction): the job and its result types.
_INSERT = """
WITH job AS (
    INSERT INTO jobs (id, target_simulator, qasm, bindings, metadata, owner, digest)
    VALUES (%(id)s, %(backend)s, %(qasm)s, %(bindings)s, %(metadata)s, %(owner)s, %(digest)s)
    RETURNING id
)
INSERT INTO result_types (job_id, counts, quasi_dist, expval)
SELECT id, %(counts)s, %(quasi_dist)s, %(expval)s FROM job
"""
_INSERT_CAPPED = f"""
WITH job AS (
    INSERT INTO jobs (id, target_simulator, qasm, bindings, metadata, owner, digest)
    SELECT %(id)s, %(backend)s, %(qasm)s, %(bindings)s, %(metadata)s, %(owner)s, %(digest)s
     WHERE (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE owner = %(owner)s AND {status_in([PENDING, CLAIMED])}
                                   LIMIT %(max)s) AS p) < %(max)s
    RETURNING id
)
INSERT INTO result_types (job_id, counts, quasi_dist, expval)
SELECT id, %(counts)s, %(quasi_dist)s, %(expval)s FROM job
"""


async def delete_pending_job(conn: psycopg.AsyncConnection, *, job_id: uuid.UUID) -> bool:
    """Remove a job whose queue message could not be published. True if it was removed."""
    cur = await conn.execute(f"DELETE FROM jobs WHERE id = %s AND {status_in([PENDING])}", (job_id,))
    return cur.rowcount == 1


# --- dispatching ---------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedJob:
    """A job the dispatcher has claimed (pending to claimed): what the executor needs."""

    id: uuid.UUID
    backend: str
    plugin: str | None
    plugin_version: str | None
    qasm: str
    metadata: dict[str, Any]
    result_types: tuple[str, ...]
    attempts: int
    needs_gpu: bool = False
    memory_bytes: int | None = None

    @property
    def tags(self) -> tuple[str, ...]:
        """Node tags the job asked for (metadata ``tags``), sorted."""
        return tuple(sorted(set(self.metadata.get("tags") or ())))


_CLAIM = f"""
WITH claimed AS (
    UPDATE jobs SET {CLAIM.set}, claimed_at = now(), attempts = attempts + 1,
                    start_time = NULL, node_id = NULL, heartbeat_at = NULL, waiting_for = NULL
     WHERE id = ANY(%s) AND {CLAIM.where()}
    RETURNING id, target_simulator, qasm, metadata, attempts, memory_bytes
)
SELECT c.*, rt.counts, rt.quasi_dist, rt.expval, b.plugin, p.version AS plugin_version,
       coalesce(b.needs_gpu, false) AS needs_gpu
  FROM claimed c
  JOIN result_types rt ON rt.job_id = c.id
  LEFT JOIN backends b ON b.backend_name = c.target_simulator
  LEFT JOIN plugins p ON p.name = b.plugin
"""


_RUNNING = f"""
SELECT c.id, c.target_simulator, c.qasm, c.metadata, c.attempts, c.memory_bytes,
       rt.counts, rt.quasi_dist, rt.expval, b.plugin, p.version AS plugin_version,
       coalesce(b.needs_gpu, false) AS needs_gpu
  FROM jobs c
  JOIN result_types rt ON rt.job_id = c.id
  LEFT JOIN backends b ON b.backend_name = c.target_simulator
  LEFT JOIN plugins p ON p.name = b.plugin
 WHERE c.id = ANY(%s) AND {status_in(ACTIVE, "c")}
"""


async def claim_jobs(conn: psycopg.AsyncConnection, *, job_ids: list[uuid.UUID]) -> list[ClaimedJob]:
    """Move those of ``job_ids`` that are pending to claimed (``attempts`` counts the claim),
    in one statement; return them (in no particular order). The others (canceled, already
    claimed or running, deleted) are left alone: a duplicate or redelivered message claims nothing.
    The job stays ``pending`` to its user until its worker starts it (:func:`mark_started_sync`)."""
    cur = await conn.execute(_CLAIM, (job_ids,))
    return [_claimed(row) for row in await cur.fetchall()]


async def running_jobs(conn: psycopg.AsyncConnection, *, job_ids: list[uuid.UUID]) -> list[ClaimedJob]:
    """Those of ``job_ids`` that are claimed or running, as claimed jobs (a restarted dispatcher
    adopts the ones the runner still holds)."""
    cur = await conn.execute(_RUNNING, (job_ids,))
    return [_claimed(row) for row in await cur.fetchall()]


def _claimed(row: dict[str, Any]) -> ClaimedJob:
    return ClaimedJob(
        id=row["id"],
        backend=row["target_simulator"],
        plugin=row["plugin"],
        plugin_version=row["plugin_version"],
        qasm=row["qasm"],
        metadata=row["metadata"],
        result_types=tuple(rt.value for rt in ResultType if row[rt.value]),
        attempts=row["attempts"],
        needs_gpu=row["needs_gpu"],
        memory_bytes=row["memory_bytes"],
    )


_PARK = (
    f"UPDATE jobs SET {PARK.set}, start_time = NULL, node_id = NULL, claimed_at = NULL,"
    f" attempts = attempts - 1, waiting_for = %s WHERE id = %s AND {PARK.where()}"
)


async def park_job(conn: psycopg.AsyncConnection, *, job_id: uuid.UUID, waiting_for: str) -> bool:
    """Give a claimed job back: pending again (this claim not counted), saying what it waits for.

    Used when no node that can run it is online right now; the dispatcher publishes it
    again when the cluster changes.
    """
    cur = await conn.execute(_PARK, (waiting_for, job_id))
    return cur.rowcount == 1


async def parked_jobs(conn: psycopg.AsyncConnection) -> list[uuid.UUID]:
    """Pending jobs waiting for a node, oldest first."""
    cur = await conn.execute(
        f"SELECT id FROM jobs WHERE {status_in([PENDING])} AND waiting_for IS NOT NULL ORDER BY pointer"
    )
    return [row["id"] for row in await cur.fetchall()]


async def requeue_job(conn: psycopg.AsyncConnection, *, job_id: uuid.UUID) -> bool:
    """A job whose worker, executor or node died goes back to pending: its attempt counted when
    it was running, not when it was only claimed (it never started)."""
    cur = await conn.execute(
        f"UPDATE jobs SET {REQUEUE.set}, start_time = NULL, node_id = NULL, waiting_for = NULL,"
        f" claimed_at = NULL, attempts = attempts - ({status_in([CLAIMED])})::int"
        f" WHERE id = %s AND {REQUEUE.where()}",
        (job_id,),
    )
    return cur.rowcount == 1


async def stale_pending_jobs(conn: psycopg.AsyncConnection, *, older_than_s: float) -> list[uuid.UUID]:
    """Pending jobs (not parked for a node, not claimed) submitted more than ``older_than_s``
    seconds ago."""
    cur = await conn.execute(
        f"SELECT id FROM jobs WHERE {status_in([PENDING])} AND waiting_for IS NULL"
        " AND submission_date < now() - make_interval(secs => %s) ORDER BY pointer LIMIT 10000",
        (older_than_s,),
    )
    return [row["id"] for row in await cur.fetchall()]


async def set_job_memory(conn: psycopg.AsyncConnection, *, job_id: uuid.UUID, memory_bytes: int) -> None:
    """Record the memory a job asks Ray for (bytes)."""
    await conn.execute("UPDATE jobs SET memory_bytes = %s WHERE id = %s", (memory_bytes, job_id))


_START = (
    f"UPDATE jobs SET {START.set}, start_time = now(), node_id = %s, heartbeat_at = now()"
    f" WHERE id = %s AND {START.where()}"
)
_HAND_BACK = (
    f"UPDATE jobs SET {HAND_BACK.set}, start_time = NULL, node_id = NULL, heartbeat_at = NULL,"
    f" claimed_at = now() WHERE id = %s AND {HAND_BACK.where()}"
)


def mark_started_sync(conn: psycopg.Connection, *, job_id: uuid.UUID, node_id: str | None) -> bool:
    """The worker starts the claimed job's simulation on ``node_id``: claimed to running, with
    ``start_time`` and the first heartbeat (one guarded UPDATE).

    Returns:
        True: run it. False: the job is no longer claimed (canceled or deleted meanwhile, or
        started elsewhere): drop it without simulating.
    """
    return conn.execute(_START, (node_id, job_id)).rowcount == 1


def hand_back_sync(conn: psycopg.Connection, *, job_id: uuid.UUID) -> bool:
    """The worker started the job but did not simulate it (it needs more memory than granted):
    running back to claimed, start_time and node_id cleared, for the dispatcher to place it
    again. False if it was no longer running."""
    return conn.execute(_HAND_BACK, (job_id,)).rowcount == 1


def heartbeat_sync(conn: psycopg.Connection, *, job_id: uuid.UUID) -> None:
    """The executor still works on the job."""
    conn.execute(f"UPDATE jobs SET heartbeat_at = now() WHERE id = %s AND {status_in([RUNNING])}", (job_id,))


async def stale_running_jobs(conn: psycopg.AsyncConnection, *, older_than_s: float) -> list[dict[str, Any]]:
    """Running jobs whose heartbeat (or start, before the first beat) is older than
    ``older_than_s``, and claimed jobs claimed longer ago than that: {id, node_id, attempts}."""
    cur = await conn.execute(
        f"SELECT id, node_id, attempts FROM jobs WHERE {status_in(ACTIVE)}"
        " AND coalesce(heartbeat_at, start_time, claimed_at) < now() - make_interval(secs => %s)",
        (older_than_s,),
    )
    return await cur.fetchall()


_CANCEL = f"""
WITH canceled AS (
    UPDATE jobs SET {CANCEL.set}, finish_time = now(), waiting_for = NULL
     WHERE id = %s AND {CANCEL.where()} {{mine}}
    RETURNING *
)
SELECT {JOB_COLUMNS}
  FROM canceled j
  LEFT JOIN result_types rt ON rt.job_id = j.id
  LEFT JOIN results r ON r.job_id = j.id
"""


async def cancel_job(conn: psycopg.AsyncConnection, *, job_id: uuid.UUID, owner: str | None = None) -> dict[str, Any]:
    """Move a pending (claimed too) or running job to canceled (one guarded UPDATE); the job
    JSON after it.

    Whichever of cancel and the executor's start or finish (guarded on ``status = 'claimed'``,
    ``'running'``) commits first wins; the history trigger writes one row for the winner.
    Triggers notify ``qserver_cancel`` for a job that was claimed or running, so its Ray work
    is stopped; a claimed job's worker drops it at its start.

    With ``owner``, another user's job is not found.

    Raises:
        JobNotFound: no job has that id (or it is another user's).
        Conflict: the job is already finished, failed or canceled.
    """
    mine, param = owned_by("owner", owner)
    cur = await conn.execute(_CANCEL.format(mine=mine), (job_id, *param))
    row = await cur.fetchone()
    if row is not None:
        return job_json(row)
    status = await get_job_status(conn, job_id=job_id, owner=owner)
    if status is None:
        raise JobNotFound(f"job {job_id} not found")
    raise Conflict(f"job {job_id} is already {status['status']}; only pending or running jobs can be canceled")


async def delete_job(conn: psycopg.AsyncConnection, *, job_id: uuid.UUID, owner: str | None = None) -> None:
    """Delete a job that is not running, with its result types and results (cascade).

    One statement guarded on the job not running; the history row, if any, stays. A claimed
    job (pending to its user) is deleted too: its worker finds it gone at its start and drops it.
    With ``owner``, another user's job is not found.

    Raises:
        JobNotFound: no job has that id (or it is another user's).
        Conflict: the job is running.
    """
    mine, param = owned_by("owner", owner)
    cur = await conn.execute(f"DELETE FROM jobs WHERE id = %s AND NOT {status_in([RUNNING])}{mine}", (job_id, *param))
    if cur.rowcount == 1:
        return
    if await get_job_status(conn, job_id=job_id, owner=owner) is None:
        raise JobNotFound(f"job {job_id} not found")
    raise Conflict(f"job {job_id} is running: cancel it first (PUT /api/v1/job/cancel/{job_id})")


_EXPIRED = f"""
DELETE FROM jobs
 WHERE {status_in(TERMINAL_STATUSES)}
   AND finish_time < now() - make_interval(secs => %s)
"""


def _expiry_seconds(older_than_days: float) -> float:
    if not older_than_days >= 0:
        raise ValueError(f"older_than_days must be >= 0, got {older_than_days!r}")
    return older_than_days * 86400.0


async def delete_expired_jobs(conn: psycopg.AsyncConnection, *, older_than_days: float) -> int:
    """Delete jobs in a terminal status that finished more than ``older_than_days`` ago.

    Their result types and results go with them (cascade); history rows stay; pending,
    claimed and running jobs are never touched. Returns how many jobs were deleted.
    """
    cur = await conn.execute(_EXPIRED, (_expiry_seconds(older_than_days),))
    return cur.rowcount


def delete_expired_jobs_sync(conn: psycopg.Connection, *, older_than_days: float) -> int:
    """``delete_expired_jobs`` over a sync connection (for ``qserver janitor``)."""
    cur = conn.execute(_EXPIRED, (_expiry_seconds(older_than_days),))
    return cur.rowcount


async def canceled_among(conn: psycopg.AsyncConnection, *, job_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Which of ``job_ids`` are canceled (the dispatcher's check after it missed notifications)."""
    cur = await conn.execute(f"SELECT id FROM jobs WHERE id = ANY(%s) AND {status_in([CANCELED])}", (job_ids,))
    return [row["id"] for row in await cur.fetchall()]


async def claimed_among(conn: psycopg.AsyncConnection, *, job_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Which of ``job_ids`` are claimed and not started (handed to Ray, waiting for a node)."""
    cur = await conn.execute(f"SELECT id FROM jobs WHERE id = ANY(%s) AND {status_in([CLAIMED])}", (job_ids,))
    return [row["id"] for row in await cur.fetchall()]


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
                                  AND {status_in([PENDING, CLAIMED])} LIMIT %(max)s) AS p) < %(max)s
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
