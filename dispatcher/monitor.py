"""The dispatcher's health and metrics, served on settings.monitor_host:
settings.dispatcher_monitor_port (core/monitor.py) from the moment it starts.

``GET /health`` answers from the dispatcher's own state (200 only when every check is "ok"):

- ``stage``: ``consuming``, else where start-up is (joining Ray, warming executors, ...);
- ``broker``: the RabbitMQ connection is up and the consuming channel open;
- ``ray``: the cluster task read Ray's nodes within the last ``max(10, 5 x
  QSERVER_CLUSTER_REFRESH_S)`` seconds;
- ``event_loop``: the tick task ran within the last :data:`TICK_STALE_S` seconds (and the
  check itself is answered by the dispatcher's event loop, within core.monitor.LOOP_TIMEOUT_S).

``GET /metrics``, read at scrape time (nothing per job):

- ``qserver_queue_messages{queue}``, ``qserver_queue_consumers{queue}``: the jobs queue and its
  dead-letter queue, from the broker (a passive declare);
- ``qserver_dispatcher_jobs_in_flight`` (jobs this dispatcher waits on),
  ``qserver_dispatcher_jobs_waiting_for_executor`` (claimed small jobs queued for a warm
  executor), ``qserver_dispatcher_warm_executors``, ``qserver_dispatcher_ready`` (1 when healthy
  in stage ``consuming``);
- ``qserver_dispatcher_task_failures_total{task}``: failed runs of each background task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import ray
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from core import queue
from core.monitor import OK, Checks, Monitor
from core.settings import Settings
from dispatcher.consumer import Dispatcher
from dispatcher.tasks import Task, Tasks

log = logging.getLogger(__name__)

TICK_S = 1.0
TICK_STALE_S = 10.0
CONSUMING = "consuming"


@dataclass
class DispatcherState:
    """What the health check and the metrics read; service.serve fills it in as it starts."""

    settings: Settings
    stage: str = "starting"
    since: float = field(default_factory=time.monotonic)
    tasks: Tasks | None = None
    connection: AbstractRobustConnection | None = None
    publisher: AbstractChannel | None = None
    consuming: AbstractChannel | None = None
    dispatcher: Dispatcher | None = None
    last_tick: float = field(default_factory=time.monotonic)

    def enter(self, stage: str) -> None:
        """Start-up moved on to ``stage`` (logged; entering the stage it is in does nothing)."""
        if stage == self.stage:
            return
        self.stage, self.since = stage, time.monotonic()
        log.info("dispatcher: %s", stage)

    async def tick(self) -> None:
        """The tick task's run: the event loop is alive."""
        self.last_tick = time.monotonic()

    def tick_task(self) -> Task:
        """The tick as a background task, every TICK_S."""
        return Task("tick", self.tick, interval_s=TICK_S)


def checks(state: DispatcherState, now: float | None = None) -> Checks:
    """The health checks of ``state`` ({name: "ok" or why not}); see the module's docstring."""
    now = time.monotonic() if now is None else now
    if state.stage != CONSUMING:
        return {"stage": f"{state.stage} (for {now - state.since:.0f} s): not consuming yet"}
    result = {"stage": OK, "broker": OK, "ray": OK, "event_loop": OK}
    if state.connection is None or not state.connection.connected.is_set():
        result["broker"] = "not connected to RabbitMQ (reconnecting)"
    elif state.consuming is None or state.consuming.is_closed:
        result["broker"] = "the consuming channel is closed"
    ray_limit = max(10.0, 5 * state.settings.cluster_refresh_s)
    seen = state.tasks.last_ok.get("cluster") if state.tasks else None
    if not ray.is_initialized():
        result["ray"] = "not connected to Ray"
    elif seen is None or now - seen > ray_limit:
        ago = "never" if seen is None else f"{now - seen:.0f} s ago"
        result["ray"] = f"Ray's node list was last read {ago} (more than {ray_limit:g} s): Ray is unreachable"
    if now - state.last_tick > TICK_STALE_S:
        result["event_loop"] = (
            f"the tick task last ran {now - state.last_tick:.0f} s ago (more than {TICK_STALE_S:g} s)"
        )
    return result


class DispatcherMetrics(Collector):
    """The dispatcher's gauges; :meth:`refresh` (on the dispatcher's loop) reads them, ``collect``
    (in the monitor's thread) yields the last reading."""

    def __init__(self, state: DispatcherState) -> None:
        self._state = state
        self._families: list = []

    async def refresh(self) -> None:
        """Read the queues' depths from the broker and the dispatcher's own counts."""
        state, settings = self._state, self._state.settings
        families: list = []
        if state.publisher is not None:
            messages = GaugeMetricFamily("qserver_queue_messages", "Messages ready in the queue", labels=["queue"])
            consumers = GaugeMetricFamily("qserver_queue_consumers", "Consumers of the queue", labels=["queue"])
            for name in (settings.queue_name, queue.dead_letter_queue(settings.queue_name)):
                try:
                    ready, consuming = await queue.queue_stats(state.publisher, name)
                except Exception as error:  # the broker is away: the health answer says so
                    log.debug("queue %s: %s", name, error)
                    continue
                messages.add_metric([name], ready)
                consumers.add_metric([name], consuming)
            families += [messages, consumers]
        load = state.dispatcher.load() if state.dispatcher is not None else {}
        families.append(
            GaugeMetricFamily(
                "qserver_dispatcher_jobs_in_flight", "Jobs this dispatcher waits on", value=load.get("in_flight", 0)
            )
        )
        families.append(
            GaugeMetricFamily(
                "qserver_dispatcher_jobs_waiting_for_executor",
                "Claimed small jobs queued for a warm executor",
                value=load.get("waiting_for_executor", 0),
            )
        )
        families.append(
            GaugeMetricFamily(
                "qserver_dispatcher_warm_executors", "Warm executors for small jobs", value=load.get("executors", 0)
            )
        )
        healthy = all(value == OK for value in checks(state).values()) and state.stage == CONSUMING
        families.append(
            GaugeMetricFamily("qserver_dispatcher_ready", "1 when consuming and healthy", value=int(healthy))
        )
        failures = CounterMetricFamily(
            "qserver_dispatcher_task_failures", "Failed runs of the background tasks", labels=["task"]
        )
        if state.tasks is not None:  # every task, at 0 until it fails
            for name in sorted(set(state.tasks.running()) | set(state.tasks.failures)):
                failures.add_metric([name], state.tasks.failures[name])
        families.append(failures)
        self._families = families

    def collect(self) -> Iterator:
        """The last reading's metric families."""
        yield from self._families


def monitor(state: DispatcherState) -> Monitor:
    """The dispatcher's /metrics and /health (not started)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    metrics = DispatcherMetrics(state)
    registry.register(metrics)

    async def health() -> Checks:
        return checks(state)

    return Monitor(
        service="dispatcher",
        host=state.settings.monitor_host,
        port=state.settings.dispatcher_monitor_port,
        registry=registry,
        health=health,
        refresh=metrics.refresh,
    )
