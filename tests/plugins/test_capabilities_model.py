"""core.capabilities' memory model (it cannot import Qiskit) agrees with plugins.aer.sizing's."""

from __future__ import annotations

import pytest
from qiskit import QuantumCircuit

from core import capabilities
from plugins.aer import SimulationError, run, sizing


@pytest.mark.parametrize("method", ["statevector", "density_matrix", "stabilizer", "matrix_product_state"])
@pytest.mark.parametrize("qubits", [1, 5, 12])
def test_state_bytes_is_sizings_estimate_less_the_gates(method: str, qubits: int) -> None:
    circuit = QuantumCircuit(qubits)
    circuit.h(range(qubits))
    size = sizing.size(circuit, method)
    assert size.active_qubits == qubits
    assert capabilities.state_bytes(qubits, method) == size.memory_bytes - sizing.GATE_BYTES * qubits


def test_the_same_worker_and_methods() -> None:
    assert capabilities.WORKER_BYTES == sizing.WORKER_BYTES
    assert set(capabilities.STATE_EXPONENT) <= set(sizing._EXPONENT)
    assert {m: sizing._EXPONENT[m] for m in capabilities.STATE_EXPONENT} == capabilities.STATE_EXPONENT


BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'


def test_the_methods_listed_are_those_that_run_a_measured_circuit() -> None:
    for method in capabilities.AER_METHODS_RUN:
        counts = run(BELL, {"shots": 20, "seed": 1, "method": method}, ["counts"])["counts"]
        assert set(counts) <= {"00", "11"} and sum(counts.values()) == 20, method
    for method in ("unitary", "superop"):  # left out: they cannot measure
        with pytest.raises(SimulationError, match="invalid instructions"):
            run(BELL, {"shots": 20, "method": method}, ["counts"])
