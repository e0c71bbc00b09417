"""The dispatcher service: the only Ray driver. It joins Ray, warms the executors, makes
sure the runner exists (a detached actor that owns the jobs' tasks, so a dispatcher
restart neither kills nor repeats them), adopts the jobs a previous dispatcher left
running, and runs the consumer (dispatcher/consumer.py) and its background tasks
(dispatcher/tasks.py), listed in :func:`background`: the cluster view, notifications, plugin
prebuilds, the janitor, the sweeper and the reaper. Everything it publishes goes over one
long-lived publisher channel, opened at start-up and closed at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from importlib.metadata import version

import ray
from aio_pika.abc import AbstractChannel
from psycopg_pool import AsyncConnectionPool
from tenacity import wait_fixed

from cluster import executor
from cluster.runner import Runner
from core import queue, schema, store
from core.settings import Settings
from dispatcher import cluster, notifications, plugins
from dispatcher.cluster import HEAD_RESOURCE, ClusterView
from dispatcher.consumer import Dispatcher, start_executor
from dispatcher.monitor import CONSUMING, DispatcherState, monitor
from dispatcher.tasks import Task, Tasks

log = logging.getLogger(__name__)

_warm_up = ray.remote(executor.warm_up)
HEAD_SHARE = 0.001  # of the head's HEAD_RESOURCE (1): the runner's pin to the head


def get_runner() -> ray.actor.ActorHandle:
    """The runner actor of this QServer version: found if it exists, else created (detached,
    no CPU, on the head: a node that leaves, or is drained, never takes it and the tasks it owns
    along)."""
    return (
        ray.remote(Runner)
        .options(
            name=f"qserver-runner-{version('qserver')}",
            namespace="qserver",
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            resources={HEAD_RESOURCE: HEAD_SHARE},
            max_concurrency=10_000,
            max_restarts=-1,
        )
        .remote()
    )


async def protected_nodes(runner: ray.actor.ActorHandle) -> set[str]:
    """The nodes a drain must leave alone: this driver's (its Ray connection) and the runner's."""
    nodes = {ray.get_runtime_context().get_node_id()}
    try:
        nodes.add(await runner.node_id.remote())
    except Exception:  # a runner of an older build (same version) without node_id
        log.warning("could not learn the runner's node; drains leave only this driver's node alone")
    return nodes


def warm_executors(count: int) -> list[dict]:
    """Run ``count`` warm-up tasks at once, so that ``count`` workers hold Qiskit and a DB connection."""
    refs = [_warm_up.options(num_cpus=1, max_retries=0).remote() for _ in range(count)]
    return ray.get(refs, timeout=300)


async def delete_expired(settings: Settings, pool: AsyncConnectionPool) -> None:
    """The janitor: delete terminal jobs older than the retention."""
    async with pool.connection() as conn:
        deleted = await store.delete_expired_jobs(conn, older_than_days=settings.retention_days)
    if deleted:
        log.info("janitor deleted %d jobs older than %g days", deleted, settings.retention_days)


async def sweep(settings: Settings, pool: AsyncConnectionPool, publisher: AbstractChannel) -> None:
    """The sweeper: publish again pending jobs whose message was lost (a crash between
    ingest's commit and its publish): when the queue holds no ready message but such jobs are
    older than ``settings.sweep_after_s``. A duplicate message is harmless: claiming is idempotent."""
    if await queue.ready_count(publisher, settings.queue_name):
        return
    async with pool.connection() as conn:
        stale = await store.stale_pending_jobs(conn, older_than_s=settings.sweep_after_s)
    for job_id in stale:
        await queue.publish_job(publisher, settings.queue_name, job_id)
    if stale:
        log.warning("sweeper: %d pending jobs had no message; published again", len(stale))


async def adopt_or_requeue(settings: Settings, pool: AsyncConnectionPool, runner, dispatcher: Dispatcher) -> None:
    """Jobs a previous dispatcher left running: those the runner still holds are adopted
    (waited on again); the others lost their Ray work and go back to the queue, or end
    failed after max_attempts."""
    held = set(await runner.jobs.remote())
    async with pool.connection() as conn:
        adopted = await store.running_jobs(conn, job_ids=list(held))
        gone = [job_id for job_id in await store.running_job_ids(conn) if job_id not in held]
    for job in adopted:
        dispatcher.adopt(job)
    if adopted:
        log.info("adopted %d jobs still running from a previous dispatcher", len(adopted))
    await _recover(settings, pool, dispatcher, gone, "previous dispatcher's jobs without Ray work")


async def _recover(
    settings: Settings, pool: AsyncConnectionPool, dispatcher: Dispatcher, job_ids: list, why: str
) -> None:
    """Requeue (or fail, after max_attempts) running jobs whose Ray work is gone."""
    if not job_ids:
        return
    async with pool.connection() as conn:
        outcome = await store.recover_orphans(conn, job_ids=job_ids, max_attempts=settings.max_attempts)
    for job_id in outcome["requeued"]:
        await queue.publish_job(dispatcher.publisher, settings.queue_name, job_id)
    log.warning("%s: %d requeued, %d failed (worker lost)", why, len(outcome["requeued"]), len(outcome["failed"]))


async def reap(settings: Settings, pool: AsyncConnectionPool, runner, dispatcher: Dispatcher) -> None:
    """The reaper, a safety net: running jobs with no heartbeat for ``heartbeat_stale_s`` that
    neither this dispatcher nor the runner is waiting on lost their Ray work: requeue (or fail) them."""
    async with pool.connection() as conn:
        stale = await store.stale_running_jobs(conn, older_than_s=settings.heartbeat_stale_s)
    if not stale:
        return
    alive = set(dispatcher.inflight()) | set(await runner.jobs.remote())
    lost = [row["id"] for row in stale if row["id"] not in alive]
    await _recover(settings, pool, dispatcher, lost, "reaper: running jobs without a heartbeat")


def background(
    settings: Settings,
    pool: AsyncConnectionPool,
    runner,
    dispatcher: Dispatcher,
    view: ClusterView,
    publisher: AbstractChannel,
    tasks: Tasks,
) -> list[Task]:
    """The dispatcher's background work, besides consuming: every task it runs, in one list."""
    return [
        Task(
            "reaper",
            partial(reap, settings, pool, runner, dispatcher),
            interval_s=settings.heartbeat_stale_s / 2,
            first_after_s=settings.heartbeat_stale_s / 2,
        ),
        Task(
            "cluster",
            partial(cluster.refresh_and_republish, settings, pool, view, publisher, dispatcher),
            interval_s=settings.cluster_refresh_s,
        ),
        Task(
            "notifications",
            partial(notifications.listen, settings, pool, dispatcher, tasks),
            interval_s=0,
            retry_wait=wait_fixed(notifications.RECONNECT_S),
        ),
        Task("plugin-prebuild", partial(plugins.prebuild_all, settings, pool), interval_s=None),
        Task("janitor", partial(delete_expired, settings, pool), interval_s=settings.janitor_interval_s),
    ]


def sweeper(settings: Settings, pool: AsyncConnectionPool, publisher: AbstractChannel) -> Task:
    """The sweeper as a task: started once the dispatcher consumes (it reads the queue's depth)."""
    return Task(
        "sweeper",
        partial(sweep, settings, pool, publisher),
        interval_s=settings.sweep_after_s,
        first_after_s=settings.sweep_after_s,
    )


async def serve(settings: Settings) -> None:
    """Join Ray, warm the executors, consume the queue until cancelled.

    Its /health and /metrics (dispatcher/monitor.py) answer from the start: 503 naming the
    stage until it consumes, then 200 while the broker, Ray and its event loop are well.

    Raises:
        SchemaOutOfDate: the database needs `qserver db upgrade`.
        ConnectionError: Ray's head is not reachable.
        MonitorFailed: the monitor's port is taken.
    """
    state = DispatcherState(settings)
    health = monitor(state)
    await health.start()
    try:
        await _serve(settings, state)
    finally:
        state.enter("stopping")
        await health.stop()


async def _serve(settings: Settings, state: DispatcherState) -> None:
    state.enter("checking the database schema")
    await asyncio.to_thread(schema.check, settings.database_dsn)
    state.enter("joining Ray")
    if not ray.is_initialized():
        ray.init(address=settings.ray_address, namespace="qserver", log_to_driver=False)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    count = settings.executor_warm_workers or cpus
    started = time.perf_counter()
    batch_executors = cpus if settings.batch_executors is None else settings.batch_executors
    state.enter(f"warming {count} workers and {batch_executors} warm executors")
    executors = [start_executor(settings) for _ in range(batch_executors)]
    warmed = await asyncio.to_thread(warm_executors, count)
    log.info(
        "warmed %d executors in %.1f s: %s",
        len(warmed),
        time.perf_counter() - started,
        ", ".join(f"pid {w['pid']} {w['ms']:.0f} ms" for w in warmed),
    )
    warm = await asyncio.gather(*(handle.ready.remote() for handle in executors))
    log.info(
        "%d warm executors for small jobs in %.1f s: %s",
        len(warm),
        time.perf_counter() - started,
        ", ".join(f"pid {r['pid']} on node {r['node_id'][:12]}" for r in warm),
    )
    state.enter("connecting to Postgres and RabbitMQ, adopting running jobs")
    pool = await store.open_pool(settings.database_dsn, max_size=settings.db_pool_size)
    runner = get_runner()
    view = ClusterView()
    view.protected = await protected_nodes(runner)
    log.info("driver and runner on node(s) %s: never drained", ", ".join(n[:12] for n in sorted(view.protected)))
    await cluster.refresh(settings, pool, view)
    connection = await queue.connect(str(settings.amqp_url))
    publisher = await queue.publisher_channel(connection)
    await queue.declare(publisher, settings.queue_name)
    dispatcher = Dispatcher(settings, pool, view, runner, publisher, executors, [r["node_id"] for r in warm])
    await adopt_or_requeue(settings, pool, runner, dispatcher)
    await cluster.republish_parked(settings, pool, publisher)
    tasks = Tasks()
    for task in [*background(settings, pool, runner, dispatcher, view, publisher, tasks), state.tick_task()]:
        tasks.start(task)
    dispatcher.start()
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=settings.dispatcher_prefetch)
    jobs_queue = await queue.declare(channel, settings.queue_name)
    tag = await jobs_queue.consume(dispatcher.on_message)
    tasks.start(sweeper(settings, pool, publisher))
    state.tasks, state.connection, state.publisher, state.consuming, state.dispatcher = (
        tasks,
        connection,
        publisher,
        channel,
        dispatcher,
    )
    state.enter(CONSUMING)
    log.info("dispatcher consuming %s (prefetch %d, %d CPUs)", settings.queue_name, settings.dispatcher_prefetch, cpus)
    try:
        await asyncio.Future()  # until cancelled
    finally:
        state.enter("stopping")
        await tasks.stop()
        try:
            await jobs_queue.cancel(tag)
        except Exception:
            log.warning("could not cancel the consumer cleanly", exc_info=True)
        await dispatcher.drain()
        await connection.close()
        await pool.close()
