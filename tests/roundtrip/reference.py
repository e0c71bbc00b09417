"""The true outcome distribution of a circuit, and how far an honest sample of it may stray.

reference(circuit): exact by branching over Statevector amplitudes where it can be, else a
high-shot Aer sample; tvd_bound(shots, support_size, alpha, reference_shots): the
Bretagnolle-Huber-Carol bound on the total variation distance; tvd(counts, distribution).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from qiskit import (
    ClassicalRegister,
    QuantumCircuit,
    transpile,
)
from qiskit.circuit import Clbit, ControlFlowOp, Gate, IfElseOp
from qiskit.quantum_info import (
    Operator,
    Statevector,
)

# Per-case false-alarm probability of tvd_bound (the runs are seeded, so in practice each case
# either always passes or always fails; alpha says how unlikely an honest backend is to fail).
ALPHA = 1e-6
# The seed of the sampled reference and of every run.
SEED = 1234
# Shots of a sampled reference (only for circuits the exact evaluator below cannot follow).
REFERENCE_SHOTS = 200_000


# ---------------------------------------------------------------------------------------------
# Reference distributions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A circuit's outcome distribution: {key: probability} in Qiskit's counts format, and
    `shots`: None when exact, else the number of shots of the sampled reference."""

    distribution: dict[str, float]
    shots: int | None


class _Unsupported(Exception):
    """The exact evaluator cannot follow this instruction."""


def outcome_key(circuit: QuantumCircuit, bits: tuple[int, ...]) -> str:
    """Qiskit's counts key for classical bit values `bits` (indexed like circuit.clbits):
    registers separated by spaces, last-declared register leftmost, bit 0 of each rightmost."""
    words = []
    for register in reversed(circuit.cregs):
        words.append("".join(str(bits[circuit.find_bit(bit).index]) for bit in reversed(register)))
    return " ".join(words)


def _condition_holds(condition, block_owner: QuantumCircuit, clbit_map: list[int], bits: tuple[int, ...]) -> bool:
    """Evaluate an IfElseOp condition (Clbit, value) or (ClassicalRegister, value)."""
    target, value = condition if isinstance(condition, tuple) else (None, None)
    if isinstance(target, Clbit):
        return bits[clbit_map[block_owner.find_bit(target).index]] == int(value)
    if isinstance(target, ClassicalRegister):
        number = sum(bits[clbit_map[block_owner.find_bit(bit).index]] << i for i, bit in enumerate(target))
        return number == int(value)
    raise _Unsupported(f"condition {condition!r}")


# A branch of the evaluation: (amplitudes of the whole register, classical bits, probability).
_Branch = tuple[np.ndarray, tuple[int, ...], float]


def _project(state: np.ndarray, qubit: int, outcome: int) -> tuple[np.ndarray, float]:
    """The state projected on `qubit` = `outcome` (normalised) and that outcome's probability."""
    mask = ((np.arange(state.size) >> qubit) & 1) == outcome
    projected = np.where(mask, state, 0)
    probability = float(np.vdot(projected, projected).real)
    if probability <= 0:
        return projected, 0.0
    return projected / math.sqrt(probability), probability


def _flip(state: np.ndarray, qubit: int) -> np.ndarray:
    return state[np.arange(state.size) ^ (1 << qubit)]


def _evolve(
    circuit: QuantumCircuit, qubit_map: list[int], clbit_map: list[int], num_qubits: int, branches: list[_Branch]
) -> list[_Branch]:
    """Follow `circuit` (a top-level circuit or a control-flow block) on every branch.

    qubit_map[i] / clbit_map[i]: the top-level index of circuit.qubits[i] / circuit.clbits[i].
    """
    for instruction in circuit.data:
        operation = instruction.operation
        qubits = [qubit_map[circuit.find_bit(q).index] for q in instruction.qubits]
        clbits = [clbit_map[circuit.find_bit(c).index] for c in instruction.clbits]
        name = operation.name
        if name in ("barrier", "delay", "id") or (isinstance(operation, Gate) and operation.num_qubits == 0):
            continue  # no effect on outcome probabilities
        if name == "measure" or name == "reset":
            split = []
            for state, bits, weight in branches:
                for outcome in (0, 1):
                    projected, probability = _project(state, qubits[0], outcome)
                    if probability < 1e-15:
                        continue
                    if name == "measure":
                        new_bits = bits[: clbits[0]] + (outcome,) + bits[clbits[0] + 1 :]
                    else:
                        new_bits = bits
                        if outcome:
                            projected = _flip(projected, qubits[0])
                    split.append((projected, new_bits, weight * probability))
            branches = split
        elif isinstance(operation, IfElseOp):
            true_body, false_body = operation.blocks[0], operation.blocks[1] if len(operation.blocks) > 1 else None
            result = []
            for branch in branches:
                holds = _condition_holds(operation.condition, circuit, clbit_map, branch[1])
                body = true_body if holds else false_body
                if body is None:
                    result.append(branch)
                else:
                    result.extend(_evolve(body, qubits, clbits, num_qubits, [branch]))
            branches = result
        elif isinstance(operation, ControlFlowOp):
            raise _Unsupported(name)
        elif isinstance(operation, Gate):
            matrix = Operator(operation)
            branches = [
                (Statevector(state, dims=(2,) * num_qubits).evolve(matrix, qargs=qubits).data, bits, weight)
                for state, bits, weight in branches
            ]
        elif operation.definition is not None and not operation.num_clbits:
            # e.g. Initialize: a reset then a state preparation.
            branches = _evolve(operation.definition, qubits, clbits, num_qubits, branches)
        else:
            raise _Unsupported(name)
    return branches


def _exact(circuit: QuantumCircuit) -> dict[str, float]:
    if circuit.num_qubits > 10:
        raise _Unsupported("too wide")
    start = np.zeros(2**circuit.num_qubits, dtype=complex)
    start[0] = 1
    branches = _evolve(
        circuit,
        list(range(circuit.num_qubits)),
        list(range(circuit.num_clbits)),
        circuit.num_qubits,
        [(start, (0,) * circuit.num_clbits, 1.0)],
    )
    distribution: dict[str, float] = {}
    for _, bits, weight in branches:
        key = outcome_key(circuit, bits)
        distribution[key] = distribution.get(key, 0.0) + weight
    return distribution


def _sampled(circuit: QuantumCircuit) -> dict[str, float]:
    from qiskit_aer import AerSimulator

    simulator = AerSimulator(method="statevector")
    result = simulator.run(transpile(circuit, simulator), shots=REFERENCE_SHOTS, seed_simulator=SEED).result()
    return {key: count / REFERENCE_SHOTS for key, count in result.get_counts(0).items()}


def reference(circuit: QuantumCircuit) -> Reference:
    """The true outcome distribution of `circuit`, as Reference(distribution, shots).

    Exact (shots None) wherever the evaluator understands every instruction: it follows the
    circuit as Statevector amplitudes (gates applied as `qiskit.quantum_info.Operator`, so the
    ORIGINAL circuit's definitions, global phases and controls count), branching on every
    measurement and reset (mid-circuit or final) with the outcome's probability, and choosing
    if/else bodies per branch from its classical bits. So it is `Statevector.from_instruction`
    + `probabilities_dict` for circuits whose measurements are all final, and exact for dynamic
    circuits too (Statevector itself is not: it resets, also inside Initialize, by sampling one
    outcome at random). Anything it cannot follow (while/for/switch, expression conditions) gets a
    sampled reference instead: REFERENCE_SHOTS shots (seed SEED) of AerSimulator on the
    original circuit transpiled for Aer, and shots=REFERENCE_SHOTS (tvd_bound accounts for it).

    Keys: Qiskit's counts format (outcome_key): one word per classical register, last-declared
    leftmost, bit 0 rightmost; classical bits never written read 0.
    """
    try:
        return Reference(_exact(circuit), None)
    except _Unsupported:
        return Reference(_sampled(circuit), REFERENCE_SHOTS)


# ---------------------------------------------------------------------------------------------
# How far a sample may stray
# ---------------------------------------------------------------------------------------------


def _l1_radius(samples: int, support_size: int, alpha: float) -> float:
    return math.sqrt(2 * (support_size * math.log(2) + math.log(1 / alpha)) / samples)


def tvd_bound(shots: int, support_size: int, alpha: float = ALPHA, reference_shots: int | None = None) -> float:
    """A bound that the total variation distance between the empirical distribution of `shots`
    independent samples of a distribution p and p itself exceeds with probability <= alpha.

    support_size k: the number of outcomes p gives positive probability (k >= 1).
    Source: the Bretagnolle-Huber-Carol inequality (A. W. van der Vaart and J. A. Wellner, Weak
    Convergence and Empirical Processes, 1996, Proposition A.6.6), as the L1 deviation bound of
    T. Weissman et al., "Inequalities for the L1 deviation of the empirical distribution"
    (HP Labs HPL-2003-97): P(||p_hat - p||_1 >= eps) <= 2^k exp(-n eps^2 / 2). Solving
    2^k exp(-n eps^2 / 2) = alpha gives eps = sqrt(2 (k ln 2 + ln(1/alpha)) / n), and
    TVD = ||.||_1 / 2 <= eps / 2.

    reference_shots: when the reference is itself a sample of m shots of p, the triangle
    inequality TVD(p_hat, q_hat) <= TVD(p_hat, p) + TVD(p, q_hat) and a union bound (alpha/2
    each) give eps_n(alpha/2)/2 + eps_m(alpha/2)/2.
    """
    k = max(int(support_size), 1)
    if reference_shots is None:
        return _l1_radius(shots, k, alpha) / 2
    return _l1_radius(shots, k, alpha / 2) / 2 + _l1_radius(reference_shots, k, alpha / 2) / 2


def tvd(counts: Mapping[str, int], distribution: Mapping[str, float]) -> float:
    """Total variation distance between counts/sum(counts) and `distribution` (both over keys)."""
    shots = sum(counts.values())
    keys = set(counts) | set(distribution)
    return 0.5 * sum(abs(counts.get(key, 0) / shots - distribution.get(key, 0.0)) for key in keys)
