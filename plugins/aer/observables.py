"""Expectation values on Aer: the job's observables (metadata ``obs``), the save instructions that
compute them exactly, and the circuit surgery around them (final measurements, idle qubits).

A Pauli observable is saved with Aer's ``SaveExpectationValue`` on the qubits it acts on only;
identity terms are added as numbers. The state it is computed on is the circuit's just before
its final measurements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from qiskit import QuantumCircuit
from qiskit.circuit import CircuitInstruction, Qubit
from qiskit.converters import circuit_to_dag, dag_to_circuit
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer.library import SaveExpectationValue

from plugins.aer.errors import CircuitError

# (label in Aer's result data, the operator reduced to the qubits it acts on, those qubits' indices)
Save = tuple[str, SparsePauliOp, list[int]]


def observables(metadata: Mapping[str, Any], num_qubits: int) -> list[SparsePauliOp]:
    """Metadata 'obs' as one SparsePauliOp per PUB, each checked against the circuit's width.

    A flat list of [pauli, coeff] pairs (upstream aer-plugin's form) is taken as one PUB.

    Raises:
        CircuitError: 'obs' missing or malformed, not a Pauli operator, or of another width.
    """
    obs = metadata.get("obs")
    usage = "metadata 'obs' must be a list of PUBs, each a list of [pauli, coeff] pairs"
    if not isinstance(obs, (list, tuple)) or not obs:
        raise CircuitError(f"expval needs {usage}, got {obs!r}")
    if all(_is_term(term) for term in obs):
        obs = [obs]
    operators = []
    for index, pub in enumerate(obs):
        if not isinstance(pub, (list, tuple)) or not pub or not all(_is_term(term) for term in pub):
            raise CircuitError(f"{usage}; obs[{index}] is {pub!r}")
        try:
            operator = SparsePauliOp.from_list([(term[0], term[1]) for term in pub])
        except Exception as exc:
            message = getattr(exc, "message", None) or str(exc)
            raise CircuitError(f"obs[{index}] is not a Pauli operator: {message}") from exc
        if operator.num_qubits != num_qubits:
            raise CircuitError(
                f"obs[{index}] acts on {operator.num_qubits} qubits but the circuit has {num_qubits}: "
                "a Pauli label has one character per qubit, qubit 0 rightmost"
            )
        operators.append(operator.simplify())
    return operators


def _is_term(term: Any) -> bool:
    return (
        isinstance(term, (list, tuple))
        and len(term) == 2
        and isinstance(term[0], str)
        and isinstance(term[1], (int, float))
        and not isinstance(term[1], bool)
    )


def expval_saves(operators: Sequence[SparsePauliOp]) -> tuple[list[float | None], list[Save]]:
    """What to save for each operator: ``(values, saves)``, ``values[i]`` the value of operator i
    when it is a multiple of the identity (no save needed), else None and one save labelled
    ``expval{i}``.

    Raises:
        CircuitError: an operator with a complex coefficient (not Hermitian).
    """
    values: list[float | None] = []
    saves: list[Save] = []
    for index, operator in enumerate(operators):
        if abs(operator.coeffs.imag).max() > 1e-12:
            raise CircuitError(f"obs[{index}] is not Hermitian: its coefficients must be real")
        acts = (operator.paulis.z | operator.paulis.x).any(axis=0)
        if not acts.any():  # a multiple of the identity
            values.append(float(operator.coeffs.real.sum()))
            continue
        idle = [qubit for qubit in range(operator.num_qubits) if not acts[qubit]]
        reduced = SparsePauliOp(operator.paulis.delete(idle, qubit=True), operator.coeffs.real)
        support = [qubit for qubit in range(operator.num_qubits) if acts[qubit]]
        saves.append((f"expval{index}", reduced, support))
        values.append(None)
    return values, saves


def observed_qubits(saves: Sequence[Save]) -> set[int]:
    """The indices of the qubits some save acts on."""
    return {qubit for _, _, support in saves for qubit in support}


def with_saves(body: QuantumCircuit, saves: Sequence[Save]) -> QuantumCircuit:
    """``body`` (changed in place, and returned) with each save appended on its qubits."""
    for label, reduced, support in saves:
        body.append(SaveExpectationValue(reduced, label=label), [body.qubits[q] for q in support])
    return body


def saved_values(values: Sequence[float | None], data: Mapping[str, Any]) -> list[float]:
    """The value of each operator: from ``values`` where known, else Aer's saved ``expval{i}``
    in ``data`` (one experiment's ``result.data(i)``)."""
    return [float(data[f"expval{index}"].real) if value is None else value for index, value in enumerate(values)]


def split_final_measurements(circuit: QuantumCircuit) -> tuple[QuantumCircuit, list[CircuitInstruction]]:
    """``(body, finals)``: the circuit minus barriers and the measurements nothing after them uses
    (a new circuit with the same registers), and those final measurements in program order.

    Unlike `remove_final_measurements`, a measurement whose bit a later `if` reads stays.
    """
    used_qubits: set = set()
    used_clbits: set = set()
    kept, finals = [], []
    for instruction in reversed(circuit.data):
        name = instruction.operation.name
        if name == "barrier":
            continue
        if name == "measure" and instruction.qubits[0] not in used_qubits and instruction.clbits[0] not in used_clbits:
            finals.append(instruction)
            continue
        kept.append(instruction)
        used_qubits.update(instruction.qubits)
        used_clbits.update(instruction.clbits)
    body = circuit.copy_empty_like()
    for instruction in reversed(kept):
        body.append(instruction, copy=False)
    return body, finals[::-1]


def without_idle_qubits(circuit: QuantumCircuit, keep: set[int]) -> QuantumCircuit:
    """The circuit minus the qubits nothing touches, except those in `keep`.

    Aer's own truncation of idle qubits gives wrong subsystem expectation values
    (Qiskit/qiskit-aer#2442, open in 0.18.2), so expval runs truncate here and turn Aer's off.
    """
    touched = {qubit for instruction in circuit.data for qubit in instruction.qubits}
    if all(qubit in touched or index in keep for index, qubit in enumerate(circuit.qubits)):
        return circuit  # nothing to drop: no round trip through a DAG
    dag = circuit_to_dag(circuit)
    idle = [wire for wire in dag.idle_wires() if isinstance(wire, Qubit) and circuit.find_bit(wire).index not in keep]
    if idle:
        dag.remove_qubits(*idle)
    return dag_to_circuit(dag)
