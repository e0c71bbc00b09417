"""Jobs and history a page at a time, for GET /api/v1/jobs and /history (and the web page).

A page is chosen by a :class:`Listing`: keyset paging on ``pointer`` in either order (``asc``:
the rows after ``cursor``, oldest first; ``desc``: the rows before it, newest first, cursor 0
meaning from the newest), filters on the status users see, the backend and the submission time,
and 1 to MAX_LIMIT rows. Each read asks for one row more than the page, to learn whether
another page follows: it returns ``(rows, next_cursor)``, next_cursor being the page's last
pointer, or None when the page is the last.

Rows are today's full rows (``fields`` None: what GET /job/{id} answers, results as JSON text)
or lean ones: only the fields asked for (``id`` and ``pointer`` always), read with only the
columns and joins they need, so that a page without programs and results stays small. Each
filter is a walk in pointer order over an index (migrations 0005 and 0012).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import psycopg

from core import sweeps
from core.domain import VISIBLE_STATUSES, JobStatus
from core.errors import InvalidQuery
from core.store.connect import PAGE_SIZE
from core.store.reads import (
    _JOB_FIELDS,
    JOB_FROM,
    RECEIPT,
    RESULT_TYPES,
    SWEEP_DONE,
    _inline,
    _literal,
    _raw_results,
    _waiting_for,
    raw_job_json,
    visible_status,
)

MAX_LIMIT = 1000  # rows a page may hold
ORDERS = ("asc", "desc")
STATUSES = tuple(s.value for s in JobStatus if s in VISIBLE_STATUSES)  # in lifecycle order
# The Job JSON's fields in the order it is written (api.models.Job; tests check they agree).
JOB_FIELDS = (
    "id",
    "pointer",
    "target_simulator",
    "qasm",
    "status",
    "submission_date",
    "start_time",
    "finish_time",
    "metadata",
    "result_types",
    "error",
    "node_id",
    "attempts",
    "waiting_for",
    "memory_bytes",
    "owner",
    "sweep",
    "results",
    "receipt",
)
# The HistoryEntry JSON's fields (api.models.HistoryEntry).
HISTORY_FIELDS = (
    "id",
    "pointer",
    "job_id",
    "target_simulator",
    "status",
    "metadata",
    "error",
    "node_id",
    "attempts",
    "submission_date",
    "start_time",
    "finish_time",
    "result_types",
    "results",
    "owner",
    "sweep",
)
_ALWAYS = ("id", "pointer")


@dataclasses.dataclass(frozen=True)
class Listing:
    """Which rows a page holds.

    ``cursor``: a pointer (0: from the start, or with ``desc`` from the newest); ``order``: asc
    (pointer > cursor, oldest first) or desc (pointer < cursor, newest first); ``limit``: rows a
    page, 1 to MAX_LIMIT; ``statuses``: the statuses users see (empty: all); ``backend``: a
    backend name (None: all); ``since``: jobs submitted at or after this aware datetime.

    Raises:
        InvalidQuery: an order, limit, cursor or status out of the above, or a naive ``since``;
            the message names the query parameter.
    """

    cursor: int = 0
    order: str = "asc"
    limit: int = PAGE_SIZE
    statuses: frozenset[str] = frozenset()
    backend: str | None = None
    since: datetime | None = None

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise InvalidQuery(f"order: {self.order!r} is not an order; use asc or desc")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidQuery(f"limit: {self.limit} rows is out of bounds; use 1 to {MAX_LIMIT}")
        if not 0 <= self.cursor < 2**63:
            raise InvalidQuery(f"cursor: {self.cursor} is not a pointer; use 0 or a row's pointer")
        unknown = sorted(set(self.statuses).difference(STATUSES))
        if unknown:
            raise InvalidQuery(f"status: unknown status {unknown[0]!r}; use {', '.join(STATUSES)}")
        if self.since is not None and self.since.utcoffset() is None:
            raise InvalidQuery(f"since: {self.since.isoformat()} has no time zone; add one (e.g. Z for UTC)")


def parse_statuses(values: Iterable[str]) -> frozenset[str]:
    """The statuses of ``status`` query values, each one status or a comma list of them
    (``["finished,failed", "canceled"]``); blanks are skipped. Checked by :class:`Listing`."""
    return frozenset(part.strip().lower() for value in values for part in value.split(",") if part.strip())


def pick_fields(values: Iterable[str], known: tuple[str, ...]) -> tuple[str, ...]:
    """The fields of ``fields`` query values (each one name or a comma list), with ``id`` and
    ``pointer``, in the order of ``known`` (JOB_FIELDS or HISTORY_FIELDS).

    Raises:
        InvalidQuery: a name that is not one of ``known``.
    """
    asked = {part.strip() for value in values for part in value.split(",") if part.strip()}
    unknown = sorted(asked.difference(known))
    if unknown:
        raise InvalidQuery(f"fields: unknown field {unknown[0]!r}; the fields are {', '.join(known)}")
    return tuple(name for name in known if name in asked or name in _ALWAYS)


def _where(listing: Listing, owner: str | None, alias: str, statuses: list[str]) -> tuple[str, list[Any]]:
    """The WHERE conditions of a page and their parameters. ``statuses`` are the stored
    statuses to keep (constants of JobStatus, written as literals so that the planner can use a
    partial index on them)."""
    conditions, params = [], []
    if listing.order == "asc":
        conditions.append(f"{alias}.pointer > %s")
        params.append(listing.cursor)
    elif listing.cursor:
        conditions.append(f"{alias}.pointer < %s")
        params.append(listing.cursor)
    if owner is not None:
        conditions.append(f"{alias}.owner = %s")
        params.append(owner)
    if statuses:
        conditions.append(f"{alias}.status IN ({', '.join(_literal(JobStatus(s).value) for s in statuses)})")
    if listing.backend is not None:
        conditions.append(f"{alias}.target_simulator = %s")
        params.append(listing.backend)
    if listing.since is not None:
        conditions.append(f"{alias}.submission_date >= %s")
        params.append(listing.since)
    return " AND ".join(conditions) or "true", params


def _limit(listing: Listing, owner: str | None) -> tuple[str, list[Any]]:
    """The LIMIT of a page's read (one row more than the page) and its parameters.

    A literal (a checked int) when the cursor is the only parameter of the read, so that
    Postgres keeps one generic plan of the prepared statement rather than planning each page
    anew (with LIMIT a parameter the generic plan looks costly, and planning took longer than
    running). With an owner, backend or time, whose best index depends on the value (a rare
    backend's is its own index, a common one's the pointer walk), it stays a parameter and
    each page is planned for its values.
    """
    if owner is None and listing.backend is None and listing.since is None:
        return f"LIMIT {int(listing.limit) + 1}", []
    return "LIMIT %s", [listing.limit + 1]


def _page(listing: Listing, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int | None]:
    """The page of ``rows`` (read with LIMIT limit + 1) and the cursor of the next one."""
    if len(rows) <= listing.limit:
        return rows, None
    rows = rows[: listing.limit]
    return rows, rows[-1]["pointer"]


# --- jobs --------------------------------------------------------------------------------------

# The columns of each lean field of a job (``id`` and ``pointer`` are always read).
_JOB_COLUMNS = {
    "target_simulator": "j.target_simulator",
    "qasm": "j.qasm",
    "status": f"{visible_status('j.status')} AS status",
    "submission_date": "j.submission_date",
    "start_time": "j.start_time",
    "finish_time": "j.finish_time",
    "metadata": "j.metadata",
    "result_types": "rt.counts AS rt_counts, rt.quasi_dist AS rt_quasi_dist, rt.expval AS rt_expval",
    "error": "j.error",
    "node_id": "j.node_id",
    "attempts": "j.attempts",
    "waiting_for": f"{_waiting_for('j')} AS waiting_for",
    "memory_bytes": "j.memory_bytes",
    "owner": "j.owner",
    "sweep": f"j.metadata AS sweep_metadata, {SWEEP_DONE} AS sweep_done",
    "receipt": f"{RECEIPT} AS r_receipt",
}


async def list_jobs_page(
    conn: psycopg.AsyncConnection,
    *,
    listing: Listing,
    owner: str | None = None,
    fields: tuple[str, ...] | None = None,
    inline_bytes: int,
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of jobs (with ``owner``: that user's) and the cursor of the next page.

    ``fields`` None: full rows as store.get_job_raw gives them (results and receipt as JSON text,
    results over ``inline_bytes`` stored bytes left for store.raw_results); else lean rows of
    those fields (pick_fields), with ``results_bytes`` and ``results_inline`` when ``results``
    is one of them.
    """
    statuses = [s.value for s in JobStatus if s.visible().value in listing.statuses]
    where, params = _where(listing, owner, "j", statuses)
    direction = "ASC" if listing.order == "asc" else "DESC"
    if fields is None:
        columns, joins = f"{_JOB_FIELDS}, {_raw_results(inline_bytes)}", JOB_FROM
    else:
        columns = ", ".join(
            ["j.id", "j.pointer"]
            + [_JOB_COLUMNS[name] for name in fields if name in _JOB_COLUMNS]
            + ([_raw_results(inline_bytes)] if "results" in fields else [])
        )
        joins = "FROM jobs j"
        if "result_types" in fields:
            joins += " LEFT JOIN result_types rt ON rt.job_id = j.id"
        if "results" in fields or "receipt" in fields:
            joins += " LEFT JOIN results r ON r.job_id = j.id"
    limit, limit_params = _limit(listing, owner)
    cur = await conn.execute(
        f"SELECT {columns} {joins} WHERE {where} ORDER BY j.pointer {direction} {limit}", (*params, *limit_params)
    )
    rows, next_cursor = _page(listing, await cur.fetchall())
    if fields is None:
        return [raw_job_json(row) for row in rows], next_cursor
    return [_lean_job(row, fields) for row in rows], next_cursor


def _lean_job(row: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """A lean row of ``fields`` as raw_job_json would give them."""
    job: dict[str, Any] = {}
    for name in fields:
        if name == "result_types":
            job[name] = {kind: bool(row[f"rt_{kind}"]) for kind in RESULT_TYPES}
        elif name == "sweep":
            job[name] = sweeps.summary(row["id"], row["sweep_metadata"], row["sweep_done"] or 0)
        elif name == "receipt":
            job[name] = row["r_receipt"]
        elif name == "results":
            job[name] = {kind: row[f"r_{kind}"] for kind in RESULT_TYPES}
            job["results_bytes"] = row["r_bytes"]
            job["results_inline"] = _inline(row)
        else:
            job[name] = row[name]
    return job


# --- history -----------------------------------------------------------------------------------

_HISTORY_COLUMNS = {
    "sweep": "h.metadata AS sweep_metadata, h.job_id AS sweep_job_id, h.status AS sweep_status",
}


async def list_history_page(
    conn: psycopg.AsyncConnection,
    *,
    listing: Listing,
    owner: str | None = None,
    fields: tuple[str, ...] | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of history rows (with ``owner``: that user's) and the cursor of the next page.

    Rows hold every field of HISTORY_FIELDS (``fields`` None) or those of ``fields``;
    ``results`` is always an object ({counts, quasi_dist, expval}, null where absent) and
    ``sweep`` a sweep's summary (core.sweeps.summary) or None.
    """
    statuses = sorted(listing.statuses)
    where, params = _where(listing, owner, "h", statuses)
    direction = "ASC" if listing.order == "asc" else "DESC"
    names = HISTORY_FIELDS if fields is None else fields
    columns = ", ".join(_HISTORY_COLUMNS.get(name, f"h.{name}") for name in names)
    limit, limit_params = _limit(listing, owner)
    cur = await conn.execute(
        f"SELECT {columns} FROM history h WHERE {where} ORDER BY h.pointer {direction} {limit}",
        (*params, *limit_params),
    )
    rows, next_cursor = _page(listing, await cur.fetchall())
    for row in rows:
        if "results" in row:
            row["results"] = row["results"] or {"counts": None, "quasi_dist": None, "expval": None}
        if "sweep_metadata" in row:
            metadata, job_id, status = row.pop("sweep_metadata"), row.pop("sweep_job_id"), row.pop("sweep_status")
            sweep = sweeps.of_metadata(metadata)  # a finished sweep has every binding's items
            done = sweep.bindings if sweep and status == JobStatus.FINISHED else 0
            row["sweep"] = sweeps.summary(job_id, metadata, done)
    return rows, next_cursor
