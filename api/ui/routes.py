"""The web page's routes: ``/ui`` (jobs), ``/ui/job/{id}``, ``/ui/cluster``, login and logout,
cancel and delete; ``/`` redirects to ``/ui``. Server-rendered (Jinja2, ``templates/``); the one
script (``static/ui.js``, ours) only follows the events streams. None is in the OpenAPI schema.

With authentication on, every page needs the session cookie of ``/ui/login`` (session.py): a
page without one redirects to the login; cancel, delete and logout carry the session's CSRF
token as the form field ``csrf``. With authentication off, the pages just work. Errors on a page
(no such job, a job that cannot be canceled) are an HTML page with the REST api's status code.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api import errors
from api.deps import LargeReadsDep, PoolDep, SettingsDep
from api.large_reads import caller_key
from api.routes import cluster_totals
from api.ui import charts, session
from core import store
from core.auth import ANONYMOUS, Caller
from core.domain import JobStatus, parse_job_id
from core.errors import JobNotFound, QServerError, Unauthenticated
from core.store.listing import STATUSES
from core.store.reads import RESULT_TYPES

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
UI = "/ui"
PAGE_SIZE = 50  # jobs a page of the table shows

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Viewer:
    """Who looks at the page: the caller, and the session (None while authentication is off)."""

    caller: Caller
    session: session.Session | None

    @property
    def csrf(self) -> str | None:
        """The token the page's forms carry (None: authentication off, no token needed)."""
        return self.session.csrf if self.session else None


async def page_viewer(request: Request) -> Viewer:
    """The viewer of a page (GET).

    Raises:
        Unauthenticated: authentication is on and the session cookie is missing, invalid,
            expired or its key revoked (the page redirects to the login).
    """
    if request.app.state.keys is None:
        return Viewer(ANONYMOUS, None)
    caller, found = await session.session_caller(request, sent_csrf=None)
    return Viewer(caller, found)


async def form_viewer(request: Request, csrf: Annotated[str | None, Form()] = None) -> Viewer:
    """The viewer behind a form's POST: with authentication on, only with the session's token.

    Raises:
        Unauthenticated: as ``page_viewer``.
        Forbidden: the form's ``csrf`` field is missing or not the session's token (HTTP 403).
    """
    if request.app.state.keys is None:
        return Viewer(ANONYMOUS, None)
    caller, found = await session.session_caller(request, sent_csrf=csrf)
    return Viewer(caller, found)


PageViewer = Annotated[Viewer, Depends(page_viewer)]
FormViewer = Annotated[Viewer, Depends(form_viewer)]


def render(request: Request, viewer: Viewer | None, name: str, status_code: int = 200, **context: Any) -> Response:
    """The template ``name`` with ``context``, the viewer and the page's base path."""
    return TEMPLATES.TemplateResponse(
        request,
        name,
        {
            "base": _root(request),
            "viewer": viewer,
            "auth_on": request.app.state.keys is not None,
            **context,
        },
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def _redirect(request: Request, path: str) -> RedirectResponse:
    """303 See Other to ``path`` under the app's root path (a POST's answer: the browser GETs it)."""
    return RedirectResponse(_root(request) + path, status_code=303)


# --- pages ---------------------------------------------------------------------------------------


@router.get("/")
async def root(request: Request) -> RedirectResponse:
    """The web page is the front door."""
    return RedirectResponse(_root(request) + UI, status_code=307)


ROW_FIELDS = (
    "id",
    "pointer",
    "status",
    "target_simulator",
    "owner",
    "submission_date",
    "start_time",
    "finish_time",
    "waiting_for",
)


@router.get(UI)
async def jobs_page(
    request: Request,
    viewer: PageViewer,
    pool: PoolDep,
    cursor: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    status: Annotated[str, Query(max_length=100)] = "",
    backend: Annotated[str, Query(max_length=100)] = "",
    deleted: Annotated[uuid.UUID | None, Query()] = None,
) -> Response:
    """The jobs table, newest first, a page at a time (lean rows: no programs, no results),
    optionally of some statuses and one backend; live through the events stream."""
    listing = store.Listing(
        cursor=cursor,
        order="desc",
        limit=PAGE_SIZE,
        statuses=store.parse_statuses([status]),
        backend=backend or None,
    )
    async with pool.connection() as conn:
        rows, next_cursor = await store.list_jobs_page(
            conn, listing=listing, owner=viewer.caller.owner_filter, fields=ROW_FIELDS, inline_bytes=0
        )
    filters = {k: v for k, v in (("status", ",".join(sorted(listing.statuses))), ("backend", backend)) if v}
    return render(
        request,
        viewer,
        "jobs.html",
        jobs=[_row(job) for job in rows],
        cursor=cursor,
        next_cursor=next_cursor,
        next_query=urllib.parse.urlencode({"cursor": next_cursor, **filters}),
        first_query=urllib.parse.urlencode(filters),
        statuses=STATUSES,
        status_filter=sorted(listing.statuses),
        backend_filter=backend,
        prepend=cursor == 0,
        deleted=deleted,
    )


def _row(job: dict[str, Any]) -> dict[str, Any]:
    """What a row of the jobs table shows of a job."""
    return {
        "id": str(job["id"]),
        "status": job["status"],
        "backend": job["target_simulator"],
        "owner": job["owner"],
        "submitted": job["submission_date"],
        "start": job["start_time"],
        "finish": job["finish_time"],
        "waiting_for": job["waiting_for"],
    }


@router.get(UI + "/job/{id}")
async def job_page(
    request: Request,
    viewer: PageViewer,
    id: str,  # noqa: A002 (the path parameter's name)
    pool: PoolDep,
    large_reads: LargeReadsDep,
    settings: SettingsDep,
) -> Response:
    """A job: status, timings, error, histograms of its counts and quasi-distribution,
    expectation values, receipt, program; cancel and delete buttons."""
    job_id = parse_job_id(id)
    async with pool.connection() as conn:
        job = await store.get_job_raw(
            conn, job_id=job_id, owner=viewer.caller.owner_filter, inline_bytes=settings.api_inline_result_bytes
        )
        if job is None:
            raise JobNotFound(f"job {job_id} not found")
    raw = job["results"]
    if not job["results_inline"]:
        async with large_reads.admit(caller_key(request, viewer.caller), job["results_bytes"]):
            async with pool.connection() as conn:
                raw = (await store.raw_results(conn, job_ids=[job_id])).get(job_id)
    results = {name: json.loads(raw[name]) for name in RESULT_TYPES if raw and raw.get(name) is not None}
    return render(request, viewer, "job.html", job=job, **_job_view(job, results))


def _job_view(job: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """The parts of the job page computed here: histograms, expectation values, receipt, timings."""
    counts = results.get("counts")
    quasi = results.get("quasi_dist")
    bits = len(next(iter(counts)).replace(" ", "")) if counts else None
    metadata = job["metadata"] or {}
    obs = metadata.get("obs") if isinstance(metadata.get("obs"), list) else []
    expval = results.get("expval")
    expvals = []
    if isinstance(expval, list):
        expvals = [(_observable(obs[i]) if i < len(obs) else f"#{i}", value) for i, value in enumerate(expval)]
    receipt = json.loads(job["receipt"]) if job["receipt"] else None
    status = JobStatus(job["status"])
    return {
        "counts": charts.histogram(counts) if counts else None,
        "quasi": charts.histogram(charts.quasi_labels(quasi, bits=bits)) if quasi else None,
        "expvals": expvals,
        "receipt": receipt,
        "terminal": status.is_terminal(),
        "can_cancel": status in (JobStatus.PENDING, JobStatus.RUNNING),
        "can_delete": status.is_terminal() or status == JobStatus.PENDING,
        "queue_s": _seconds(job["submission_date"], job["start_time"]),
        "run_s": _seconds(job["start_time"], job["finish_time"]),
    }


def _observable(pub: Any, limit: int = 6) -> str:
    """An observable (a list of [pauli, coefficient]) as text: ``1·ZZ + 0.5·XX``, cut after ``limit`` terms."""
    if not isinstance(pub, list):
        return str(pub)
    terms = [f"{charts.number(coeff)}·{pauli}" for pauli, coeff in pub[:limit]]
    more = f" + … ({len(pub) - limit} more)" if len(pub) > limit else ""
    return " + ".join(terms) + more


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


@router.get(UI + "/cluster")
async def cluster_page(request: Request, viewer: PageViewer, pool: PoolDep) -> Response:
    """The cluster: for admins nodes, tags, CPUs, GPUs, memory and what runs where; for users
    the totals and which tags and backends exist."""
    admin = viewer.caller.is_admin
    async with pool.connection() as conn:
        nodes = await store.list_nodes(conn)
        backends = await _all_backends(conn)
        running = await store.running_on_nodes(conn) if admin else []
    where: dict[str, list[dict[str, Any]]] = {}
    for job in running:
        where.setdefault(job["node_id"], []).append(job)
    return render(
        request,
        viewer,
        "cluster.html",
        totals=cluster_totals(nodes),
        nodes=nodes if admin else [],
        backends=backends,
        running=where,
        admin=admin,
    )


async def _all_backends(conn: Any) -> list[dict[str, Any]]:
    backends: list[dict[str, Any]] = []
    while True:
        page = await store.list_backends(conn, cursor=backends[-1]["pointer"] if backends else 0)
        backends += page
        if len(page) < store.PAGE_SIZE:
            return backends


# --- changes: cancel, delete -------------------------------------------------------------------


@router.post(UI + "/job/{id}/cancel")
async def cancel(request: Request, viewer: FormViewer, id: str, pool: PoolDep) -> Response:  # noqa: A002
    """Cancel the job (409 page when it already ended), then show it."""
    job_id = parse_job_id(id)
    async with pool.connection() as conn:
        await store.cancel_job(conn, job_id=job_id, owner=viewer.caller.owner_filter)
    return _redirect(request, f"{UI}/job/{job_id}")


@router.post(UI + "/job/{id}/delete")
async def delete(request: Request, viewer: FormViewer, id: str, pool: PoolDep) -> Response:  # noqa: A002
    """Delete the job (409 page while it runs), then show the table."""
    job_id = parse_job_id(id)
    async with pool.connection() as conn:
        await store.delete_job(conn, job_id=job_id, owner=viewer.caller.owner_filter)
    return _redirect(request, f"{UI}?deleted={job_id}")


# --- login, logout -------------------------------------------------------------------------------


@router.get(UI + "/login")
async def login_page(request: Request, next: str = UI) -> Response:  # noqa: A002
    """The login form (authentication off: straight to the page)."""
    if request.app.state.keys is None:
        return _redirect(request, UI)
    return render(request, None, "login.html", next=_local(next), message=None)


@router.post(UI + "/login")
async def login(
    request: Request,
    pool: PoolDep,
    api_key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = UI,  # noqa: A002
) -> Response:
    """Verify the API key once and set the session cookie; 401 with the form again when refused."""
    if request.app.state.keys is None:
        return _redirect(request, UI)
    try:
        caller = await request.app.state.keys.verify(pool, api_key.strip())
    except Unauthenticated as error:
        return render(request, None, "login.html", status_code=401, next=_local(next), message=str(error))
    assert caller.key_id is not None
    sessions: session.Sessions = request.app.state.sessions
    response = _redirect(request, _local(next))
    session.set_cookie(request, response, sessions.issue(caller.key_id), max_age_s=sessions.max_age_s)
    return response


@router.post(UI + "/logout")
async def logout(request: Request, csrf: Annotated[str | None, Form()] = None) -> Response:
    """End the session: the cookie is cleared (a valid session needs its CSRF token)."""
    if request.app.state.keys is not None and session.COOKIE in request.cookies:
        try:
            found = request.app.state.sessions.read(request.cookies[session.COOKIE])
        except Unauthenticated:
            found = None  # expired or invalid: nothing to protect, clear it
        if found is not None:
            session.check_csrf(found, csrf)
    response = _redirect(request, UI + "/login")
    session.clear_cookie(request, response)
    return response


def _local(path: str) -> str:
    """``path`` if it is one of the web page's own (no open redirect), else ``/ui``."""
    parts = urllib.parse.urlsplit(path)
    if parts.scheme or parts.netloc or not (parts.path == UI or parts.path.startswith(UI + "/")):
        return UI
    return urllib.parse.urlunsplit(("", "", parts.path, parts.query, ""))


# --- errors and install ------------------------------------------------------------------------


def _wants_page(request: Request) -> bool:
    path = request.url.path[len(_root(request)) :]
    return path == UI or path.startswith(UI + "/")


async def _page_error(request: Request, error: Exception) -> Response:
    """An error on a page: to the login when not logged in, else an HTML page with the status."""
    if isinstance(error, Unauthenticated):
        target = request.url.path[len(_root(request)) :] + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            target = UI
        response = _redirect(request, f"{UI}/login?" + urllib.parse.urlencode({"next": target}))
        if session.COOKIE in request.cookies:
            session.clear_cookie(request, response)
        return response
    if isinstance(error, RequestValidationError):
        code, message = 400, "; ".join(str(e.get("msg")) for e in error.errors()) or "malformed request"
    else:
        assert isinstance(error, QServerError)
        code, message = getattr(error, "status", None) or errors.status_for(error), str(error)
    return render(request, None, "error.html", status_code=code, code=code, message=message)


def install(app: FastAPI) -> None:
    """Add the pages and their static files to ``app``; errors on a page answer HTML (after
    ``api.errors.install``, whose JSON answers every other path)."""
    app.state.sessions = session.Sessions.from_settings(app.state.settings) if app.state.keys else None
    app.mount(UI + "/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    app.include_router(router)
    for kind in (QServerError, RequestValidationError):
        as_json = app.exception_handlers[kind]

        async def handler(request: Request, error: Exception, as_json: Any = as_json) -> Response:
            if _wants_page(request):
                return await _page_error(request, error)
            return await as_json(request, error)

        app.add_exception_handler(kind, handler)


def when(value: datetime | None) -> str:
    """A time as the page shows it: UTC, to the second."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def duration(seconds: float | None) -> str:
    """Seconds as the page shows them: 0.42 s, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def size(value: int | None) -> str:
    """Bytes as GiB/MiB for the cluster page."""
    if value is None:
        return ""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value} B"


TEMPLATES.env.globals.update(number=charts.number, short=charts.short, duration=duration, seconds=_seconds)
TEMPLATES.env.filters.update(when=when, size=size, iso=lambda v: v.isoformat() if v else "")
