"""``/metrics`` and ``/health`` over HTTP for the services that serve no HTTP of their own
(ingest, dispatcher).

A :class:`Monitor` runs a small Starlette app with uvicorn in a thread of its own, so that it
installs no signal handlers and costs the service's event loop nothing between scrapes. What
needs the service's state asynchronously (its health checks, a queue's depth before a scrape)
runs on the service's event loop, with a timeout: a loop that does not answer in time is
itself a failed check. The api serves both on its own port (api/metrics.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)

OK = "ok"
# Seconds the service's event loop gets to run a health check or a scrape's refresh.
LOOP_TIMEOUT_S = 3.0

Checks = dict[str, str]
"""A health check's answer: {check name: "ok" or why it fails}."""


def health_answer(service: str, checks: Checks) -> tuple[int, dict]:
    """The HTTP status and JSON body of a health answer: 200 when every check is "ok", else 503.

    The body: ``{"service": ..., "status": "OK" | "unavailable", "checks": {...}}``.
    """
    healthy = all(value == OK for value in checks.values())
    body = {"service": service, "status": "OK" if healthy else "unavailable", "checks": checks}
    return (200 if healthy else 503), body


class MonitorFailed(OSError):
    """The monitor's HTTP server did not start (e.g. its port is taken)."""


class Monitor:
    """``GET /metrics`` (Prometheus text from ``registry``) and ``GET /health`` on host:port.

    Args:
        service: the service's name, in the health answer and the thread's name.
        host, port: where to listen (settings.monitor_host, the service's monitor port).
        registry: what ``/metrics`` exports.
        health: the service's checks, run on the service's event loop.
        refresh: run on the service's event loop before each scrape (collectors read what it
            stored), or None.
    """

    def __init__(
        self,
        *,
        service: str,
        host: str,
        port: int,
        registry: CollectorRegistry,
        health: Callable[[], Awaitable[Checks]],
        refresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.service = service
        self._registry = registry
        self._health = health
        self._refresh = refresh
        self._loop: asyncio.AbstractEventLoop | None = None
        app = Starlette(routes=[Route("/metrics", self._metrics), Route("/health", self._health_route)])
        config = uvicorn.Config(
            app, host=host, port=port, loop="asyncio", http="h11", lifespan="off", log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name=f"{service} monitor", daemon=True)
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def start(self, timeout_s: float = 10.0) -> None:
        """Start serving, from the service's event loop; returns once the port listens.

        Raises:
            MonitorFailed: the server stopped or did not listen within ``timeout_s`` (its
                reason is in the log: uvicorn logs a port in use).
        """
        self._loop = asyncio.get_running_loop()
        self._thread.start()
        deadline = self._loop.time() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or self._loop.time() > deadline:
                raise MonitorFailed(f"{self.service}'s /metrics and /health could not listen on {self.address}")
            await asyncio.sleep(0.02)
        log.info("%s: /metrics and /health on http://%s", self.service, self.address)

    def _serve(self) -> None:
        try:
            self._server.run()
        except SystemExit:  # uvicorn exits when it cannot listen (logged); start() reports it
            pass

    async def stop(self) -> None:
        """Stop serving and wait (at most 5 s) for the thread to end."""
        self._server.should_exit = True
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, 5.0)

    async def _on_service_loop(self, make: Callable[[], Awaitable]):
        """Run ``make()`` on the service's loop, from the server's; TimeoutError after LOOP_TIMEOUT_S."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(make(), self._loop)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), LOOP_TIMEOUT_S)
        except TimeoutError:
            future.cancel()
            raise

    async def _metrics(self, request: Request) -> Response:
        if self._refresh is not None:
            try:
                await self._on_service_loop(self._refresh)
            except Exception as error:  # export what is known; the health answer says what fails
                log.warning("%s: refreshing metrics failed: %s: %s", self.service, type(error).__name__, error)
        return Response(generate_latest(self._registry), media_type=CONTENT_TYPE_LATEST)

    async def _health_route(self, request: Request) -> JSONResponse:
        try:
            checks = await self._on_service_loop(self._health)
        except TimeoutError:
            checks = {"event_loop": f"the service's event loop did not answer within {LOOP_TIMEOUT_S:g} s"}
        except Exception as error:
            checks = {"health": f"the health check failed: {type(error).__name__}: {error}"}
        status, body = health_answer(self.service, checks)
        return JSONResponse(body, status_code=status)
