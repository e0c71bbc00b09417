"""Issue 12, points 1 and 2: the fast path keeps cancel and timeouts, and no slow job holds up
the small jobs behind it.

The estimate (plugins.aer.sizing.cost) and the warm executor (cluster/batch.py, its child
processes in cluster/sandbox.py) are tried in this process against a database of their own;
the same promises are then checked end to end on the stack. Bounds are generous (a shared
2-core machine); bench/perf has the numbers.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid

import psutil
import pytest

from core import store
from core.domain import JobSpec, ResultType
from core.store import ClaimedJob

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
BIG = 1 << 30  # memory: never the reason a job leaves the fast path here


def long_qasm(qubits: int, gates: int, seed: int = 1) -> str:
    """A circuit with a mid-circuit measurement (so Aer simulates every shot on its own)."""
    rng = random.Random(seed)
    lines = [
        "OPENQASM 2.0;",
        'include "qelib1.inc";',
        f"qreg q[{qubits}];",
        f"creg c[{qubits}];",
        "h q;",
        "measure q[0] -> c[0];",
    ]
    for _ in range(gates):
        a = rng.randrange(qubits)
        b = (a + 1 + rng.randrange(qubits - 1)) % qubits
        lines.append(rng.choice([f"cx q[{a}],q[{b}];", f"rz(0.3) q[{a}];", f"h q[{a}];", f"t q[{a}];"]))
    lines.append("measure q -> c;")
    return "\n".join(lines) + "\n"


# the issue's long small job: tens of seconds of per-shot simulation or more
ISSUE_LONG = long_qasm(16, 4000)
# a shorter one for the stack (seconds, not minutes, on 2 cores), still far over the budget
LONG = long_qasm(12, 500)


# --- the estimate ------------------------------------------------------------------------


def test_estimate_tells_a_long_job_from_a_small_one():
    from plugins.aer import sizing
    from plugins.aer.circuits import load_circuit

    bell = sizing.cost(load_circuit(BELL), "automatic", 1000)
    long = sizing.cost(load_circuit(ISSUE_LONG), "automatic", 6000)
    assert not bell.per_shot and bell.seconds < 0.01
    assert long.per_shot and long.active_qubits == 16 and long.gates > 4000 and long.seconds > 60
    no_mid = sizing.cost(load_circuit(ISSUE_LONG.replace("measure q[0] -> c[0];\n", "")), "automatic", 6000)
    assert not no_mid.per_shot and no_mid.seconds < long.seconds / 1000
    reset = BELL.replace("h q[0];", "reset q[0];\nh q[0];")
    assert sizing.needs_per_shot(load_circuit(reset))


def test_estimate_hands_back_before_simulating():
    from plugins.aer import run
    from plugins.aer.sizing import TooSlow

    started = time.perf_counter()
    with pytest.raises(TooSlow, match="estimated"):
        run(ISSUE_LONG, {"shots": 6000}, ["counts"], max_seconds=0.5)
    assert time.perf_counter() - started < 10  # parsed and estimated, never simulated (minutes)
    assert run(BELL, {"shots": 100}, ["counts"], max_seconds=0.5)["counts"]


# --- the warm executor, in this process, against a database of its own ------------------


@pytest.fixture(scope="module")
def dsn():
    from tests.conftest import fresh_database

    yield from fresh_database("postgresql://postgres@127.0.0.1:5432/qserver_test_fast_path")


@pytest.fixture
def executor(dsn, monkeypatch):
    from cluster.batch import Executor
    from core.settings import get_settings

    monkeypatch.setenv("QSERVER_DATABASE_URL", dsn)
    get_settings.cache_clear()
    warm = Executor(BIG)
    yield warm
    warm._sandbox.close()
    get_settings.cache_clear()


def _claimed(dsn: str, jobs: list[tuple[str, dict]]) -> list[ClaimedJob]:
    async def claim() -> list[ClaimedJob]:
        pool = await store.open_pool(dsn)
        ids = []
        async with pool.connection() as conn:
            for qasm, metadata in jobs:
                ids.append(uuid.uuid4())
                await store.insert_job(
                    conn,
                    job_id=ids[-1],
                    spec=JobSpec(backend="aer", result_types=(ResultType.COUNTS,), metadata=metadata, qasm=qasm),
                )
            claimed = {j.id: j for j in await store.claim_jobs(conn, job_ids=ids)}
        await pool.close()
        return [claimed[i] for i in ids]

    return asyncio.run(claim())


def _rows(dsn: str) -> dict[uuid.UUID, dict]:
    with store.connect_sync(dsn) as conn:
        return {r["id"]: r for r in conn.execute("SELECT id, status, attempts FROM jobs")}


def _busy(pids: list[int], threshold: float = 50.0) -> list[int]:
    """Those of ``pids`` using more than ``threshold`` % of a CPU over a quarter second."""
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            proc.cpu_percent()
            procs.append(proc)
        except psutil.NoSuchProcess:
            pass
    time.sleep(0.25)
    busy = []
    for proc in procs:
        try:
            if proc.cpu_percent() > threshold and proc.status() != psutil.STATUS_ZOMBIE:
                busy.append(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return busy


def _wait_until_free(pids: list[int], within_s: float) -> float:
    """Seconds until none of ``pids`` uses a CPU; fails after ``within_s``."""
    started = time.monotonic()
    while _busy(pids, threshold=10.0):
        assert time.monotonic() - started < within_s, f"processes {pids} still busy after {within_s} s"
    return time.monotonic() - started


def test_estimate_hands_a_long_job_back_untouched_and_runs_the_rest(dsn, executor):
    from cluster.messages import ESTIMATE, Work
    from core.domain import Outcome

    jobs = _claimed(dsn, [(BELL, {"shots": 100}), (ISSUE_LONG, {"shots": 6000}), (BELL, {"shots": 100})])
    started = time.perf_counter()
    reports = executor.run_batch([Work(job=j, memory_bytes=BIG, max_estimate_s=0.5, max_run_s=60) for j in jobs])
    assert time.perf_counter() - started < 10
    assert [r.outcome for r in reports] == [Outcome.FINISHED, Outcome.NEEDS_MEMORY, Outcome.FINISHED]
    assert reports[1].kind == ESTIMATE and "estimated" in reports[1].error
    rows = _rows(dsn)
    assert rows[jobs[0].id]["status"] == rows[jobs[2].id]["status"] == "finished"
    assert rows[jobs[1].id]["status"] not in ("finished", "failed", "canceled")  # handed back untouched


def test_cancel_stops_the_simulation_and_the_batch_goes_on(dsn, executor, capsys):
    """A long job canceled mid-simulation on a warm executor, two jobs behind it in the batch."""
    from cluster.messages import Work
    from core.domain import Outcome

    jobs = _claimed(dsn, [(ISSUE_LONG, {"shots": 6000}), (BELL, {"shots": 100}), (BELL, {"shots": 200})])
    works = [Work(job=j, memory_bytes=BIG, max_run_s=600) for j in jobs]  # no estimate: it simulates
    reports: list = []
    batch = threading.Thread(target=lambda: reports.extend(executor.run_batch(works)))
    batch.start()
    deadline = time.monotonic() + 60
    while not (busy := _busy(executor._sandbox.pids())):
        assert time.monotonic() < deadline, "the long job never started simulating"
    with store.connect_sync(dsn) as conn:  # what PUT /job/cancel does, then the dispatcher's call
        conn.execute("UPDATE jobs SET status = 'canceled' WHERE id = %s", (jobs[0].id,))
    canceled_at = time.monotonic()
    assert executor.cancel(jobs[0].id)
    freed = _wait_until_free(busy, within_s=2.0)
    with capsys.disabled():
        print(f"\nfast path: CPU free {freed:.2f} s after the cancel")
    batch.join(timeout=30)
    assert not batch.is_alive()
    assert time.monotonic() - canceled_at < 10
    assert [r.outcome for r in reports] == [Outcome.CANCELED, Outcome.FINISHED, Outcome.FINISHED]
    rows = _rows(dsn)
    assert rows[jobs[0].id]["status"] == "canceled"
    assert [rows[j.id]["status"] for j in jobs[1:]] == ["finished", "finished"]
    assert [rows[j.id]["attempts"] for j in jobs[1:]] == [1, 1]


def test_a_job_past_the_time_limit_is_stopped_and_handed_back(dsn, executor):
    from cluster.messages import OVERRAN, Work
    from core.domain import Outcome

    jobs = _claimed(dsn, [(ISSUE_LONG, {"shots": 6000}), (BELL, {"shots": 100}), (BELL, {"shots": 100})])
    started = time.perf_counter()
    reports = executor.run_batch([Work(job=j, memory_bytes=BIG, max_run_s=1.0) for j in jobs])
    assert time.perf_counter() - started < 10
    assert [r.outcome for r in reports] == [Outcome.NEEDS_MEMORY, Outcome.FINISHED, Outcome.FINISHED]
    assert reports[0].kind == OVERRAN
    rows = _rows(dsn)
    assert rows[jobs[0].id]["status"] not in ("finished", "failed", "canceled")
    assert [rows[j.id]["attempts"] for j in jobs] == [1, 1, 1]


# --- end to end --------------------------------------------------------------------------


def _ray_pids() -> list[int]:
    """Ray's worker processes ("ray::...") and their children (the warm executors' sandboxes)."""
    pids = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if (proc.info["cmdline"] or [""])[0].startswith("ray::"):
                pids.append(proc.pid)
                pids += [child.pid for child in proc.children(recursive=True)]
        except psutil.Error:
            pass
    return pids


def _bell_seconds(stack, count: int) -> list[float]:
    took = []
    for i in range(count):
        started = time.perf_counter()
        result = stack.run(BELL, counts=True, metadata={"shots": 100, "seed": i, "cache": False}, timeout=30)
        assert result["status"] == "finished", result
        took.append(time.perf_counter() - started)
    return took


def test_long_small_jobs_never_hold_up_bell_jobs(stack):
    """Two long jobs that look small (12 qubits) but simulate every shot: they run as tasks of
    their own, and Bell jobs submitted meanwhile finish at once."""
    long_ids = [stack.submit(LONG, counts=True, metadata={"shots": 1000, "seed": s, "cache": False}) for s in (1, 2)]
    time.sleep(0.5)
    took = _bell_seconds(stack, 10)
    assert sorted(took)[len(took) // 2] < 1.0 and max(took) < 3.0, took
    for job_id in long_ids:
        job = stack.wait(job_id, timeout=300)
        assert job["status"] == "finished", job
        assert sum(job["results"]["counts"].values()) == 1000
    with store.connect_sync(_dsn()) as conn:
        attempts = [
            conn.execute("SELECT attempts FROM jobs WHERE id = %s", (i,)).fetchone()["attempts"] for i in long_ids
        ]
    assert attempts == [1, 1]


def test_cancel_of_a_long_small_job_frees_its_cpu(stack):
    """A long small job canceled while Bell jobs flow, jobs submitted right behind it: its CPU is
    free within 2 s, the jobs behind it finish (once), it stays canceled."""
    longer = LONG.replace("h q;", "h q;\nh q;")
    long_id = stack.submit(longer, counts=True, metadata={"shots": 3000, "seed": 3, "cache": False})
    behind = [stack.submit(BELL, counts=True, metadata={"shots": 100, "seed": s, "cache": False}) for s in range(3)]
    deadline = time.monotonic() + 60
    while not (busy := _busy(_ray_pids(), threshold=60.0)):
        assert time.monotonic() < deadline, "the long job never started simulating"
    response = stack.http.put(f"/api/v1/job/cancel/{long_id}")
    assert response.status_code == 200, response.text
    assert _wait_until_free(busy, within_s=2.0) < 2.0
    took = _bell_seconds(stack, 5)
    assert max(took) < 3.0, took
    for job_id in behind:
        assert stack.wait(job_id, timeout=30)["status"] == "finished"
    time.sleep(2)
    assert stack.wait(long_id, timeout=5)["status"] == "canceled"
    with store.connect_sync(_dsn()) as conn:
        for job_id in behind:
            assert conn.execute("SELECT attempts FROM jobs WHERE id = %s", (job_id,)).fetchone()["attempts"] == 1


def _dsn() -> str:
    from core.settings import Settings

    return Settings().database_dsn


def test_the_issues_long_jobs_beside_bell_jobs_then_canceled(stack, capsys):
    """The issue's own case: two 16-qubit jobs with a mid-circuit measurement, ~4000 gates and
    6000 shots (minutes of per-shot simulation each); Bell jobs submitted meanwhile finish at
    once; canceled, their CPUs are free within 2 s."""
    metadata = [{"shots": 6000, "seed": s, "cache": False} for s in (1, 2)]
    long_ids = [stack.submit(ISSUE_LONG, counts=True, metadata=m) for m in metadata]
    deadline = time.monotonic() + 60
    while len(busy := _busy(_ray_pids(), threshold=60.0)) < 2:
        assert time.monotonic() < deadline, f"the long jobs never both simulated: {busy}"
    took = _bell_seconds(stack, 10)
    assert sorted(took)[len(took) // 2] < 1.0 and max(took) < 3.0, took
    for job_id in long_ids:
        assert stack.http.put(f"/api/v1/job/cancel/{job_id}").status_code == 200
    freed = _wait_until_free(busy, within_s=2.0)
    for job_id in long_ids:
        assert stack.wait(job_id, timeout=10)["status"] == "canceled"
    with capsys.disabled():
        print(
            f"\nBell beside two long jobs: p50 {sorted(took)[5] * 1e3:.0f} ms, max {max(took) * 1e3:.0f} ms; "
            f"CPU free {freed:.2f} s after the cancels"
        )
