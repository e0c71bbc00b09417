"""The task path's executor and the worker's database (cluster/executor.py, workerdb.py) called
in-process, without Ray, against the real database: what a Work becomes, as a Report and in
Postgres (the stack and homelab tests run them inside Ray)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from cluster import executor
from cluster.messages import Work
from cluster.workerdb import WorkerDb
from core import store
from core.domain import JobSpec, Outcome, ResultType
from core.settings import get_settings
from tests.conftest import fresh_database

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
WIDE = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[20];\ncreg c[1];\nh q;\nt q;\nmeasure q[0] -> c[0];\n'
MIB = 1024**2
pytestmark = pytest.mark.usefixtures("worker_settings")


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    yield from fresh_database("postgresql://postgres@127.0.0.1:5432/qserver_test_executor")


@pytest.fixture
def worker_settings(dsn, monkeypatch):
    """The worker reads its database from its own environment, as on a node; outside Ray it
    names a node of its own (ray.get_runtime_context would start or join a Ray instance)."""
    monkeypatch.setenv("QSERVER_DATABASE_URL", dsn)
    monkeypatch.setattr(executor, "node_id", lambda: "node-1")
    for name in ("_db", "_heartbeat_db"):  # connections of this test's own, closed after it
        monkeypatch.setattr(executor, name, WorkerDb())
    get_settings.cache_clear()
    yield
    executor._db.close()
    executor._heartbeat_db.close()
    get_settings.cache_clear()


async def _claim(dsn: str, qasm: str) -> store.ClaimedJob:
    pool = await store.open_pool(dsn)
    async with pool.connection() as conn:
        job_id = uuid.uuid4()
        spec = JobSpec(backend="aer", result_types=(ResultType.COUNTS,), metadata={"shots": 100}, qasm=qasm)
        await store.insert_job(conn, job_id=job_id, spec=spec)
        (job,) = await store.claim_jobs(conn, job_ids=[job_id])
    await pool.close()
    return job


def _started(dsn: str, qasm: str) -> store.ClaimedJob:
    """A claimed job its worker has started (running): one whose outcome may be written."""
    job = asyncio.run(_claim(dsn, qasm))
    with store.connect_sync(dsn) as conn:
        assert store.mark_started_sync(conn, job_id=job.id, node_id="n1")
    return job


def _status(dsn: str, job_id: uuid.UUID) -> dict:
    with store.connect_sync(dsn) as conn:
        return conn.execute("SELECT status, error, node_id FROM jobs WHERE id = %s", (job_id,)).fetchone()


def test_a_task_runs_a_job_and_reports_what_it_wrote(dsn):
    job = asyncio.run(_claim(dsn, BELL))
    report = executor.run_job(Work(job=job, memory_bytes=512 * MIB))
    assert (report.job_id, report.outcome, report.error, report.memory) == (job.id, Outcome.FINISHED, None, None)
    assert isinstance(report.job_id, uuid.UUID) and report.run_ms > 0
    assert _status(dsn, job.id)["status"] == "finished"


def test_a_failure_is_written_with_its_message(dsn):
    job = asyncio.run(_claim(dsn, "OPENQASM 2.0;\nqreg q[1];\nfoo q[0];\n"))
    report = executor.run_job(Work(job=job, memory_bytes=512 * MIB))
    assert report.outcome is Outcome.FAILED and "foo" in report.error
    assert _status(dsn, job.id)["error"] == report.error


def test_a_circuit_larger_than_granted_comes_back_with_its_need_and_nothing_written(dsn):
    job = asyncio.run(_claim(dsn, WIDE))
    report = executor.run_job(Work(job=job, memory_bytes=260 * MIB))
    assert report.outcome is Outcome.NEEDS_MEMORY and report.node_id == "node-1"
    assert report.memory.active_qubits == 20 and report.memory.method == "statevector"
    assert report.memory.memory_bytes > 260 * MIB
    assert _status(dsn, job.id)["status"] == "claimed"  # handed back unsimulated, to be placed again


def test_a_job_canceled_meanwhile_is_dropped_and_names_the_database(dsn):
    job = asyncio.run(_claim(dsn, BELL))
    with store.connect_sync(dsn) as conn:
        conn.execute("UPDATE jobs SET status = 'canceled' WHERE id = %s", (job.id,))
    report = executor.run_job(Work(job=job, memory_bytes=512 * MIB))
    assert report.outcome is Outcome.DROPPED and report.database.endswith("/qserver_test_executor")
    assert _status(dsn, job.id)["status"] == "canceled"


@pytest.mark.parametrize("synchronous_commit", [True, False])
def test_results_postgres_refuses_fail_their_own_job_only(dsn, synchronous_commit):
    good, bad, broken = (_started(dsn, BELL) for _ in range(3))
    db = WorkerDb(synchronous_commit=synchronous_commit)
    nul = {"counts": {"\u0000": 1}}  # jsonb holds no NUL character
    written = db.record(
        finished=[(good.id, {"counts": {"11": 1}}), (bad.id, nul)], failed=[(broken.id, "boom")], node_id="n1"
    )
    assert written[good.id] is None and written[broken.id] == "boom"
    assert written[bad.id].startswith("the results could not be stored")
    assert [_status(dsn, j.id)["status"] for j in (good, bad, broken)] == ["finished", "failed", "failed"]
    one = _started(dsn, BELL)
    assert db.record_job(one.id, nul, None, "n1") == (True, _status(dsn, one.id)["error"])
    assert db.record_job(one.id, {"counts": {"1": 1}}, None, "n1") == (False, None)  # no longer running
    assert db.record(finished=[], failed=[], node_id="n1") == {}
    unstarted = asyncio.run(_claim(dsn, BELL))  # claimed, never started: no outcome to write
    assert db.record_job(unstarted.id, {"counts": {"1": 1}}, None, "n1") == (False, None)


def test_a_warm_executors_quick_job_finishes_from_claimed_with_its_true_start_time(dsn):
    """A batch's job that finished before it was marked started goes from claimed (shown pending)
    to finished: start_time is its run time before finish_time, never NULL."""
    quick, quick_failed, started = asyncio.run(_claim(dsn, BELL)), asyncio.run(_claim(dsn, BELL)), _started(dsn, BELL)
    db = WorkerDb()
    written = db.record(
        finished=[(quick.id, {"counts": {"11": 1}}), (started.id, {"counts": {"00": 1}})],
        failed=[(quick_failed.id, "boom")],
        node_id="n1",
        run_s={quick.id: 0.25, quick_failed.id: 0.5, started.id: 9.0},
    )
    assert written == {quick.id: None, quick_failed.id: "boom", started.id: None}
    with store.connect_sync(dsn) as conn:
        rows = {
            row["id"]: row
            for row in conn.execute(
                "SELECT id, status, node_id, extract(epoch FROM finish_time - start_time) AS ran FROM jobs"
                " WHERE id = ANY(%s)",
                ([quick.id, quick_failed.id, started.id],),
            ).fetchall()
        }
    assert [rows[j.id]["status"] for j in (quick, quick_failed, started)] == ["finished", "failed", "finished"]
    assert float(rows[quick.id]["ran"]) == pytest.approx(0.25, abs=0.01)
    assert float(rows[quick_failed.id]["ran"]) == pytest.approx(0.5, abs=0.01)
    assert float(rows[started.id]["ran"]) < 5  # a started job keeps the start_time it was marked with
    assert rows[quick.id]["node_id"] == "n1"


def test_a_broken_connection_is_reopened(dsn):
    db = WorkerDb()
    job = asyncio.run(_claim(dsn, BELL))
    db.conn().close()
    db.mark_started(job.id, "n1")
    db.heartbeat(job.id)
    assert _status(dsn, job.id)["node_id"] == "n1"
    db.conn().close()
    assert db.record_job(job.id, {"counts": {"11": 1}}, None, "n1") == (True, None)


def test_ray_errors_become_reports_of_the_job():
    import ray

    from cluster.runner import classify

    job_id = uuid.uuid4()
    canceled = classify(job_id, ray.exceptions.TaskCancelledError())
    assert (canceled.job_id, canceled.outcome) == (job_id, Outcome.CANCELED)
    crashed = classify(job_id, ray.exceptions.WorkerCrashedError())
    assert (crashed.outcome, crashed.kind) == (Outcome.LOST, "crash")
    other = classify(job_id, ValueError("\x1b[31mboom\x1b[0m"))
    assert (other.outcome, other.kind, other.error) == (Outcome.ERROR, "ValueError", "boom")
