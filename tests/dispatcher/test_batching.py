"""Which jobs run on a warm executor in a batch (pure placement), how many CPUs a large job
gets, and the warm executor itself against the real database (tests/cluster and the
stack tests run it inside Ray)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from qiskit import QuantumCircuit

from core import store
from core.domain import BUILTIN_PLUGIN, JobSpec, ResultType
from core.settings import Settings
from core.store import ClaimedJob
from dispatcher import placement
from dispatcher.placement import (
    WORKER_BYTES,
    Node,
    batch_memory_bytes,
    job_cpus,
    runs_in_batch,
    task_options,
)

GIB = 1024**3
BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'


def job(*, plugin: str | None = BUILTIN_PLUGIN, metadata=None, qasm=BELL, gpu=False, memory=None) -> ClaimedJob:
    return ClaimedJob(
        id=uuid.uuid4(),
        backend="aer",
        plugin=plugin,
        plugin_version=None,
        qasm=qasm,
        metadata=metadata or {},
        result_types=("counts",),
        attempts=1,
        needs_gpu=gpu,
        memory_bytes=memory,
    )


def test_small_builtin_aer_job_runs_in_a_batch():
    assert runs_in_batch(job(), Settings())
    assert runs_in_batch(job(metadata={"shots": 100_000, "method": "statevector", "seed": 3}), Settings())


@pytest.mark.parametrize(
    "other",
    [
        dict(plugin="fake-plugin"),
        dict(gpu=True),
        dict(memory=GIB),
        dict(metadata={"tags": ["big"]}),
        dict(metadata={"timeout_s": 5}),
        dict(metadata={"method": "extended_stabilizer"}),
        dict(metadata={"method": "matrix_product_state"}),
        dict(metadata={"shots": 100_001}),
        dict(qasm=BELL + "//" + "x" * 65536),
    ],
    ids=["plugin", "gpu", "memory", "tags", "timeout", "extended_stabilizer", "mps", "shots", "long program"],
)
def test_other_jobs_run_as_tasks_of_their_own(other):
    assert not runs_in_batch(job(**other), Settings())


def test_batch_budget_is_a_worker_a_statevector_of_batch_max_qubits_and_batch_gates():
    from plugins.aer import sizing

    ours = (placement.WORKER_BYTES, placement.GATE_BYTES, placement.PROGRAM_BYTES_QASM2, placement.PROGRAM_BYTES_QASM3)
    assert ours == (sizing.WORKER_BYTES, sizing.GATE_BYTES, sizing.PROGRAM_BYTES_QASM2, sizing.PROGRAM_BYTES_QASM3)
    assert placement.BATCH_GATES == sizing.BATCH_GATES
    assert batch_memory_bytes(Settings(batch_max_qubits=16)) == (
        WORKER_BYTES + 16 * 2**16 + 2 * 2**16 + 6 * 1024 * 8192
    )
    # a Bell circuit fits the budget; 8 193 gates on 16 qubits do not (a task of their own)
    bell = sizing.size(QuantumCircuit.from_qasm_str(BELL), "automatic")
    assert bell.memory_bytes == WORKER_BYTES + 4 * 6 * 1024  # h, cx and two measurements
    wide = QuantumCircuit(16)
    for i in range(8193):
        wide.rz(0.1, i % 16)
    assert sizing.size(wide, "automatic").memory_bytes > batch_memory_bytes(Settings(batch_max_qubits=16))


def test_a_long_program_first_asks_for_what_loading_it_takes():
    """Before it is parsed, a job asks the default, or for a long program 24 B per byte of
    OpenQASM 2 and 1 200 B per byte of OpenQASM 3 (plugins.aer.sizing, measured) on a worker."""
    settings = Settings()
    assert placement.first_memory_bytes(job(), settings) == settings.default_job_memory_bytes
    long2 = BELL + "//" + "x" * 30 * 2**20  # 30 MiB of OpenQASM 2
    assert placement.first_memory_bytes(job(qasm=long2), settings) == WORKER_BYTES + 24 * len(long2)
    long3 = "// a comment first\nOPENQASM 3.0;\nqubit q;\n" + "//" + "x" * 2**20
    assert placement.first_memory_bytes(job(qasm=long3), settings) == WORKER_BYTES + 1200 * len(long3)
    assert placement.first_memory_bytes(job(qasm=long3, memory=5 * GIB), settings) == 5 * GIB


def test_large_job_gets_the_cpus_of_the_largest_node_that_fits():
    nodes = [
        Node("a", True, memory=4 * GIB, cpus=2),
        Node("b", True, memory=64 * GIB, cpus=12),
        Node("c", False, memory=64 * GIB, cpus=32),
    ]
    settings = Settings()
    assert job_cpus(job(), 512 * 2**20, nodes, settings) == 1
    assert job_cpus(job(), 8 * GIB, nodes, settings) == 12
    assert job_cpus(job(), 8 * GIB, nodes, Settings(max_job_cpus=4)) == 4
    assert job_cpus(job(gpu=True), 8 * GIB, nodes, settings) == 1
    assert task_options(job(), settings, 8 * GIB, 12)["num_cpus"] == 12


@pytest.fixture(scope="module")
def dsn():
    from tests.conftest import fresh_database

    yield from fresh_database("postgresql://postgres@127.0.0.1:5432/qserver_test_batch")


async def _claimed(dsn: str, qasms: list[str], metadata=None) -> list[ClaimedJob]:
    pool = await store.open_pool(dsn)
    ids = []
    async with pool.connection() as conn:
        for qasm in qasms:
            ids.append(uuid.uuid4())
            await store.insert_job(
                conn,
                job_id=ids[-1],
                spec=JobSpec(
                    backend="aer",
                    result_types=(ResultType.COUNTS,),
                    metadata=metadata or {"shots": 1000, "seed": 7},
                    qasm=qasm,
                ),
            )
        jobs = {j.id: j for j in await store.claim_jobs(conn, job_ids=ids)}
    await pool.close()
    return [jobs[i] for i in ids]


def test_warm_executor_runs_a_batch_and_writes_every_outcome(dsn, monkeypatch):
    """The actor class called in-process (no Ray): finished, failed, too large, canceled meanwhile."""
    from cluster.batch import Executor
    from cluster.messages import Work
    from core.domain import Outcome
    from core.settings import get_settings

    monkeypatch.setenv("QSERVER_DATABASE_URL", dsn)
    get_settings.cache_clear()
    # 22 qubits: a statevector past the budget's 16 qubits and BATCH_GATES gates
    wide = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[22];\nh q;\nt q;\nmeasure q[0] -> c[0];\n'
    wide = wide.replace("qreg q[22];", "qreg q[22];\ncreg c[1];")
    budget = batch_memory_bytes(Settings(batch_max_qubits=16))
    claimed = asyncio.run(_claimed(dsn, [BELL, "OPENQASM 2.0;\nqreg q[1];\nfoo q[0];\n", wide, BELL]))
    ids = [job.id for job in claimed]
    with store.connect_sync(dsn) as conn:
        conn.execute("UPDATE jobs SET status = 'canceled' WHERE id = %s", (ids[3],))
        executor = Executor(budget)
        reports = executor.run_batch([Work(job=job, memory_bytes=budget) for job in claimed])
        assert [r.outcome for r in reports] == [Outcome.FINISHED, Outcome.FAILED, Outcome.NEEDS_MEMORY, Outcome.DROPPED]
        assert [r.job_id for r in reports] == ids
        assert reports[2].memory.active_qubits == 22 and reports[2].memory.memory_bytes > budget
        rows = {
            r["id"]: r
            for r in conn.execute(
                "SELECT j.id, j.status, j.error, r.counts FROM jobs j LEFT JOIN results r ON r.job_id = j.id"
            )
        }
    assert rows[ids[0]]["status"] == "finished"
    assert set(rows[ids[0]]["counts"]) == {"00", "11"}
    assert sum(rows[ids[0]]["counts"].values()) == 1000
    assert rows[ids[1]]["status"] == "failed"
    assert "foo" in rows[ids[1]]["error"] and "foo" in reports[1].error
    assert rows[ids[2]]["status"] == "claimed"  # handed back untouched: claimed again, pending to its user
    assert rows[ids[3]]["status"] == "canceled" and rows[ids[3]]["counts"] is None
    assert reports[3].database.endswith("/qserver_test_batch")
    get_settings.cache_clear()


def test_ray_nodes_let_any_worker_use_all_their_cpus():
    """A reused Ray worker keeps the OMP_NUM_THREADS of the task it first ran; the node's count
    set at `ray start` lets a large job's Aer use every CPU its task was granted."""
    import os

    from ops.nodes import NodeSpec
    from ops.rayhead import node_env

    assert node_env({"A": "1"}, NodeSpec(num_cpus=3)) == {"A": "1", "OMP_NUM_THREADS": "3"}
    assert node_env({}, NodeSpec())["OMP_NUM_THREADS"] == str(os.cpu_count())
    assert node_env({"OMP_NUM_THREADS": "7"}, NodeSpec(num_cpus=3)) == {"OMP_NUM_THREADS": "7"}
