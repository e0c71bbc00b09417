"""Circuits for the exporter round trip: what `qiskit.qasm2.dumps` / `qiskit.qasm3.dumps` write
must run on our backend with the distribution of the ORIGINAL circuit, or be refused with a
message that names the construct, and the latter only where Qiskit's own loaders refuse the text.

Shared by tests/plugins/test_exporter_roundtrip.py (plugins.aer.run directly) and
tests/test_exporter_roundtrip.py (the whole stack). Contents:

- CIRCUITS: {name: zero-argument builder returning a fresh QuantumCircuit with measurements}.
  Every circuit has at most 6 qubits, every classical bit belongs to exactly one register.
- CASES: [(circuit name, exporter)] for exporter in EXPORTERS = ("qasm2", "qasm3").
- reference(circuit) / reference_distribution(circuit): the true outcome distribution.
- tvd_bound(shots, support_size, alpha, reference_shots): how far an honest sample may stray.
- exported(name, exporter): the exporter's text, or ExportRefused with the exporter's message;
  exported_or_skip: the same, skipping the test on a refusal; exportable(): every exportable case.
- loader_refusal(text, exporter): Qiskit's own loaders' messages when ALL of them refuse the text.
- check_outcome(...): the one assertion both test files make about a run's counts or error;
  check_job(...): the same for a job of the stack (its JSON from GET /api/v1/job/{id}).
- SHOTS, SEED, METADATA: what every run asks for.
"""

from __future__ import annotations

import functools
import math
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister, qasm2, qasm3, transpile
from qiskit.circuit import Clbit, ControlFlowOp, Gate, IfElseOp
from qiskit.circuit.library import (
    DiagonalGate,
    GlobalPhaseGate,
    GraphStateGate,
    GRX,
    HalfAdderGate,
    HamiltonianGate,
    HGate,
    Initialize,
    IntegerComparatorGate,
    Isometry,
    LinearFunction,
    MCMTGate,
    MCPhaseGate,
    MCXGate,
    ModularAdderGate,
    MSGate,
    PauliEvolutionGate,
    PauliGate,
    PermutationGate,
    QFT,
    QFTGate,
    RVGate,
    RYGate,
    RZZGate,
    StatePreparation,
    SwapGate,
    UCRYGate,
    UniformSuperpositionGate,
    UnitaryGate,
    XGate,
    efficient_su2,
    get_standard_gate_name_mapping,
    grover_operator,
    hidden_linear_function,
    iqp,
    phase_estimation,
    quantum_volume,
    real_amplitudes,
)
from qiskit.circuit.random import random_circuit
from qiskit.quantum_info import (
    Operator,
    SparsePauliOp,
    Statevector,
    random_clifford,
    random_statevector,
    random_unitary,
)

EXPORTERS = ("qasm2", "qasm3")
SHOTS = 4000
SEED = 1234
# The job metadata of every run (plugins.aer.run's and the stack's).
METADATA = {"shots": SHOTS, "seed": SEED}
# Per-case false-alarm probability of tvd_bound (the runs are seeded, so in practice each case
# either always passes or always fails; alpha says how unlikely an honest backend is to fail).
ALPHA = 1e-6
# Shots of a sampled reference (only for circuits the exact evaluator below cannot follow).
REFERENCE_SHOTS = 200_000
# Outcomes with less reference probability than this do not count in the support size given to
# tvd_bound. An honest backend samples one of them with probability at most
# SHOTS * 2**6 * NEGLIGIBLE < 1e-6 (6 clbits at most), which adds to tvd_bound's alpha; any
# such outcome in the counts still counts fully in the TVD.
NEGLIGIBLE = 1e-12

# ---------------------------------------------------------------------------------------------
# The circuit table
# ---------------------------------------------------------------------------------------------

CIRCUITS: dict[str, Callable[[], QuantumCircuit]] = {}

# The standard gates that are unitary gates (delay, reset and measure are covered elsewhere).
STANDARD_GATES = {
    name: gate
    for name, gate in get_standard_gate_name_mapping().items()
    if name not in ("delay", "reset", "measure")
}

# Those mixed into the multi-gate circuits: all but global_phase, which qasm2.dumps cannot write
# and qasm3.dumps writes as a zero-qubit gate no loader reads (std_global_phase and
# global_phase cover it), so it would keep the mixes from being checked at all.
MIXED_GATES = [name for name in STANDARD_GATES if name != "global_phase"]


def _register(name: str) -> Callable[[Callable[[], QuantumCircuit]], Callable[[], QuantumCircuit]]:
    def add(builder: Callable[[], QuantumCircuit]) -> Callable[[], QuantumCircuit]:
        assert name not in CIRCUITS, name
        CIRCUITS[name] = builder
        return builder

    return add


def _rng(name: str) -> np.random.Generator:
    """A generator seeded from the circuit's name, so each builder is deterministic."""
    return np.random.default_rng(zlib.crc32(name.encode()))


def _angles(rng: np.random.Generator, count: int) -> list[float]:
    return [float(x) for x in rng.uniform(-math.pi, math.pi, count)]


def _random_gate(name: str, rng: np.random.Generator) -> Gate:
    """The standard gate `name` with random parameters."""
    gate = STANDARD_GATES[name]
    if not gate.params:
        return gate
    return gate.base_class(*_angles(rng, len(gate.params)))


def _scramble(qc: QuantumCircuit, rng: np.random.Generator, qubits=None) -> None:
    """A random U on each qubit, so phases a gate leaves behind show in the distribution."""
    for qubit in qubits if qubits is not None else range(qc.num_qubits):
        qc.u(*_angles(rng, 3), qubit)


def _standard_gate_builder(name: str) -> Callable[[], QuantumCircuit]:
    def build() -> QuantumCircuit:
        rng = _rng(f"std_{name}")
        gate = _random_gate(name, rng)
        width = min(gate.num_qubits + 1, 5)
        qc = QuantumCircuit(width, width)
        _scramble(qc, rng)
        qargs = [int(q) for q in rng.permutation(width)[: gate.num_qubits]]
        qc.append(gate, qargs)
        _scramble(qc, rng)
        qc.measure(range(width), range(width))
        return qc

    return build


for _name in STANDARD_GATES:
    _register(f"std_{_name}")(_standard_gate_builder(_name))


def _all_gates_builder(index: int) -> Callable[[], QuantumCircuit]:
    """Every standard gate (MIXED_GATES) once, in a random order on random qubits of 4."""

    def build() -> QuantumCircuit:
        rng = _rng(f"all_std_gates_{index}")
        qc = QuantumCircuit(4, 4)
        _scramble(qc, rng)
        names = list(MIXED_GATES)
        rng.shuffle(names)
        for name in names:
            gate = _random_gate(name, rng)
            qc.append(gate, [int(q) for q in rng.permutation(4)[: gate.num_qubits]])
            if rng.random() < 0.3:
                _scramble(qc, rng, [int(rng.integers(4))])
        qc.measure(range(4), range(4))
        return qc

    return build


def _layers_builder(index: int) -> Callable[[], QuantumCircuit]:
    """Random layers: each layer fills the qubits with randomly chosen standard gates."""

    def build() -> QuantumCircuit:
        rng = _rng(f"random_layers_{index}")
        width = 3 + index % 3
        qc = QuantumCircuit(width, width)
        names = [name for name in MIXED_GATES if STANDARD_GATES[name].num_qubits <= width]
        for _ in range(4):
            free = [int(q) for q in rng.permutation(width)]
            while free:
                fits = [n for n in names if STANDARD_GATES[n].num_qubits <= len(free)]
                gate = _random_gate(str(rng.choice(fits)), rng)
                qargs, free = free[: gate.num_qubits], free[gate.num_qubits :]
                qc.append(gate, qargs)
        qc.measure(range(width), range(width))
        return qc

    return build


for _index in range(3):
    _register(f"all_std_gates_{_index}")(_all_gates_builder(_index))
for _index in range(6):
    _register(f"random_layers_{_index}")(_layers_builder(_index))


def _with_gate(name: str, width: int, gate_fn: Callable[[np.random.Generator], Gate],
               qargs: list[int] | None = None, scramble: bool = True) -> None:
    """Register `name`: `width` qubits, random U's, the gate on `qargs` (default all), U's, measure."""

    def build() -> QuantumCircuit:
        rng = _rng(name)
        qc = QuantumCircuit(width, width)
        if scramble:
            _scramble(qc, rng)
        gate = gate_fn(rng)
        qc.append(gate, qargs if qargs is not None else list(range(gate.num_qubits)))
        if scramble:
            _scramble(qc, rng)
        qc.measure(range(width), range(width))
        return qc

    _register(name)(build)


def _prepared(name: str, width: int, prepare: Callable[[QuantumCircuit, np.random.Generator], None]) -> None:
    """Register `name`: a circuit `prepare` fills in, then measured into one register."""

    def build() -> QuantumCircuit:
        qc = QuantumCircuit(width, width)
        prepare(qc, _rng(name))
        qc.measure(range(width), range(width))
        return qc

    _register(name)(build)


# --- state preparation ---------------------------------------------------------------------


def _unit(vector: np.ndarray) -> list[float]:
    return [float(x) for x in vector / np.linalg.norm(vector)]


_with_gate("state_preparation_1q", 1, lambda rng: StatePreparation(random_statevector(2, seed=11)), scramble=False)
_with_gate("state_preparation_2q", 3, lambda rng: StatePreparation(random_statevector(4, seed=12)), [2, 0], scramble=False)
_with_gate("state_preparation_3q_real", 3, lambda rng: StatePreparation(_unit(rng.normal(size=8))), scramble=False)
_with_gate("state_preparation_label", 3, lambda rng: StatePreparation("1+-"), scramble=False)
_with_gate("state_preparation_int", 3, lambda rng: StatePreparation(5, num_qubits=3), scramble=False)
_with_gate("state_preparation_after_gates", 2, lambda rng: StatePreparation(random_statevector(4, seed=14)))

# --- initialize (a reset, then a state preparation) -----------------------------------------

_with_gate("initialize_2q", 2, lambda rng: Initialize(random_statevector(4, seed=21)), scramble=False)
_with_gate("initialize_label", 2, lambda rng: Initialize("1+"), scramble=False)


def _initialize_resets(qc: QuantumCircuit, rng: np.random.Generator) -> None:
    # The qubits are entangled first: Initialize must reset them (not just rotate them).
    qc.h(0)
    qc.cx(0, 1)
    qc.ry(1.1, 2)
    qc.cx(2, 1)
    qc.append(Initialize(random_statevector(2, seed=22)), [1])
    qc.append(Initialize([0, 1]), [2])


_prepared("initialize_reset_semantics", 3, _initialize_resets)

# --- unitary and diagonal gates -------------------------------------------------------------

_with_gate("unitary_1q", 2, lambda rng: UnitaryGate(random_unitary(2, seed=31)), [1])
_with_gate("unitary_2q", 3, lambda rng: UnitaryGate(random_unitary(4, seed=32)), [2, 0])
_with_gate("unitary_3q", 3, lambda rng: UnitaryGate(random_unitary(8, seed=33)), [1, 2, 0])


def _two_unitaries(qc: QuantumCircuit, rng: np.random.Generator) -> None:
    qc.append(UnitaryGate(random_unitary(2, seed=34)), [0])
    qc.append(UnitaryGate(random_unitary(2, seed=35)), [1])
    qc.append(UnitaryGate(random_unitary(4, seed=36)), [1, 0])


_prepared("unitary_several", 2, _two_unitaries)
_with_gate("diagonal_2q", 2, lambda rng: DiagonalGate(list(np.exp(1j * rng.uniform(-3, 3, 4)))))
_with_gate("diagonal_3q_real", 3, lambda rng: DiagonalGate([1, -1, -1, 1, 1, 1, -1, 1]))

# --- Pauli evolution ------------------------------------------------------------------------
# Multi-term operators are sums of COMMUTING Paulis: the gate's definition (what an exporter
# writes) is a Lie-Trotter product, equal to the exact exponential (what Statevector and
# Operator use) only when the terms commute. With non-commuting terms even Qiskit's own
# transpile + Aer differs from Statevector, so such a case would test the synthesis, not us.

_with_gate("pauli_evolution_z", 1, lambda rng: PauliEvolutionGate(SparsePauliOp("Z"), time=0.7))
_with_gate("pauli_evolution_xx", 2, lambda rng: PauliEvolutionGate(SparsePauliOp("XX"), time=0.4))
_with_gate(
    "pauli_evolution_sum", 3,
    lambda rng: PauliEvolutionGate(SparsePauliOp(["XYZ", "YXZ", "ZZI", "IIZ"], [0.5, -0.3, 1.1, 0.7]), time=0.9),
)
_with_gate(
    "pauli_evolution_list", 3,
    lambda rng: PauliEvolutionGate([SparsePauliOp(["XXI", "YYI"], [0.2, 0.6]), SparsePauliOp(["ZZI", "IIY"], [0.8, -0.4])], time=1.3),
)
_with_gate(
    "hamiltonian_gate", 2,
    lambda rng: HamiltonianGate(SparsePauliOp(["XZ", "YY"], [0.4, 0.9]).to_matrix(), time=0.6),
)

# --- QFT ------------------------------------------------------------------------------------


def _qft(qc: QuantumCircuit, rng: np.random.Generator) -> None:
    qc.x(0)
    qc.h(2)
    qc.compose(QFT(3), inplace=True)


def _qft_inverse(qc: QuantumCircuit, rng: np.random.Generator) -> None:
    _scramble(qc, rng)
    qc.compose(QFT(4, do_swaps=False).inverse(), inplace=True)


def _qft_gate(qc: QuantumCircuit, rng: np.random.Generator) -> None:
    _scramble(qc, rng)
    qc.append(QFTGate(4), [3, 1, 0, 2])


def _qft_gate_roundtrip(qc: QuantumCircuit, rng: np.random.Generator) -> None:
    # QFT then its inverse on a basis state: the state comes back exactly.
    qc.x([0, 2])
    qc.append(QFTGate(3), [0, 1, 2])
    qc.append(QFTGate(3).inverse(), [0, 1, 2])


def _qft_gate_inverse(qc: QuantumCircuit, rng: np.random.Generator) -> None:
    _scramble(qc, rng)
    qc.append(QFTGate(3).inverse(), [2, 0, 1])


_prepared("qft_3", 3, _qft)
_prepared("qft_4_inverse_no_swaps", 4, _qft_inverse)
_prepared("qft_gate_4", 4, _qft_gate)
_prepared("qft_gate_roundtrip", 3, _qft_gate_roundtrip)
_prepared("qft_gate_inverse", 3, _qft_gate_inverse)

# --- multi-controlled gates -----------------------------------------------------------------

for _controls in (2, 3, 4):
    _with_gate(f"mcx_{_controls}", _controls + 1, lambda rng, c=_controls: MCXGate(c), scramble=True)
_with_gate("mcx_3_ctrl_state", 4, lambda rng: MCXGate(3, ctrl_state="010"), [3, 0, 1, 2])
_with_gate("mcx_5_on_6", 6, lambda rng: MCXGate(5), [5, 4, 3, 2, 1, 0])
for _controls in (1, 2, 3):
    _with_gate(f"mcphase_{_controls}", _controls + 1, lambda rng, c=_controls: MCPhaseGate(float(rng.uniform(-3, 3)), c))


def _mc_methods(qc: QuantumCircuit, rng: np.random.Generator) -> None:
    _scramble(qc, rng)
    qc.mcp(0.9, [0, 1], 2)
    qc.mcrx(1.3, [2, 3], 0)
    qc.mcry(-0.7, [0, 3], 1)
    qc.mcrz(2.1, [1, 2, 0], 3)
    qc.mcx([0, 1, 2], 3)
    _scramble(qc, rng)


_prepared("mc_methods", 4, _mc_methods)
_with_gate("mcmt_h", 4, lambda rng: MCMTGate(HGate(), 2, 2))
_with_gate("mcmt_ry", 4, lambda rng: MCMTGate(RYGate(0.8), 1, 3))

# --- controlled library gates (.control(n), ctrl_state) -------------------------------------

_with_gate("controlled_h_2_ctrl01", 3, lambda rng: HGate().control(2, ctrl_state="01"), [2, 0, 1])
_with_gate("controlled_ry_open", 2, lambda rng: RYGate(1.2).control(1, ctrl_state=0))
_with_gate("controlled_swap_2", 4, lambda rng: SwapGate().control(2))
_with_gate("controlled_rzz_ctrl2", 4, lambda rng: RZZGate(0.7).control(2, ctrl_state=2))
_with_gate("controlled_qft_gate", 3, lambda rng: QFTGate(2).control(1))
_with_gate("controlled_unitary", 3, lambda rng: UnitaryGate(random_unitary(4, seed=41)).control(1))
_with_gate(
    "controlled_pauli_evolution", 3,
    lambda rng: PauliEvolutionGate(SparsePauliOp(["XY", "YX", "ZZ"], [0.3, 0.6, -0.5]), time=1.0).control(1),
)
_with_gate("controlled_x_3_ctrl5", 4, lambda rng: XGate().control(3, ctrl_state=5), [1, 3, 0, 2])
_with_gate("controlled_cu_twice", 4, lambda rng: STANDARD_GATES["cu"].base_class(0.3, 1.1, -0.4, 0.9).control(2))

# --- global phase ---------------------------------------------------------------------------


def _global_phase(qc: QuantumCircuit, rng: np.random.Generator) -> None:
    qc.global_phase = 0.83
    qc.h(0)
    qc.cx(0, 1)
    qc.append(GlobalPhaseGate(1.7), [])


def _controlled_global_phase(qc: QuantumCircuit, rng: np.random.Generator) -> None:
    # A controlled global phase is a phase on the control: visible after the last H.
    qc.h([0, 1])
    qc.append(GlobalPhaseGate(1.1).control(1), [0])
    qc.append(GlobalPhaseGate(-0.6).control(1, ctrl_state=0), [1])
    qc.h([0, 1])


def _phase_in_subcircuit(qc: QuantumCircuit, rng: np.random.Generator) -> None:
    # A custom gate whose definition has a global phase, then controlled: the phase matters.
    sub = QuantumCircuit(1, global_phase=0.9, name="phased")
    sub.rx(0.4, 0)
    qc.h(0)
    qc.append(sub.to_gate().control(1), [0, 1])
    qc.h(0)


_prepared("global_phase", 2, _global_phase)
_prepared("controlled_global_phase", 2, _controlled_global_phase)
_prepared("controlled_gate_with_global_phase", 2, _phase_in_subcircuit)

# --- permutations, Cliffords, linear functions, other library gates -------------------------

_with_gate("permutation_3", 3, lambda rng: PermutationGate([2, 0, 1]))
_with_gate("permutation_5", 5, lambda rng: PermutationGate([3, 4, 0, 2, 1]))
_with_gate("linear_function", 3, lambda rng: LinearFunction([[1, 1, 0], [0, 1, 0], [1, 0, 1]]))
_with_gate("clifford_3q", 3, lambda rng: random_clifford(3, seed=51).to_instruction())
_with_gate("isometry_1_to_2", 2, lambda rng: Isometry(random_unitary(4, seed=52).data[:, :2], 0, 0), scramble=False)
_with_gate("ucry", 3, lambda rng: UCRYGate([0.1, 0.7, -1.2, 2.0]), [0, 1, 2])
_with_gate("pauli_gate", 3, lambda rng: PauliGate("XYZ"))
_with_gate("ms_gate", 3, lambda rng: MSGate(3, 0.6))
_with_gate("rv_gate", 1, lambda rng: RVGate(0.3, -0.8, 1.1))
_with_gate("grx", 3, lambda rng: GRX(3, 0.7))
_with_gate("uniform_superposition_5", 3, lambda rng: UniformSuperpositionGate(5, 3), scramble=False)
_with_gate("half_adder", 3, lambda rng: HalfAdderGate(1))
_with_gate("modular_adder_2", 4, lambda rng: ModularAdderGate(2))
_with_gate("integer_comparator", 4, lambda rng: IntegerComparatorGate(2, 2))


# --- library circuits -----------------------------------------------------------------------


def _ghz(qc: QuantumCircuit, rng: np.random.Generator) -> None:
    qc.h(0)
    for qubit in range(1, qc.num_qubits):
        qc.cx(qubit - 1, qubit)


def _composed(make: Callable[[np.random.Generator], QuantumCircuit]) -> Callable[[QuantumCircuit, np.random.Generator], None]:
    def prepare(qc: QuantumCircuit, rng: np.random.Generator) -> None:
        qc.compose(make(rng), inplace=True)

    return prepare


def _bound(circuit: QuantumCircuit, rng: np.random.Generator) -> QuantumCircuit:
    return circuit.assign_parameters(_angles(rng, circuit.num_parameters))


def _grover(rng: np.random.Generator) -> QuantumCircuit:
    oracle = QuantumCircuit(3)
    oracle.ccz(0, 1, 2)
    qc = QuantumCircuit(3)
    qc.h(range(3))
    qc.compose(grover_operator(oracle), inplace=True)
    return qc


def _phase_estimation(rng: np.random.Generator) -> QuantumCircuit:
    unitary = QuantumCircuit(1)
    unitary.p(2 * math.pi * 0.3, 0)
    qc = QuantumCircuit(4)
    qc.x(3)
    qc.compose(phase_estimation(3, unitary), inplace=True)
    return qc


_prepared("ghz_5", 5, _ghz)
_with_gate("graph_state_4", 4, lambda rng: GraphStateGate([[0, 1, 1, 0], [1, 0, 1, 1], [1, 1, 0, 0], [0, 1, 0, 0]]), scramble=False)
_prepared("real_amplitudes_3", 3, _composed(lambda rng: _bound(real_amplitudes(3, reps=2), rng)))
_prepared("efficient_su2_3", 3, _composed(lambda rng: _bound(efficient_su2(3, reps=1), rng)))
_prepared("quantum_volume_4", 4, _composed(lambda rng: quantum_volume(4, seed=61)))
_prepared("iqp_3", 3, _composed(lambda rng: iqp([[6, 5, 3], [5, 4, 5], [3, 5, 1]])))
_prepared("hidden_linear_function_3", 3, _composed(lambda rng: hidden_linear_function([[1, 1, 0], [1, 0, 1], [0, 1, 1]])))
_prepared("grover_3", 3, _composed(_grover))
_prepared("phase_estimation_3", 4, _composed(_phase_estimation))

# --- random circuits ------------------------------------------------------------------------

for _seed, (_width, _depth) in enumerate([(3, 4), (4, 5), (5, 3), (4, 6), (6, 3)]):
    _register(f"random_circuit_{_seed}")(
        lambda w=_width, d=_depth, s=_seed: random_circuit(w, d, max_operands=3, measure=True, seed=100 + s)
    )
_register("random_circuit_reset")(lambda: random_circuit(4, 5, max_operands=2, measure=True, reset=True, seed=120))
_register("random_circuit_conditional")(
    lambda: random_circuit(4, 4, max_operands=2, measure=True, conditional=True, seed=121)
)

# --- dynamic circuits -----------------------------------------------------------------------


@_register("dynamic_if")
def _dynamic_if() -> QuantumCircuit:
    qc = QuantumCircuit(2, 2)
    qc.ry(1.1, 0)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], 1)):
        qc.x(1)
    qc.ry(0.4, 1)
    qc.measure(1, 1)
    return qc


@_register("dynamic_if_else")
def _dynamic_if_else() -> QuantumCircuit:
    qc = QuantumCircuit(3, 3)
    qc.ry(0.9, 0)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], 1)) as else_:
        qc.h(1)
        qc.cx(1, 2)
    with else_:
        qc.rx(2.2, 2)
    qc.measure([1, 2], [1, 2])
    return qc


@_register("dynamic_if_zero")
def _dynamic_if_zero() -> QuantumCircuit:
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], 0)):
        qc.ry(0.7, 1)
    qc.measure(1, 1)
    return qc


@_register("dynamic_mid_measure_reuse")
def _dynamic_mid_measure_reuse() -> QuantumCircuit:
    qc = QuantumCircuit(2, 3)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure(0, 0)
    qc.ry(0.8, 0)
    qc.cx(0, 1)
    qc.measure(0, 1)
    qc.measure(1, 2)
    return qc


@_register("dynamic_reset")
def _dynamic_reset() -> QuantumCircuit:
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.reset(0)
    qc.ry(0.5, 0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    return qc


@_register("dynamic_conditional_measure")
def _dynamic_conditional_measure() -> QuantumCircuit:
    qc = QuantumCircuit(2, 2)
    qc.ry(1.3, 0)
    qc.h(1)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], 1)):
        qc.measure(1, 1)
    return qc


@_register("dynamic_register_condition")
def _dynamic_register_condition() -> QuantumCircuit:
    q = QuantumRegister(3, "q")
    flags = ClassicalRegister(2, "flags")
    out = ClassicalRegister(1, "out")
    qc = QuantumCircuit(q, flags, out)
    qc.h([0, 1])
    qc.measure([0, 1], flags)
    with qc.if_test((flags, 2)):
        qc.x(2)
    with qc.if_test((flags, 1)):
        qc.ry(1.0, 2)
    qc.measure(2, out[0])
    return qc


@_register("dynamic_teleport")
def _dynamic_teleport() -> QuantumCircuit:
    q = QuantumRegister(3, "q")
    m0 = ClassicalRegister(1, "m0")
    m1 = ClassicalRegister(1, "m1")
    out = ClassicalRegister(1, "out")
    qc = QuantumCircuit(q, m0, m1, out)
    qc.u(1.2, 0.4, -0.3, 0)
    qc.h(1)
    qc.cx(1, 2)
    qc.cx(0, 1)
    qc.h(0)
    qc.measure(0, m0[0])
    qc.measure(1, m1[0])
    with qc.if_test((m1, 1)):
        qc.x(2)
    with qc.if_test((m0, 1)):
        qc.z(2)
    qc.measure(2, out[0])
    return qc


@_register("dynamic_nested_if")
def _dynamic_nested_if() -> QuantumCircuit:
    qc = QuantumCircuit(3, 3)
    qc.h([0, 1])
    qc.measure([0, 1], [0, 1])
    with qc.if_test((qc.clbits[0], 1)):
        with qc.if_test((qc.clbits[1], 1)):
            qc.x(2)
        qc.ry(0.3, 2)
    qc.measure(2, 2)
    return qc


@_register("dynamic_reset_after_measure_gates")
def _dynamic_reset_after_measure() -> QuantumCircuit:
    qc = QuantumCircuit(3, 3)
    qc.ry(1.0, 0)
    qc.cx(0, 1)
    qc.measure(1, 0)
    qc.reset(1)
    qc.h(1)
    qc.cx(1, 2)
    with qc.if_test((qc.clbits[0], 1)):
        qc.rz(0.9, 2)
        qc.h(2)
    qc.measure([1, 2], [1, 2])
    return qc


# --- several classical registers ------------------------------------------------------------


@_register("registers_three")
def _registers_three() -> QuantumCircuit:
    q = QuantumRegister(4, "q")
    a = ClassicalRegister(1, "a")
    b = ClassicalRegister(2, "b")
    c = ClassicalRegister(1, "c")
    qc = QuantumCircuit(q, a, b, c)
    qc.ry(0.6, 0)
    qc.h(1)
    qc.cx(1, 2)
    qc.x(3)
    qc.measure(0, c[0])
    qc.measure([1, 2], [b[1], b[0]])
    qc.measure(3, a[0])
    return qc


@_register("registers_unmeasured")
def _registers_unmeasured() -> QuantumCircuit:
    q = QuantumRegister(2, "q")
    spare = ClassicalRegister(2, "spare")
    res = ClassicalRegister(2, "res")
    qc = QuantumCircuit(q, spare, res)
    qc.h(0)
    qc.cry(1.4, 0, 1)
    qc.measure([0, 1], [res[1], res[0]])
    return qc


@_register("registers_measure_all")
def _registers_measure_all() -> QuantumCircuit:
    qc = QuantumCircuit(3, 2)
    qc.h(0)
    qc.cx(0, 2)
    qc.rx(0.9, 1)
    qc.measure(0, 1)
    qc.measure_all()  # adds a 'meas' register after 'c'
    return qc


@_register("registers_qubits_split")
def _registers_qubits_split() -> QuantumCircuit:
    a = QuantumRegister(2, "a")
    b = QuantumRegister(2, "b")
    ca = ClassicalRegister(2, "ca")
    cb = ClassicalRegister(2, "cb")
    qc = QuantumCircuit(b, a, cb, ca)
    qc.h(a[0])
    qc.cx(a[0], b[1])
    qc.ry(0.7, b[0])
    qc.cswap(b[0], a[1], a[0])
    qc.measure(a, ca)
    qc.measure(b, cb)
    return qc


@_register("delay_and_barrier")
def _delay_and_barrier() -> QuantumCircuit:
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.delay(100, 0)
    qc.barrier()
    qc.delay(20, 1, unit="dt")
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    return qc


CASES: list[tuple[str, str]] = [(name, exporter) for name in CIRCUITS for exporter in EXPORTERS]


@functools.lru_cache(maxsize=None)
def circuit(name: str) -> QuantumCircuit:
    """The built circuit of CIRCUITS[name], built once (do not modify it)."""
    return CIRCUITS[name]()


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


def _evolve(circuit: QuantumCircuit, qubit_map: list[int], clbit_map: list[int], num_qubits: int,
            branches: list[_Branch]) -> list[_Branch]:
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
        circuit, list(range(circuit.num_qubits)), list(range(circuit.num_clbits)), circuit.num_qubits,
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


def reference_distribution(circuit: QuantumCircuit) -> dict[str, float]:
    """{counts key: probability} of `circuit` (see reference() for how it is computed)."""
    return reference(circuit).distribution


@functools.lru_cache(maxsize=None)
def reference_of(name: str) -> Reference:
    """reference(circuit(name)), computed once per circuit name."""
    return reference(circuit(name))


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


# ---------------------------------------------------------------------------------------------
# Exporting, Qiskit's own loaders, and the one check
# ---------------------------------------------------------------------------------------------


class ExportRefused(Exception):
    """The exporter itself cannot write the circuit; the message is the exporter's."""


_DUMPS = {"qasm2": qasm2.dumps, "qasm3": qasm3.dumps}


@functools.lru_cache(maxsize=None)
def _export(name: str, exporter: str) -> tuple[str | None, str | None]:
    built = circuit(name)  # a builder's own failure is an error, never a skip
    try:
        return _DUMPS[exporter](built), None
    except Exception as exc:  # noqa: BLE001 - whatever the exporter raises is its refusal
        return None, f"{exporter}.dumps cannot export {name}: {type(exc).__name__}: {exc}"


def exported(name: str, exporter: str) -> str:
    """The exporter's text for CIRCUITS[name] (cached); raises ExportRefused when it refuses."""
    text, refusal = _export(name, exporter)
    if text is None:
        raise ExportRefused(refusal)
    return text


def exported_or_skip(name: str, exporter: str) -> str:
    """exported(name, exporter), or pytest.skip with the exporter's message when it refuses."""
    import pytest

    try:
        return exported(name, exporter)
    except ExportRefused as refusal:
        pytest.skip(str(refusal))


def exportable() -> list[tuple[str, str, str]]:
    """(name, exporter, text) for every case of CASES that the exporter can write."""
    cases = []
    for name, exporter in CASES:
        try:
            cases.append((name, exporter, exported(name, exporter)))
        except ExportRefused:
            pass
    return cases


def _loader_message(exc: BaseException) -> str:
    """The loader's message; for the reference OpenQASM 3 parser's empty syntax errors, where
    ANTLR's offending token is (`line L,C near 'token'`)."""
    message = getattr(exc, "message", None)
    if not (isinstance(message, str) and message):
        message = str(exc)
    cause = exc.__cause__
    token = getattr(cause.args[0], "offendingToken", None) if cause is not None and cause.args else None
    if not message and token is not None:
        message = f"syntax error at line {token.line},{token.column} near {token.text!r}"
    return f"{type(exc).__name__}: {message}"


def loader_refusal(text: str, exporter: str) -> str | None:
    """None when at least one of Qiskit's own loaders loads `text`, else their messages.

    qasm2: qiskit.qasm2.loads(custom_instructions=LEGACY_CUSTOM_INSTRUCTIONS,
    custom_classical=LEGACY_CUSTOM_CLASSICAL, strict=False) (QuantumCircuit.from_qasm_str's
    settings). qasm3: qiskit.qasm3.loads (qiskit-qasm3-import) and qiskit.qasm3.loads_experimental.
    """
    import warnings

    if exporter == "qasm2":
        loaders = [
            lambda: qasm2.loads(
                text,
                custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS,
                custom_classical=qasm2.LEGACY_CUSTOM_CLASSICAL,
                strict=False,
            )
        ]
    else:
        loaders = [lambda: qasm3.loads(text), lambda: qasm3.loads_experimental(text)]
    messages = []
    for load in loaders:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                load()
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - the Rust parser panics with a BaseException
            messages.append(_loader_message(exc))
        else:
            return None
    return "; ".join(messages)


# An imaginary literal, as Python writes it (`0.8j`, the exporters' form) or OpenQASM 3 (`0.8im`).
_COMPLEX_LITERAL = re.compile(r"(?<![\w.])(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?:[jJ]|im)\b")
_GATE_DEFINITION = re.compile(r"\bgate\s+(\w+)[^{]*\{([^}]*)\}")
# Where a loader's message points: qasm2 "<input>:L,C:", the reference OpenQASM 3 parser's syntax
# errors (as _loader_message words them) "line L,C", its importer's errors "Error: L,C:".
_POSITION = re.compile(r"(?:<input>:|line |Error: )(\d+),\d+")
# The gate a statement applies: its first identifier after any `ctrl @`-style modifiers.
_STATEMENT_NAME = re.compile(r"\s*(?:(?:ctrl|negctrl|inv|pow)\s*(?:\([^)]*\))?\s*@\s*)*([A-Za-z_]\w*)")


def refused_constructs(text: str, loader_message: str) -> set[str]:
    """Words that name what Qiskit's loader refused in `text`, any of which an error must carry.

    'complex' when a complex-number literal is in the program; 'reset' and the gate's name when
    a gate body holds a reset; the name of the gate on the line the loader's message points at
    (and that name without an exporter's `_<number>` suffix).
    """
    words: set[str] = set()
    if _COMPLEX_LITERAL.search(text):
        words.add("complex")
    for name, body in _GATE_DEFINITION.findall(text):
        if re.search(r"\breset\b", body):
            words |= {"reset", name, re.sub(r"_\d+$", "", name)}
    position = _POSITION.search(loader_message)
    lines = text.splitlines()
    if position and 1 <= int(position.group(1)) <= len(lines):
        line = lines[int(position.group(1)) - 1]
        statement = re.sub(r"^\s*[\w\[\]]+\s*=(?!=)", "", line)  # `c[0] = measure ...`: the right side
        match = re.match(r"\s*(?:gate|opaque)\s+(\w+)", statement) or _STATEMENT_NAME.match(statement)
        if match and match.group(1) not in ("qreg", "creg", "qubit", "bit", "measure", "include"):
            words |= {match.group(1), re.sub(r"_\d+$", "", match.group(1))}
    return words


def _names(message: str, word: str) -> bool:
    """Whether `message` has `word` (any case) with no letter or digit right before or after it."""
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])", message, re.IGNORECASE) is not None


def check_outcome(name: str, exporter: str, text: str, shots: int,
                  counts: Mapping[str, int] | None = None, error: str | None = None) -> None:
    """Assert what running the exporter's text gave is right for CIRCUITS[name].

    Exactly one of `counts` ({key: count} summing to `shots`) and `error` (the backend's refusal
    message) is given. Counts must be within tvd_bound of the reference. A refusal passes only
    when Qiskit's own loaders refuse the text too and the message names the refused construct.
    """
    assert (counts is None) != (error is None), "give counts or error"
    if counts is not None:
        assert sum(counts.values()) == shots, f"{sum(counts.values())} shots, asked for {shots}"
        ref = reference_of(name)
        support = [key for key, p in ref.distribution.items() if p > NEGLIGIBLE]
        distance = tvd(counts, ref.distribution)
        bound = tvd_bound(shots, len(support), reference_shots=ref.shots)
        assert distance <= bound, (
            f"{name} via {exporter}: TVD {distance:.4f} > bound {bound:.4f}; "
            f"counts {dict(sorted(counts.items()))}; reference "
            f"{ {k: round(v, 4) for k, v in sorted(ref.distribution.items()) if v > 1e-4} }"
        )
        return
    refusal = loader_refusal(text, exporter)
    assert refusal is not None, (
        f"{name} via {exporter}: the backend refused ({error}) a text that Qiskit's own loader loads"
    )
    words = refused_constructs(text, refusal)
    assert any(_names(error, word) for word in words), (
        f"{name} via {exporter}: refused, as Qiskit's loader does ({refusal}), but the message "
        f"{error!r} names none of {sorted(words)}"
    )


def check_job(name: str, exporter: str, text: str, job: Mapping, shots: int = SHOTS) -> None:
    """check_outcome for a job of the stack: a finished job's counts, a failed job's error.
    Any other status (canceled, or not terminal) fails."""
    status = job.get("status")
    assert status in ("finished", "failed"), f"{name} via {exporter}: job ended {status}: {job}"
    if status == "finished":
        check_outcome(name, exporter, text, shots, counts=job["results"]["counts"])
    else:
        check_outcome(name, exporter, text, shots, error=job.get("error") or "")
