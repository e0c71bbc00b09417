"""plugins.aer.run_sweep: one program, many bindings, checked against Qiskit's own references
(qiskit_aer.primitives on the same PUB, qiskit.quantum_info.Statevector)."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit, qasm3
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp, Statevector
from qiskit_aer import AerSimulator
from qiskit_aer.primitives import SamplerV2

from plugins.aer import simulate
from plugins.aer.errors import CircuitError
from plugins.aer.simulate import SEED_STEP, run_sweep

A, B = Parameter("a"), Parameter("b")


def circuit(measure: bool = True) -> QuantumCircuit:
    qc = QuantumCircuit(3)
    qc.ry(A, 0)
    qc.rx(B, 1)
    qc.cx(0, 1)
    qc.cx(1, 2)
    qc.rz(A * B, 2)
    qc.h(2)
    if measure:
        qc.measure_all()
    return qc


def sweep(qasm, metadata, result_types, values, names=("a", "b")):
    items: list[dict] = []
    firsts: list[int] = []

    def take(first, chunk):
        assert first == len(items)  # chunks come in order, contiguous
        firsts.append(first)
        items.extend(chunk)

    assert run_sweep(qasm, metadata, result_types, list(names), values, take, threads=1) == len(values)
    return items, firsts


VALUES = np.random.default_rng(7).uniform(-3, 3, size=(40, 2))


def test_seeded_counts_equal_aer_samplerv2_on_the_same_pub():
    items, _ = sweep(qasm3.dumps(circuit()), {"shots": 300, "seed": 11}, ["counts"], VALUES)
    reference = SamplerV2(seed=11).run([(circuit(), VALUES)], shots=300).result()[0].data.meas
    assert [item["counts"] for item in items] == [reference.get_counts(i) for i in range(len(VALUES))]


def test_counts_do_not_depend_on_the_chunk_size(monkeypatch):
    qasm = qasm3.dumps(circuit())
    whole, firsts = sweep(qasm, {"shots": 100, "seed": 3}, ["counts"], VALUES)
    assert firsts == [0]
    monkeypatch.setattr(simulate, "MAX_CHUNK", 7)
    chunked, firsts = sweep(qasm, {"shots": 100, "seed": 3}, ["counts"], VALUES)
    assert firsts == [0, 7, 14, 21, 28, 35]
    assert chunked == whole


def test_aer_seeds_the_experiments_of_one_run_seed_plus_step_times_index():
    """The rule SEED_STEP relies on (qiskit-aer 0.18.2); should Aer change it, this fails."""
    bound = [circuit().assign_parameters(values) for values in VALUES[:4]]
    result = AerSimulator().run(bound, shots=10, seed_simulator=1000).result()
    assert [r.seed_simulator for r in result.results] == [1000 + SEED_STEP * i for i in range(4)]


def test_counts_follow_the_statevector_for_every_binding():
    shots = 4000
    items, _ = sweep(qasm3.dumps(circuit()), {"shots": shots}, ["counts", "quasi_dist"], VALUES[:10])
    for values, item in zip(VALUES[:10], items, strict=True):
        exact = Statevector(circuit(measure=False).assign_parameters(values)).probabilities_dict()
        assert sum(item["counts"].values()) == shots
        for key in set(exact) | set(item["counts"]):
            p = exact.get(key, 0.0)
            count = item["counts"].get(key, 0)
            if p < 1e-12:
                assert count == 0, key
            else:  # 5 sigma of the binomial
                assert abs(count - shots * p) <= 5 * np.sqrt(shots * p * (1 - p)) + 1, (key, count, p)
        assert sum(item["quasi_dist"].values()) == pytest.approx(1.0)


def test_expectation_values_are_exact_per_binding():
    observables = [[["ZZI", 1.0], ["XIX", 0.5]], [["IIY", -2.0]], [["III", 3.0]]]
    items, _ = sweep(qasm3.dumps(circuit(measure=False)), {"obs": observables}, ["expval"], VALUES[:12])
    for values, item in zip(VALUES[:12], items, strict=True):
        state = Statevector(circuit(measure=False).assign_parameters(values))
        exact = [state.expectation_value(SparsePauliOp.from_list(terms)).real for terms in observables]
        assert item["expval"] == pytest.approx(exact, abs=1e-9)


def test_parameters_must_match_the_program():
    qasm = qasm3.dumps(circuit())
    with pytest.raises(CircuitError, match="names c, which the program does not use"):
        sweep(qasm, {}, ["counts"], VALUES, names=("a", "b", "c"))
    with pytest.raises(CircuitError, match="parameters b have no values"):
        sweep(qasm, {}, ["counts"], VALUES[:, :1], names=("a",))


def test_a_sweep_run_in_parts_equals_one_run_when_each_part_says_where_it_starts():
    qasm = qasm3.dumps(circuit())
    whole, _ = sweep(qasm, {"shots": 100, "seed": 4}, ["counts"], VALUES)
    parts: list[dict] = []
    for start in (0, 13, 29):
        end = {0: 13, 13: 29, 29: 40}[start]
        run_sweep(
            qasm,
            {"shots": 100, "seed": 4},
            ["counts"],
            ["a", "b"],
            VALUES[start:end],
            lambda _, i: parts.extend(i),
            start=start,
        )
    assert parts == whole
