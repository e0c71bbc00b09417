"""The dispatcher's consumer: claim delivered jobs, place them, run them.

Deliveries are claimed in batches: whatever has arrived since the last claim, up to
``settings.batch_max_jobs`` ids, moves from pending to running in one guarded UPDATE,
and the messages are acked. A small built-in Aer job then goes to a warm executor
(cluster/batch.py) with whatever other small jobs have queued up behind it; any
other job is placed (placement.decide) and run by the runner (a detached Ray actor
that owns the job's task, cluster/runner.py). Either way the executor writes the
job's outcome to Postgres itself; the consumer records only what Ray reports: a
worker or node lost (the job runs again, up to max_attempts), a runtime_env that
could not be built, a timeout, a cancel. A message for a job that is not pending
(canceled, deleted, already claimed) is acked and dropped; a message that is not a
job id is rejected to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

import ray
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from psycopg_pool import AsyncConnectionPool

from cluster import batch, executor
from cluster.messages import Report, Work
from core import queue, store
from core.domain import BUILTIN_PLUGIN, JobStatus, Outcome
from core.settings import Settings
from dispatcher.cluster import ClusterView
from dispatcher.placement import (
    Decision,
    batch_memory_bytes,
    decide,
    first_memory_bytes,
    job_cpus,
    runs_in_batch,
    task_options,
)

log = logging.getLogger(__name__)
NODE_ID = re.compile(r"node ID: ([0-9a-f]{16,})")
_warm_up = ray.remote(executor.warm_up)


def start_executor(settings: Settings) -> ray.actor.ActorHandle:
    """Start one warm executor (cluster/batch.py): an actor owned by this dispatcher, so it
    ends with it. It takes no CPU of Ray's (it would hold it for good and starve the jobs
    that run as tasks); Ray spreads the executors over the nodes."""
    return (
        ray.remote(batch.Executor)
        # two threads: a cancel reaches the executor while it runs a batch
        .options(num_cpus=0, max_restarts=0, scheduling_strategy="SPREAD", max_concurrency=2)
        .remote(batch_memory_bytes(settings))
    )


def job_timeout(job: store.ClaimedJob, settings: Settings) -> float:
    """Seconds the job may run: its metadata ``timeout_s``, capped by ``settings.max_timeout_s``."""
    asked = job.metadata.get("timeout_s")
    return min(float(asked), settings.max_timeout_s) if asked else settings.max_timeout_s


def failure_reason(job: store.ClaimedJob, report: Report, settings: Settings) -> str:
    """The ``error`` text of a job whose run ended LOST or ERROR."""
    kind, error = report.kind, report.error or ""
    if kind == "runtime_env":
        what = (
            f"the GPU simulator ({', '.join(settings.gpu_pip_packages)})"
            if job.needs_gpu
            else f"plugin {job.plugin}=={job.plugin_version}"
        )
        return f"could not install {what} on the node (its Ray runtime_env failed to build): {error}"
    if kind == "oom":
        return f"out of memory: Ray's memory monitor ended the worker because its node ran low on memory ({error})"
    if kind == "crash":
        return f"the process simulating the job died ({error}), its node alive: the program crashed the simulator"
    if kind == "worker":
        return f"worker lost: the process running the job died ({error})"
    if kind == "node":
        return f"node lost: the node running the job died ({error})"
    return f"the executor did not finish: {kind}: {error}"


class Dispatcher:
    """Consumes the jobs queue and keeps at most ``settings.dispatcher_prefetch`` jobs in flight.

    ``executors`` are warm executor actors (cluster/batch.py) for small jobs, on the nodes
    ``executor_nodes`` names (Ray node ids, same order); with none, every job runs as a Ray task
    of its own. Call :meth:`start` before consuming.
    """

    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool,
        view: ClusterView,
        runner: ray.actor.ActorHandle,
        publisher: AbstractChannel,
        executors: list[ray.actor.ActorHandle] | None = None,
        executor_nodes: list[str | None] | None = None,
    ):
        self._settings = settings
        self._pool = pool
        self._view = view
        self._runner = runner
        self.publisher = publisher
        self._slots = asyncio.Semaphore(settings.dispatcher_prefetch)
        self._watchers: set[asyncio.Task] = set()
        self._inflight: set[uuid.UUID] = set()
        self._arrived: list[tuple[uuid.UUID, AbstractIncomingMessage]] = []
        self._arrival = asyncio.Event()
        self._small: asyncio.Queue[store.ClaimedJob] = asyncio.Queue()
        self._on_executor: dict[uuid.UUID, int] = {}  # job id -> the warm executor running its batch
        self._crashed: dict[uuid.UUID, str] = {}  # job id -> how its first run crashed (retried once)
        self._executors = list(executors or [])
        # the node each warm executor lives on (None: not known yet), the ones running a batch,
        # and the nodes being drained (no new batch goes to an executor there)
        self._executor_nodes = list(executor_nodes or [None] * len(self._executors))
        self._busy: set[int] = set()
        self._draining: set[str] = set()
        # jobs handed to the runner (to Ray) not yet back: the job and the memory it asked; and
        # those whose task was cancelled to park them again (their node began draining)
        self._placed: dict[uuid.UUID, tuple[store.ClaimedJob, int]] = {}
        self._reparking: dict[uuid.UUID, Decision] = {}
        self._budget = batch_memory_bytes(settings)
        self._loops: list[asyncio.Task] = []

    def start(self) -> None:
        """Start claiming deliveries, and one loop per warm executor feeding it batches."""
        self._loops = [asyncio.create_task(self._claim_loop())]
        self._loops += [asyncio.create_task(self._batch_loop(i)) for i in range(len(self._executors))]

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        """Handle one delivery: decode it and leave it for the next claim."""
        try:
            job_id = uuid.UUID(message.body.decode())
        except (UnicodeDecodeError, ValueError):
            log.warning("rejecting undecodable message %r to the dead-letter queue", message.body[:80])
            await message.reject(requeue=False)
            return
        await self._slots.acquire()  # the slot passes to the claim loop
        self._arrived.append((job_id, message))
        self._arrival.set()

    async def _claim_loop(self) -> None:
        while True:
            await self._arrival.wait()
            self._arrival.clear()
            while self._arrived:
                batch = self._arrived[: self._settings.batch_max_jobs]
                del self._arrived[: len(batch)]
                try:
                    await self._claim(batch)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("claiming %d jobs failed", len(batch))

    async def _claim(self, batch: list[tuple[uuid.UUID, AbstractIncomingMessage]]) -> None:
        """Claim the batch's jobs in one statement, hand each claimed job (and its slot) on,
        ack the messages. On a database error the messages go back to the queue."""
        try:
            async with self._pool.connection() as conn:
                jobs = await store.claim_jobs(conn, job_ids=[job_id for job_id, _ in batch])
        except Exception:
            log.exception("claim of %d jobs failed; requeueing them", len(batch))
            await asyncio.sleep(1)
            for _, message in batch:
                self._slots.release()
                await message.nack(requeue=True)
            return
        claimed = {job.id: job for job in jobs}
        for job_id, message in batch:
            job = claimed.pop(job_id, None)  # a duplicate message of the same job finds none
            if job is None:
                log.info("job_id=%s not pending; message dropped", job_id)
                self._slots.release()
            elif self._executors and runs_in_batch(job, self._settings):
                self._inflight.add(job.id)
                self._small.put_nowait(job)
            else:
                self._spawn(self._run(job))  # before the ack: a redelivery finds it claimed
            await message.ack()

    async def _batch_loop(self, index: int) -> None:
        """Feed warm executor ``index``: wait for a small job, take the ones queued behind it."""
        while True:
            batch = [await self._small.get()]
            while len(batch) < self._settings.batch_max_jobs and not self._small.empty():
                batch.append(self._small.get_nowait())
            if self._executor_nodes[index] in self._draining:
                self._replace_executor(index)  # its node is draining: no new batch there
            self._busy.add(index)
            try:
                await self._run_batch(index, batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("batch of %d jobs: recording its outcome failed", len(batch))
            finally:
                self._busy.discard(index)

    async def _run_batch(self, index: int, batch: list[store.ClaimedJob]) -> None:
        started = time.perf_counter()
        works = [self._small_work(job) for job in batch]
        self._on_executor.update((job.id, index) for job in batch)
        try:
            reports = await asyncio.wait_for(
                asyncio.ensure_future(self._executors[index].run_batch.remote(works)),
                timeout=self._settings.max_timeout_s,
            )
        except Exception as error:  # the executor died (or hung): its jobs run again
            log.warning("warm executor %d lost with %d jobs: %s", index, len(batch), error)
            self._replace_executor(index)
            for job in batch:
                try:
                    lost = Report(job.id, Outcome.LOST, kind="worker", error=f"warm executor lost: {error}")
                    await self._lost(job, lost)
                finally:
                    self._done_small(job)
            return
        counted: dict[str, int] = {}
        for job, report in zip(batch, reports, strict=True):
            counted[report.outcome.value] = counted.get(report.outcome.value, 0) + 1
            self._on_executor.pop(job.id, None)
            self._forget_crash(job, report)
            if report.outcome is Outcome.NEEDS_MEMORY:
                # too large, estimated too slow, or stopped for running too long: a task of its
                # own, still claimed (that run is not counted as an attempt); it keeps its slot
                log.info("job_id=%s leaves the fast path (%s): %s", job.id, report.kind, report.error or "memory")
                self._spawn(self._run(job))
                continue
            try:
                if report.outcome is Outcome.DROPPED:
                    await self._check_dropped(job, report)
                elif report.outcome is Outcome.CANCELED:
                    log.info("job_id=%s canceled; its simulation on warm executor %d was stopped", job.id, index)
                elif report.outcome is Outcome.LOST:
                    await self._lost(job, report)
            finally:
                self._done_small(job)
        log.info(
            "batch of %d jobs on node %s in %.1f ms: %s",
            len(batch),
            reports[0].node_id if reports else "-",
            (time.perf_counter() - started) * 1e3,
            ", ".join(f"{n} {s}" for s, n in sorted(counted.items())),
        )

    def _forget_crash(self, job: store.ClaimedJob, report: Report) -> None:
        """A job that ended (finished, failed, canceled, ...) needs its crash record no more."""
        if report.outcome not in (Outcome.NEEDS_MEMORY, Outcome.LOST):
            self._crashed.pop(job.id, None)

    def _done_small(self, job: store.ClaimedJob) -> None:
        self._on_executor.pop(job.id, None)
        self._inflight.discard(job.id)
        self._slots.release()

    def _replace_executor(self, index: int) -> None:
        """A new warm executor in place of one that died, hung or stands on a draining node (it
        is ended first); where Ray put it is learnt once it is warm."""
        try:
            ray.kill(self._executors[index], no_restart=True)
        except Exception:
            pass
        handle = start_executor(self._settings)
        self._executors[index] = handle
        self._executor_nodes[index] = None
        self._spawn(self._locate(index, handle))

    async def _locate(self, index: int, handle: ray.actor.ActorHandle) -> None:
        try:
            node_id = (await handle.ready.remote())["node_id"]
        except Exception:
            return  # it died: its first batch finds out and replaces it
        if self._executors[index] is handle:
            self._executor_nodes[index] = node_id

    def retire_executors(self, draining: set[str]) -> dict[str, int]:
        """Replace the warm executors on the ``draining`` nodes that are not running a batch (the
        others after their batch); returns {node id: executors still there (busy)}."""
        self._draining = set(draining)
        left: dict[str, int] = {}
        for index, node_id in enumerate(self._executor_nodes):
            if node_id not in self._draining:
                continue
            if index in self._busy:
                left[node_id] = left.get(node_id, 0) + 1
            else:
                log.info("warm executor %d leaves draining node %s", index, node_id[:12])
                self._replace_executor(index)
        return left

    async def repark_unplaceable(self) -> int:
        """Jobs handed to Ray that have not started and that no open node can run any more (the
        only nodes for them began draining after they were placed): their Ray tasks are cancelled
        and they are parked (or failed) as :func:`decide` now says. Returns how many."""
        if not self._placed:
            return 0
        now = {
            job_id: decision
            for job_id, (job, memory) in list(self._placed.items())
            if (decision := decide(job, memory, self._view.nodes)).action != "run"
        }
        if not now:
            return 0
        async with self._pool.connection() as conn:
            waiting = await store.claimed_among(conn, job_ids=list(now))
        for job_id in waiting:
            self._reparking[job_id] = now[job_id]
            await self._runner.cancel.remote(job_id)
        if waiting:
            log.info("%d jobs waiting in Ray for a draining node: parked again", len(waiting))
        return len(waiting)

    async def _park_again(self, job: store.ClaimedJob, decision: Decision) -> None:
        """Park (or fail) a job whose Ray task :meth:`repark_unplaceable` cancelled; one that
        started meanwhile was stopped by that cancel: it runs again."""
        if decision.action == "fail":
            await self._fail(job, decision.reason)
            return
        async with self._pool.connection() as conn:
            parked = await store.park_job(conn, job_id=job.id, waiting_for=decision.reason)
        if parked:
            log.info("job_id=%s parked again: %s", job.id, decision.reason)
        else:
            lost = Report(job.id, Outcome.LOST, kind="worker", error="stopped as its node began draining")
            await self._lost(job, lost)

    def adopt(self, job: store.ClaimedJob) -> None:
        """Wait on a job a previous dispatcher started (the runner still holds it)."""
        self._spawn(self._run(job, adopted=True))

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _run(self, job: store.ClaimedJob, adopted: bool = False) -> None:
        """Place and run ``job`` (or, ``adopted``, wait on the runner for it), then record
        what Ray reported. Holds one of the consumer's slots unless adopted."""
        holds_slot = not adopted
        started = time.perf_counter()
        memory = first_memory_bytes(job, self._settings)
        limit = job_timeout(job, self._settings)
        self._inflight.add(job.id)
        try:
            while True:
                if adopted:
                    report = await self._runner.wait.remote(job.id)
                    adopted = False
                else:
                    decision = decide(job, memory, self._view.nodes)
                    if decision.action != "run":
                        await self._not_now(job, decision)
                        return
                    cpus = job_cpus(job, memory, self._view.nodes, self._settings)
                    self._placed[job.id] = (job, memory)
                    try:
                        report = await self._runner.run.remote(
                            self._work(job, memory, cpus),
                            task_options(job, self._settings, memory, cpus),
                            limit - (time.perf_counter() - started),
                        )
                    finally:
                        self._placed.pop(job.id, None)
                    if report.outcome is Outcome.CANCELED and job.id in self._reparking:
                        await self._park_again(job, self._reparking.pop(job.id))
                        return
                if report.outcome is not Outcome.NEEDS_MEMORY:
                    break
                need = report.memory
                log.info(
                    "job_id=%s needs %d bytes (%s, %d active qubits): placing it again",
                    job.id,
                    need.memory_bytes,
                    need.method,
                    need.active_qubits,
                )
                memory = need.memory_bytes
                async with self._pool.connection() as conn:
                    await store.set_job_memory(conn, job_id=job.id, memory_bytes=memory)
            await self._outcome(job, report, limit, started)
        except Exception as error:  # the runner itself died: its tasks died with it
            await self._lost(job, Report(job.id, Outcome.LOST, kind="worker", error=f"the runner died: {error}"))
        finally:
            self._inflight.discard(job.id)
            if holds_slot:
                self._slots.release()

    async def _outcome(self, job: store.ClaimedJob, report: Report, limit: float, started: float) -> None:
        outcome = report.outcome
        self._forget_crash(job, report)
        if outcome in (Outcome.FINISHED, Outcome.FAILED, Outcome.DROPPED):
            log.info(
                "job_id=%s %s run_ms=%.1f total_ms=%.1f node=%s",
                job.id,
                outcome.value,
                report.run_ms,
                (time.perf_counter() - started) * 1e3,
                report.node_id,
            )
            if outcome is Outcome.DROPPED:
                await self._check_dropped(job, report)
        elif outcome is Outcome.CANCELED:
            log.info("job_id=%s canceled; its Ray work was stopped", job.id)
            self._rewarm(job)
        elif outcome is Outcome.TIMED_OUT:
            await self._fail(job, f"timed out after {limit:g} s")
            log.info("job_id=%s timed out after %g s; its Ray task was stopped", job.id, limit)
            self._rewarm(job)
        elif outcome is Outcome.LOST:
            await self._lost(job, report)
        else:  # ERROR, UNKNOWN
            reason = (
                failure_reason(job, report, self._settings)
                if outcome is Outcome.ERROR
                else "worker lost: the runner has no record of the job"
            )
            log.warning("job_id=%s failed: %s", job.id, reason)
            await self._fail(job, reason)

    def _small_work(self, job: store.ClaimedJob) -> Work:
        """What a warm executor gets for ``job``: its memory budget, one thread, and the fast
        path's time budgets (settings.batch_max_estimate_s, batch_max_run_s)."""
        return Work(
            job=job,
            memory_bytes=self._budget,
            max_estimate_s=self._settings.batch_max_estimate_s,
            max_run_s=self._settings.batch_max_run_s,
        )

    def _work(self, job: store.ClaimedJob, memory: int, cpus: int = 1) -> Work:
        """What a worker gets for ``job``: ``memory`` bytes, ``cpus`` threads, the GPU device
        for a backend that needs one."""
        device = self._settings.aer_gpu_device if job.needs_gpu else "CPU"
        return Work(job=job, memory_bytes=memory, threads=cpus, device=device)

    async def _not_now(self, job: store.ClaimedJob, decision: Decision) -> None:
        """A job no node can run now: park it (pending, waiting_for) or fail it."""
        if decision.action == "fail":
            log.info("job_id=%s cannot run anywhere: %s", job.id, decision.reason)
            await self._fail(job, decision.reason)
            return
        async with self._pool.connection() as conn:
            await store.park_job(conn, job_id=job.id, waiting_for=decision.reason)
        log.info("job_id=%s parked: %s", job.id, decision.reason)

    async def _fail(self, job: store.ClaimedJob, reason: str) -> None:
        try:
            async with self._pool.connection() as conn:
                await store.fail_job(conn, job_id=job.id, error=reason[:4000])
        except Exception:
            log.exception("job_id=%s could not record the failure", job.id)

    async def _lost(self, job: store.ClaimedJob, report: Report) -> None:
        """The worker or node running the job died: run it again, up to settings.max_attempts.

        A crash (kind "crash": the process simulating the job died, its node alive; the job ran
        alone in it, a warm executor's child or a task's worker) is the program's doing: the job
        runs again once, and fails naming the program and the signals if that crashes too.
        """
        reason = failure_reason(job, report, self._settings)
        self._rewarm(job)
        if report.kind == "crash":
            first = self._crashed.pop(job.id, None)
            if first is not None:
                log.warning("job_id=%s crashed its simulator twice: failed", job.id)
                await self._fail(
                    job,
                    f"the program crashed the simulator twice, its node up each time ({first}; then "
                    f"{report.error}): it is not run again. Check the program (deeply nested "
                    "expressions, huge literals or gate definitions)",
                )
                return
            self._crashed[job.id] = report.error or "no reason given"
        if job.attempts >= self._settings.max_attempts:
            log.warning("job_id=%s lost on attempt %d, the last: %s", job.id, job.attempts, reason)
            await self._fail(job, f"{reason} (attempt {job.attempts} of {self._settings.max_attempts})")
            return
        dead = NODE_ID.search(report.error or "") if report.kind == "node" else None
        if dead:  # placement must not send the job back to the node that just died
            self._view.mark_dead(dead.group(1))
        async with self._pool.connection() as conn:
            requeued = await store.requeue_job(conn, job_id=job.id)
        if not requeued:  # it ended meanwhile (canceled, deleted)
            self._crashed.pop(job.id, None)
        if requeued:
            await queue.publish_job(self.publisher, self._settings.queue_name, job.id)
            log.warning("job_id=%s lost on attempt %d (%s): queued again", job.id, job.attempts, reason)

    async def _check_dropped(self, job: store.ClaimedJob, report: Report) -> None:
        """The executor found the job no longer running. Normally it was canceled meanwhile;
        if it is still running here, the node writes to another database: fail the job."""
        async with self._pool.connection() as conn:
            row = await store.get_job_status(conn, job_id=job.id)
        if row is not None and row["status"] in (JobStatus.CLAIMED, JobStatus.RUNNING):
            await self._fail(
                job,
                f"node {report.node_id} could not record the job: its executors use the "
                f"database {report.database}; set QSERVER_DATABASE_URL on that node to "
                "this QServer's database",
            )

    def cancel(self, job_id: uuid.UUID) -> None:
        """Stop the Ray work of a job canceled while running: its simulation on a warm executor
        (the executor kills the process simulating it, and goes on with its batch) or its task
        (the runner ends its worker)."""
        index = self._on_executor.get(job_id)
        if index is not None:
            self._executors[index].cancel.remote(job_id)
            log.info("job_id=%s cancel requested: stopping it on warm executor %d", job_id, index)
            return
        self._runner.cancel.remote(job_id)
        log.info("job_id=%s cancel requested: stopping its Ray task", job_id)

    def load(self) -> dict[str, int]:
        """What this dispatcher holds now, for its metrics: ``in_flight`` (jobs it waits on),
        ``waiting_for_executor`` (claimed small jobs queued for a warm executor), ``executors``
        (warm executors)."""
        return {
            "in_flight": len(self._inflight),
            "waiting_for_executor": self._small.qsize(),
            "executors": len(self._executors),
        }

    def inflight(self) -> list[uuid.UUID]:
        """Ids of the jobs this dispatcher is waiting on."""
        return list(self._inflight)

    def _rewarm(self, job: store.ClaimedJob) -> None:
        """A worker was ended (cancel, timeout, crash): warm a fresh one for the built-in aer."""
        if job.plugin in (None, BUILTIN_PLUGIN):
            self._spawn(self._warm())

    async def _warm(self) -> None:
        try:
            await _warm_up.options(num_cpus=1, max_retries=0).remote(0.0)
        except Exception:
            log.warning("re-warming an executor failed", exc_info=True)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait a little for jobs about to finish; the runner keeps the rest running (a batch
        still on a warm executor ends with this dispatcher: its jobs run again)."""
        if self._watchers:
            await asyncio.wait(set(self._watchers), timeout=timeout_s)
        for loop in self._loops:
            loop.cancel()
