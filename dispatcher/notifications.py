"""Postgres notifications the dispatcher acts on: a running job canceled, a plugin admitted."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING

import psycopg
from psycopg_pool import AsyncConnectionPool

from core import store
from core.settings import Settings
from dispatcher import plugins

if TYPE_CHECKING:
    from dispatcher.service import Dispatcher

log = logging.getLogger(__name__)


async def _cancel_missed(pool: AsyncConnectionPool, dispatcher: "Dispatcher") -> None:
    """After (re)connecting: stop the work of in-flight jobs canceled while we were not listening."""
    ids = dispatcher.inflight()
    if not ids:
        return
    async with pool.connection() as conn:
        canceled = await store.canceled_among(conn, job_ids=ids)
    for job_id in canceled:
        dispatcher.cancel(job_id)


async def listen(settings: Settings, pool: AsyncConnectionPool, dispatcher: "Dispatcher") -> None:
    """LISTEN on both channels until cancelled, reconnecting after a Postgres restart."""
    background: set[asyncio.Task] = set()
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(settings.database_dsn, autocommit=True) as conn:
                await store.listen(conn, store.CANCEL_CHANNEL)
                await store.listen(conn, store.PLUGINS_CHANNEL)
                await _cancel_missed(pool, dispatcher)
                async for note in conn.notifies():
                    if note.channel == store.CANCEL_CHANNEL:
                        dispatcher.cancel(uuid.UUID(note.payload))
                    elif note.channel == store.PLUGINS_CHANNEL:
                        task = asyncio.create_task(plugins.prebuild(settings, pool, note.payload))
                        background.add(task)
                        task.add_done_callback(background.discard)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("notification listener lost its connection (%s); reconnecting", error)
            await asyncio.sleep(2)
