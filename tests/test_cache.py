"""A job whose answer is determined is answered from an earlier identical job of its owner, at
once, as a job of its own that names its source; ``"cache": false`` opts out."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import qasm3

from tests.circuits import BELL
from tests.test_sweeps import circuit, items, sweep_messages

GHZ_OBS = {"obs": [[["ZZ", 1.0]], [["XX", 0.5], ["YY", 0.25]]]}


def test_a_seeded_job_is_answered_from_the_earlier_one(stack):
    first = stack.run(BELL, counts=True, metadata={"seed": 7, "shots": 500, "tags": []})
    assert first["status"] == "finished", first["error"]
    assert "cached_from" not in first["receipt"]
    again = stack.run(BELL, counts=True, metadata={"shots": 500, "seed": 7})  # key order, tags: same answer
    assert again["id"] != first["id"]
    assert again["status"] == "finished" and again["attempts"] == 0 and again["node_id"] is None
    assert again["receipt"]["cached_from"] == first["id"]
    assert again["receipt"]["seed"] == 7
    assert again["results"] == first["results"]


@pytest.mark.parametrize(
    "metadata",
    [{"seed": 8, "shots": 500}, {"seed": 7, "shots": 501}, {"seed": 7, "shots": 500, "method": "statevector"}],
)
def test_a_different_request_is_not_answered_from_the_cache(stack, metadata):
    stack.run(BELL, counts=True, metadata={"seed": 7, "shots": 500})
    job = stack.run(BELL, counts=True, metadata=metadata)
    assert job["status"] == "finished" and job["attempts"] == 1
    assert "cached_from" not in job["receipt"]


def test_cache_false_runs_the_job_again(stack):
    first = stack.run(BELL, counts=True, metadata={"seed": 9})
    again = stack.run(BELL, counts=True, metadata={"seed": 9, "cache": False})
    assert again["attempts"] == 1 and "cached_from" not in again["receipt"]
    assert again["results"] == first["results"]  # seeded: the same anyway


def test_unseeded_counts_are_never_cached(stack):
    stack.run(BELL, counts=True)
    job = stack.run(BELL, counts=True)
    assert job["attempts"] == 1 and "cached_from" not in job["receipt"]


def test_exact_expectation_values_are_cached_without_a_seed(stack):
    unitary = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[0];\ncx q[0],q[1];\n'
    first = stack.run(unitary, expval=True, metadata=GHZ_OBS)
    assert first["receipt"]["exact"] is True
    again = stack.run(unitary, expval=True, metadata=GHZ_OBS)
    assert again["receipt"]["cached_from"] == first["id"]
    assert again["results"]["expval"] == pytest.approx([1.0, 0.25])


def test_expectation_values_after_a_mid_circuit_measurement_are_not(stack):
    measured = (
        'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[1];\nh q[0];\nmeasure q[0] -> c[0];\ncx q[0],q[1];\n'
    )
    first = stack.run(measured, expval=True, metadata=GHZ_OBS)
    assert first["status"] == "finished", first["error"]
    assert first["receipt"]["exact"] is False
    again = stack.run(measured, expval=True, metadata=GHZ_OBS)
    assert again["attempts"] == 1 and "cached_from" not in again["receipt"]


def test_a_seeded_sweep_is_answered_with_its_items(stack):
    values = np.random.default_rng(4).uniform(0, 3, size=(50, 2))
    messages = sweep_messages(qasm3.dumps(circuit()), values, {"shots": 100, "seed": 3}, counts=True)
    first = stack.wait(stack.add_job_stream(messages))
    again = stack.wait(stack.add_job_stream(messages))
    assert again["receipt"]["cached_from"] == first["id"]
    assert again["sweep"]["done"] == 50
    assert items(stack, again["id"]) == items(stack, first["id"])


def test_metadata_cache_must_be_a_boolean(stack):
    import grpc

    with pytest.raises(grpc.RpcError) as refused:
        stack.submit(BELL, counts=True, metadata={"cache": "no"})
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata 'cache' must be true or false" in refused.value.details()
