"""Ingest's metrics and health, served on settings.monitor_host:settings.ingest_monitor_port
(core/monitor.py): ``GET /metrics`` and ``GET /health``.

- ``qserver_submissions_total{backend, outcome}``: submissions answered with a job id;
  ``outcome`` is ``queued`` (stored and queued), ``cached`` (answered from an earlier job's
  results, never queued) or ``repeated`` (sent again under its idempotency key: the job stored
  the first time);
- ``qserver_submission_refusals_total{reason}``: submissions refused, by the error's kind
  (:func:`reason`; each kind ingest answers starts at 0).

Each costs a submission one counter increment, nothing more.
"""

from __future__ import annotations

import re

import psycopg
from aio_pika.abc import AbstractRobustConnection
from prometheus_client import CollectorRegistry, Counter, ProcessCollector
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from core.monitor import OK, Checks, Monitor
from core.settings import Settings

SUBMISSIONS = Counter(
    "qserver_submissions", "Submissions answered with a job id", ("backend", "outcome"), registry=None
)
REFUSALS = Counter("qserver_submission_refusals", "Submissions refused, by reason", ("reason",), registry=None)
DATABASE_UNAVAILABLE = "database_unavailable"


def reason(error_type: type[Exception]) -> str:
    """The refusal reason of an error class: its name in snake case (``TooManyPending`` ->
    ``too_many_pending``); ``InvalidJob`` is ``invalid_job``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", error_type.__name__).lower()


def monitor(settings: Settings, pool: AsyncConnectionPool, connection: AbstractRobustConnection) -> Monitor:
    """Ingest's /metrics and /health (not started): healthy while a pooled database connection
    passes its check within 2 s and the broker connection is up."""
    registry = CollectorRegistry()
    registry.register(SUBMISSIONS)
    registry.register(REFUSALS)
    ProcessCollector(registry=registry)

    async def health() -> Checks:
        checks = {"database": OK, "broker": OK}
        try:
            async with pool.connection(timeout=2.0):
                pass  # the pool checks a connection on checkout
        except (psycopg.OperationalError, PoolTimeout) as error:
            checks["database"] = f"no database connection: {type(error).__name__}: {error}"
        if not connection.connected.is_set():
            checks["broker"] = "not connected to RabbitMQ (reconnecting): submissions answer UNAVAILABLE"
        return checks

    return Monitor(
        service="ingest",
        host=settings.monitor_host,
        port=settings.ingest_monitor_port,
        registry=registry,
        health=health,
    )
