"""The dispatcher's health from its own state (dispatcher/monitor.py) and its queue metrics
(real RabbitMQ, no stack)."""

from __future__ import annotations

import asyncio
import time
import uuid

from prometheus_client import CollectorRegistry, generate_latest

from core import queue
from core.monitor import OK
from core.settings import Settings
from dispatcher.monitor import CONSUMING, TICK_STALE_S, DispatcherMetrics, DispatcherState, checks
from dispatcher.tasks import Task, Tasks
from tests.scrape import parse, value

QUEUE = "qserver.test.monitor"


def test_before_it_consumes_the_stage_is_what_fails():
    state = DispatcherState(Settings())
    state.enter("warming 2 workers and 2 warm executors")
    assert checks(state, now=state.since + 42) == {
        "stage": "warming 2 workers and 2 warm executors (for 42 s): not consuming yet"
    }


async def test_consuming_needs_the_broker_ray_and_a_ticking_loop():
    settings = Settings(queue_name=QUEUE)
    connection = await queue.connect(str(settings.amqp_url))
    try:
        channel = await connection.channel()
        state = DispatcherState(settings, tasks=Tasks(), connection=connection, consuming=channel)
        state.enter(CONSUMING)
        found = checks(state)
        assert (found["stage"], found["broker"], found["event_loop"]) == (OK, OK, OK)
        assert found["ray"] != OK  # nothing has read Ray's nodes here
        stale = checks(state, now=state.last_tick + TICK_STALE_S + 3)
        assert (
            stale["event_loop"] == f"the tick task last ran {TICK_STALE_S + 3:.0f} s ago (more than {TICK_STALE_S:g} s)"
        )
        await channel.close()
        assert checks(state)["broker"] == "the consuming channel is closed"
    finally:
        await connection.close()
    assert checks(state)["broker"] == "not connected to RabbitMQ (reconnecting)"


async def test_a_run_that_ends_well_is_noted_a_failed_one_is_not():
    outcomes = iter([None, RuntimeError("down")])

    async def run() -> None:
        outcome = next(outcomes, None)
        if outcome is not None:
            raise outcome

    tasks = Tasks()
    tasks.start(Task("cluster", run, interval_s=None))
    while "cluster" not in tasks.last_ok:
        await asyncio.sleep(0.01)
    first = tasks.last_ok["cluster"]
    assert time.monotonic() - first < 5
    tasks.start(Task("cluster", run, interval_s=None))
    while not tasks.failures:
        await asyncio.sleep(0.01)
    assert tasks.last_ok["cluster"] == first
    await tasks.stop()


async def test_queue_depth_and_consumers_come_from_the_broker():
    settings = Settings(queue_name=QUEUE)
    connection = await queue.connect(str(settings.amqp_url))
    try:
        publisher = await queue.publisher_channel(connection)
        declared = await queue.declare(publisher, QUEUE)
        await declared.purge()
        for _ in range(3):
            await queue.publish_job(publisher, QUEUE, uuid.uuid4())
        state = DispatcherState(settings, publisher=publisher)
        metrics = DispatcherMetrics(state)
        await metrics.refresh()
        registry = CollectorRegistry()
        registry.register(metrics)
        samples = parse(generate_latest(registry).decode())
        assert value(samples, "qserver_queue_messages", queue=QUEUE) == 3
        assert value(samples, "qserver_queue_messages", queue=f"{QUEUE}.dead") == 0
        assert value(samples, "qserver_queue_consumers", queue=QUEUE) == 0
        assert value(samples, "qserver_dispatcher_ready") == 0  # not consuming
        await declared.purge()
    finally:
        await connection.close()
