"""Postgres notifications the dispatcher acts on: a running job canceled, a plugin admitted."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING

import psycopg
from psycopg_pool import AsyncConnectionPool

from core.settings import Settings
from dispatcher import plugins

if TYPE_CHECKING:
    from dispatcher.service import Dispatcher

log = logging.getLogger(__name__)
CANCEL_CHANNEL = "qserver_cancel"
PLUGINS_CHANNEL = "qserver_plugins"


async def _cancel_missed(pool: AsyncConnectionPool, dispatcher: "Dispatcher") -> None:
    """After (re)connecting: stop the work of in-flight jobs canceled while we were not listening."""
    ids = dispatcher.inflight()
    if not ids:
        return
    async with pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT id FROM jobs WHERE id = ANY(%s) AND status = 'canceled'", (ids,))
        ).fetchall()
    for row in rows:
        dispatcher.cancel(row["id"])


async def listen(settings: Settings, pool: AsyncConnectionPool, dispatcher: "Dispatcher") -> None:
    """LISTEN on both channels until cancelled, reconnecting after a Postgres restart."""
    background: set[asyncio.Task] = set()
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(settings.database_dsn, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CANCEL_CHANNEL}")
                await conn.execute(f"LISTEN {PLUGINS_CHANNEL}")
                await _cancel_missed(pool, dispatcher)
                async for note in conn.notifies():
                    if note.channel == CANCEL_CHANNEL:
                        dispatcher.cancel(uuid.UUID(note.payload))
                    elif note.channel == PLUGINS_CHANNEL:
                        task = asyncio.create_task(plugins.prebuild(settings, pool, note.payload))
                        background.add(task)
                        task.add_done_callback(background.discard)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("notification listener lost its connection (%s); reconnecting", error)
            await asyncio.sleep(2)
