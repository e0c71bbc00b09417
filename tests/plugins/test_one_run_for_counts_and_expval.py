"""A job asking counts (or quasi_dist) and expectation values runs Aer ONCE when the state before
its final measurements is deterministic: the observables are saved just before them. Values are
checked against Statevector, counts against the counts-only run with the same seed."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp, Statevector

from plugins.aer import simulate

GHZ3 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[4];
creg c[3];
h q[0];
cx q[0],q[1];
ry(0.3) q[2];
cx q[1],q[2];
t q[2];
measure q[0] -> c[0];
measure q[1] -> c[1];
measure q[2] -> c[2];
"""
MID_MEASURE = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
measure q[0] -> c[0];
cx q[0],q[1];
measure q[1] -> c[1];
"""
OBS = [[["IZZX", 0.5], ["IIIZ", -1.0]], [["IYYI", 2.0]], [["IIII", 3.0]]]


@pytest.fixture
def aer_runs(monkeypatch) -> list[int]:
    runs: list[int] = []
    real = simulate._execute

    def counted(simulator, circuit, receipt=None, **options):
        runs.append(circuit.num_qubits)
        return real(simulator, circuit, receipt, **options)

    monkeypatch.setattr(simulate, "_execute", counted)
    return runs


def _exact(qasm: str, obs) -> list[float]:
    circuit = QuantumCircuit.from_qasm_str(qasm)
    circuit.remove_final_measurements()
    state = Statevector(circuit)
    return [float(np.real(state.expectation_value(SparsePauliOp.from_list([tuple(t) for t in pub])))) for pub in obs]


def test_counts_and_expvals_come_from_one_run(aer_runs):
    receipt: dict = {}
    metadata = {"shots": 4000, "seed": 11, "obs": OBS}
    both = simulate.run(GHZ3, metadata, ["counts", "quasi_dist", "expval"], receipt=receipt)
    assert aer_runs == [3]  # one run, the idle fourth qubit dropped
    assert both["expval"] == pytest.approx(_exact(GHZ3, OBS), abs=1e-9)
    assert receipt["exact"] is True
    alone = simulate.run(GHZ3, {"shots": 4000, "seed": 11}, ["counts"])
    assert both["counts"] == alone["counts"]  # saving the values draws nothing: same seed, same counts
    assert sum(both["counts"].values()) == 4000
    assert both["quasi_dist"] == {int(k, 2): v / 4000 for k, v in both["counts"].items()}


def test_a_mid_circuit_measurement_keeps_two_runs(aer_runs):
    obs = [[["ZZ", 1.0]]]
    result = simulate.run(MID_MEASURE, {"shots": 2000, "seed": 5, "obs": obs}, ["counts", "expval"])
    assert len(aer_runs) == 2
    assert set(result["counts"]) <= {"00", "11"}
    assert result["expval"] == pytest.approx([1.0], abs=1e-9)  # ZZ is +1 on both branches
