"""Build the FastAPI app: one connection pool for the app's life, routes, docs, error handlers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import docs, errors, events, listing, metrics, plugins
from api.large_reads import LargeReads
from api.routes import router
from api.ui import routes as ui
from api.waiters import JobFeed
from core import auth, schema, store
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The api app. Settings default to the environment's (``QSERVER_*``).

    At start-up the lifespan refuses a database whose schema is not at head
    (``SchemaOutOfDate``) and opens the pool (``psycopg_pool.PoolTimeout`` if unreachable).

    Raises:
        UnsafeSettings: authentication off on a non-loopback bind without
            QSERVER_TRUSTED_LAN, or on without a usable QSERVER_AUTH_SECRET.
    """
    settings = settings or get_settings()
    mode = auth.auth_mode(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(schema.check, settings.database_dsn)
        pool = await store.open_pool(settings.database_dsn, max_size=settings.db_pool_size)
        app.state.pool = pool
        app.state.waiters = JobFeed(settings.database_dsn, pool)
        app.state.waiters.start()
        app.state.streams = events.StreamSlots(
            at_once=settings.events_streams, per_caller=settings.events_streams_per_caller
        )
        app.state.large_reads = LargeReads(
            at_once=settings.api_large_reads,
            per_caller=settings.api_large_reads_per_caller,
            wait_s=settings.api_large_read_wait_s,
        )
        if mode.on:
            log.info("authentication is on (%s): API keys required", mode.reason)
        else:
            log.warning("%s", mode.warning)
        log.info("api ready: pool of up to %d connections", settings.db_pool_size)
        try:
            yield
        finally:
            await app.state.waiters.stop()
            await pool.close()
            log.info("api stopped: pool closed")

    app = FastAPI(
        title="QServer",
        summary="Runs quantum circuits on a homelab Ray cluster; this is its REST api.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics_registry, app.state.metrics = metrics.build_registry()
    app.state.keys = auth.KeyVerifier.from_settings(settings) if mode.on else None
    app.include_router(router)
    app.include_router(listing.router)
    app.include_router(plugins.router)
    app.include_router(events.router)
    app.include_router(metrics.router)
    docs.install(app)
    errors.install(app)
    ui.install(app)  # after errors: a page's errors answer HTML
    return app
