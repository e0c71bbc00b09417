"""The dispatcher's background work as small task objects: a name, an interval, an async run.

:class:`Tasks` starts them and stops them, all in one place. It is also the one place where a
failed run is caught, logged and counted (``Tasks.failures``, per task name, exported by
dispatcher/monitor.py), where the end of each good run is noted (``Tasks.last_ok``: the health
check's "Ray connected" is the cluster task's), and where the wait before running a failed task
again is decided, by a tenacity wait strategy (the task's interval unless it names another).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
    wait_fixed,
)
from tenacity.wait import wait_base

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One piece of background work: ``run()`` again ``interval_s`` seconds after each run ends.

    ``interval_s=None`` runs it once (a failure is counted, not retried). ``first_after_s``
    waits before the first run. ``retry_wait`` (a tenacity wait) is how long to wait after a
    failed run; by default the interval.
    """

    name: str
    run: Callable[[], Awaitable[object]]
    interval_s: float | None
    first_after_s: float = 0.0
    retry_wait: wait_base | None = None


class Tasks:
    """Runs :class:`Task` objects until :meth:`stop`; counts each task's failed runs."""

    def __init__(self) -> None:
        self.failures: Counter[str] = Counter()
        self.last_ok: dict[str, float] = {}  # task name -> time.monotonic() its last run ended well
        self._running: set[asyncio.Task] = set()

    def start(self, task: Task) -> None:
        """Run ``task`` in the background from now on (a task may start others)."""
        handle = asyncio.create_task(self._loop(task), name=f"task {task.name}")
        self._running.add(handle)
        handle.add_done_callback(self._running.discard)

    def running(self) -> list[str]:
        """The names of the tasks running now."""
        return sorted(handle.get_name().removeprefix("task ") for handle in self._running)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Cancel every task and wait (at most ``timeout_s``) for them to end."""
        handles = list(self._running)
        for handle in handles:
            handle.cancel()
        if handles:
            _, pending = await asyncio.wait(handles, timeout=timeout_s)
            for handle in pending:
                log.warning("%s did not stop within %g s", handle.get_name(), timeout_s)

    async def _loop(self, task: Task) -> None:
        if task.first_after_s:
            await asyncio.sleep(task.first_after_s)
        while True:
            await self._run(task)
            if task.interval_s is None:
                return
            await asyncio.sleep(task.interval_s)

    async def _run(self, task: Task) -> None:
        """One run of ``task``, run again on its retry wait until it succeeds (once: no retry)."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Exception),  # not CancelledError: that stops the task
            stop=stop_after_attempt(1) if task.interval_s is None else stop_never,
            wait=task.retry_wait or wait_fixed(task.interval_s or 0),
            before_sleep=lambda state: self._failed(task, state),
            retry_error_callback=lambda state: self._failed(task, state),
        )

        async def attempt() -> None:
            await task.run()
            self.last_ok[task.name] = time.monotonic()

        await retrying(attempt)

    def _failed(self, task: Task, state: RetryCallState) -> None:
        """The one place a failed run is counted and logged (the traceback once per failing streak)."""
        self.failures[task.name] += 1
        error = state.outcome.exception()
        after = f"runs again in {state.next_action.sleep:g} s" if state.next_action else "not run again"
        log.warning(
            "task %s failed (%s: %s); %s; %d failures so far",
            task.name,
            type(error).__name__,
            error,
            after,
            self.failures[task.name],
            exc_info=error if state.attempt_number == 1 else None,
        )
