"""The api served over real HTTP by uvicorn in a thread of its own (its own event loop, lifespan
and LISTEN connection, as the api process has), for tests that stream: httpx's ASGI transport
reads a whole response before it answers, and a stream that never ends never answers. And a
real client's event stream read in a thread (``Reader``)."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
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


class Reader:
    """A real client reading a stream in a thread of its own; after an event ``until`` holds for,
    it closes the stream (as a client that goes away). ``await next()`` gives the events one by one."""

    CLOSED = {"event": "<closed>"}

    def __init__(self, events: Iterator[dict[str, Any]], until: Callable[[dict[str, Any]], bool] | None = None):
        self._queue: queue.Queue[dict[str, Any] | BaseException] = queue.Queue()
        self._events, self._until = events, until
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._events:
                self._queue.put(event)
                if self._until is not None and self._until(event):
                    break
        except BaseException as error:  # handed to the test
            self._queue.put(error)
        finally:
            self._events.close()  # type: ignore[attr-defined]
            self._queue.put(self.CLOSED)

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        """The next event (``CLOSED`` once the stream is over); raises what the client raised."""
        item = await asyncio.to_thread(self._queue.get, True, timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    async def rest(self) -> list[dict[str, Any]]:
        """Every event up to the stream's close."""
        events = []
        while (event := await self.next()) is not self.CLOSED:
            events.append(event)
        return events


async def until_true(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Wait until ``condition()`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.02)
