"""The dispatcher: an aio-pika consumer and the only Ray driver.

For each delivered job id: claim the job (pending -> running, one guarded UPDATE),
ack the message, and run the job as a Ray task. The task writes the job's outcome
to Postgres itself; the dispatcher only records failures Ray reports (a worker
that died, a task that could not start). A message for a job that is not pending
(canceled, deleted, already claimed) is acked and dropped; a message that is not a
job id is rejected to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

import ray
from aio_pika.abc import AbstractIncomingMessage
from psycopg_pool import AsyncConnectionPool

from cluster import executor
from core import queue, schema, store
from core.settings import Settings
from dispatcher.placement import task_options

log = logging.getLogger(__name__)

_run_job = ray.remote(executor.run_job)
_warm_up = ray.remote(executor.warm_up)


class Dispatcher:
    """Consumes the jobs queue and keeps at most ``settings.dispatcher_prefetch`` jobs in flight."""

    def __init__(self, settings: Settings, pool: AsyncConnectionPool):
        self._settings = settings
        self._pool = pool
        self._slots = asyncio.Semaphore(settings.dispatcher_prefetch)
        self._watchers: set[asyncio.Task] = set()

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
        watcher = asyncio.create_task(self._run(job))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _run(self, job: store.ClaimedJob) -> None:
        started = time.perf_counter()
        try:
            ref = _run_job.options(**task_options(job)).remote(
                {
                    "id": str(job.id),
                    "backend": job.backend,
                    "plugin": job.plugin,
                    "qasm": job.qasm,
                    "metadata": job.metadata,
                    "result_types": list(job.result_types),
                }
            )
            outcome = await ref
            log.info(
                "job_id=%s %s run_ms=%.1f total_ms=%.1f node=%s",
                job.id, outcome["status"], outcome["run_ms"],
                (time.perf_counter() - started) * 1e3, outcome["node_id"],
            )
        except Exception as error:  # Ray could not run it: worker died, task failed to start
            reason = f"the executor did not finish: {type(error).__name__}: {error}"
            log.warning("job_id=%s %s", job.id, reason)
            try:
                async with self._pool.connection() as conn:
                    await store.fail_job(conn, job_id=job.id, error=reason[:4000])
            except Exception:
                log.exception("job_id=%s could not record the failure", job.id)
        finally:
            self._slots.release()

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait up to ``timeout_s`` for the jobs in flight."""
        if self._watchers:
            await asyncio.wait(set(self._watchers), timeout=timeout_s)


def warm_executors(count: int) -> list[dict]:
    """Run ``count`` warm-up tasks at once, so that ``count`` workers hold Qiskit and a DB connection."""
    refs = [_warm_up.options(num_cpus=1, max_retries=0).remote() for _ in range(count)]
    return ray.get(refs, timeout=300)


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
    connection = await queue.connect(str(settings.amqp_url))
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=settings.dispatcher_prefetch)
    jobs_queue = await queue.declare(channel, settings.queue_name)
    dispatcher = Dispatcher(settings, pool)
    tag = await jobs_queue.consume(dispatcher.on_message)
    ready = Path(settings.state_dir) / "dispatcher.ready"
    ready.parent.mkdir(parents=True, exist_ok=True)
    ready.write_text(str(time.time()))
    log.info("dispatcher consuming %s (prefetch %d, %d CPUs)", settings.queue_name,
             settings.dispatcher_prefetch, cpus)
    try:
        await asyncio.Future()  # until cancelled
    finally:
        ready.unlink(missing_ok=True)
        try:
            await jobs_queue.cancel(tag)
        except Exception:
            log.warning("could not cancel the consumer cleanly", exc_info=True)
        await dispatcher.drain()
        await connection.close()
        await pool.close()
