"""The api's Prometheus metrics: ``GET /metrics`` (not proxied by nginx: nginx/locations/rest.conf).

Read from Postgres at scrape time, in one statement (core/store/metrics.py), so that nothing
is added to any job's path:

- ``qserver_jobs{backend, status}``: jobs in the table now, by status as stored (``claimed``:
  taken by the dispatcher, not started; the REST api shows it as pending);
- ``qserver_nodes_online``, ``qserver_nodes_known`` and, per online node (labels ``node_id``,
  ``hostname``), its CPUs, GPUs and memory (bytes), total and free, and its running jobs;
- ``qserver_job_queue_wait_seconds`` (submitted to started) and ``qserver_job_run_seconds``
  (started to ended) histograms and ``qserver_jobs_ended_total``, labelled by ``backend``,
  ``method`` (what Aer ran with, from the job's receipt; else what it asked for) and, for the
  counter, ``status``: each scrape reads the history rows written since the previous one, so
  they count the jobs that ended while this api process ran (a counter's usual reset on
  restart). A job answered from the cache, or one that never started, is counted as ended
  but observed in neither histogram.

Kept in this process: ``qserver_api_result_waits`` (``GET /job/result/{id}?wait_s=`` waiting
now) and ``qserver_api_event_streams`` (api/waiters.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api.waiters import EVENT_STREAMS, RESULT_WAITS
from core import store
from core.domain import AER_METHODS, JobStatus

log = logging.getLogger(__name__)
router = APIRouter()

# Seconds: a Bell job waits and runs for milliseconds, a large one for hours.
BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
    1800, 3600, 7200, 21600, 86400,
)  # fmt: skip
# A pointer not seen below the last one seen (its transaction committed after a later one's)
# is looked for again for this long; sequence gaps (rollbacks) stop being looked for then.
HOLE_TTL_S = 30.0
MAX_HOLES = 10_000


def method_label(method: str | None) -> str:
    """An Aer method name, ``auto``, or ``other``: a bounded label whatever a plugin reported."""
    return method if method in AER_METHODS else "other"


class ClusterMetrics(Collector):
    """Everything the api exports from Postgres; :meth:`refresh` reads it, ``collect`` yields it.

    The histograms and the counter live in ``registry`` as ordinary prometheus_client metrics,
    fed from the history rows each refresh reads.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._snapshot: dict[str, Any] | None = None
        self._after: int | None = None  # the last history pointer counted
        self._holes: dict[int, float] = {}  # pointer -> monotonic time it was first missed
        self._lock = asyncio.Lock()
        labels = ("backend", "method")
        self.queue_wait = Histogram(
            "qserver_job_queue_wait_seconds",
            "Seconds from submission to the start of the simulation, per job that ended",
            labels,
            buckets=BUCKETS,
            registry=registry,
        )
        self.run_time = Histogram(
            "qserver_job_run_seconds",
            "Seconds from the start of the simulation to the job's end, per job that ended",
            labels,
            buckets=BUCKETS,
            registry=registry,
        )
        self.ended = Counter(
            "qserver_jobs_ended",
            "Jobs that reached a terminal status while this api process ran",
            ("backend", "method", "status"),
            registry=registry,
        )
        registry.register(self)

    async def refresh(self, pool: AsyncConnectionPool) -> None:
        """Read the snapshot (one statement) and count the jobs that ended since the last one.

        Raises:
            psycopg.OperationalError, psycopg_pool.PoolTimeout: the database is unreachable.
        """
        async with self._lock:  # two scrapes at once must not count the same rows twice
            now = time.monotonic()
            self._holes = {p: t for p, t in self._holes.items() if now - t < HOLE_TTL_S}
            async with pool.connection() as conn:
                snapshot = await store.metrics_snapshot(conn, after=self._after, holes=self._holes)
            self._count(snapshot["ended"], now)
            if self._after is None:
                self._after = snapshot["history_last"]
            self._snapshot = snapshot

    def _count(self, ended: list[dict[str, Any]], now: float) -> None:
        after = self._after
        for row in ended:
            pointer = row["pointer"]
            if self._holes.pop(pointer, None) is None and after is not None and pointer > after:
                missed = range(max(after + 1, pointer - MAX_HOLES), pointer)
                self._holes.update((hole, now) for hole in missed)
                after = pointer
            method = method_label(row["method"])
            self.ended.labels(row["backend"], method, row["status"]).inc()
            if row["queue_wait_s"] is not None and not row["cached"]:
                self.queue_wait.labels(row["backend"], method).observe(max(row["queue_wait_s"], 0.0))
                self.run_time.labels(row["backend"], method).observe(max(row["run_s"], 0.0))
        if len(self._holes) > MAX_HOLES:
            self._holes = dict(sorted(self._holes.items())[-MAX_HOLES:])
        self._after = after

    def forget(self) -> None:
        """The database did not answer: export no gauges of an old snapshot, and say so."""
        self._snapshot = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges of the last snapshot, and whether it was read (none before the first refresh)."""
        snapshot = self._snapshot
        yield GaugeMetricFamily(
            "qserver_api_database_up",
            "1 when this scrape read the jobs and nodes from Postgres, else 0",
            value=0 if snapshot is None else 1,
        )
        if snapshot is None:
            return
        jobs = GaugeMetricFamily(
            "qserver_jobs", "Jobs in the database by backend and status", labels=["backend", "status"]
        )
        counts = {(backend, status): n for backend, status, n in snapshot["jobs"]}
        for backend in sorted(set(snapshot["backends"]) | {backend for backend, _ in counts}):
            for status in JobStatus:
                jobs.add_metric([backend, status.value], counts.get((backend, status.value), 0))
        yield jobs
        yield GaugeMetricFamily("qserver_nodes_online", "Ray nodes online", value=len(snapshot["nodes"]))
        yield GaugeMetricFamily(
            "qserver_nodes_known", "Ray nodes ever seen, online or not", value=snapshot["nodes_known"]
        )
        yield from _node_gauges(snapshot["nodes"])


_NODE_GAUGES = (
    ("qserver_node_cpus", "cpus_total", "CPUs the node offers to Ray"),
    ("qserver_node_cpus_free", "cpus_free", "CPUs of the node free now"),
    ("qserver_node_gpus", "gpus_total", "GPUs the node offers to Ray"),
    ("qserver_node_gpus_free", "gpus_free", "GPUs of the node free now"),
    ("qserver_node_memory_bytes", "memory_total", "Memory the node offers to Ray, bytes"),
    ("qserver_node_memory_free_bytes", "memory_free", "Memory of the node free now, bytes"),
    ("qserver_node_jobs_running", "jobs_running", "Jobs running on the node"),
)


def _node_gauges(nodes: list[dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
    for name, column, help_text in _NODE_GAUGES:
        family = GaugeMetricFamily(name, f"{help_text} (online nodes)", labels=["node_id", "hostname"])
        for node in nodes:
            family.add_metric([node["node_id"], node["hostname"] or ""], node[column])
        yield family


def build_registry() -> tuple[CollectorRegistry, ClusterMetrics]:
    """A registry of the api's metrics (one per app) and its Postgres collector."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    registry.register(RESULT_WAITS)
    registry.register(EVENT_STREAMS)
    return registry, ClusterMetrics(registry)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text format; the Postgres part read now (500 if the database is unreachable)."""
    cluster: ClusterMetrics = request.app.state.metrics
    try:
        await cluster.refresh(request.app.state.pool)
    except (psycopg.OperationalError, PoolTimeout) as error:
        log.warning("metrics: the database is unreachable (%s): exporting what this process knows", error)
        cluster.forget()
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
