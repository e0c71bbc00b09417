"""The dispatcher: an aio-pika consumer and the only Ray driver.

For each delivered job id: claim the job (pending -> running, one guarded UPDATE),
ack the message, and run the job as a Ray task. The task writes the job's outcome
to Postgres itself; the dispatcher records only what Ray reports (a worker that
died, a runtime_env that could not be built, a task canceled). A message for a job
that is not pending (canceled, deleted, already claimed) is acked and dropped; a
message that is not a job id is rejected to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from pathlib import Path

import ray
from aio_pika.abc import AbstractIncomingMessage
from psycopg_pool import AsyncConnectionPool

from cluster import executor
from core import queue, schema, store
from core.domain import BUILTIN_PLUGIN
from core.settings import Settings
from dispatcher import cluster, notifications, plugins
from dispatcher.cluster import ClusterView
from dispatcher.placement import decide, task_options

log = logging.getLogger(__name__)

_run_job = ray.remote(executor.run_job)
_warm_up = ray.remote(executor.warm_up)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# Ray's errors for work whose process or node died: the job runs again (QServer's retry).
LOST = (
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.LocalRayletDiedError,
)


def failure_reason(job: store.ClaimedJob, error: BaseException) -> str:
    """The ``error`` text of a job whose Ray task did not finish normally (no colour codes)."""
    return _ANSI.sub("", _reason(job, error))


def _reason(job: store.ClaimedJob, error: BaseException) -> str:
    if isinstance(error, ray.exceptions.RuntimeEnvSetupError):
        detail = [line.strip() for line in str(error).splitlines() if line.strip()]
        return (
            f"could not install plugin {job.plugin}=={job.plugin_version} on the node "
            f"(its Ray runtime_env failed to build): {detail[-1] if detail else error}"
        )
    if isinstance(error, ray.exceptions.OutOfMemoryError):
        return (
            "out of memory: Ray's memory monitor ended the worker because its node ran low on "
            f"memory ({str(error).strip().splitlines()[0]})"
        )
    if isinstance(error, ray.exceptions.WorkerCrashedError):
        return f"worker lost: the process running the job died ({error})"
    if isinstance(error, (ray.exceptions.NodeDiedError, ray.exceptions.LocalRayletDiedError)):
        return f"node lost: the node running the job died ({error})"
    return f"the executor did not finish: {type(error).__name__}: {error}"


def job_timeout(job: store.ClaimedJob, settings: Settings) -> float:
    """Seconds the job may run: its metadata ``timeout_s``, capped by ``settings.max_timeout_s``."""
    asked = job.metadata.get("timeout_s")
    return min(float(asked), settings.max_timeout_s) if asked else settings.max_timeout_s


class Dispatcher:
    """Consumes the jobs queue and keeps at most ``settings.dispatcher_prefetch`` jobs in flight."""

    def __init__(
        self, settings: Settings, pool: AsyncConnectionPool, view: ClusterView, publisher=None
    ):
        self._settings = settings
        self._publisher = publisher
        self._pool = pool
        self._view = view
        self._slots = asyncio.Semaphore(settings.dispatcher_prefetch)
        self._watchers: set[asyncio.Task] = set()
        self._inflight: dict[uuid.UUID, ray.ObjectRef] = {}

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        """Handle one delivery: decode, claim, ack, start the Ray task."""
        try:
            job_id = uuid.UUID(message.body.decode())
        except (UnicodeDecodeError, ValueError):
            log.warning("rejecting undecodable message %r to the dead-letter queue", message.body[:80])
            await message.reject(requeue=False)
            return
        await self._slots.acquire()
        try:
            async with self._pool.connection() as conn:
                job = await store.claim_job(conn, job_id=job_id)
        except Exception:
            self._slots.release()
            log.exception("job_id=%s claim failed; requeueing", job_id)
            await asyncio.sleep(1)
            await message.nack(requeue=True)
            return
        await message.ack()
        if job is None:
            self._slots.release()
            log.info("job_id=%s not pending; message dropped", job_id)
            return
        self._spawn(self._run(job))

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _run(self, job: store.ClaimedJob) -> None:
        started = time.perf_counter()
        memory = job.memory_bytes or self._settings.default_job_memory_bytes
        limit = job_timeout(job, self._settings)
        try:
            while True:
                decision = decide(job, memory, self._view.nodes)
                if decision.action != "run":
                    await self._not_now(job, decision)
                    return
                ref = _run_job.options(**task_options(job, self._settings, memory)).remote(
                    self._payload(job, memory)
                )
                self._inflight[job.id] = ref
                left = limit - (time.perf_counter() - started)
                try:
                    outcome = await asyncio.wait_for(asyncio.ensure_future(ref), timeout=max(left, 0.001))
                except asyncio.TimeoutError:
                    ray.cancel(ref, force=True)  # Aer does not listen to interrupts: end the worker
                    await self._fail(job, f"timed out after {limit:g} s")
                    log.info("job_id=%s timed out after %g s; its Ray task was stopped", job.id, limit)
                    if job.plugin in (None, BUILTIN_PLUGIN):
                        self._spawn(self._rewarm())
                    return
                if outcome["status"] != "needs_memory":
                    break
                log.info("job_id=%s needs %d bytes (%s, %d active qubits): placing it again",
                         job.id, outcome["memory_bytes"], outcome["method"], outcome["active_qubits"])
                memory = outcome["memory_bytes"]
                async with self._pool.connection() as conn:
                    await store.set_job_memory(conn, job_id=job.id, memory_bytes=memory)
            log.info(
                "job_id=%s %s run_ms=%.1f total_ms=%.1f node=%s",
                job.id, outcome["status"], outcome["run_ms"],
                (time.perf_counter() - started) * 1e3, outcome["node_id"],
            )
            if outcome["status"] == "dropped":
                await self._check_dropped(job, outcome)
        except ray.exceptions.TaskCancelledError:
            log.info("job_id=%s canceled; its Ray work was stopped", job.id)
            if job.plugin in (None, BUILTIN_PLUGIN):
                self._spawn(self._rewarm())
        except LOST as error:
            await self._lost(job, error)
        except Exception as error:
            reason = failure_reason(job, error)
            log.warning("job_id=%s failed: %s", job.id, reason)
            await self._fail(job, reason)
        finally:
            self._inflight.pop(job.id, None)
            self._slots.release()

    async def _lost(self, job: store.ClaimedJob, error: BaseException) -> None:
        """The worker or node running the job died: run it again, up to settings.max_attempts."""
        reason = failure_reason(job, error)
        if job.attempts >= self._settings.max_attempts:
            log.warning("job_id=%s lost on attempt %d, the last: %s", job.id, job.attempts, reason)
            await self._fail(job, f"{reason} (attempt {job.attempts} of {self._settings.max_attempts})")
            return
        async with self._pool.connection() as conn:
            requeued = await store.requeue_job(conn, job_id=job.id)
        if requeued:
            await queue.publish_job(self._publisher, self._settings.queue_name, job.id)
            log.warning("job_id=%s lost on attempt %d (%s): queued again", job.id, job.attempts, reason)
        if job.plugin in (None, BUILTIN_PLUGIN):
            self._spawn(self._rewarm())

    async def _check_dropped(self, job: store.ClaimedJob, outcome: dict) -> None:
        """The executor found the job no longer running. Normally it was canceled meanwhile;
        if it is still running here, the node writes to another database: fail the job."""
        async with self._pool.connection() as conn:
            row = await store.get_job_status(conn, job_id=job.id)
        if row is not None and row["status"] == "running":
            await self._fail(
                job,
                f"node {outcome['node_id']} could not record the job: its executors use the "
                f"database {outcome.get('database')}; set QSERVER_DATABASE_URL on that node to "
                "this QServer's database",
            )

    def _payload(self, job: store.ClaimedJob, memory: int) -> dict:
        payload = {
            "id": str(job.id),
            "backend": job.backend,
            "plugin": job.plugin,
            "qasm": job.qasm,
            "metadata": job.metadata,
            "result_types": list(job.result_types),
            "memory_bytes": memory,
        }
        if job.needs_gpu:
            payload["device"] = self._settings.aer_gpu_device
        return payload

    async def _not_now(self, job: store.ClaimedJob, decision) -> None:
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

    def cancel(self, job_id: uuid.UUID) -> bool:
        """Stop the Ray work of a job that was canceled while running. True if it was ours.

        Aer's simulation loop does not listen to interrupts, so the worker process is
        ended (``force=True``) and a fresh one is warmed afterwards.
        """
        ref = self._inflight.get(job_id)
        if ref is None:
            return False
        ray.cancel(ref, force=True)
        log.info("job_id=%s cancel requested: stopping its Ray task", job_id)
        return True

    def inflight(self) -> list[uuid.UUID]:
        """Ids of the jobs whose Ray tasks this dispatcher is waiting on."""
        return list(self._inflight)

    async def _rewarm(self) -> None:
        try:
            await _warm_up.options(num_cpus=1, max_retries=0).remote(0.0)
        except Exception:
            log.warning("re-warming an executor failed", exc_info=True)

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait up to ``timeout_s`` for the jobs in flight."""
        if self._watchers:
            await asyncio.wait(set(self._watchers), timeout=timeout_s)


def warm_executors(count: int) -> list[dict]:
    """Run ``count`` warm-up tasks at once, so that ``count`` workers hold Qiskit and a DB connection."""
    refs = [_warm_up.options(num_cpus=1, max_retries=0).remote() for _ in range(count)]
    return ray.get(refs, timeout=300)


async def janitor_loop(settings: Settings, pool: AsyncConnectionPool) -> None:
    """Every ``settings.janitor_interval_s``, delete terminal jobs older than the retention."""
    while True:
        try:
            async with pool.connection() as conn:
                deleted = await store.delete_expired_jobs(conn, older_than_days=settings.retention_days)
            if deleted:
                log.info("janitor deleted %d jobs older than %g days", deleted, settings.retention_days)
        except Exception:
            log.warning("janitor run failed", exc_info=True)
        await asyncio.sleep(settings.janitor_interval_s)


async def sweep_loop(settings: Settings, pool: AsyncConnectionPool, channel) -> None:
    """Publish again pending jobs whose message was lost (a crash between ingest's commit and
    its publish): when the queue holds no ready message but such jobs are older than
    ``settings.sweep_after_s``. A duplicate message is harmless: claiming is idempotent."""
    while True:
        await asyncio.sleep(settings.sweep_after_s)
        try:
            depth = (await channel.declare_queue(settings.queue_name, passive=True)).declaration_result.message_count
            if depth:
                continue
            async with pool.connection() as conn:
                stale = await store.stale_pending_jobs(conn, older_than_s=settings.sweep_after_s)
            for job_id in stale:
                await queue.publish_job(channel, settings.queue_name, job_id)
            if stale:
                log.warning("sweeper: %d pending jobs had no message; published again", len(stale))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("sweeper run failed", exc_info=True)


async def requeue_orphans(settings: Settings, pool: AsyncConnectionPool) -> None:
    """Jobs a previous dispatcher left running: back to the queue, or failed after max_attempts."""
    async with pool.connection() as conn:
        outcome = await store.recover_orphans(conn, max_attempts=settings.max_attempts)
    if not any(outcome.values()):
        return
    log.warning("previous dispatcher left jobs running: %d requeued, %d failed (worker lost)",
                len(outcome["requeued"]), len(outcome["failed"]))
    connection = await queue.connect(str(settings.amqp_url))
    async with connection:
        channel = await queue.publisher_channel(connection)
        await queue.declare(channel, settings.queue_name)
        for job_id in outcome["requeued"]:
            await queue.publish_job(channel, settings.queue_name, job_id)


async def serve(settings: Settings) -> None:
    """Join Ray, warm the executors, consume the queue until cancelled.

    Writes ``<state_dir>/dispatcher.ready`` once it is consuming and removes it on exit.

    Raises:
        SchemaOutOfDate: the database needs `qserver db upgrade`.
        ConnectionError: Ray's head is not reachable.
    """
    await asyncio.to_thread(schema.check, settings.database_dsn)
    if not ray.is_initialized():
        ray.init(address=settings.ray_address, namespace="qserver", log_to_driver=False)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    count = settings.executor_warm_workers or cpus
    started = time.perf_counter()
    warmed = await asyncio.to_thread(warm_executors, count)
    log.info(
        "warmed %d executors in %.1f s: %s", len(warmed), time.perf_counter() - started,
        ", ".join(f"pid {w['pid']} {w['ms']:.0f} ms" for w in warmed),
    )
    pool = await store.open_pool(settings.database_dsn, max_size=settings.db_pool_size)
    await requeue_orphans(settings, pool)
    view = ClusterView()
    await cluster.refresh(settings, pool, view)
    await cluster.republish_parked(settings, pool)
    connection = await queue.connect(str(settings.amqp_url))
    publisher = await queue.publisher_channel(connection)
    dispatcher = Dispatcher(settings, pool, view, publisher)
    background = [
        asyncio.create_task(cluster.watch(settings, pool, view)),
        asyncio.create_task(notifications.listen(settings, pool, dispatcher)),
        asyncio.create_task(plugins.prebuild_all(settings, pool)),
        asyncio.create_task(janitor_loop(settings, pool)),
    ]
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=settings.dispatcher_prefetch)
    jobs_queue = await queue.declare(channel, settings.queue_name)
    tag = await jobs_queue.consume(dispatcher.on_message)
    background.append(asyncio.create_task(sweep_loop(settings, pool, publisher)))
    ready = Path(settings.state_dir) / "dispatcher.ready"
    ready.parent.mkdir(parents=True, exist_ok=True)
    ready.write_text(str(time.time()))
    log.info("dispatcher consuming %s (prefetch %d, %d CPUs)", settings.queue_name,
             settings.dispatcher_prefetch, cpus)
    try:
        await asyncio.Future()  # until cancelled
    finally:
        ready.unlink(missing_ok=True)
        for task in background:
            task.cancel()
        try:
            await jobs_queue.cancel(tag)
        except Exception:
            log.warning("could not cancel the consumer cleanly", exc_info=True)
        await dispatcher.drain()
        await connection.close()
        await pool.close()
