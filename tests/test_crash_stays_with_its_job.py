"""Issue 12, points 4 and 5: a crash stays with its job, and a job's memory is bounded by what it
was granted, on the fast path as on the task path.

The crash is made from outside (SIGSEGV to the process simulating the job): no program we know
crashes Qiskit or Aer any more (the deeply nested expression of ../shared/cases is refused before
it reaches the parser), so the signal stands for the next one. Everything else is real: the
warm executor and its children in this process against a database of their own, then the stack.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil

from core import store
from tests.test_fast_path_promises import (
    BELL,
    BIG,
    ISSUE_LONG,
    LONG,
    _busy,
    _claimed,
    _rows,
    dsn,  # noqa: F401 - the fixture
    executor,  # noqa: F401 - the fixture
    long_qasm,
)


def _segfault_when_busy(pids, within_s: float = 60) -> int:
    """SIGSEGV the first of ``pids`` (a callable giving them) that simulates; its pid."""
    deadline = time.monotonic() + within_s
    while not (busy := _busy(pids())):
        assert time.monotonic() < deadline, "no process started simulating"
    os.kill(busy[0], signal.SIGSEGV)
    return busy[0]


def test_a_crash_fails_only_its_own_run_and_the_batch_goes_on(dsn, executor):  # noqa: F811
    from cluster.messages import Work
    from core.domain import Outcome

    jobs = _claimed(dsn, [(ISSUE_LONG, {"shots": 6000}), (BELL, {"shots": 100}), (BELL, {"shots": 200})])
    works = [Work(job=j, memory_bytes=BIG, max_run_s=600) for j in jobs]
    reports: list = []
    batch = threading.Thread(target=lambda: reports.extend(executor.run_batch(works)))
    batch.start()
    _segfault_when_busy(executor._sandbox.pids)
    batch.join(timeout=60)
    assert not batch.is_alive()
    assert [r.outcome for r in reports] == [Outcome.LOST, Outcome.FINISHED, Outcome.FINISHED]
    assert reports[0].kind == "crash" and "SIGSEGV" in reports[0].error
    rows = _rows(dsn)
    assert [rows[j.id]["status"] for j in jobs[1:]] == ["finished", "finished"]
    assert [rows[j.id]["attempts"] for j in jobs] == [1, 1, 1]  # nobody else runs again
    assert len(executor._sandbox.pids()) == 2  # a new spare already


def test_a_job_canceled_while_it_waits_in_the_child_is_stopped_at_its_turn(dsn, executor):  # noqa: F811
    """The batch goes to the child at once; a job canceled while the one before it runs is stopped
    when the executor sees it start (CANCELED), or, a job shorter than that look (a Bell job), run
    and dropped unwritten (DROPPED): either way it stays canceled and the rest run."""
    from cluster.messages import Work
    from core.domain import Outcome

    medium = long_qasm(12, 300, seed=3)  # seconds of per-shot simulation, then it finishes
    jobs = _claimed(dsn, [(medium, {"shots": 2000}), (BELL, {"shots": 100}), (BELL, {"shots": 300})])
    reports: list = []
    batch = threading.Thread(
        target=lambda: reports.extend(executor.run_batch([Work(job=j, memory_bytes=BIG) for j in jobs]))
    )
    batch.start()
    deadline = time.monotonic() + 60
    while not _busy(executor._sandbox.pids()):
        assert time.monotonic() < deadline, "the first job never started simulating"
    with store.connect_sync(dsn) as conn:
        conn.execute("UPDATE jobs SET status = 'canceled' WHERE id = %s", (jobs[1].id,))
    assert not executor.cancel(jobs[1].id)  # not running yet: stopped at its turn
    batch.join(timeout=120)
    assert [r.outcome for r in reports][::2] == [Outcome.FINISHED, Outcome.FINISHED]
    assert reports[1].outcome in (Outcome.CANCELED, Outcome.DROPPED)
    rows = _rows(dsn)
    assert [rows[j.id]["status"] for j in jobs] == ["finished", "canceled", "finished"]
    with store.connect_sync(dsn) as conn:  # nothing of the canceled job was written
        assert conn.execute("SELECT count(*) AS n FROM results WHERE job_id = %s", (jobs[1].id,)).fetchone()["n"] == 0


def _grows(statements: int) -> str:
    """An OpenQASM 3 program that Qiskit's reference importer loads (it defines a gate of its own),
    whose long expressions cost the importer ~80 KB each while loading: memory grows before any
    estimate can be made."""
    angle = "+".join(["0.001"] * 80)
    lines = ["OPENQASM 3.0;", 'include "stdgates.inc";', "gate mine a { h a; }", "qubit[2] q;", "bit[2] c;"]
    lines += [f"rz({angle}) q[{i % 2}];" for i in range(statements)]
    lines.append("c = measure q;")
    return "\n".join(lines) + "\n"


def test_a_job_growing_past_its_grant_is_stopped_and_the_batch_goes_on(dsn, executor):  # noqa: F811
    """Its child is stopped while it grows (no estimate can be made before the program is loaded)
    and the job handed back, asking twice what it reached; the Bell jobs behind it run."""
    from cluster.batch import Executor
    from cluster.messages import MEMORY, Work
    from core.domain import Outcome
    from plugins.aer.sizing import MIB, WORKER_BYTES

    grant = WORKER_BYTES + MIB  # a Bell job's estimate fits; a child holds ~120 MiB before a job
    assert psutil.Process(executor._sandbox.pids()[0]).memory_info().rss < grant - 100 * MIB
    small = Executor(grant)  # a warm executor whose jobs may each have that much
    jobs = _claimed(dsn, [(_grows(4000), {"shots": 100}), (BELL, {"shots": 100}), (BELL, {"shots": 100})])
    try:
        reports = small.run_batch([Work(job=j, memory_bytes=grant, max_run_s=600) for j in jobs])
    finally:
        small._sandbox.close()
    assert [r.outcome for r in reports] == [Outcome.NEEDS_MEMORY, Outcome.FINISHED, Outcome.FINISHED]
    assert reports[0].kind == MEMORY and "past the" in reports[0].error  # stopped while it loaded
    assert reports[0].memory.memory_bytes > 2 * grant  # twice what it had reached: a task of its own
    rows = _rows(dsn)
    assert rows[jobs[0].id]["status"] in ("claimed", "running")  # handed back, untouched
    assert [rows[j.id]["status"] for j in jobs[1:]] == ["finished", "finished"]


# --- end to end --------------------------------------------------------------------------


def _task_workers(job_id: str) -> list[int]:
    """The Ray worker running job ``job_id`` as a task of its own (titled "ray::job-ID")."""
    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if (proc.info["cmdline"] or [""])[0].startswith(f"ray::job-{job_id}"):
                pids.append(proc.pid)
        except psutil.Error:
            pass
    return pids


def test_a_program_that_crashes_twice_fails_naming_the_program_and_others_run_once(stack):
    """A job whose simulation dies (SIGSEGV) runs once more, alone; when that dies too it fails
    naming the program. Bell jobs flow meanwhile, each run once. (LONG is estimated past the fast
    path's budget: it runs as a task of its own, in a Ray worker titled ray::job-ID.)"""
    crasher = stack.submit(LONG, counts=True, metadata={"shots": 4000})
    bells: list[dict] = []
    flowing = threading.Event()

    def bell_flow() -> None:
        while not flowing.is_set():
            bells.append(stack.run(BELL, counts=True, metadata={"shots": 100}, timeout=60))

    flow = threading.Thread(target=bell_flow)
    flow.start()
    try:
        first = _segfault_when_busy(lambda: _task_workers(crasher), within_s=120)
        _segfault_when_busy(lambda: [p for p in _task_workers(crasher) if p != first], within_s=120)
        job = stack.wait(crasher, timeout=120)
    finally:
        flowing.set()
        flow.join(timeout=120)
    assert job["status"] == "failed", job
    assert "crashed the simulator twice" in job["error"] and "check the program" in job["error"].lower()
    assert bells and all(b["status"] == "finished" for b in bells)
    assert all(b["attempts"] == 1 for b in bells)
