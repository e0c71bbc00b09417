"""Every SQL statement of QServer: keyword-only functions over psycopg 3 connections.

Status changes are single guarded UPDATEs (``... WHERE status = 'pending'``), so a
duplicated or redelivered queue message can never run a job twice to completion,
and a terminal status is never left. History rows are written by the database
itself (migration 0002) when a job reaches a terminal status.

Async functions serve ingest, dispatcher and api; the ``*_sync`` ones serve the
executor inside Ray workers. Rows come back as dicts (``dict_row``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from core.domain import JobSpec, ResultType, show
from core.errors import BackendDisabled, BackendNotFound, TooManyPending

PAGE_SIZE = 20

# --- connections -------------------------------------------------------------


async def open_pool(
    dsn: str, *, max_size: int = 8, min_size: int = 1, checkout_timeout_s: float = 10.0
) -> AsyncConnectionPool:
    """An open async pool whose connections return dict rows and are checked on checkout
    (one that broke, e.g. in a Postgres restart, is replaced before anyone uses it; the check
    costs a round trip per checkout, and skipping it for recently used connections let a
    submission fail across a restart: tests/faults).

    Raises:
        psycopg_pool.PoolTimeout: the database was not reachable within 30 s.
    """
    pool = AsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        kwargs={"row_factory": dict_row, "autocommit": True},
        check=AsyncConnectionPool.check_connection,
        timeout=checkout_timeout_s,  # then PoolTimeout: the caller answers "unavailable"
        open=False,
    )
    await pool.open(wait=True, timeout=30)
    return pool


def connect_sync(dsn: str) -> psycopg.Connection:
    """A plain autocommit connection with dict rows (for the executor)."""
    return psycopg.connect(dsn, autocommit=True, row_factory=dict_row)


# --- backends ----------------------------------------------------------------


async def get_backend(conn: psycopg.AsyncConnection, *, name: str) -> dict[str, Any] | None:
    """The backend row {id, pointer, backend_name, plugin, enabled, needs_gpu}, or None."""
    cur = await conn.execute(
        "SELECT id, pointer, backend_name, plugin, enabled, needs_gpu FROM backends"
        " WHERE backend_name = %s",
        (name,),
    )
    return await cur.fetchone()


async def require_backend(conn: psycopg.AsyncConnection, *, name: str) -> dict[str, Any]:
    """The enabled backend called ``name``.

    Raises:
        BackendNotFound: no backend has that name.
        BackendDisabled: its plugin was removed.
    """
    backend = await get_backend(conn, name=name)
    if backend is None:
        raise BackendNotFound(f"backend {show(name)} does not exist; GET /api/v1/backends lists them")
    if not backend["enabled"]:
        raise BackendDisabled(
            f"backend {name!r} is disabled: its plugin {backend['plugin']!r} was removed"
        )
    return backend


async def list_backends(conn: psycopg.AsyncConnection, *, cursor: int = 0) -> list[dict[str, Any]]:
    """Enabled backends with pointer > cursor, PAGE_SIZE a page, in pointer order."""
    cur = await conn.execute(
        "SELECT id, pointer, backend_name, plugin FROM backends"
        " WHERE enabled AND pointer > %s ORDER BY pointer LIMIT %s",
        (cursor, PAGE_SIZE),
    )
    return await cur.fetchall()


# --- submission (ingest) -------------------------------------------------------


async def insert_job(
    conn: psycopg.AsyncConnection,
    *,
    job_id: uuid.UUID,
    spec: JobSpec,
    owner: str | None = None,
    max_pending: int | None = None,
) -> None:
    """Store a new pending job, its result types and QASM text in one statement.

    ``owner`` is the user who submitted it (None with authentication off). With
    ``max_pending``, the INSERT itself checks that ``owner`` has fewer pending jobs
    (one statement; concurrent submissions of one user may overshoot by their number).

    Raises:
        TooManyPending: ``owner`` already has ``max_pending`` pending jobs; nothing stored.
    """
    capped = owner is not None and max_pending is not None
    cur = await conn.execute(
        _INSERT_CAPPED if capped else _INSERT,
        {
            "id": job_id, "backend": spec.backend, "qasm": spec.qasm,
            "metadata": Jsonb(spec.metadata), "owner": owner, "max": max_pending,
            "counts": ResultType.COUNTS in spec.result_types,
            "quasi_dist": ResultType.QUASI_DIST in spec.result_types,
            "expval": ResultType.EXPVAL in spec.result_types,
        },
    )
    if cur.rowcount != 1:
        raise TooManyPending(
            f"user {owner} already has {max_pending} pending jobs, the most a user may have"
            " waiting (QSERVER_MAX_PENDING_PER_USER): wait for some to start, or cancel some"
        )


# One statement (one round trip, its own transaction): the job and its result types.
_INSERT = """
WITH job AS (
    INSERT INTO jobs (id, target_simulator, qasm, metadata, owner)
    VALUES (%(id)s, %(backend)s, %(qasm)s, %(metadata)s, %(owner)s)
    RETURNING id
)
INSERT INTO result_types (job_id, counts, quasi_dist, expval)
SELECT id, %(counts)s, %(quasi_dist)s, %(expval)s FROM job
"""
_INSERT_CAPPED = """
WITH job AS (
    INSERT INTO jobs (id, target_simulator, qasm, metadata, owner)
    SELECT %(id)s, %(backend)s, %(qasm)s, %(metadata)s, %(owner)s
     WHERE (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE owner = %(owner)s AND status = 'pending'
                                   LIMIT %(max)s) AS p) < %(max)s
    RETURNING id
)
INSERT INTO result_types (job_id, counts, quasi_dist, expval)
SELECT id, %(counts)s, %(quasi_dist)s, %(expval)s FROM job
"""


async def delete_pending_job(conn: psycopg.AsyncConnection, *, job_id: uuid.UUID) -> bool:
    """Remove a job whose queue message could not be published. True if it was removed."""
    cur = await conn.execute("DELETE FROM jobs WHERE id = %s AND status = 'pending'", (job_id,))
    return cur.rowcount == 1


# --- dispatching ---------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedJob:
    """A job the dispatcher has moved from pending to running: what the executor needs."""

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


_CLAIM = """
WITH claimed AS (
    UPDATE jobs SET status = 'running', start_time = now(), attempts = attempts + 1,
                    waiting_for = NULL
     WHERE id = ANY(%s) AND status = 'pending'
    RETURNING id, target_simulator, qasm, metadata, attempts, memory_bytes
)
SELECT c.*, rt.counts, rt.quasi_dist, rt.expval, b.plugin, p.version AS plugin_version,
       coalesce(b.needs_gpu, false) AS needs_gpu
  FROM claimed c
  JOIN result_types rt ON rt.job_id = c.id
  LEFT JOIN backends b ON b.backend_name = c.target_simulator
  LEFT JOIN plugins p ON p.name = b.plugin
"""


_RUNNING = """
SELECT c.id, c.target_simulator, c.qasm, c.metadata, c.attempts, c.memory_bytes,
       rt.counts, rt.quasi_dist, rt.expval, b.plugin, p.version AS plugin_version,
       coalesce(b.needs_gpu, false) AS needs_gpu
  FROM jobs c
  JOIN result_types rt ON rt.job_id = c.id
  LEFT JOIN backends b ON b.backend_name = c.target_simulator
  LEFT JOIN plugins p ON p.name = b.plugin
 WHERE c.id = ANY(%s) AND c.status = 'running'
"""


async def claim_job(conn: psycopg.AsyncConnection, *, job_id: uuid.UUID) -> ClaimedJob | None:
    """Move a pending job to running (one guarded UPDATE) and return it.

    Returns None when the job does not exist or is not pending (canceled, already
    claimed through a redelivered message, deleted): the caller drops the message.
    """
    claimed = await claim_jobs(conn, job_ids=[job_id])
    return claimed[0] if claimed else None


async def claim_jobs(conn: psycopg.AsyncConnection, *, job_ids: list[uuid.UUID]) -> list[ClaimedJob]:
    """Move those of ``job_ids`` that are pending to running, in one statement; return them
    (in no particular order). The others (canceled, already claimed, deleted) are left alone."""
    cur = await conn.execute(_CLAIM, (job_ids,))
    return [_claimed(row) for row in await cur.fetchall()]


async def running_jobs(conn: psycopg.AsyncConnection, *, job_ids: list[uuid.UUID]) -> list[ClaimedJob]:
    """Those of ``job_ids`` that are running, as claimed jobs (a restarted dispatcher adopts them)."""
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


async def park_job(conn: psycopg.AsyncConnection, *, job_id: uuid.UUID, waiting_for: str) -> bool:
    """Give a claimed job back: pending again (this claim not counted), saying what it waits for.

    Used when no node that can run it is online right now; the dispatcher publishes it
    again when the cluster changes.
    """
    cur = await conn.execute(
        "UPDATE jobs SET status = 'pending', start_time = NULL, attempts = attempts - 1,"
        " waiting_for = %s WHERE id = %s AND status = 'running'",
        (waiting_for, job_id),
    )
    return cur.rowcount == 1


async def parked_jobs(conn: psycopg.AsyncConnection) -> list[uuid.UUID]:
    """Pending jobs waiting for a node, oldest first."""
    cur = await conn.execute(
        "SELECT id FROM jobs WHERE status = 'pending' AND waiting_for IS NOT NULL ORDER BY pointer"
    )
    return [row["id"] for row in await cur.fetchall()]


async def requeue_job(conn: psycopg.AsyncConnection, *, job_id: uuid.UUID) -> bool:
    """A running job whose worker or node died goes back to pending (its attempt counted)."""
    cur = await conn.execute(
        "UPDATE jobs SET status = 'pending', start_time = NULL, node_id = NULL, waiting_for = NULL"
        " WHERE id = %s AND status = 'running'",
        (job_id,),
    )
    return cur.rowcount == 1


async def stale_pending_jobs(conn: psycopg.AsyncConnection, *, older_than_s: float) -> list[uuid.UUID]:
    """Pending jobs (not parked for a node) submitted more than ``older_than_s`` seconds ago."""
    cur = await conn.execute(
        "SELECT id FROM jobs WHERE status = 'pending' AND waiting_for IS NULL"
        " AND submission_date < now() - make_interval(secs => %s) ORDER BY pointer LIMIT 10000",
        (older_than_s,),
    )
    return [row["id"] for row in await cur.fetchall()]


async def set_job_memory(conn: psycopg.AsyncConnection, *, job_id: uuid.UUID, memory_bytes: int) -> None:
    """Record the memory a job asks Ray for (bytes)."""
    await conn.execute("UPDATE jobs SET memory_bytes = %s WHERE id = %s", (memory_bytes, job_id))


def mark_started_sync(conn: psycopg.Connection, *, job_id: uuid.UUID, node_id: str | None) -> None:
    """The executor has started the job on ``node_id`` (its first heartbeat)."""
    conn.execute(
        "UPDATE jobs SET node_id = %s, heartbeat_at = now() WHERE id = %s AND status = 'running'",
        (node_id, job_id),
    )


def heartbeat_sync(conn: psycopg.Connection, *, job_id: uuid.UUID) -> None:
    """The executor still works on the job."""
    conn.execute("UPDATE jobs SET heartbeat_at = now() WHERE id = %s AND status = 'running'", (job_id,))


async def stale_running_jobs(conn: psycopg.AsyncConnection, *, older_than_s: float) -> list[dict[str, Any]]:
    """Running jobs whose heartbeat (or start, before the first beat) is older than
    ``older_than_s``: {id, node_id, attempts}."""
    cur = await conn.execute(
        "SELECT id, node_id, attempts FROM jobs WHERE status = 'running'"
        " AND coalesce(heartbeat_at, start_time) < now() - make_interval(secs => %s)",
        (older_than_s,),
    )
    return await cur.fetchall()


# --- nodes (the dispatcher keeps them current) ------------------------------------------------

_UPSERT_NODE = """
INSERT INTO nodes (node_id, address, hostname, tags, alive, cpus_total, cpus_free, gpus_total,
                   gpus_free, memory_total, memory_free, jobs_running, versions, last_seen)
VALUES (%(node_id)s, %(address)s, %(hostname)s, %(tags)s, %(alive)s, %(cpus_total)s,
        %(cpus_free)s, %(gpus_total)s, %(gpus_free)s, %(memory_total)s, %(memory_free)s,
        %(jobs_running)s, %(versions)s, now())
ON CONFLICT (node_id) DO UPDATE SET
    address = EXCLUDED.address, hostname = EXCLUDED.hostname, alive = EXCLUDED.alive,
    cpus_free = EXCLUDED.cpus_free, gpus_free = EXCLUDED.gpus_free,
    memory_free = EXCLUDED.memory_free, jobs_running = EXCLUDED.jobs_running,
    -- Ray forgets a dead node's resources; we keep what it offered (it may come back)
    tags = CASE WHEN EXCLUDED.alive THEN EXCLUDED.tags ELSE nodes.tags END,
    cpus_total = CASE WHEN EXCLUDED.alive THEN EXCLUDED.cpus_total ELSE nodes.cpus_total END,
    gpus_total = CASE WHEN EXCLUDED.alive THEN EXCLUDED.gpus_total ELSE nodes.gpus_total END,
    memory_total = CASE WHEN EXCLUDED.alive THEN EXCLUDED.memory_total ELSE nodes.memory_total END,
    versions = CASE WHEN EXCLUDED.alive THEN EXCLUDED.versions ELSE nodes.versions END,
    last_seen = CASE WHEN EXCLUDED.alive THEN now() ELSE nodes.last_seen END
"""


async def save_nodes(conn: psycopg.AsyncConnection, *, nodes: list[dict[str, Any]]) -> None:
    """Upsert the nodes Ray reports (dicts with the columns of ``nodes``) in one transaction;
    nodes Ray no longer reports are marked not alive."""
    async with conn.transaction():
        for node in nodes:
            await conn.execute(_UPSERT_NODE, {**node, "versions": Jsonb(node.get("versions") or {})})
        await conn.execute(
            "UPDATE nodes SET alive = false, cpus_free = 0, gpus_free = 0, memory_free = 0,"
            " jobs_running = 0 WHERE alive AND NOT node_id = ANY(%s)",
            ([node["node_id"] for node in nodes if node["alive"]],),
        )


async def known_nodes(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """Every node ever seen: node_id, alive, tags, gpus_total, memory_total, cpus_total."""
    cur = await conn.execute("SELECT node_id, alive, tags, gpus_total, memory_total, cpus_total FROM nodes")
    return await cur.fetchall()


async def jobs_running_by_node(conn: psycopg.AsyncConnection) -> dict[str, int]:
    """{node id: number of running jobs started there}."""
    cur = await conn.execute(
        "SELECT node_id, count(*) AS n FROM jobs WHERE status = 'running' AND node_id IS NOT NULL"
        " GROUP BY node_id"
    )
    return {row["node_id"]: row["n"] for row in await cur.fetchall()}


_FINISH = """
UPDATE jobs SET status = 'finished', finish_time = now(), node_id = %s, error = NULL
 WHERE id = %s AND status = 'running'
"""
_INSERT_RESULTS = """
INSERT INTO results (job_id, counts, quasi_dist, expval) VALUES (%s, %s, %s, %s)
ON CONFLICT (job_id) DO NOTHING
"""
_FAIL = """
UPDATE jobs SET status = 'failed', finish_time = now(), error = %s,
       node_id = coalesce(%s, node_id)
 WHERE id = %s AND status = ANY(%s)
"""


def finish_job_sync(
    conn: psycopg.Connection, *, job_id: uuid.UUID, results: dict[str, Any], node_id: str | None
) -> bool:
    """Record a job's results and mark it finished, if it is still running.

    ``results`` maps result type names to JSON-ready values. Returns False (and
    writes nothing) when the job was canceled, failed or deleted meanwhile.
    """
    with conn.transaction():
        cur = conn.execute(_FINISH, (node_id, job_id))
        if cur.rowcount != 1:
            return False
        conn.execute(
            _INSERT_RESULTS,
            (
                job_id,
                _jsonb_or_none(results.get("counts")),
                _jsonb_or_none(results.get("quasi_dist")),
                _jsonb_or_none(results.get("expval")),
            ),
        )
    return True


_RECORD_MANY = """
WITH done_input AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(counts)s::jsonb[], %(quasi)s::jsonb[], %(expval)s::jsonb[])
        AS t(id, counts, quasi_dist, expval)
), done AS (
    UPDATE jobs j SET status = 'finished', finish_time = now(), node_id = %(node)s, error = NULL
      FROM done_input i
     WHERE j.id = i.id AND j.status = 'running'
    RETURNING j.id
), saved AS (
    INSERT INTO results (job_id, counts, quasi_dist, expval)
    SELECT i.id, i.counts, i.quasi_dist, i.expval FROM done_input i JOIN done d ON d.id = i.id
    ON CONFLICT (job_id) DO NOTHING
), failed AS (
    UPDATE jobs j SET status = 'failed', finish_time = now(), error = t.error,
           node_id = coalesce(%(node)s, j.node_id)
      FROM unnest(%(failed_ids)s::uuid[], %(errors)s::text[]) AS t(id, error)
     WHERE j.id = t.id AND j.status = 'running'
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
) -> set[uuid.UUID]:
    """Record many jobs' outcomes in one statement (one transaction, one round trip).

    Args:
        finished: (job id, {result type: JSON-ready value}) per job that finished.
        failed: (job id, error text) per job that failed.
        node_id: the node that ran them.

    Returns:
        The ids written; a job missing from it was no longer running (canceled or deleted
        meanwhile) and nothing of it was written.

    Raises:
        psycopg.DataError: Postgres refused a result value (nothing is written then).
    """
    cur = conn.execute(
        _RECORD_MANY,
        {
            "ids": [job_id for job_id, _ in finished],
            "counts": [_jsonb_or_none(results.get("counts")) for _, results in finished],
            "quasi": [_jsonb_or_none(results.get("quasi_dist")) for _, results in finished],
            "expval": [_jsonb_or_none(results.get("expval")) for _, results in finished],
            "failed_ids": [job_id for job_id, _ in failed],
            "errors": [error for _, error in failed],
            "node": node_id,
        },
    )
    return {row["id"] for row in cur.fetchall()}


def fail_job_sync(
    conn: psycopg.Connection, *, job_id: uuid.UUID, error: str, node_id: str | None
) -> bool:
    """Mark a running job failed with ``error``. False if it was no longer running."""
    cur = conn.execute(_FAIL, (error, node_id, job_id, ["running"]))
    return cur.rowcount == 1


async def fail_job(
    conn: psycopg.AsyncConnection,
    *,
    job_id: uuid.UUID,
    error: str,
    node_id: str | None = None,
    from_statuses: tuple[str, ...] = ("running",),
) -> bool:
    """Mark a job failed with ``error`` if its status is one of ``from_statuses``."""
    cur = await conn.execute(_FAIL, (error, node_id, job_id, list(from_statuses)))
    return cur.rowcount == 1


def _jsonb_or_none(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


_RECOVER = """
WITH failed AS (
    UPDATE jobs SET status = 'failed', finish_time = now(),
           error = format('worker lost: the job was running when the dispatcher stopped, '
                          'and it has had %%s attempts', attempts)
     WHERE status = 'running' AND attempts >= %(max_attempts)s AND id = ANY(%(ids)s)
    RETURNING id
), requeued AS (
    UPDATE jobs SET status = 'pending', start_time = NULL, node_id = NULL
     WHERE status = 'running' AND attempts < %(max_attempts)s AND id = ANY(%(ids)s)
    RETURNING id
)
SELECT 'failed' AS outcome, id FROM failed UNION ALL SELECT 'requeued', id FROM requeued
"""


async def running_job_ids(conn: psycopg.AsyncConnection) -> list[uuid.UUID]:
    """Ids of all running jobs."""
    cur = await conn.execute("SELECT id FROM jobs WHERE status = 'running'")
    return [row["id"] for row in await cur.fetchall()]


async def recover_orphans(
    conn: psycopg.AsyncConnection, *, job_ids: list[uuid.UUID], max_attempts: int
) -> dict[str, list[uuid.UUID]]:
    """Running jobs among ``job_ids`` whose Ray work is gone (their worker, node or owner died).

    Each goes back to pending (to be published again) or, after ``max_attempts`` runs,
    ends failed with "worker lost". Assumes one dispatcher per database.

    Returns:
        {"requeued": [job ids], "failed": [job ids]}
    """
    cur = await conn.execute(_RECOVER, {"max_attempts": max_attempts, "ids": list(job_ids)})
    outcome: dict[str, list[uuid.UUID]] = {"requeued": [], "failed": []}
    for row in await cur.fetchall():
        outcome[row["outcome"]].append(row["id"])
    return outcome


# --- reading (api) ----------------------------------------------------------------

_JOB_COLUMNS = """
j.id, j.pointer, j.target_simulator, j.qasm, j.status, j.submission_date, j.start_time,
j.finish_time, j.metadata, j.error, j.node_id, j.attempts, j.waiting_for, j.memory_bytes, j.owner,
rt.counts AS rt_counts, rt.quasi_dist AS rt_quasi_dist, rt.expval AS rt_expval,
r.counts AS r_counts, r.quasi_dist AS r_quasi_dist, r.expval AS r_expval
"""
_JOB_FROM = """
FROM jobs j
LEFT JOIN result_types rt ON rt.job_id = j.id
LEFT JOIN results r ON r.job_id = j.id
"""


def _job_json(row: dict[str, Any]) -> dict[str, Any]:
    job = {k: v for k, v in row.items() if not k.startswith(("rt_", "r_"))}
    job["result_types"] = {
        "counts": bool(row["rt_counts"]),
        "quasi_dist": bool(row["rt_quasi_dist"]),
        "expval": bool(row["rt_expval"]),
    }
    job["results"] = {
        "counts": row["r_counts"],
        "quasi_dist": row["r_quasi_dist"],
        "expval": row["r_expval"],
    }
    return job


def _owned(column: str, owner: str | None) -> tuple[str, tuple[Any, ...]]:
    """An extra ``AND column = owner`` condition and its parameter; nothing for owner None (all)."""
    return ("", ()) if owner is None else (f" AND {column} = %s", (owner,))


async def get_job(
    conn: psycopg.AsyncConnection, *, job_id: uuid.UUID, owner: str | None = None
) -> dict[str, Any] | None:
    """The job as the contract's job JSON (with result_types and results), or None.

    With ``owner``, another user's job is None too (the api answers 404 for both).
    """
    mine, param = _owned("j.owner", owner)
    cur = await conn.execute(f"SELECT {_JOB_COLUMNS} {_JOB_FROM} WHERE j.id = %s{mine}", (job_id, *param))
    row = await cur.fetchone()
    return None if row is None else _job_json(row)


async def list_jobs(
    conn: psycopg.AsyncConnection, *, cursor: int = 0, owner: str | None = None
) -> list[dict[str, Any]]:
    """Jobs with pointer > cursor (keyset paging), PAGE_SIZE a page, in submission order.

    With ``owner``, only that user's jobs.
    """
    mine, param = _owned("j.owner", owner)
    cur = await conn.execute(
        f"SELECT {_JOB_COLUMNS} {_JOB_FROM} WHERE j.pointer > %s{mine} ORDER BY j.pointer LIMIT %s",
        (cursor, *param, PAGE_SIZE),
    )
    return [_job_json(row) for row in await cur.fetchall()]


async def get_results(
    conn: psycopg.AsyncConnection, *, job_id: uuid.UUID, owner: str | None = None
) -> dict[str, Any] | None:
    """The results row {id, job_id, counts, quasi_dist, expval}, or None if there is none.

    With ``owner``, None also for another user's job.
    """
    if owner is None:
        cur = await conn.execute(
            "SELECT id, job_id, counts, quasi_dist, expval FROM results WHERE job_id = %s", (job_id,)
        )
    else:
        cur = await conn.execute(
            "SELECT r.id, r.job_id, r.counts, r.quasi_dist, r.expval FROM results r"
            " JOIN jobs j ON j.id = r.job_id WHERE r.job_id = %s AND j.owner = %s",
            (job_id, owner),
        )
    return await cur.fetchone()


async def get_job_status(
    conn: psycopg.AsyncConnection, *, job_id: uuid.UUID, owner: str | None = None
) -> dict[str, Any] | None:
    """{status, error} of a job, or None if it does not exist (or, with ``owner``, is another's)."""
    mine, param = _owned("owner", owner)
    cur = await conn.execute(f"SELECT status, error FROM jobs WHERE id = %s{mine}", (job_id, *param))
    return await cur.fetchone()


# --- cancel, delete, history, plugins, retention (api; janitor) ---------------------------
# Imported here, not at the top, to keep this section self-contained.
from core.errors import Conflict, JobNotFound, PluginNotFound  # noqa: E402

_CANCEL = f"""
WITH canceled AS (
    UPDATE jobs SET status = 'canceled', finish_time = now(), waiting_for = NULL
     WHERE id = %s AND status IN ('pending', 'running') {{mine}}
    RETURNING *
)
SELECT {_JOB_COLUMNS}
  FROM canceled j
  LEFT JOIN result_types rt ON rt.job_id = j.id
  LEFT JOIN results r ON r.job_id = j.id
"""


async def cancel_job(
    conn: psycopg.AsyncConnection, *, job_id: uuid.UUID, owner: str | None = None
) -> dict[str, Any]:
    """Move a pending or running job to canceled (one guarded UPDATE); the job JSON after it.

    Whichever of cancel and the executor's finish (guarded on ``status = 'running'``)
    commits first wins; the history trigger writes one row for the winner. Triggers
    notify ``qserver_cancel`` for a job that was running, so its Ray work is stopped.

    With ``owner``, another user's job is not found.

    Raises:
        JobNotFound: no job has that id (or it is another user's).
        Conflict: the job is already finished, failed or canceled.
    """
    mine, param = _owned("owner", owner)
    cur = await conn.execute(_CANCEL.format(mine=mine), (job_id, *param))
    row = await cur.fetchone()
    if row is not None:
        return _job_json(row)
    status = await get_job_status(conn, job_id=job_id, owner=owner)
    if status is None:
        raise JobNotFound(f"job {job_id} not found")
    raise Conflict(
        f"job {job_id} is already {status['status']}; only pending or running jobs can be canceled"
    )


async def delete_job(
    conn: psycopg.AsyncConnection, *, job_id: uuid.UUID, owner: str | None = None
) -> None:
    """Delete a job that is not running, with its result types and results (cascade).

    One statement guarded on ``status <> 'running'``; the history row, if any, stays.
    With ``owner``, another user's job is not found.

    Raises:
        JobNotFound: no job has that id (or it is another user's).
        Conflict: the job is running.
    """
    mine, param = _owned("owner", owner)
    cur = await conn.execute(
        f"DELETE FROM jobs WHERE id = %s AND status <> 'running'{mine}", (job_id, *param)
    )
    if cur.rowcount == 1:
        return
    if await get_job_status(conn, job_id=job_id, owner=owner) is None:
        raise JobNotFound(f"job {job_id} not found")
    raise Conflict(f"job {job_id} is running: cancel it first (PUT /api/v1/job/cancel/{job_id})")


async def list_history(
    conn: psycopg.AsyncConnection, *, cursor: int = 0, owner: str | None = None
) -> list[dict[str, Any]]:
    """History rows with pointer > cursor (keyset paging), PAGE_SIZE a page, in pointer order.

    ``results`` is always an object ({counts, quasi_dist, expval}, null where absent).
    With ``owner``, only that user's rows.
    """
    mine, param = _owned("owner", owner)
    cur = await conn.execute(
        "SELECT id, pointer, job_id, target_simulator, status, metadata, error, node_id,"
        " attempts, submission_date, start_time, finish_time, result_types, results, owner"
        f" FROM history WHERE pointer > %s{mine} ORDER BY pointer LIMIT %s",
        (cursor, *param, PAGE_SIZE),
    )
    rows = await cur.fetchall()
    for row in rows:
        row["results"] = row["results"] or {"counts": None, "quasi_dist": None, "expval": None}
    return rows


async def get_plugin(conn: psycopg.AsyncConnection, *, name: str) -> dict[str, Any] | None:
    """The plugin row {name, version, builtin, admitted_at}, or None."""
    cur = await conn.execute(
        "SELECT name, version, builtin, admitted_at FROM plugins WHERE name = %s", (name,)
    )
    return await cur.fetchone()


async def enable_builtin_plugin(
    conn: psycopg.AsyncConnection, *, name: str, backends: tuple[str, ...]
) -> None:
    """(Re-)enable the backends of a built-in plugin, recreating any missing row.

    Nothing is downloaded or updated in ``plugins`` (no ``qserver_plugins`` notification,
    ``admitted_at`` unchanged): a built-in plugin lives in the base environment.

    Raises:
        Conflict: one of ``backends`` belongs to another plugin.
    """
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO plugins (name, builtin) VALUES (%s, true) ON CONFLICT (name) DO NOTHING",
            (name,),
        )
        cur = await conn.execute(_INSERT_BACKENDS, (name, list(backends)))
        if len(await cur.fetchall()) != len(backends):
            taken = await _backends_of_others(conn, name=name, backends=backends)
            raise Conflict(_taken(name, "(built in)", taken))


async def admit_plugin(
    conn: psycopg.AsyncConnection, *, name: str, version: str, backends: tuple[str, ...]
) -> None:
    """Record a plugin and its (enabled) backends in one transaction.

    The plugin row's INSERT notifies ``qserver_plugins`` at commit, so the dispatcher
    starts building its runtime_env.

    Raises:
        Conflict: the plugin is already admitted, or one of ``backends`` belongs to
            another plugin.
    """
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO plugins (name, version, builtin) VALUES (%s, %s, false)"
            " ON CONFLICT (name) DO NOTHING RETURNING name",
            (name, version),
        )
        if await cur.fetchone() is None:
            existing = await get_plugin(conn, name=name)
            version = existing["version"] if existing else None
            raise Conflict(f"plugin {name} is already admitted (version {version})")
        taken = await _backends_of_others(conn, name=name, backends=backends)
        if taken:
            raise Conflict(_taken(name, version, taken))
        cur = await conn.execute(_INSERT_BACKENDS, (name, list(backends)))
        if len(await cur.fetchall()) != len(backends):  # another admission took one meanwhile
            taken = await _backends_of_others(conn, name=name, backends=backends)
            raise Conflict(_taken(name, version, taken))


_INSERT_BACKENDS = """
INSERT INTO backends (backend_name, plugin)
SELECT b, %s FROM unnest(%s::text[]) WITH ORDINALITY AS u(b, n) ORDER BY n
ON CONFLICT (backend_name) DO UPDATE SET enabled = true WHERE backends.plugin = EXCLUDED.plugin
RETURNING backend_name
"""


async def _backends_of_others(
    conn: psycopg.AsyncConnection, *, name: str, backends: tuple[str, ...]
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT backend_name, plugin FROM backends"
        " WHERE backend_name = ANY(%s) AND plugin <> %s ORDER BY pointer",
        (list(backends), name),
    )
    return await cur.fetchall()


def _taken(name: str, version: str, taken: list[dict[str, Any]]) -> str:
    names = ", ".join(f"{t['backend_name']} (plugin {t['plugin']})" for t in taken)
    return (
        f"plugin {name} {version} ships backend names that other plugins already registered:"
        f" {names}"
    )


async def remove_plugin(conn: psycopg.AsyncConnection, *, name: str) -> None:
    """Remove a plugin unless a job on one of its backends is pending or running.

    One transaction with the plugin row locked (``FOR UPDATE``). A built-in plugin keeps
    its rows and has its backends disabled; any other loses its backend rows and its
    plugin row. Jobs keep their data: they name backends, with no foreign key.

    Known window: ingest checks the backend, then inserts the job, outside this lock; a
    submission whose check ran just before the removal committed can still insert a
    pending job on a removed backend (the dispatcher then fails it: no such backend).

    Raises:
        PluginNotFound: no plugin of that name is admitted.
        Conflict: jobs on its backends are pending or running (their number is named).
    """
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT name, builtin FROM plugins WHERE name = %s FOR UPDATE", (name,)
        )
        plugin = await cur.fetchone()
        if plugin is None:
            raise PluginNotFound(f"plugin {name} is not admitted")
        cur = await conn.execute(
            "SELECT count(*) AS n FROM jobs WHERE status IN ('pending', 'running')"
            " AND target_simulator IN (SELECT backend_name FROM backends WHERE plugin = %s)",
            (name,),
        )
        active = (await cur.fetchone())["n"]
        if active:
            jobs = "job is" if active == 1 else "jobs are"
            raise Conflict(
                f"plugin {name} cannot be removed: {active} {jobs} pending or running on its"
                " backends; wait for them to end or cancel them (PUT /api/v1/job/cancel/<id>)"
            )
        if plugin["builtin"]:
            await conn.execute("UPDATE backends SET enabled = false WHERE plugin = %s", (name,))
        else:
            await conn.execute("DELETE FROM backends WHERE plugin = %s", (name,))
            await conn.execute("DELETE FROM plugins WHERE name = %s", (name,))


_EXPIRED = """
DELETE FROM jobs
 WHERE status IN ('finished', 'failed', 'canceled')
   AND finish_time < now() - make_interval(secs => %s)
"""


def _expiry_seconds(older_than_days: float) -> float:
    if not older_than_days >= 0:
        raise ValueError(f"older_than_days must be >= 0, got {older_than_days!r}")
    return older_than_days * 86400.0


async def delete_expired_jobs(conn: psycopg.AsyncConnection, *, older_than_days: float) -> int:
    """Delete jobs in a terminal status that finished more than ``older_than_days`` ago.

    Their result types and results go with them (cascade); history rows stay; pending
    and running jobs are never touched. Returns how many jobs were deleted.
    """
    cur = await conn.execute(_EXPIRED, (_expiry_seconds(older_than_days),))
    return cur.rowcount


def delete_expired_jobs_sync(conn: psycopg.Connection, *, older_than_days: float) -> int:
    """``delete_expired_jobs`` over a sync connection (for ``qserver janitor``)."""
    cur = conn.execute(_EXPIRED, (_expiry_seconds(older_than_days),))
    return cur.rowcount


# --- cluster: nodes, capabilities, what backends need (api; ingest) ---------------

_NODE_COLUMNS = """
node_id, address, hostname, tags, alive, cpus_total, cpus_free, gpus_total, gpus_free,
memory_total, memory_free, jobs_running, versions, first_seen, last_seen
"""


async def list_nodes(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """Every node ever seen, alive ones first, then in the order they were first seen.

    Each row holds all columns of ``nodes``: {node_id, address, hostname, tags, alive,
    cpus_total, cpus_free, gpus_total, gpus_free, memory_total, memory_free (bytes),
    jobs_running, versions, first_seen, last_seen}.
    """
    cur = await conn.execute(
        f"SELECT {_NODE_COLUMNS} FROM nodes ORDER BY alive DESC, first_seen, node_id"
    )
    return await cur.fetchall()


_CAPABILITIES = """
SELECT
    coalesce((SELECT array_agg(DISTINCT t) FROM nodes, unnest(tags) AS t), '{}') AS tags_known,
    coalesce((SELECT array_agg(DISTINCT t) FROM nodes, unnest(tags) AS t WHERE alive), '{}')
        AS tags_alive,
    coalesce(bool_or(gpus_total > 0), false) AS gpus_known,
    coalesce(bool_or(gpus_total > 0) FILTER (WHERE alive), false) AS gpus_alive,
    coalesce(max(memory_total), 0) AS memory_largest_known,
    coalesce(max(memory_total) FILTER (WHERE alive), 0) AS memory_largest_alive,
    count(*) AS nodes_known,
    count(*) FILTER (WHERE alive) AS nodes_alive
FROM nodes
"""


async def cluster_capabilities(conn: psycopg.AsyncConnection) -> dict[str, Any]:
    """What the cluster offers, for admission at submission (one query over ``nodes``).

    Returns:
        {"tags_known": set[str] (tags any node ever offered),
         "tags_alive": set[str] (tags of the nodes alive now),
         "gpus_known": bool (whether any node ever offered a GPU),
         "gpus_alive": bool (whether an alive node offers one now),
         "memory_largest_known": int, "memory_largest_alive": int (the largest
         memory_total in bytes; 0 without nodes),
         "nodes_known": int, "nodes_alive": int}
    """
    cur = await conn.execute(_CAPABILITIES)
    row = await cur.fetchone()
    assert row is not None
    return {
        **row,
        "tags_known": set(row["tags_known"]),
        "tags_alive": set(row["tags_alive"]),
    }


async def backend_needs_gpu(conn: psycopg.AsyncConnection, *, name: str) -> bool | None:
    """Whether the backend called ``name`` needs a GPU; None when there is no such backend."""
    cur = await conn.execute("SELECT needs_gpu FROM backends WHERE backend_name = %s", (name,))
    row = await cur.fetchone()
    return None if row is None else row["needs_gpu"]


async def list_backends_json(
    conn: psycopg.AsyncConnection, *, cursor: int = 0
) -> list[dict[str, Any]]:
    """``list_backends`` with what each backend needs: rows also hold ``needs_gpu``."""
    cur = await conn.execute(
        "SELECT id, pointer, backend_name, plugin, needs_gpu FROM backends"
        " WHERE enabled AND pointer > %s ORDER BY pointer LIMIT %s",
        (cursor, PAGE_SIZE),
    )
    return await cur.fetchall()


async def require_backend_json(conn: psycopg.AsyncConnection, *, name: str) -> dict[str, Any]:
    """``require_backend`` with ``needs_gpu`` added to the row.

    Raises:
        BackendNotFound: no backend has that name (or it vanished meanwhile).
        BackendDisabled: its plugin was removed.
    """
    backend = await require_backend(conn, name=name)
    needs_gpu = await backend_needs_gpu(conn, name=name)
    if needs_gpu is None:
        raise BackendNotFound(f"backend {show(name)} does not exist; GET /api/v1/backends lists them")
    return {**backend, "needs_gpu": needs_gpu}


# --- API keys (core/auth.py; ingest, api, `qserver keys`) ------------------------------------------


def insert_api_key_sync(
    conn: psycopg.Connection, *, key_id: str, owner: str, role: str, key_hash: bytes
) -> bool:
    """Store a key's hash; False (nothing stored) if ``key_id`` is taken."""
    cur = conn.execute(
        "INSERT INTO api_keys (key_id, owner, role, hash) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (key_id) DO NOTHING",
        (key_id, owner, role, key_hash),
    )
    return cur.rowcount == 1


def list_api_keys_sync(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every key, oldest first: {key_id, owner, role, created_at, revoked_at, last_used_at} (never the hash)."""
    cur = conn.execute(
        "SELECT key_id, owner, role, created_at, revoked_at, last_used_at FROM api_keys"
        " ORDER BY created_at, key_id"
    )
    return cur.fetchall()


def revoke_api_key_sync(conn: psycopg.Connection, *, key_id: str) -> dict[str, Any] | None:
    """Revoke a key (once: a revoked key keeps its first ``revoked_at``).

    Returns {key_id, owner, revoked_at, newly} or None when no key has that id.
    """
    cur = conn.execute(
        "WITH before AS (SELECT revoked_at FROM api_keys WHERE key_id = %(id)s FOR UPDATE)"
        " UPDATE api_keys k SET revoked_at = coalesce(k.revoked_at, now()) FROM before"
        " WHERE k.key_id = %(id)s"
        " RETURNING k.key_id, k.owner, k.revoked_at, before.revoked_at IS NULL AS newly",
        {"id": key_id},
    )
    return cur.fetchone()


async def get_api_key(conn: psycopg.AsyncConnection, *, key_id: str) -> dict[str, Any] | None:
    """{owner, role, hash, revoked_at, stale} of a key (one primary-key lookup), or None.

    ``stale``: ``last_used_at`` is unset or more than a minute old.
    """
    cur = await conn.execute(
        "SELECT owner, role, hash, revoked_at,"
        " (last_used_at IS NULL OR last_used_at < now() - interval '1 minute') AS stale"
        " FROM api_keys WHERE key_id = %s",
        (key_id,),
    )
    return await cur.fetchone()


async def touch_api_key(conn: psycopg.AsyncConnection, *, key_id: str) -> None:
    """Record that a key was used now."""
    await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE key_id = %s", (key_id,))
