"""GET /api/v1/jobs and /history: pages of jobs and of history rows, filtered, in either order,
with every field or only those asked for (core/store/listing.py reads them).

The answer stays a JSON list, as upstream's client expects; the header ``X-Next-Cursor`` holds
the cursor of the next page in the same order, absent on the last page. A request with only
``cursor``, as upstream's client sends, gets the answer it always got: the 20 full rows after
the cursor, oldest first. Every bad parameter is a 400 that names it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from api.deps import CallerDep, ConnDep, LargeReadsDep, PoolDep, SettingsDep
from api.large_reads import RAW_FIELDS, job_body, large_results, results_json
from api.models import ErrorDetail, HistoryEntry, Job, row_model
from core import store
from core.store.listing import STATUSES

router = APIRouter(prefix="/api/v1", tags=["jobs"])
NEXT_CURSOR = "X-Next-Cursor"
_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorDetail, "description": "a malformed or unknown parameter (the message names it)"},
    401: {"model": ErrorDetail, "description": "authentication is on: no, a wrong or a revoked API key"},
}
_PAGE = {
    "headers": {
        NEXT_CURSOR: {
            "description": "the cursor of the next page in the same order; absent on the last page",
            "schema": {"type": "integer"},
        }
    }
}

Cursor = Annotated[
    int,
    Query(
        ge=0,
        le=2**63 - 1,
        description="the last pointer you have seen (the previous page's X-Next-Cursor): the page holds the "
        "rows after it (order=desc: before it; 0 with desc: from the newest)",
    ),
]
Statuses = Annotated[
    list[str] | None,
    Query(
        description=f"only rows in these statuses: repeat it or give a comma list ({', '.join(STATUSES)})",
        examples=["finished,failed"],
    ),
]
BackendName = Annotated[str | None, Query(max_length=100, description="only jobs on this backend", examples=["aer"])]
Since = Annotated[
    datetime | None,
    Query(
        description="only jobs submitted at or after this time (ISO 8601; without a time zone: UTC)",
        examples=["2025-01-31T12:00:00Z"],
    ),
]
Order = Annotated[Literal["asc", "desc"], Query(description="asc: oldest first (pointer > cursor); desc: newest first")]
Limit = Annotated[int, Query(ge=1, le=store.MAX_LIMIT, description=f"rows a page, 1 to {store.MAX_LIMIT}")]


def _fields(model: type[BaseModel]) -> Any:
    """The ``fields`` query parameter of rows of ``model``."""
    return Annotated[
        list[str] | None,
        Query(
            description="only these fields in each row (repeat it or give a comma list; id and pointer always "
            f"come): {', '.join(model.model_fields)}. Without it, every field.",
            examples=["id,status,target_simulator,submission_date"],
        ),
    ]


JobFields, HistoryFields = _fields(Job), _fields(HistoryEntry)


def _listing(
    cursor: int, status: list[str] | None, backend: str | None, since: datetime | None, order: str, limit: int
) -> store.Listing:
    """The store's Listing of the query. Raises InvalidQuery (400) naming a bad parameter."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return store.Listing(
        cursor=cursor,
        order=order,
        limit=limit,
        statuses=store.parse_statuses(status or ()),
        backend=backend,
        since=since,
    )


def _headers(next_cursor: int | None) -> dict[str, str] | None:
    return None if next_cursor is None else {NEXT_CURSOR: str(next_cursor)}


@router.get("/jobs", response_model=list[Job], responses={**_RESPONSES, 200: _PAGE})
async def list_jobs(
    request: Request,
    caller: CallerDep,
    pool: PoolDep,
    large_reads: LargeReadsDep,
    settings: SettingsDep,
    cursor: Cursor = 0,
    status: Statuses = None,
    backend: BackendName = None,
    since: Since = None,
    order: Order = "asc",
    limit: Limit = store.PAGE_SIZE,
    fields: JobFields = None,
) -> Response:
    """Jobs a page at a time (a user's: their own), in submission order (``order``), filtered by
    status, backend and submission time; each row every field of GET /job/{id}, or those of
    ``fields`` (a page of lean rows without ``qasm`` and ``results`` stays small)."""
    listing = _listing(cursor, status, backend, since, order, limit)
    chosen = None if fields is None else store.pick_fields(fields, store.JOB_FIELDS)
    async with pool.connection() as conn:
        jobs, next_cursor = await store.list_jobs_page(
            conn,
            listing=listing,
            owner=caller.owner_filter,
            fields=chosen,
            inline_bytes=settings.api_inline_result_bytes,
        )
    large = await large_results(request, caller, pool, large_reads, jobs)
    if chosen is None:
        rows = [job_body(job, large.get(job["id"], job["results"])) for job in jobs]
    else:
        rows = [lean_job_body(job, chosen, large.get(job["id"], job.get("results"))) for job in jobs]
    return Response(f"[{','.join(rows)}]", media_type="application/json", headers=_headers(next_cursor))


@router.get("/history", response_model=list[HistoryEntry], responses={**_RESPONSES, 200: _PAGE})
async def list_history(
    response: Response,
    caller: CallerDep,
    conn: ConnDep,
    cursor: Cursor = 0,
    status: Statuses = None,
    backend: BackendName = None,
    since: Since = None,
    order: Order = "asc",
    limit: Limit = store.PAGE_SIZE,
    fields: HistoryFields = None,
) -> Any:
    """One row per job that reached a terminal status, a page at a time, filtered and ordered
    as GET /jobs; each row every field, or those of ``fields``.

    Each row holds the job's result types and results as they were then, and outlives
    the job. A user sees their own rows.
    """
    listing = _listing(cursor, status, backend, since, order, limit)
    chosen = None if fields is None else store.pick_fields(fields, store.HISTORY_FIELDS)
    rows, next_cursor = await store.list_history_page(conn, listing=listing, owner=caller.owner_filter, fields=chosen)
    if chosen is None:  # written by FastAPI through HistoryEntry, as it always was
        response.headers.update(_headers(next_cursor) or {})
        return rows
    body = ",".join(row_model(HistoryEntry, chosen).model_validate(row).model_dump_json() for row in rows)
    return Response(f"[{body}]", media_type="application/json", headers=_headers(next_cursor))


def lean_job_body(job: dict[str, Any], fields: tuple[str, ...], raw: dict[str, Any] | None) -> str:
    """The JSON of a lean job row (store.list_jobs_page with ``fields``): each field written as the
    Job model writes it, in its order; ``results`` (``raw``) and ``receipt`` passed through."""
    plain = tuple(name for name in fields if name not in RAW_FIELDS)
    text = row_model(Job, plain).model_validate(job).model_dump_json()
    extras = []
    if "results" in fields:
        extras.append(f'"results":{results_json(raw)}')
    if "receipt" in fields:
        extras.append(f'"receipt":{job["receipt"] or "null"}')
    return f"{text[:-1]},{','.join(extras)}}}" if extras else text
