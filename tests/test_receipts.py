"""Every finished job carries a reproducibility receipt; POST /job/{id}/rerun runs it again from
it with identical results, on the fast path, the task path and for sweeps."""

from __future__ import annotations

import platform

import numpy as np
import qiskit
import qiskit_aer
from qiskit import qasm3

from tests.circuits import BELL
from tests.test_sweeps import circuit, items, sweep_messages

# many outcomes, so that two unseeded runs almost surely differ (checked below)
SPREAD = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[6];\ncreg c[6];\nh q;\nt q[0];\nh q[0];\nmeasure q -> c;\n'


def rerun(stack, job_id: str) -> dict:
    answer = stack.http.post(f"/api/v1/job/{job_id}/rerun")
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "pending"
    return stack.wait(answer.json()["id"])


def test_a_seeded_fast_path_job_has_its_receipt(stack):
    job = stack.run(BELL, counts=True, metadata={"seed": 42})
    assert job["status"] == "finished", job["error"]
    receipt = job["receipt"]
    assert receipt["seed"] == 42
    assert receipt["method"] == "stabilizer"  # Aer's own choice for a Clifford circuit
    assert receipt["plugin"] == "aer-plugin"
    assert (receipt["qiskit"], receipt["qiskit_aer"]) == (qiskit.__version__, qiskit_aer.__version__)
    assert receipt["python"] == platform.python_version()
    assert receipt["node_id"] == job["node_id"]
    assert receipt["queue_s"] >= 0 and receipt["run_s"] >= 0


def test_an_unseeded_job_reruns_to_identical_counts(stack):
    first = stack.run(SPREAD, counts=True, metadata={"shots": 4000, "timeout_s": 60})  # a task of its own
    assert first["status"] == "finished", first["error"]
    seed = first["receipt"]["seed"]
    assert isinstance(seed, int)
    again = rerun(stack, first["id"])
    assert again["status"] == "finished", again["error"]
    assert again["metadata"]["rerun_of"] == first["id"] and again["metadata"]["seed"] == seed
    assert again["results"]["counts"] == first["results"]["counts"]
    assert again["receipt"]["seed"] == seed
    other = stack.run(SPREAD, counts=True, metadata={"shots": 4000, "timeout_s": 60})
    assert other["results"]["counts"] != first["results"]["counts"]  # a new draw, without the receipt's seed


def test_an_unseeded_sweep_reruns_to_identical_items(stack):
    values = np.random.default_rng(2).uniform(0, 3, size=(200, 2))
    messages = sweep_messages(qasm3.dumps(circuit()), values, {"shots": 300}, counts=True)
    first = stack.wait(stack.add_job_stream(messages))
    assert first["status"] == "finished", first["error"]
    assert "binding_seeds" in first["receipt"]
    again = rerun(stack, first["id"])
    assert again["status"] == "finished", again["error"]
    assert again["sweep"]["bindings"] == 200
    assert items(stack, again["id"]) == items(stack, first["id"])


def test_rerun_needs_a_finished_job_with_a_receipt(stack):
    failed = stack.run("OPENQASM 2.0;\nqreg q[1];\nnot_a_gate q[0];\n", counts=True)
    assert failed["status"] == "failed"
    assert failed["receipt"] is None
    answer = stack.http.post(f"/api/v1/job/{failed['id']}/rerun")
    assert answer.status_code == 409
    assert "is failed and has no receipt" in answer.json()["detail"]
    unknown = stack.http.post("/api/v1/job/00000000-0000-4000-8000-000000000000/rerun")
    assert unknown.status_code == 404
    assert stack.http.post("/api/v1/job/not-a-uuid/rerun").status_code == 400


def test_a_rerun_sent_again_under_its_key_makes_one_job(stack):
    first = stack.run(BELL, counts=True, metadata={"seed": 5, "cache": False})
    headers = {"Idempotency-Key": "rerun-once-1"}
    one = stack.http.post(f"/api/v1/job/{first['id']}/rerun", headers=headers)
    two = stack.http.post(f"/api/v1/job/{first['id']}/rerun", headers=headers)
    assert one.status_code == two.status_code == 201
    assert one.json()["id"] == two.json()["id"]
    other = stack.run(BELL, counts=True, metadata={"seed": 6, "cache": False})
    refused = stack.http.post(f"/api/v1/job/{other['id']}/rerun", headers=headers)
    assert refused.status_code == 409 and "was already used for a different request" in refused.json()["detail"]
    bad = stack.http.post(f"/api/v1/job/{first['id']}/rerun", headers={"Idempotency-Key": "x" * 201})
    assert bad.status_code == 400
    assert stack.wait(one.json()["id"])["results"] == first["results"]
