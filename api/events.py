"""Live status as server-sent events: ``GET /api/v1/job/{id}/events`` and ``GET /api/v1/events``.

A job's stream sends ``event: status`` at once with the job's current state, one more per change
its user sees (pending, running on a node, back to pending, attempts, ``waiting_for``), and after
a terminal status ``event: end`` with the results (a sweep's summary too) or the error; then it
closes. A job deleted before it ran ends its stream with ``event: end``: its last state and
``deleted: true``. ``/events`` sends ``event: status`` for every change of the caller's jobs (an admin's or,
with authentication off, everyone's) and never closes on its own. Each event's ``data`` is one
JSON object (``job_event``), its ``id`` a number that grows by one per event (from
``Last-Event-ID`` + 1 when the client sends one: the stream restarts from the current state);
an idle stream carries a ``: keep-alive`` comment every ``settings.events_keepalive_s``.

Changes come from Postgres notifications through the api's one LISTEN connection (api/waiters.py,
migration 0011); a stream holds no database connection. Streams are admitted per caller
(``settings.events_streams_per_caller``, more: 429) and per api process
(``settings.events_streams``, more: 503), so one user's streams never starve another's; a stream
whose client goes away frees its slot and its watch at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import pydantic_core
from fastapi import APIRouter, Header, Query, Request, Response
from psycopg_pool import AsyncConnectionPool
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Message, Receive, Scope, Send

from api.deps import CallerDep, JobIdDep, LargeReadsDep, PoolDep, SettingsDep, WaitersDep
from api.large_reads import LargeReadRefused, LargeReads, caller_key, results_json
from api.models import ErrorDetail
from api.waiters import EVENT_STREAMS, TERMINAL, Watch, state_time
from core import store
from core.domain import VISIBLE_STATUSES
from core.errors import JobNotFound, QServerError
from core.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1")
STREAM = {"content": {"text/event-stream": {}}, "description": "a stream of server-sent events"}
_REFUSED = {
    401: {"model": ErrorDetail, "description": "authentication is on: no, a wrong or a revoked API key"},
    429: {"model": ErrorDetail, "description": "the caller holds QSERVER_EVENTS_STREAMS_PER_CALLER streams"},
    503: {"model": ErrorDetail, "description": "the api serves QSERVER_EVENTS_STREAMS streams"},
}
# fields of a state that, unchanged, make a change not worth an event (its time aside)
SHOWN = ("status", "attempts", "waiting_for", "node_id")
LARGE_READ_TRIES = 30  # an end's large results wait this many refusals of the admission at most


class StreamsRefused(QServerError):
    """A stream was not admitted: HTTP ``status`` (429: the caller's share; 503: the api's) with
    Retry-After."""

    def __init__(self, message: str, *, status: int, retry_after_s: int = 5):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class InvalidFilter(QServerError):
    """A ``status`` filter naming no status users see: HTTP 400."""


class StreamSlots:
    """Admission of event streams in one api process: at most ``at_once`` open, at most
    ``per_caller`` of them one caller's."""

    def __init__(self, *, at_once: int, per_caller: int):
        self._at_once = at_once
        self._per_caller = per_caller
        self._by_caller: collections.Counter[str] = collections.Counter()

    @property
    def open(self) -> int:
        """Streams admitted and not yet closed."""
        return self._by_caller.total()

    def take(self, who: str) -> Callable[[], None]:
        """A slot for one stream of ``who``; returns the function that frees it (once).

        Raises:
            StreamsRefused: 429 when ``who`` holds ``per_caller`` streams, 503 when the api
                holds ``at_once``.
        """
        if self._by_caller[who] >= self._per_caller:
            raise StreamsRefused(
                f"you already have {self._by_caller[who]} event streams open, the most one caller may "
                "(QSERVER_EVENTS_STREAMS_PER_CALLER): close one, or watch all your jobs with /api/v1/events",
                status=429,
            )
        if self.open >= self._at_once:
            raise StreamsRefused(
                f"the server serves {self.open} event streams, its most (QSERVER_EVENTS_STREAMS); try again",
                status=503,
            )
        self._by_caller[who] += 1
        freed = False

        def free() -> None:
            nonlocal freed
            if not freed:
                freed = True
                self._by_caller[who] -= 1
                if not self._by_caller[who]:
                    del self._by_caller[who]

        return free


class EventStream(EventSourceResponse):
    """An ``EventSourceResponse`` that closes ``resources`` (its slot, its watch) when the
    response is over, however it ends: the job's end, the client gone, an error, shutdown."""

    def __init__(
        self, events: AsyncIterator[ServerSentEvent], resources: contextlib.AsyncExitStack, settings: Settings
    ):
        super().__init__(
            events,
            ping=settings.events_keepalive_s,
            ping_message_factory=lambda: ServerSentEvent(comment="keep-alive", sep="\n"),
            sep="\n",
            client_close_handler_callable=self._client_gone,
        )
        self._resources = resources
        self._why = "it ended"

    async def _client_gone(self, _message: Message) -> None:
        self._why = "the client went away"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            with EVENT_STREAMS.track_inprogress():  # the metric qserver_api_event_streams
                await super().__call__(scope, receive, send)
        except BaseException as error:
            self._why = f"{type(error).__name__} {error}".strip()
            raise
        finally:
            await self._resources.aclose()
            log.info("GET %s: event stream closed: %s", scope.get("path"), self._why)


def job_event(state: dict[str, Any]) -> dict[str, Any]:
    """The data of an ``event: status``: {id, status, time (of the change), attempts,
    waiting_for, node_id, start_time, finish_time, backend, owner, submission_date}."""
    return {
        "id": state["id"],
        "status": state["status"],
        "time": state["time"],
        "attempts": state["attempts"],
        "waiting_for": state["waiting_for"],
        "node_id": state["node_id"],
        "start_time": state["start_time"],
        "finish_time": state["finish_time"],
        "backend": state["backend"],
        "owner": state["owner"],
        "submission_date": state["submission_date"],
    }


def _event(name: str, data: str, event_id: int) -> ServerSentEvent:
    return ServerSentEvent(data, event=name, id=str(event_id), sep="\n")


def _json(data: dict[str, Any]) -> str:
    return pydantic_core.to_json(data).decode()


def first_event_id(last_event_id: str | None) -> int:
    """The id of a stream's first event: one more than the client's ``Last-Event-ID`` (a
    reconnecting EventSource sends it), else 1; a malformed one is ignored."""
    try:
        return max(int(last_event_id or 0), 0) + 1
    except ValueError:
        return 1


def parse_statuses(values: list[str] | None) -> frozenset[str] | None:
    """The ``status`` filter: repeated and/or comma-separated names; None for none.

    Raises:
        InvalidFilter: a name that is not one of the statuses users see.
    """
    names = {name.strip() for value in values or () for name in value.split(",") if name.strip()}
    unknown = sorted(names - {status.value for status in VISIBLE_STATUSES})
    if unknown:
        allowed = ", ".join(sorted(status.value for status in VISIBLE_STATUSES))
        raise InvalidFilter(f"status: unknown status {', '.join(unknown)} (one of {allowed})")
    return frozenset(names) or None


LastEventId = Annotated[
    str | None,
    Header(alias="Last-Event-ID", description="the id of the last event seen: the new stream's ids go on from it"),
]
Statuses = Annotated[
    list[str] | None,
    Query(description="only jobs in these statuses (repeat it, or a comma list): pending, running, finished, ..."),
]


@router.get(
    "/job/{id}/events",
    response_class=EventSourceResponse,
    responses={200: STREAM, **_REFUSED, 400: {"model": ErrorDetail}, 404: {"model": ErrorDetail}},
    tags=["jobs"],
)
async def job_events(
    request: Request,
    caller: CallerDep,
    job_id: JobIdDep,
    pool: PoolDep,
    feed: WaitersDep,
    large_reads: LargeReadsDep,
    settings: SettingsDep,
    last_event_id: LastEventId = None,
) -> Response:
    """A job's live status as server-sent events: ``status`` at once and per change, then ``end``
    with the results or the error, and the stream closes (404 for another user's job)."""
    resources = contextlib.AsyncExitStack()
    try:
        watch = await resources.enter_async_context(feed.watching(Watch(job_id=job_id)))
        async with pool.connection() as conn:
            states = await store.job_states(conn, job_ids=[job_id], owner=caller.owner_filter)
        if not states:
            raise JobNotFound(f"job {job_id} not found")
        who = caller_key(request, caller)
        resources.callback(_slots(request).take(who))
    except BaseException:
        await resources.aclose()
        raise
    first = {**states[0], "time": state_time(states[0])}
    ending = _Ending(pool, large_reads, who, settings.api_inline_result_bytes)
    events = _job_stream(first, watch, ending, first_event_id(last_event_id))
    return EventStream(events, resources, settings)


@router.get("/events", response_class=EventSourceResponse, responses={200: STREAM, **_REFUSED}, tags=["jobs"])
async def all_events(
    request: Request,
    caller: CallerDep,
    feed: WaitersDep,
    settings: SettingsDep,
    status: Statuses = None,
    last_event_id: LastEventId = None,
) -> Response:
    """Every change of the caller's jobs (an admin's, or with authentication off: everyone's) as
    ``status`` events, without results; it never closes on its own. A job shows up at its first
    change after the stream opened (its start or its end, not its submission)."""
    statuses = parse_statuses(status)
    resources = contextlib.AsyncExitStack()
    resources.callback(_slots(request).take(caller_key(request, caller)))
    watch = await resources.enter_async_context(feed.watching(Watch(owner=caller.owner_filter, statuses=statuses)))
    return EventStream(_all_stream(watch, first_event_id(last_event_id)), resources, settings)


def _slots(request: Request) -> StreamSlots:
    return request.app.state.streams


async def _job_stream(
    state: dict[str, Any], watch: Watch, ending: _Ending, first_id: int
) -> AsyncIterator[ServerSentEvent]:
    ids = itertools.count(first_id)
    sent, data = None, job_event(state)
    while True:
        if state.get("deleted"):
            yield _event("end", _json({**data, "deleted": True}), next(ids))
            return
        shown = tuple(state[name] for name in SHOWN)
        if shown != sent:
            sent = shown
            data = job_event(state)
            yield _event("status", _json(data), next(ids))
            if state["status"] in TERMINAL:
                yield _event("end", await ending.data(data), next(ids))
                return
        state = await watch.next()


async def _all_stream(watch: Watch, first_id: int) -> AsyncIterator[ServerSentEvent]:
    for event_id in itertools.count(first_id):
        yield _event("status", _json(job_event(await watch.next())), event_id)


class _Ending:
    """The ``end`` event's data of a job: its last status event's, with ``results`` (and
    ``sweep``, a sweep's summary) when finished, ``error`` when failed or canceled. Results too
    large to come with the job are read under the admission of large reads (api/large_reads.py),
    waiting for it as long as LARGE_READ_TRIES refusals; after that ``results`` is null and
    ``results_error`` says why."""

    def __init__(self, pool: AsyncConnectionPool, large_reads: LargeReads, who: str, inline_bytes: int):
        self._pool = pool
        self._large_reads = large_reads
        self._who = who
        self._inline_bytes = inline_bytes

    async def data(self, status: dict[str, Any]) -> str:
        job_id: uuid.UUID = status["id"]
        async with self._pool.connection() as conn:
            row = await store.get_results(conn, job_id=job_id, inline_bytes=self._inline_bytes)
        if row is None:  # deleted meanwhile
            return _json(status)
        if status["status"] != "finished":
            return _json({**status, "error": row["error"]})
        extra = {} if row["sweep"] is None else {"sweep": row["sweep"]}
        raw = row["results"]
        if not row["results_inline"]:
            raw, refusal = await self._large(job_id, row["results_bytes"])
            if raw is None:
                extra["results_error"] = refusal
        text = _json({**status, **extra})
        return f'{text[:-1]},"results":{results_json(raw)}}}'

    async def _large(self, job_id: uuid.UUID, size: int) -> tuple[dict[str, Any] | None, str | None]:
        refusal = None
        for _ in range(LARGE_READ_TRIES):
            try:
                async with self._large_reads.admit(self._who, size):
                    async with self._pool.connection() as conn:
                        return (await store.raw_results(conn, job_ids=[job_id])).get(job_id), None
            except LargeReadRefused as error:
                refusal = f"{error}: read them at /api/v1/job/result/{job_id}"
                await asyncio.sleep(error.retry_after_s)
        return None, refusal
