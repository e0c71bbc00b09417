"""Clients waiting for a job to end: one LISTEN connection per api process.

The database notifies ``qserver_job_done`` with a job's id when the job becomes
finished, failed or canceled (migration 0007). ``GET /job/result/{id}?wait_s=`` waits
here instead of the client polling: the answer leaves about a millisecond after the
executor's commit, and a waiting client costs the server nothing until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

import psycopg
from prometheus_client import Gauge

from core import store

log = logging.getLogger(__name__)

# Connections held open by clients waiting on jobs, exported by api/metrics.py. Not registered
# anywhere here: each app's registry registers them (build_registry).
RESULT_WAITS = Gauge("qserver_api_result_waits", "GET /job/result/{id}?wait_s= requests waiting now", registry=None)
EVENT_STREAMS = Gauge(
    "qserver_api_event_streams",
    "Event streams open now (the events code holds it: `with EVENT_STREAMS.track_inprogress():`)",
    registry=None,
)


class JobWaiters:
    """Events per job id, set when the database says the job ended.

    Args:
        dsn: the database to LISTEN on (a connection of its own, not the pool's).
    """

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._events: dict[uuid.UUID, set[asyncio.Event]] = {}
        self._task: asyncio.Task | None = None
        self.listening = False  # the LISTEN connection is up (readiness, api/routes.py)

    def start(self) -> None:
        """Start listening (reconnecting after a Postgres restart) until :meth:`stop`."""
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        """Stop listening; waiters still waiting time out as usual."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.asynccontextmanager
    async def waiting(self, job_id: uuid.UUID) -> AsyncIterator[asyncio.Event]:
        """An event set when ``job_id`` ends. Enter it before reading the job's status, so
        that an end between the read and the wait is not missed."""
        event = asyncio.Event()
        self._events.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            waiting = self._events.get(job_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._events[job_id]

    def _wake(self, payload: str) -> None:
        try:
            job_id = uuid.UUID(payload)
        except ValueError:
            return
        for event in self._events.get(job_id, ()):
            event.set()

    def _wake_all(self) -> None:
        """Notifications may have been missed: let every waiter read the status again."""
        for events in self._events.values():
            for event in events:
                event.set()

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True) as conn:
                    await store.listen(conn, store.JOB_DONE_CHANNEL)
                    self.listening = True
                    self._wake_all()
                    async for note in conn.notifies():
                        self._wake(note.payload)
            except asyncio.CancelledError:
                self.listening = False
                raise
            except Exception as error:
                self.listening = False
                log.warning("job-done listener lost its connection (%s); reconnecting", error)
                self._wake_all()
                await asyncio.sleep(1)
