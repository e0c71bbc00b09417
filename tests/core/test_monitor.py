"""core/monitor.py: /metrics and /health served from a thread, checks run on the service's loop."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from core.monitor import LOOP_TIMEOUT_S, OK, Monitor, MonitorFailed
from ops import endpoints
from tests.scrape import parse, value


async def get(url: str) -> httpx.Response:
    """GET from another thread: the service's loop (this test's) stays free to answer."""
    return await asyncio.to_thread(httpx.get, url, timeout=10)


async def test_metrics_and_health_answer_from_the_services_state():
    registry = CollectorRegistry()
    served = Counter("qserver_test_things", "things", registry=registry)
    served.inc(3)
    state = {"database": OK}
    refreshed = []

    async def health():
        assert asyncio.get_running_loop() is loop  # on the service's loop, not the server's
        return dict(state)

    async def refresh():
        refreshed.append(asyncio.get_running_loop() is loop)

    loop = asyncio.get_running_loop()
    port = endpoints.free_port()
    monitor = Monitor(service="thing", host="127.0.0.1", port=port, registry=registry, health=health, refresh=refresh)
    await monitor.start()
    try:
        metrics = await get(f"http://127.0.0.1:{port}/metrics")
        assert metrics.status_code == 200
        assert value(parse(metrics.text), "qserver_test_things_total") == 3
        assert refreshed == [True]
        answer = await get(f"http://127.0.0.1:{port}/health")
        assert (answer.status_code, answer.json()) == (200, {"service": "thing", "status": "OK", "checks": state})
        state["database"] = "no database connection: gone"
        answer = await get(f"http://127.0.0.1:{port}/health")
        assert answer.status_code == 503
        assert answer.json()["checks"] == {"database": "no database connection: gone"}
        with pytest.raises(endpoints.NotReady, match="503 database: no database connection: gone"):
            await asyncio.to_thread(endpoints.checks_health, f"http://127.0.0.1:{port}/health")
    finally:
        await monitor.stop()
    assert not endpoints.is_listening("127.0.0.1", port)


async def test_a_blocked_event_loop_fails_the_health_check():
    async def health():
        time.sleep(LOOP_TIMEOUT_S + 0.5)  # blocks the service's loop, as a stuck call would
        return {"x": OK}

    port = endpoints.free_port()
    monitor = Monitor(service="stuck", host="127.0.0.1", port=port, registry=CollectorRegistry(), health=health)
    await monitor.start()
    try:
        answer = await get(f"http://127.0.0.1:{port}/health")
        assert answer.status_code == 503
        assert "event loop did not answer" in answer.json()["checks"]["event_loop"]
    finally:
        await monitor.stop()


async def test_a_taken_port_is_refused_at_start():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        async def health():
            return {}

        monitor = Monitor(service="late", host="127.0.0.1", port=port, registry=CollectorRegistry(), health=health)
        with pytest.raises(MonitorFailed, match=f"127.0.0.1:{port}"):
            await monitor.start()
