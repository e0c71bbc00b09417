"""The ``/api/v1`` routes: jobs (read, cancel, delete), results, history, backends, cluster."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import math
import uuid
from typing import Annotated, Any, Literal

import numpy as np
import psycopg
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from api.deps import (
    AdminDep,
    CallerDep,
    ConnDep,
    JobIdDep,
    LargeReadsDep,
    PoolDep,
    SettingsDep,
    WaitersDep,
)
from api.errors import NoResults
from api.large_reads import job_body, large_results, result_body
from api.models import (
    Backend,
    Cluster,
    DeletedJob,
    ErrorDetail,
    Health,
    Job,
    JobResult,
    Readiness,
    SweepItems,
)
from api.waiters import RESULT_WAITS
from core import capabilities, idempotency, store
from core.auth import Caller
from core.domain import JobStatus
from core.errors import InvalidJob, JobNotFound
from core.monitor import OK, health_answer
from core.settings import Settings

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
_BAD = {400: {"model": ErrorDetail, "description": "malformed id or cursor"}}
_MISSING = {404: {"model": ErrorDetail, "description": "no such job or backend"}}
_CONFLICT = {409: {"model": ErrorDetail, "description": "the job's status does not allow it"}}
_AUTH = {401: {"model": ErrorDetail, "description": "authentication is on: no, a wrong or a revoked API key"}}
_PENDING = {429: {"model": ErrorDetail, "description": "the user's cap on pending jobs"}}
_ADMIN = {**_AUTH, 403: {"model": ErrorDetail, "description": "a user's key: admins only"}}

router = APIRouter(prefix=PREFIX)
MAX_ITEMS = 10_000  # a sweep's items per page

Cursor = Annotated[
    int,
    Query(
        ge=0,
        le=2**63 - 1,
        description=f"the last pointer you have seen; the page holds the next {store.PAGE_SIZE} rows",
    ),
]


@router.get("/health", response_model=Health, tags=["health"])
async def health() -> dict[str, str]:
    """Liveness: the api process answers."""
    return {"status": "OK"}


@router.get(
    "/health/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "a check failed: the answer names it"}},
    tags=["health"],
)
async def ready(pool: PoolDep, waiters: WaitersDep) -> JSONResponse:
    """Readiness: a pooled database connection passes its check within 2 s, and the listener
    that ends result waits is connected. 503 naming what fails."""
    checks = {"database": OK, "job_done_listener": OK}
    try:
        async with pool.connection(timeout=2.0):
            pass  # the pool checks a connection on checkout
    except (psycopg.OperationalError, PoolTimeout) as error:
        checks["database"] = f"no database connection: {type(error).__name__}: {error}"
    if not waiters.listening:
        checks["job_done_listener"] = "not connected to the database: result waits answer at their deadline"
    status, body = health_answer("api", checks)
    return JSONResponse(body, status_code=status)


@router.get("/job/{id}", response_model=Job, responses={**_AUTH, **_BAD, **_MISSING}, tags=["jobs"])
async def get_job(
    request: Request,
    caller: CallerDep,
    job_id: JobIdDep,
    pool: PoolDep,
    large_reads: LargeReadsDep,
    settings: SettingsDep,
) -> Response:
    """One job: its program, status, timings, result types and results (404 for another user's)."""
    async with pool.connection() as conn:
        job = await store.get_job_raw(
            conn, job_id=job_id, owner=caller.owner_filter, inline_bytes=settings.api_inline_result_bytes
        )
    if job is None:
        raise JobNotFound(f"job {job_id} not found")
    raw = (await large_results(request, caller, pool, large_reads, [job])).get(job["id"], job["results"])
    return Response(job_body(job, raw), media_type="application/json")


WaitSeconds = Annotated[
    float,
    Query(
        ge=0,
        description="seconds to wait for a pending or running job to end before answering "
        "(0: answer at once); the answer leaves as soon as the job ends. A longer wait is cut to "
        "the server's QSERVER_MAX_RESULT_WAIT_S "
        f"(default {Settings.model_fields['max_result_wait_s'].default:g} s)",
    ),
]


@router.get(
    "/job/result/{id}",
    response_model=JobResult,
    responses={**_AUTH, **_BAD, **_MISSING},
    tags=["jobs"],
)
async def get_job_result(
    request: Request,
    caller: CallerDep,
    job_id: JobIdDep,
    pool: PoolDep,
    waiters: WaitersDep,
    settings: SettingsDep,
    large_reads: LargeReadsDep,
    wait_s: WaitSeconds = 0.0,
) -> Response:
    """The results of a finished job; 404 naming the job's status when it has none.

    With ``wait_s``, a job still pending or running is waited on (no connection held) for up
    to that many seconds (at most ``settings.max_result_wait_s``): the results come back as soon
    as it finishes, a failure's or
    cancel's 404 as soon as that happens, and a 404 naming the status when the wait ends first.
    A job that finishes while waited on is answered from its end's notification when that
    carries its results (migration 0014), else read again.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait_s, settings.max_result_wait_s)
    async with waiters.waiting(job_id) as ended:
        while True:
            ended.clear()
            async with pool.connection() as conn:
                row = await store.get_results(
                    conn, job_id=job_id, owner=caller.owner_filter, inline_bytes=settings.api_inline_result_bytes
                )
            if row is None:
                raise JobNotFound(f"job {job_id} not found")
            if row["results"] is not None:
                job = {"id": job_id, **row}
                raw = (await large_results(request, caller, pool, large_reads, [job])).get(job_id, row["results"])
                return Response(result_body(raw, row["sweep"]), media_type="application/json")
            remaining = deadline - loop.time()
            if JobStatus(row["status"]).is_terminal() or remaining <= 0:
                raise NoResults(f"job {job_id} has no results: {_why(row['status'], row['error'])}")
            with RESULT_WAITS.track_inprogress(), contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ended.wait(), timeout=remaining)
            if (answer := _answer_from(ended.change, caller, settings)) is not None:
                return answer  # it finished and its end carried its results: not read again


@router.get(
    "/job/{id}/items",
    response_model=SweepItems,
    responses={**_AUTH, **_BAD, **_MISSING},
    tags=["jobs"],
)
async def get_sweep_items(
    caller: CallerDep,
    job_id: JobIdDep,
    conn: ConnDep,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="the first binding's index (flat C order)")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_ITEMS, description=f"bindings per page, at most {MAX_ITEMS}")] = 1000,
    format: Annotated[  # noqa: A002 (the query parameter's name)
        Literal["json", "npy"],
        Query(description="json, or npy: the page's expectation values packed as one NPY file"),
    ] = "json",
) -> Response:
    """A page of a sweep job's results, one item per binding; those not computed yet are left
    out (a running sweep fills in chunk by chunk). 404 for a job that is not a sweep.

    ``format=npy``: the expectation values of the page's items packed as an NPY file
    (float64, shape (items, observables), numpy.load), headers ``X-Items-Offset`` (the first
    item's index) and ``X-Items-Count``; 400 for a sweep that does not ask for them."""
    found = await store.read_items_raw(conn, job_id=job_id, owner=caller.owner_filter, offset=offset, limit=limit)
    if found is None:
        raise JobNotFound(f"job {job_id} not found")
    sweep, items = found
    if not sweep:
        raise JobNotFound(f"job {job_id} is not a sweep: its results are at /api/v1/job/result/{job_id}")
    shape = sweep.get("shape", [])
    if format == "npy":
        return packed_expvals(job_id, items)
    head = (
        f'{{"job_id":"{job_id}","shape":{json.dumps(shape)},"bindings":{math.prod(shape)},'
        f'"offset":{offset},"limit":{limit},"items":['
    )
    body = ",".join(
        f'{{"index":{index},{text[1:]}'
        for index, text in items  # an item holds at least one result type
    )
    return Response(head + body + "]}", media_type="application/json")


def packed_expvals(job_id: uuid.UUID, items: list[tuple[int, str]]) -> Response:
    """``items`` ((index, item JSON text)) as an NPY file of their expectation values.

    Raises:
        InvalidJob: an item has none (the sweep asks for counts or quasi_dist only).
    """
    values = []
    for _, text in items:
        expval = json.loads(text).get("expval")
        if expval is None:
            raise InvalidJob(f"job {job_id} has no expectation values to pack: ask for format=json")
        values.append(expval)
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values, dtype="<f8").reshape(len(values), -1 if values else 0), allow_pickle=False)
    headers = {"X-Items-Offset": str(items[0][0] if items else 0), "X-Items-Count": str(len(items))}
    return Response(buffer.getvalue(), media_type="application/x-npy", headers=headers)


@router.post(
    "/job/{id}/rerun",
    response_model=Job,
    status_code=201,
    responses={**_AUTH, **_BAD, **_MISSING, **_CONFLICT, **_PENDING},
    tags=["jobs"],
)
async def rerun_job(
    request: Request,
    caller: CallerDep,
    job_id: JobIdDep,
    pool: PoolDep,
    large_reads: LargeReadsDep,
    settings: SettingsDep,
) -> Response:
    """Run a finished job again from its receipt: a new job (201) with the same program,
    bindings, backend, result types and metadata, and the seed the first run used, so a seeded
    simulation gives identical results. Its metadata ``rerun_of`` names the job. 409 for a job
    with no receipt (not finished, or a third-party plugin's). With an ``Idempotency-Key``
    header (as gRPC's ``idempotency-key``), the same request sent again answers the job it made
    the first time; the key used for another request is 409."""
    new_id = uuid.uuid4()
    key = idempotency.check_key(request.headers.getlist(idempotency.METADATA_NAME))
    async with pool.connection() as conn:
        new_id = await store.insert_job_once(
            conn,
            key=key,
            digest=hashlib.sha256(f"rerun {job_id}".encode()).digest(),
            job_id=new_id,
            owner=caller.name,
            store_job=store.rerun_job,
            source=job_id,
            owner_filter=caller.owner_filter,
            max_pending=settings.max_pending_per_user if caller.name else None,
        )
    log.info("job_id=%s rerun of %s by %s", new_id, job_id, caller.name or "-")
    created = await get_job(request, caller, new_id, pool, large_reads, settings)
    created.status_code = 201
    return created


@router.put(
    "/job/cancel/{id}",
    response_model=Job,
    responses={**_AUTH, **_BAD, **_MISSING, **_CONFLICT},
    tags=["jobs"],
)
async def cancel_job(caller: CallerDep, job_id: JobIdDep, conn: ConnDep) -> dict[str, Any]:
    """Cancel a pending or running job; the job after the change.

    A pending job never runs; a running job's Ray work is stopped by the dispatcher.
    Whichever of cancel and completion lands first wins; 409 for a job already
    finished, failed or canceled.
    """
    job = await store.cancel_job(conn, job_id=job_id, owner=caller.owner_filter)
    log.info("job_id=%s canceled by %s", job_id, caller.name or "-")
    return job


@router.delete(
    "/job/{id}",
    response_model=DeletedJob,
    responses={**_AUTH, **_BAD, **_MISSING, **_CONFLICT},
    tags=["jobs"],
)
async def delete_job(caller: CallerDep, job_id: JobIdDep, conn: ConnDep) -> dict[str, Any]:
    """Delete a job with its result types and results; 409 while it runs. History stays."""
    await store.delete_job(conn, job_id=job_id, owner=caller.owner_filter)
    log.info("job_id=%s deleted by %s", job_id, caller.name or "-")
    return {"id": job_id, "deleted": True}


def _answer_from(change: store.JobChange | None, caller: Caller, settings: Settings) -> Response | None:
    """The result answer a waited-on job's end carried (migration 0014), exactly as the read
    would give it, or None: read the job. The request's first read already found the job
    visible to ``caller``; a change of another owner's job is never answered from all the same."""
    if change is None or change.status != JobStatus.FINISHED or change.results is None:
        return None
    if caller.owner_filter is not None and change.owner != caller.owner_filter:
        return None
    if change.results_bytes is None or change.results_bytes > settings.api_inline_result_bytes:
        return None  # the read would have read them on their own (api/large_reads.py): do so
    return Response(result_body(change.results), media_type="application/json")


def _why(status: str, error: str | None) -> str:
    if status == JobStatus.FAILED:
        return f"it failed: {error}" if error else "it failed"
    if status == JobStatus.CANCELED:
        return "it was canceled"
    return f"it is {status}"


@router.get("/backends", response_model=list[Backend], responses=_BAD, tags=["backends"])
async def list_backends(conn: ConnDep, settings: SettingsDep, cursor: Cursor = 0) -> list[dict[str, Any]]:
    """Enabled backends, a page at a time: those with pointer > cursor; each says if it needs a
    GPU, and what it can run (``capabilities``, as GET /backend/{name})."""
    return [_with_capabilities(row, settings) for row in await store.list_backends(conn, cursor=cursor)]


@router.get("/backend/{name}", response_model=Backend, responses=_MISSING, tags=["backends"])
async def get_backend(name: str, conn: ConnDep, settings: SettingsDep) -> dict[str, Any]:
    """One backend by name with its capabilities: the simulation methods it runs, the most
    active qubits per method, its result types, its plugin's version and whether it needs a GPU
    (null where a third-party plugin does not declare them); 404 when unknown or when its plugin
    was removed."""
    return _with_capabilities(await store.describe_backend(conn, name=name), settings)


def _with_capabilities(row: dict[str, Any], settings: Settings) -> dict[str, Any]:
    return {**row, "capabilities": capabilities.of_backend(row, max_active_qubits=settings.max_active_qubits)}


@router.get("/cluster", response_model=Cluster, responses=_ADMIN, tags=["cluster"])
async def get_cluster(admin: AdminDep, conn: ConnDep) -> dict[str, Any]:
    """The cluster's nodes as the dispatcher keeps them in Postgres, and totals.

    Nodes come alive ones first, then in the order they were first seen; a node that
    left stays, with ``alive`` false. Totals sum the nodes alive now; ``nodes_known``
    and ``tags_known`` count every node ever seen. Memory is in bytes.

    Admin-only (it names the machines and their addresses): 403 for a user's key.
    """
    nodes = await store.list_nodes(conn)
    return {"nodes": nodes, "totals": cluster_totals(nodes)}


def cluster_totals(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the alive ``nodes``, plus how many nodes and tags were ever seen."""
    alive = [n for n in nodes if n["alive"]]
    return {
        "nodes_alive": len(alive),
        "nodes_known": len(nodes),
        "cpus_total": sum(n["cpus_total"] for n in alive),
        "cpus_free": sum(n["cpus_free"] for n in alive),
        "gpus_total": sum(n["gpus_total"] for n in alive),
        "gpus_free": sum(n["gpus_free"] for n in alive),
        "memory_total": sum(n["memory_total"] for n in alive),
        "memory_free": sum(n["memory_free"] for n in alive),
        "jobs_running": sum(n["jobs_running"] for n in alive),
        "tags": sorted({t for n in alive for t in n["tags"]}),
        "tags_known": sorted({t for n in nodes for t in n["tags"]}),
    }
