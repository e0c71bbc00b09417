"""Fault injection on private services: a RabbitMQ node and a Postgres cluster of our own
(ops/faultlab.py), never the machine's shared ones on 5432/5672, and a QServer stack on them.

One lab per session (~20-30 s to start on a 2-core machine: Postgres initdb + start ~1 s,
RabbitMQ ~4-5 s, the stack ~13-21 s; ~5-8 s to close); each test starts from both services
running. The terminal summary prints what each part took.
"""

from __future__ import annotations

import shutil
import time

import pytest

from ops.faultlab import FaultLab

TIMINGS: dict[str, float] = {}  # what the lab took, shown in the terminal summary


def _missing() -> str | None:
    from pathlib import Path

    if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        return "rabbitmq-server is not installed"
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        return "no /usr/lib/postgresql/*/bin/initdb"
    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        return "nginx is not installed"
    return None


@pytest.fixture(scope="session")
def lab():
    """Private RabbitMQ + Postgres, and a stack (ingest, api, dispatcher, nginx, Ray head) on them."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    # a prefetch of 2 on 2 CPUs: a third delivery already waits for a free slot, as
    # deliveries do on a busy stack (test_restart_while_deliveries_wait_for_a_slot)
    lab = FaultLab(sweep_after_s=2.0, dispatcher_prefetch=2, executor_warm_workers=2)
    try:
        lab.start()
        lab.timings["lab total"] = time.monotonic() - started
        yield lab
    finally:
        closing = time.monotonic()
        lab.close(keep=False)
        lab.timings["lab close"] = time.monotonic() - closing
        TIMINGS.update(lab.timings)


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        terminalreporter.write_line("fault lab: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))


@pytest.fixture
def faults(lab):
    """The lab with both private services running (a test that stopped one may have failed)."""
    lab.ensure_services()
    yield lab
    lab.ensure_services()
