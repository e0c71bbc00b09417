"""The api served over real HTTP by uvicorn in a thread of its own (its own event loop, lifespan
and LISTEN connection, as the api process has), for tests that stream: httpx's ASGI transport
reads a whole response before it answers, and a stream that never ends never answers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from api.app import create_app
from core.settings import Settings


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Served:
    """An api served in a thread: its ``url``, its ``app`` (``app.state``: the feed, the
    stream slots) and the event ``loop`` it runs in."""

    url: str
    app: Any
    loop: asyncio.AbstractEventLoop

    def tasks(self) -> int:
        """Tasks alive in the api's event loop now."""

        async def count() -> int:
            return len(asyncio.all_tasks())

        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(5)


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[Served]:
    """``create_app(settings)`` served on a free port until the block ends.

    Raises:
        RuntimeError: it did not start within 30 s.
    """
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=f"api-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the api did not start")
        time.sleep(0.05)
    try:
        yield Served(f"http://127.0.0.1:{port}", app, server.servers[0].get_loop())
    finally:
        server.should_exit = True
        thread.join(30)
