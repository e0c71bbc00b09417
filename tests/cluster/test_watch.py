"""Issue 12, point 4 on the task path: a job that grows its worker past the memory it was granted
fails with what it reached, and the worker ends (cluster/watch.py). Real Postgres, real memory;
the worker is a process of this test's own (spawned, then SIGKILLed by the watch as a Ray
worker would be); in this process the kill is replaced, since pytest itself must live on."""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import threading
import uuid
from collections.abc import Iterator

import pytest

from cluster import executor
from cluster.messages import Work
from cluster.watch import MIB, Watch, ceiling_bytes
from cluster.workerdb import WorkerDb
from core import store
from core.settings import get_settings
from plugins.aer.sizing import WORKER_BYTES
from tests.cluster.test_executor import _claim, _started
from tests.conftest import fresh_database

DSN = "postgresql://postgres@127.0.0.1:5432/qserver_test_watch"


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    yield from fresh_database(DSN)


@pytest.fixture(autouse=True)
def worker_settings(dsn, monkeypatch):
    monkeypatch.setenv("QSERVER_DATABASE_URL", dsn)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _grows(statements: int) -> str:
    """OpenQASM 3 that Qiskit's reference importer loads (a gate of its own sends it there), each
    long expression costing it ~80 KB while loading: memory grows before any estimate exists."""
    angle = "+".join(["0.001"] * 80)
    lines = ["OPENQASM 3.0;", 'include "stdgates.inc";', "gate mine a { h a; }", "qubit[2] q;", "bit[2] c;"]
    lines += [f"rz({angle}) q[{i % 2}];" for i in range(statements)]
    return "\n".join([*lines, "c = measure q;"]) + "\n"


def _job(dsn: str, qasm: str, started: bool) -> store.ClaimedJob:
    """A claimed job, marked started (running) or not."""
    return _started(dsn, qasm) if started else asyncio.run(_claim(dsn, qasm))


def _row(dsn: str, job_id: uuid.UUID) -> dict:
    with store.connect_sync(dsn) as conn:
        return conn.execute("SELECT status, error FROM jobs WHERE id = %s", (job_id,)).fetchone()


def test_the_ceiling_is_the_grant_or_the_growth_it_allows_past_what_the_worker_kept():
    assert ceiling_bytes(512 * MIB, 150 * MIB, WORKER_BYTES) == 512 * MIB  # a fresh worker
    assert ceiling_bytes(512 * MIB, 900 * MIB, WORKER_BYTES) == 900 * MIB + 256 * MIB  # kept 900 MiB
    assert ceiling_bytes(100 * MIB, 150 * MIB, WORKER_BYTES) == WORKER_BYTES  # a grant under a worker


def test_a_job_growing_past_its_grant_fails_naming_what_it_reached(dsn):
    job = _job(dsn, "OPENQASM 3.0;\nqubit q;\n", started=True)
    killed = threading.Event()
    db = WorkerDb()
    watch = Watch(job.id, WORKER_BYTES + 50 * MIB, "node-1", db, kill=killed.set)
    try:
        ballast = bytearray(400 * MIB)  # the growth: real pages, written (past 256 + 50 MiB from any start)
        for i in range(0, len(ballast), 4096):
            ballast[i] = 1
        assert killed.wait(10), "the watch never saw the growth"
    finally:
        watch.stop()
        db.close()
    row = _row(dsn, job.id)
    assert row["status"] == "failed"
    assert "out of memory" in row["error"] and "grew its worker process to" in row["error"]
    assert f"needs more than {(WORKER_BYTES + 50 * MIB) // MIB} MiB" in row["error"]
    del ballast


def test_a_job_within_its_grant_is_left_alone_and_beats(dsn, monkeypatch):
    monkeypatch.setenv("QSERVER_HEARTBEAT_S", "0.2")
    get_settings.cache_clear()
    job = _job(dsn, "OPENQASM 3.0;\nqubit q;\n", started=True)
    killed = threading.Event()
    db = WorkerDb()
    watch = Watch(job.id, 8 * 1024 * MIB, "node-1", db, kill=killed.set)
    try:
        assert not killed.wait(1.0)
    finally:
        watch.stop()
        db.close()
    with store.connect_sync(dsn) as conn:
        beat = conn.execute("SELECT heartbeat_at > start_time AS beat FROM jobs WHERE id = %s", (job.id,)).fetchone()
    assert beat["beat"] and _row(dsn, job.id)["status"] == "running"


def _run_in_worker(work: Work, dsn: str) -> None:
    """A worker process of its own: runs the job as a Ray task would (outside Ray)."""
    import os

    os.environ["QSERVER_DATABASE_URL"] = dsn
    executor.node_id = lambda: "node-1"
    executor.run_job(work)


def test_the_watch_ends_a_worker_whose_program_grows_past_its_grant_while_loading(dsn):
    """A real worker process: the job's program costs far more to load than its grant; the watch
    fails the job and SIGKILLs the process (on a node, Ray reports the task's worker crashed and
    the dispatcher finds the job already failed)."""
    job = _job(dsn, _grows(4000), started=False)
    worker = multiprocessing.get_context("spawn").Process(
        target=_run_in_worker, args=(Work(job=job, memory_bytes=WORKER_BYTES + 8 * MIB), dsn)
    )
    worker.start()
    worker.join(timeout=120)
    assert worker.exitcode == -signal.SIGKILL
    row = _row(dsn, job.id)
    assert row["status"] == "failed" and "out of memory" in row["error"], row
