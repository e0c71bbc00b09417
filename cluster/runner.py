"""The runner: a detached Ray actor that owns the jobs' Ray tasks.

Ray work shares fate with the process that owns it. If the dispatcher owned the job
tasks, a dispatcher restart would kill every running job. The runner, a detached
actor, owns them instead: the dispatcher asks it to run a job and waits for the
outcome; after a restart the new dispatcher adopts the jobs still in the runner and
waits on them again, and the executors' results land in Postgres either way.

Outcomes are Reports (cluster/messages.py): the executor's own (FINISHED, FAILED, DROPPED,
NEEDS_MEMORY) or the runner's: CANCELED, TIMED_OUT, LOST (worker or node died; ``kind``
says which), ERROR (Ray could not run it, e.g. a runtime_env that failed to build) and
UNKNOWN (no record of the job).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid

import ray

from cluster import executor
from cluster.messages import Report, Work
from core.domain import Outcome

log = logging.getLogger(__name__)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_run_job = ray.remote(executor.run_job)


def _text(error: BaseException) -> str:
    return _ANSI.sub("", str(error)).strip()


def _crash_text(error: BaseException) -> str:
    """Ray's account of a task's worker that died (WorkerCrashedError), in one line: the exit
    detail Ray gives (it does not name the signal)."""
    text = " ".join(_text(error).split())
    detail = re.search(r"Worker exit detail: (.*?\.)", text)
    return f"the task's worker process died: {detail.group(1) if detail else text[:300]}"


def classify(job_id: uuid.UUID, error: BaseException) -> Report:
    """The report for a Ray error raised while waiting on job ``job_id``'s task."""
    if isinstance(error, ray.exceptions.TaskCancelledError):
        return Report(job_id, Outcome.CANCELED)
    if isinstance(error, ray.exceptions.RuntimeEnvSetupError):
        lines = [line.strip() for line in _text(error).splitlines() if line.strip()]
        return Report(job_id, Outcome.ERROR, kind="runtime_env", error=lines[-1] if lines else repr(error))
    if isinstance(error, ray.exceptions.OutOfMemoryError):
        return Report(job_id, Outcome.ERROR, kind="oom", error=_text(error).splitlines()[0])
    if isinstance(error, ray.exceptions.WorkerCrashedError):  # the task's worker died, its node alive
        return Report(job_id, Outcome.LOST, kind="crash", error=_crash_text(error))
    if isinstance(error, (ray.exceptions.NodeDiedError, ray.exceptions.LocalRayletDiedError)):
        return Report(job_id, Outcome.LOST, kind="node", error=_text(error))
    return Report(job_id, Outcome.ERROR, kind=type(error).__name__, error=_text(error)[:2000])


class Runner:
    """Runs job tasks and keeps each outcome until a dispatcher has collected it."""

    def __init__(self) -> None:
        self._outcomes: dict[uuid.UUID, asyncio.Task] = {}
        self._refs: dict[uuid.UUID, ray.ObjectRef] = {}

    async def _run(self, work: Work, options: dict, timeout_s: float) -> Report:
        job_id = work.job_id
        ref = _run_job.options(**options).remote(work)
        self._refs[job_id] = ref
        try:
            return await asyncio.wait_for(asyncio.ensure_future(ref), timeout=max(timeout_s, 0.001))
        except TimeoutError:
            ray.cancel(ref, force=True)  # Aer does not listen to interrupts: end the worker
            return Report(job_id, Outcome.TIMED_OUT)
        except Exception as error:
            return classify(job_id, error)
        finally:
            self._refs.pop(job_id, None)

    async def run(self, work: Work, options: dict, timeout_s: float) -> Report:
        """Run the job's task with Ray ``options``, stopping it after ``timeout_s`` seconds."""
        self._outcomes[work.job_id] = asyncio.ensure_future(self._run(work, options, timeout_s))
        return await self.wait(work.job_id)

    async def wait(self, job_id: uuid.UUID) -> Report:
        """The report of a job this runner runs or ran (UNKNOWN when it holds none)."""
        task = self._outcomes.get(job_id)
        if task is None:
            return Report(job_id, Outcome.UNKNOWN)
        outcome = await asyncio.shield(task)
        self._outcomes.pop(job_id, None)
        return outcome

    def jobs(self) -> list[uuid.UUID]:
        """Ids of the jobs whose outcomes no dispatcher has collected yet."""
        return list(self._outcomes)

    def node_id(self) -> str:
        """The Ray node this runner lives on: it is never drained away (the tasks it owns would
        die with it)."""
        return ray.get_runtime_context().get_node_id()

    def cancel(self, job_id: uuid.UUID) -> bool:
        """Stop the job's task (ending its worker process). False if it holds no such task."""
        ref = self._refs.get(job_id)
        if ref is None:
            return False
        ray.cancel(ref, force=True)
        return True
