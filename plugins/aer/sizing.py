"""How much memory a circuit needs on Aer, from its active qubits and the method Aer will use.

Aer's automatic method picks the stabilizer simulator for Clifford circuits and
otherwise the statevector one (qiskit-aer, "Simulation methods"); a statevector of
n qubits holds 2^n complex doubles (16·2^n bytes), a density matrix or unitary
16·4^n, a superoperator 16·16^n. Aer drops qubits no instruction touches, so n is
the number of active qubits, never the declared width.
"""

from __future__ import annotations

from dataclasses import dataclass

from qiskit import QuantumCircuit

from plugins.aer.circuits import active_qubits

MIB = 1024 * 1024
# A Ray worker with Qiskit and Aer loaded, before any simulation.
WORKER_BYTES = 256 * MIB
# Gates of the Clifford group Aer's stabilizer method runs, plus non-unitary bookkeeping.
CLIFFORD = frozenset(
    {"id", "x", "y", "z", "h", "s", "sdg", "sx", "sxdg", "cx", "cy", "cz", "swap", "iswap",
     "ecr", "dcx", "measure", "reset", "barrier", "delay"}
)
_EXPONENT = {"statevector": 1, "density_matrix": 2, "unitary": 2, "superop": 4}


@dataclass(frozen=True)
class Size:
    """What a circuit needs: the method Aer will use, its active qubits, bytes in all."""

    method: str
    active_qubits: int
    memory_bytes: int


class NeedsMemory(Exception):
    """The job needs more memory than this worker was granted; carries the estimate."""

    def __init__(self, size: Size, budget_bytes: int):
        super().__init__(
            f"needs {size.memory_bytes} bytes ({size.method}, {size.active_qubits} active qubits), "
            f"granted {budget_bytes}"
        )
        self.size = size
        self.budget_bytes = budget_bytes


def is_clifford(circuit: QuantumCircuit) -> bool:
    """True when every instruction is a Clifford gate, a measurement, reset or barrier."""
    return all(instruction.operation.name in CLIFFORD for instruction in circuit.data)


def size(circuit: QuantumCircuit, method: str) -> Size:
    """The memory ``circuit`` needs with Aer ``method`` ("automatic" or an Aer method name).

    Returns:
        Size with memory_bytes = WORKER_BYTES + the simulation's state (+1/8 margin); the
        stabilizer, extended-stabilizer and matrix-product-state methods count as the
        worker alone (their state grows polynomially for the circuits they suit).
    """
    qubits = active_qubits(circuit)
    if method == "automatic":
        method = "stabilizer" if is_clifford(circuit) else "statevector"
    exponent = _EXPONENT.get(method, 0)
    state = 16 * 2 ** (exponent * qubits) if exponent else 0
    return Size(method=method, active_qubits=qubits, memory_bytes=WORKER_BYTES + state + state // 8)
