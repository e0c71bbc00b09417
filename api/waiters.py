"""Jobs' changes as Postgres announces them, fanned out from ONE LISTEN connection per api process.

The database notifies ``qserver_job_status`` of every change of a job that its user sees
(migration 0011: a start, an end, back to pending; payload ``store.JobChange``). Two kinds of
listeners share the connection:

- waiters (``GET /job/result/{id}?wait_s=``): a :class:`Waiter` per waiting request, ended
  when its job ends with the change that ended it. A finished job's change may carry its
  results (migration 0014: small ones written in the statement that finished it), which the
  request answers with; else it reads the job itself. The answer leaves about a millisecond
  after the executor's commit, and a waiting client costs the server nothing until then.
- watches (the server-sent event streams, api/events.py): one per stream, of one job or of
  all jobs (of one owner, or everyone's). A change that some watch wants is read ONCE
  (``store.job_states``: one statement for every change waiting to be read, whatever the
  number of streams) and its row handed to every watch that wants it. Changes nobody watches
  are never read.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import psycopg
from prometheus_client import Gauge
from psycopg_pool import AsyncConnectionPool

from core import store
from core.domain import TERMINAL_STATUSES, JobStatus
from core.store import JobChange

log = logging.getLogger(__name__)

TERMINAL = frozenset(status.value for status in TERMINAL_STATUSES)
READ_BATCH = 500  # jobs read in one statement
BACKLOG = 10_000  # jobs a watch keeps unsent; beyond, its oldest are dropped (a stream that stopped reading)
# Connections held open by clients waiting on jobs, exported by api/metrics.py. Not registered
# anywhere here: each app's registry registers them (build_registry).
RESULT_WAITS = Gauge("qserver_api_result_waits", "GET /job/result/{id}?wait_s= requests waiting now", registry=None)
EVENT_STREAMS = Gauge(
    "qserver_api_event_streams",
    "Event streams open now (the events code holds it: `with EVENT_STREAMS.track_inprogress():`)",
    registry=None,
)


def state_time(state: dict[str, Any]) -> datetime:
    """When a job's live ``state`` (a ``store.job_states`` row) began, from the row alone: its
    finish, its start, else its submission (a job sent back to pending has no date of that)."""
    if state["status"] in TERMINAL and state["finish_time"] is not None:
        return state["finish_time"]
    if state["status"] == JobStatus.RUNNING and state["start_time"] is not None:
        return state["start_time"]
    return state["submission_date"]


class Waiter:
    """One waiting request's wake-up: ended when its job ends (or when notifications may have
    been missed), with the change that ended it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.change: JobChange | None = None  # the job's end; None: unknown, read the job

    def end(self, change: JobChange | None) -> None:
        """Wake the request: its job ended with ``change`` (None: it may have, read it)."""
        self.change = change
        self._event.set()

    def clear(self) -> None:
        """Forget an earlier end (before reading the job again)."""
        self.change = None
        self._event.clear()

    async def wait(self) -> None:
        """Until it is ended."""
        await self._event.wait()


class Watch:
    """What one stream has yet to send: jobs' latest states, in the order they changed (a job
    that changes twice before the stream sends keeps only its latest state; a stream that stops
    reading keeps at most BACKLOG jobs, the oldest dropped).

    Args:
        job_id: the one job watched; None: every job of ``owner`` (None: everyone's) whose
            status is one of ``statuses`` (None: any).
    """

    def __init__(
        self, *, job_id: uuid.UUID | None = None, owner: str | None = None, statuses: frozenset[str] | None = None
    ) -> None:
        self.job_id = job_id
        self.owner = owner
        self.statuses = statuses
        self._states: dict[uuid.UUID, dict[str, Any]] = {}
        self._ready = asyncio.Event()

    def wants(self, status: str, owner: str | None) -> bool:
        """Whether a job of ``owner`` in ``status`` is this watch's (its job already matched)."""
        return (self.owner is None or owner == self.owner) and (self.statuses is None or status in self.statuses)

    def put(self, state: dict[str, Any]) -> None:
        """Keep ``state`` (a row with its ``time``) to be sent, replacing the job's earlier one."""
        self._states.pop(state["id"], None)
        self._states[state["id"]] = state
        if len(self._states) > BACKLOG:
            del self._states[next(iter(self._states))]
        self._ready.set()

    async def next(self) -> dict[str, Any]:
        """The next state to send, waiting for one."""
        while not self._states:
            self._ready.clear()
            await self._ready.wait()
        return self._states.pop(next(iter(self._states)))


class JobFeed:
    """The api process's one LISTEN connection, its waiters and its watches (module docstring).

    Args:
        dsn: the database to LISTEN on (a connection of its own, not the pool's).
        pool: the pool that watched jobs are read through.
    """

    def __init__(self, dsn: str, pool: AsyncConnectionPool) -> None:
        self._dsn = dsn
        self._pool = pool
        self._waiters: dict[uuid.UUID, set[Waiter]] = {}
        self._by_job: dict[uuid.UUID, set[Watch]] = {}
        self._by_owner: dict[str | None, set[Watch]] = {}  # None: every owner's jobs
        self._unread: dict[uuid.UUID, JobChange | None] = {}  # None: read it, the change is unknown
        self._read_wanted = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.listening = False  # the LISTEN connection is up (readiness, api/routes.py)

    def start(self) -> None:
        """Start listening (reconnecting after a Postgres restart) and reading until :meth:`stop`."""
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._read())]

    async def stop(self) -> None:
        """Stop; waiters still waiting time out as usual, watches get nothing more."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def watch_count(self) -> int:
        """Watches registered now (one per open stream)."""
        return sum(map(len, self._by_job.values())) + sum(map(len, self._by_owner.values()))

    @contextlib.asynccontextmanager
    async def waiting(self, job_id: uuid.UUID) -> AsyncIterator[Waiter]:
        """A waiter ended when ``job_id`` ends, with the change that ended it. Enter it before
        reading the job's status, so that an end between the read and the wait is not missed."""
        waiter = Waiter()
        self._waiters.setdefault(job_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            _discard(self._waiters, job_id, waiter)

    @contextlib.asynccontextmanager
    async def watching(self, watch: Watch) -> AsyncIterator[Watch]:
        """``watch`` registered for the block: changes it wants are put into it. Enter it before
        reading the job's first state, so that a change between the read and the watch is not
        missed (the stream drops a state equal to the one it sent last)."""
        index, key = (self._by_job, watch.job_id) if watch.job_id is not None else (self._by_owner, watch.owner)
        index.setdefault(key, set()).add(watch)
        try:
            yield watch
        finally:
            _discard(index, key, watch)

    def _note(self, payload: str) -> None:
        change = JobChange.parse(payload)
        if change is None:
            return
        if change.status in TERMINAL or change.status == store.DELETED:
            for waiter in self._waiters.get(change.id, ()):
                waiter.end(change)
        if change.status == store.DELETED:
            self._gone(change.id, change.time)
        elif change.id in self._by_job or any(
            watch.wants(change.status, change.owner)
            for key in {None, change.owner}
            for watch in self._by_owner.get(key, ())
        ):
            self._unread[change.id] = change
            self._read_wanted.set()

    def _missed(self) -> None:
        """Notifications may have been missed: waiters read the status again, watched jobs are read."""
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.end(None)
        for job_id in self._by_job:
            self._unread.setdefault(job_id, None)
        self._read_wanted.set()

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True) as conn:
                    await store.listen(conn, store.JOB_STATUS_CHANNEL)
                    self.listening = True
                    self._missed()
                    async for note in conn.notifies():
                        self._note(note.payload)
            except asyncio.CancelledError:
                self.listening = False
                raise
            except Exception as error:
                self.listening = False
                log.warning("job status listener lost its connection (%s); reconnecting", error)
                self._missed()
                await asyncio.sleep(1)

    async def _read(self) -> None:
        """Read the changed jobs some watch wants, a batch per statement, and hand them out."""
        while True:
            await self._read_wanted.wait()
            self._read_wanted.clear()
            while self._unread:
                ids = list(itertools.islice(self._unread, READ_BATCH))
                batch = {job_id: self._unread.pop(job_id) for job_id in ids}
                try:
                    async with self._pool.connection() as conn:
                        states = await store.job_states(conn, job_ids=list(batch))
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.warning("could not read %d changed jobs for their streams (%s); again in 1 s", len(ids), error)
                    for job_id, change in batch.items():
                        self._unread.setdefault(job_id, change)
                    await asyncio.sleep(1)
                    continue
                self._hand_out(states, batch)

    def _gone(self, job_id: uuid.UUID, time: datetime) -> None:
        """Job ``job_id`` was deleted: its watches get ``{id, time, deleted: True}``."""
        for watch in self._by_job.get(job_id, ()):
            watch.put({"id": job_id, "time": time, "deleted": True})

    def _hand_out(self, states: list[dict[str, Any]], changes: dict[uuid.UUID, JobChange | None]) -> None:
        for job_id in changes.keys() - {state["id"] for state in states}:
            self._gone(job_id, datetime.now(UTC))
        for state in states:
            change = changes.get(state["id"])
            if change is not None and change.status != state["status"]:
                continue  # it changed again since: that change's notification follows
            state["time"] = change.time if change is not None else state_time(state)
            for watch in self._by_job.get(state["id"], ()):
                watch.put(state)
            for key in {None, state["owner"]}:
                for watch in self._by_owner.get(key, ()):
                    if watch.wants(state["status"], state["owner"]):
                        watch.put(state)


def _discard(index: dict[Any, set[Any]], key: Any, member: Any) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(member)
        if not members:
            del index[key]
