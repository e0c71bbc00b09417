"""Entry-point plumbing shared by the asyncio services: logging and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run(main: Callable[[], Awaitable[None]], name: str) -> None:
    """Configure logging, run ``main()`` until it returns or SIGTERM/SIGINT cancels it."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)

    async def _guarded() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await main()
        except asyncio.CancelledError:
            logging.getLogger(name).info("%s stopped", name)

    asyncio.run(_guarded())
