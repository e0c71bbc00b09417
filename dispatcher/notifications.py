"""Postgres notifications the dispatcher acts on: a running job canceled, a plugin admitted, a job
stored outside ingest (a rerun) to be queued."""

from __future__ import annotations

import logging
import uuid
from functools import partial
from typing import TYPE_CHECKING

import psycopg
from psycopg_pool import AsyncConnectionPool

from core import queue, store
from core.errors import QueueUnavailable
from core.settings import Settings
from dispatcher import plugins
from dispatcher.tasks import Task, Tasks

if TYPE_CHECKING:
    from dispatcher.consumer import Dispatcher

log = logging.getLogger(__name__)
# after the LISTEN connection is lost (a Postgres restart), connect again this often
RECONNECT_S = 2.0


async def _cancel_missed(pool: AsyncConnectionPool, dispatcher: Dispatcher) -> None:
    """After (re)connecting: stop the work of in-flight jobs canceled while we were not listening."""
    ids = dispatcher.inflight()
    if not ids:
        return
    async with pool.connection() as conn:
        canceled = await store.canceled_among(conn, job_ids=ids)
    for job_id in canceled:
        dispatcher.cancel(job_id)


async def listen(settings: Settings, pool: AsyncConnectionPool, dispatcher: Dispatcher, tasks: Tasks) -> None:
    """LISTEN on the channels over one connection, as long as it lives; raises when it is lost
    (the task that runs this connects again). An admitted plugin's prebuild runs as a task of ``tasks``."""
    async with await psycopg.AsyncConnection.connect(settings.database_dsn, autocommit=True) as conn:
        await store.listen(conn, store.CANCEL_CHANNEL)
        await store.listen(conn, store.PLUGINS_CHANNEL)
        await store.listen(conn, store.SUBMIT_CHANNEL)
        await _cancel_missed(pool, dispatcher)
        async for note in conn.notifies():
            if note.channel == store.CANCEL_CHANNEL:
                dispatcher.cancel(uuid.UUID(note.payload))
            elif note.channel == store.SUBMIT_CHANNEL:
                try:
                    await queue.publish_job(dispatcher.publisher, settings.queue_name, uuid.UUID(note.payload))
                except QueueUnavailable as error:  # the sweeper of stale pending jobs publishes it later
                    log.warning("job_id=%s not queued yet: %s", note.payload, error)
            elif note.channel == store.PLUGINS_CHANNEL:
                tasks.start(Task("plugin-prebuild", partial(plugins.prebuild, settings, pool, note.payload), None))
