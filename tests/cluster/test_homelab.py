"""Jobs land where their tags, GPU and memory say; a node that leaves makes its tag's jobs wait."""

from __future__ import annotations

import time

import grpc
import numpy as np
import psycopg
import pytest

from tests.circuits import BELL
from tests.client import chunks, properties

MIB = 1024**2


def non_clifford(qubits: int) -> str:
    """A circuit Aer runs with the statevector method on ``qubits`` active qubits."""
    return (
        f'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[{qubits}];\ncreg c[{qubits}];\n'
        "h q;\nt q;\nh q;\nmeasure q -> c;\n"
    )


def test_every_node_is_in_the_cluster_view(homelab):
    cluster = homelab.client.http.get("/api/v1/cluster").json()
    alive = {node["node_id"]: node for node in cluster["nodes"] if node["alive"]}
    assert set(alive) == {homelab.node_id(role) for role in ("head", "lab", "big")}
    assert alive[homelab.node_id("lab")]["tags"] == ["lab"]
    assert alive[homelab.node_id("lab")]["gpus_total"] == 1
    assert alive[homelab.node_id("big")]["memory_total"] == 3 * 1024 * MIB
    assert cluster["totals"]["tags"] == ["big", "lab"]


def test_tagged_job_runs_on_the_node_with_that_tag(homelab):
    for role in ("lab", "big"):
        job = homelab.client.run(BELL, counts=True, metadata={"tags": [role]})
        assert job["status"] == "finished", job["error"]
        assert job["node_id"] == homelab.node_id(role)


def test_gpu_job_runs_on_the_gpu_node(homelab):
    # mocked GPU: see conftest; the placement is real
    job = homelab.client.run(BELL, counts=True, backend="aer_gpu")
    assert job["status"] == "finished", job["error"]
    assert job["node_id"] == homelab.node_id("lab")
    assert set(job["results"]["counts"]) <= {"00", "11"}


def test_job_too_big_for_small_nodes_goes_to_the_big_one(homelab):
    # 25 qubits, statevector: 512 MiB of state + 1/8 + 256 MiB of worker + 6 KiB for each of its
    # 100 gates (h, t, h and a measurement per qubit) = 832.6 MiB > 768 MiB
    job = homelab.client.run(non_clifford(25), counts=True, metadata={"shots": 20})
    assert job["status"] == "finished", job["error"]
    assert job["node_id"] == homelab.node_id("big")
    assert job["memory_bytes"] == 256 * MIB + 512 * MIB + 64 * MIB + 100 * 6 * 1024
    assert all(len(key) == 25 for key in job["results"]["counts"])


def test_job_too_big_for_every_node_fails_at_once_with_the_hint(homelab):
    job = homelab.client.run(non_clifford(28), counts=True)
    assert job["status"] == "failed"
    assert job["error"] == (
        "needs 4.8 GiB of memory, but the largest node that can run it has 3.0 GiB; "
        '"method": "matrix_product_state" in the metadata may fit (it suits wide, lightly entangled circuits)'
    )
    mps = homelab.client.run(non_clifford(28), counts=True, metadata={"method": "matrix_product_state"})
    assert mps["status"] == "finished", mps["error"]


def test_unknown_tag_is_refused_at_submission(homelab):
    with pytest.raises(grpc.RpcError) as info:
        homelab.client.add_job_stream([properties(counts=True, metadata={"tags": ["attic"]}), *chunks(BELL)])
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "'attic'" in info.value.details() and "tags: big, lab" in info.value.details()


def test_node_that_leaves_makes_its_jobs_wait_until_it_comes_back(homelab):
    old = homelab.nodes["lab"]
    homelab.cluster.remove_node(old)
    homelab.wait_for_node(old.node_id, False)
    job_id = homelab.client.submit(BELL, counts=True, metadata={"tags": ["lab"]})
    deadline = time.monotonic() + 60
    while not (job := homelab.client.job(job_id))["waiting_for"].startswith("waiting for a node"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "pending"
    assert job["waiting_for"].startswith("waiting for a node with tag 'lab' to come online")
    new = homelab.add_lab_node()
    job = homelab.client.wait(job_id, timeout=120)
    assert job["status"] == "finished", job["error"]
    assert job["node_id"] == new.node_id and job["waiting_for"] is None


def test_node_lost_mid_job_runs_the_job_again_when_a_node_can_take_it(homelab):
    """The node running a job dies: the job is not lost; it waits for a node with its tag and
    runs there (attempt 2)."""
    slow = (
        'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[3];\nh q;\nt q;\nh q;\nt q;\nh q;\nmeasure q -> c;\n'
    )
    job_id = homelab.client.submit(
        slow, counts=True, metadata={"tags": ["lab"], "method": "extended_stabilizer", "shots": 60}
    )
    deadline = time.monotonic() + 60
    while (job := homelab.client.job(job_id))["status"] != "running" or not job["node_id"]:
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    old = homelab.nodes["lab"]
    assert job["node_id"] == old.node_id
    homelab.cluster.remove_node(old, allow_graceful=False)
    deadline = time.monotonic() + 90
    while (job := homelab.client.job(job_id))["status"] == "running":
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "pending", job
    new = homelab.add_lab_node()
    job = homelab.client.wait(job_id, timeout=180)
    assert job["status"] == "finished", job["error"]
    assert job["attempts"] == 2 and job["node_id"] == new.node_id
    assert sum(job["results"]["counts"].values()) == 60


def test_a_large_sweep_runs_on_every_node_and_reads_back_in_order(homelab):
    """3 000 bindings (over cluster.sweep.SPLIT_FROM): parts run on the other nodes too; the
    items come back in the PUB's order and equal one process's seeded run of the same sweep."""
    from qiskit import QuantumCircuit, qasm3
    from qiskit.circuit import Parameter

    from plugins.aer import run_sweep
    from tests.test_sweeps import items, sweep_messages

    theta, phi = Parameter("theta"), Parameter("phi")
    qc = QuantumCircuit(4)
    qc.ry(theta, range(4))
    qc.cx(0, 1)
    qc.rz(phi, 1)
    qc.cx(1, 2)
    qc.h(3)
    qc.measure_all()
    values = np.random.default_rng(3).uniform(-3, 3, size=(3000, 2))
    messages = sweep_messages(qasm3.dumps(qc), values, {"shots": 100, "seed": 8}, counts=True)
    job = homelab.client.wait(homelab.client.add_job_stream(messages), timeout=300)
    assert job["status"] == "finished", job["error"]
    assert job["sweep"]["done"] == 3000
    with psycopg.connect(homelab.settings.database_dsn, autocommit=True) as conn:
        nodes = conn.execute("SELECT DISTINCT node_id FROM sweep_items WHERE job_id = %s", (job["id"],)).fetchall()
    assert len(nodes) >= 2, nodes  # the job's own node and at least one other
    expected: list[dict] = []
    run_sweep(
        qasm3.dumps(qc),
        {"shots": 100, "seed": 8},
        ["counts"],
        ["theta", "phi"],
        values,
        lambda _, i: expected.extend(i),
    )
    found = items(homelab.client, job["id"], limit=1000)
    assert [item["index"] for item in found] == list(range(3000))
    assert [item["counts"] for item in found] == [item["counts"] for item in expected]


def test_a_drained_node_finishes_its_job_takes_no_new_one_leaves_and_once_forgotten_its_tag_is_gone(
    homelab, monkeypatch
):
    """`qserver node drain` on the `big` node while a job runs there: that job finishes there,
    once; a new job for its tag waits instead of running there; small jobs (warm executors) and
    Ray tasks go elsewhere; the dispatcher then stops the node. `qserver node forget` makes its
    tag unknown: the waiting job fails saying so, and a new one is refused at submission."""
    from typer.testing import CliRunner

    from ops import cli

    runner = CliRunner()
    monkeypatch.setattr(cli.common, "settings_or_exit", lambda: homelab.settings)
    big = homelab.node_id("big")
    slow = (
        'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[3];\nh q;\nt q;\nh q;\nt q;\nh q;\nmeasure q -> c;\n'
    )
    slow_id = homelab.client.submit(
        slow, counts=True, metadata={"tags": ["big"], "method": "extended_stabilizer", "shots": 60}
    )
    deadline = time.monotonic() + 60
    while (job := homelab.client.job(slow_id))["status"] != "running" or not job["node_id"]:
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["node_id"] == big
    drained = runner.invoke(cli.app, ["node", "drain", big[:8], "--no-wait"], catch_exceptions=False)
    assert drained.exit_code == 0, drained.output
    # a job for the draining node's tag waits, while the node is still there
    waiting_id = homelab.client.submit(BELL, counts=True, metadata={"tags": ["big"]})
    deadline = time.monotonic() + 30
    while not ((waiting := homelab.client.job(waiting_id))["waiting_for"] or "").startswith("waiting for a node"):
        assert time.monotonic() < deadline, waiting
        time.sleep(0.1)
    assert waiting["status"] == "pending"
    assert waiting["waiting_for"] == f"waiting for a node with tag 'big' to come online (draining: {big[:12]})"
    assert homelab.nodes_table()[big] is True
    # small jobs (warm executors) and Ray tasks (timeout_s: not batched) go to the other nodes
    small = [homelab.client.submit(BELL, counts=True, metadata={"shots": 10}) for _ in range(24)]
    tasks = [homelab.client.submit(BELL, counts=True, metadata={"timeout_s": 60}) for _ in range(4)]
    for job_id in small + tasks:
        done = homelab.client.wait(job_id, timeout=120)
        assert done["status"] == "finished", done["error"]
        assert done["node_id"] != big, done
    # the job that ran there when the drain began finishes there, on its first attempt
    job = homelab.client.wait(slow_id, timeout=180)
    assert job["status"] == "finished", job["error"]
    assert job["node_id"] == big and job["attempts"] == 1
    # then the dispatcher stops the node; the waiting job goes on waiting for it
    homelab.wait_for_node(big, False, timeout=60)
    waiting = homelab.client.job(waiting_id)
    assert waiting["status"] == "pending" and f"known but offline: {big[:12]}" in waiting["waiting_for"]
    # forgotten: its tag is unknown, the waiting job fails saying so, a new one is refused
    forgot = runner.invoke(cli.app, ["node", "forget", big[:8]], catch_exceptions=False)
    assert forgot.exit_code == 0, forgot.output
    assert "no node on record offers tag(s) big any more" in forgot.output
    deadline = time.monotonic() + 30
    while (waiting := homelab.client.job(waiting_id))["status"] == "pending":
        assert time.monotonic() < deadline, waiting
        time.sleep(0.2)
    assert waiting["status"] == "failed"
    assert waiting["error"] == "no node of this cluster has ever offered tag 'big'"
    with pytest.raises(grpc.RpcError) as info:
        homelab.client.add_job_stream([properties(counts=True, metadata={"tags": ["big"]}), *chunks(BELL)])
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "'big'" in info.value.details()
    assert big not in homelab.nodes_table()
