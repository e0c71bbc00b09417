"""Reading jobs and results for the api (owner filters); pages of them are core/store/listing.py's.

Every answer names the contract's statuses only: the internal ``claimed`` reads as ``pending``
(:func:`visible_status`), and a pending job's ``waiting_for`` says where it waits: the queue, an
executor (claimed), or what it was parked for (a node with a tag, a GPU, memory)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg

from core import sweeps
from core.domain import WAITING_FOR_EXECUTOR, WAITING_IN_QUEUE, JobStatus


def visible_status(column: str) -> str:
    """SQL for the status users see of ``column`` (core.domain.JobStatus.visible): ``claimed``
    reads as ``pending``."""
    hidden = [s for s in JobStatus if s.visible() is not s]
    cases = " ".join(f"WHEN '{s.value}' THEN '{s.visible().value}'" for s in hidden)
    return f"CASE {column} {cases} ELSE {column} END"


def _waiting_for(alias: str) -> str:
    """SQL for a job's ``waiting_for``: why it was parked, else where a pending job waits
    (the queue, or an executor once claimed); null for a job that started or ended."""
    queue, executor = (_literal(text) for text in (WAITING_IN_QUEUE, WAITING_FOR_EXECUTOR))
    return (
        f"CASE {alias}.status WHEN '{JobStatus.PENDING.value}' THEN coalesce({alias}.waiting_for, {queue})"
        f" WHEN '{JobStatus.CLAIMED.value}' THEN coalesce({alias}.waiting_for, {executor}) END"
    )


def _literal(text: str) -> str:
    """``text`` as an SQL string literal (a constant of ours, never user input)."""
    return "'" + text.replace("'", "''") + "'"


# How many bindings of job ``j`` have results (table sweep_items); null for a job that is not a sweep.
SWEEP_DONE = (
    "CASE WHEN j.metadata ? 'sweep' THEN"
    " (SELECT coalesce(sum(s.count), 0) FROM sweep_items s WHERE s.job_id = j.id)::bigint END"
)

# A finished job's receipt (results.receipt) with where and how long it ran, as JSON text; null
# without one, built only for a job that has one (old jobs, failed and unfinished ones have none).
RECEIPT = (
    "CASE WHEN r.receipt IS NOT NULL THEN (r.receipt || jsonb_build_object('node_id', j.node_id,"
    " 'queue_s', extract(epoch FROM j.start_time - j.submission_date),"
    " 'run_s', extract(epoch FROM j.finish_time - j.start_time)))::text END"
)

_JOB_FIELDS = f"""
j.id, j.pointer, j.target_simulator, j.qasm, {visible_status("j.status")} AS status, j.submission_date,
j.start_time, j.finish_time, j.metadata, j.error, j.node_id, j.attempts, {_waiting_for("j")} AS waiting_for,
j.memory_bytes, j.owner, rt.counts AS rt_counts, rt.quasi_dist AS rt_quasi_dist, rt.expval AS rt_expval,
{SWEEP_DONE} AS sweep_done, {RECEIPT} AS r_receipt
"""
JOB_COLUMNS = _JOB_FIELDS + ", r.counts AS r_counts, r.quasi_dist AS r_quasi_dist, r.expval AS r_expval"
RESULT_TYPES = ("counts", "quasi_dist", "expval")
# A job's results as Postgres stores them (compressed, TOAST): what a reader must fetch.
RESULTS_BYTES = " + ".join(f"coalesce(pg_column_size(r.{name}), 0)" for name in RESULT_TYPES)


def _raw_results(inline_bytes: int) -> str:
    """Columns r_bytes and r_<type> (the JSON text, never parsed here) for results of at most
    ``inline_bytes`` stored bytes; larger ones come back NULL, to be read on their own."""
    limit = int(inline_bytes)
    columns = [f"({RESULTS_BYTES}) AS r_bytes"]
    columns += [f"CASE WHEN {RESULTS_BYTES} <= {limit} THEN r.{name}::text END AS r_{name}" for name in RESULT_TYPES]
    return ", ".join(columns)


JOB_FROM = """
FROM jobs j
LEFT JOIN result_types rt ON rt.job_id = j.id
LEFT JOIN results r ON r.job_id = j.id
"""


def job_json(row: dict[str, Any], *, raw_receipt: bool = False) -> dict[str, Any]:
    """The contract's job JSON of a row read with JOB_COLUMNS (or ``_raw_results``), with
    ``sweep``: a sweep's summary (core.sweeps.summary) or None, and ``receipt`` (a finished
    job's: seed, method, versions, node, queue and run seconds; its JSON text with ``raw_receipt``)."""
    job = {k: v for k, v in row.items() if not k.startswith(("rt_", "r_", "sweep_"))}
    receipt = row["r_receipt"]
    job["receipt"] = receipt if raw_receipt or receipt is None else json.loads(receipt)
    job["sweep"] = sweeps.summary(row["id"], row["metadata"], row["sweep_done"] or 0)
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


def raw_job_json(row: dict[str, Any]) -> dict[str, Any]:
    """``job_json`` of a row read with ``_raw_results``: ``results`` and ``receipt`` hold JSON
    TEXT (or None), ``results_bytes`` their stored size, ``results_inline`` False when they were too
    large to come with the job (read them with ``raw_results``)."""
    job = job_json(row, raw_receipt=True)
    job["results_bytes"] = row["r_bytes"]
    job["results_inline"] = _inline(row)
    return job


def _inline(row: dict[str, Any]) -> bool:
    """Whether a row read with ``_raw_results`` holds its results (none, or small enough)."""
    return row["r_bytes"] == 0 or any(row[f"r_{name}"] is not None for name in RESULT_TYPES)


def owned_by(column: str, owner: str | None) -> tuple[str, tuple[Any, ...]]:
    """An extra ``AND column = owner`` condition and its parameter; nothing for owner None (all)."""
    return ("", ()) if owner is None else (f" AND {column} = %s", (owner,))


async def get_job_raw(
    conn: psycopg.AsyncConnection, *, job_id: uuid.UUID, owner: str | None = None, inline_bytes: int
) -> dict[str, Any] | None:
    """``get_job`` with the results as JSON text (``raw_job_json``), inline up to ``inline_bytes``."""
    mine, param = owned_by("j.owner", owner)
    cur = await conn.execute(
        f"SELECT {_JOB_FIELDS}, {_raw_results(inline_bytes)} {JOB_FROM} WHERE j.id = %s{mine}", (job_id, *param)
    )
    row = await cur.fetchone()
    return None if row is None else raw_job_json(row)


async def raw_results(conn: psycopg.AsyncConnection, *, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """The results of ``job_ids`` that have some: {job id: {id, job_id, counts, quasi_dist, expval}},
    each result type as its JSON text (or None). Results never change once written."""
    cur = await conn.execute(
        "SELECT r.id, r.job_id, "
        + ", ".join(f"r.{name}::text AS {name}" for name in RESULT_TYPES)
        + " FROM results r WHERE r.job_id = ANY(%s)",
        (job_ids,),
    )
    return {row["job_id"]: row for row in await cur.fetchall()}


async def get_results(
    conn: psycopg.AsyncConnection, *, job_id: uuid.UUID, owner: str | None = None, inline_bytes: int
) -> dict[str, Any] | None:
    """A job's status, error and results in ONE statement (one snapshot: a job seen finished is
    seen with its results, which are written in the same transaction), or None if the job does
    not exist (with ``owner``: or is another user's).

    Returns {status, error, results, results_bytes, results_inline, sweep}: ``sweep`` is a
    sweep's summary (core.sweeps.summary) or None; ``results`` is None when the job has none,
    else {id, job_id, counts, quasi_dist, expval}, each type its JSON TEXT, all None when the
    results are over ``inline_bytes`` stored bytes (read them with ``raw_results``).
    """
    mine, param = owned_by("j.owner", owner)
    cur = await conn.execute(
        f"SELECT {visible_status('j.status')} AS status, j.error, r.id, r.job_id, {_raw_results(inline_bytes)},"
        f" jsonb_build_object('sweep', j.metadata->'sweep') AS sweep_metadata, {SWEEP_DONE} AS sweep_done"
        f" FROM jobs j LEFT JOIN results r ON r.job_id = j.id WHERE j.id = %s{mine}",
        (job_id, *param),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    results = None
    if row["id"] is not None:
        results = {"id": row["id"], "job_id": row["job_id"], **{name: row[f"r_{name}"] for name in RESULT_TYPES}}
    return {
        "status": row["status"],
        "error": row["error"],
        "results": results,
        "results_bytes": row["r_bytes"],
        "results_inline": _inline(row),
        "sweep": sweeps.summary(job_id, row["sweep_metadata"], row["sweep_done"] or 0),
    }


# What a job's live status shows (api/events.py): no program, no results.
_STATE = f"""
SELECT j.id, {visible_status("j.status")} AS status, j.attempts, {_waiting_for("j")} AS waiting_for, j.node_id,
       j.start_time, j.finish_time, j.target_simulator AS backend, j.owner, j.submission_date
  FROM jobs j
"""


async def job_states(
    conn: psycopg.AsyncConnection, *, job_ids: list[uuid.UUID], owner: str | None = None
) -> list[dict[str, Any]]:
    """The live status of those of ``job_ids`` that exist (with ``owner``: that are theirs), in no
    particular order: {id, status (as users see it), attempts, waiting_for, node_id, start_time,
    finish_time, backend, owner, submission_date}. One statement, whatever the number of ids."""
    mine, param = owned_by("j.owner", owner)
    cur = await conn.execute(f"{_STATE} WHERE j.id = ANY(%s){mine}", (job_ids, *param))
    return await cur.fetchall()


async def get_job_status(
    conn: psycopg.AsyncConnection, *, job_id: uuid.UUID, owner: str | None = None
) -> dict[str, Any] | None:
    """{status, error} of a job, or None if it does not exist (or, with ``owner``, is another's).
    ``status`` is the store's own, ``claimed`` included (for the services, not for users)."""
    mine, param = owned_by("owner", owner)
    cur = await conn.execute(f"SELECT status, error FROM jobs WHERE id = %s{mine}", (job_id, *param))
    return await cur.fetchone()
