"""The runner: a detached Ray actor that owns the jobs' Ray tasks.

Ray work shares fate with the process that owns it. If the dispatcher owned the job
tasks, a dispatcher restart would kill every running job. The runner, a detached
actor, owns them instead: the dispatcher asks it to run a job and waits for the
outcome; after a restart the new dispatcher adopts the jobs still in the runner and
waits on them again, and the executors' results land in Postgres either way.

Outcomes are plain dicts: the executor's own ("finished", "failed", "dropped",
"needs_memory") or "canceled", "timed_out", "lost" (worker or node died; ``kind``
says which) and "error" (Ray could not run it, e.g. a runtime_env that failed to build).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import ray

from cluster import executor

log = logging.getLogger(__name__)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_run_job = ray.remote(executor.run_job)


def _text(error: BaseException) -> str:
    return _ANSI.sub("", str(error)).strip()


def classify(error: BaseException) -> dict[str, Any]:
    """The outcome for a Ray error raised while waiting on a job's task."""
    if isinstance(error, ray.exceptions.TaskCancelledError):
        return {"status": "canceled"}
    if isinstance(error, ray.exceptions.RuntimeEnvSetupError):
        lines = [line.strip() for line in _text(error).splitlines() if line.strip()]
        return {"status": "error", "kind": "runtime_env", "error": lines[-1] if lines else repr(error)}
    if isinstance(error, ray.exceptions.OutOfMemoryError):
        return {"status": "error", "kind": "oom", "error": _text(error).splitlines()[0]}
    if isinstance(error, ray.exceptions.WorkerCrashedError):
        return {"status": "lost", "kind": "worker", "error": _text(error)}
    if isinstance(error, (ray.exceptions.NodeDiedError, ray.exceptions.LocalRayletDiedError)):
        return {"status": "lost", "kind": "node", "error": _text(error)}
    return {"status": "error", "kind": type(error).__name__, "error": _text(error)[:2000]}


class Runner:
    """Runs job tasks and keeps each outcome until a dispatcher has collected it."""

    def __init__(self) -> None:
        self._outcomes: dict[str, asyncio.Task] = {}
        self._refs: dict[str, ray.ObjectRef] = {}

    async def _run(self, payload: dict, options: dict, timeout_s: float) -> dict[str, Any]:
        job_id = payload["id"]
        ref = _run_job.options(**options).remote(payload)
        self._refs[job_id] = ref
        try:
            return await asyncio.wait_for(asyncio.ensure_future(ref), timeout=max(timeout_s, 0.001))
        except asyncio.TimeoutError:
            ray.cancel(ref, force=True)  # Aer does not listen to interrupts: end the worker
            return {"status": "timed_out"}
        except Exception as error:
            return classify(error)
        finally:
            self._refs.pop(job_id, None)

    async def run(self, payload: dict, options: dict, timeout_s: float) -> dict[str, Any]:
        """Run the job's task with Ray ``options``, stopping it after ``timeout_s`` seconds."""
        job_id = payload["id"]
        self._outcomes[job_id] = asyncio.ensure_future(self._run(payload, options, timeout_s))
        return await self.wait(job_id)

    async def wait(self, job_id: str) -> dict[str, Any]:
        """The outcome of a job this runner runs or ran ({"status": "unknown"} otherwise)."""
        task = self._outcomes.get(job_id)
        if task is None:
            return {"status": "unknown"}
        outcome = await asyncio.shield(task)
        self._outcomes.pop(job_id, None)
        return outcome

    def jobs(self) -> list[str]:
        """Ids of the jobs whose outcomes no dispatcher has collected yet."""
        return list(self._outcomes)

    def cancel(self, job_id: str) -> bool:
        """Stop the job's task (ending its worker process). False if it holds no such task."""
        ref = self._refs.get(job_id)
        if ref is None:
            return False
        ray.cancel(ref, force=True)
        return True
