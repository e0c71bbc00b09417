"""The round trip's circuits built from Qiskit's standard gates and circuit library.

CIRCUITS: {name: zero-argument builder returning a fresh QuantumCircuit with measurements};
tests/roundtrip/dynamic.py adds the dynamic and multi-register ones. Every circuit has at most 6
qubits, every classical bit belongs to exactly one register, and every builder is deterministic
(its random numbers are seeded from its name).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import numpy as np
from qiskit import (
    QuantumCircuit,
)
from qiskit.circuit import Gate
from qiskit.circuit.library import (
    GRX,
    QFT,
    DiagonalGate,
    GlobalPhaseGate,
    GraphStateGate,
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
    SparsePauliOp,
    random_clifford,
    random_statevector,
    random_unitary,
)

# ---------------------------------------------------------------------------------------------
# The circuit table
# ---------------------------------------------------------------------------------------------

CIRCUITS: dict[str, Callable[[], QuantumCircuit]] = {}

# The standard gates that are unitary gates (delay, reset and measure are covered elsewhere).
STANDARD_GATES = {
    name: gate for name, gate in get_standard_gate_name_mapping().items() if name not in ("delay", "reset", "measure")
}

# Those mixed into the multi-gate circuits: all but global_phase, which qasm2.dumps cannot write
# and qasm3.dumps writes as a zero-qubit gate no loader reads (std_global_phase and
# global_phase cover it), so it would keep the mixes from being checked at all.
MIXED_GATES = [name for name in STANDARD_GATES if name != "global_phase"]


def register(name: str) -> Callable[[Callable[[], QuantumCircuit]], Callable[[], QuantumCircuit]]:
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
    register(f"std_{_name}")(_standard_gate_builder(_name))


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
    register(f"all_std_gates_{_index}")(_all_gates_builder(_index))
for _index in range(6):
    register(f"random_layers_{_index}")(_layers_builder(_index))


def _with_gate(
    name: str,
    width: int,
    gate_fn: Callable[[np.random.Generator], Gate],
    qargs: list[int] | None = None,
    scramble: bool = True,
) -> None:
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

    register(name)(build)


def _prepared(name: str, width: int, prepare: Callable[[QuantumCircuit, np.random.Generator], None]) -> None:
    """Register `name`: a circuit `prepare` fills in, then measured into one register."""

    def build() -> QuantumCircuit:
        qc = QuantumCircuit(width, width)
        prepare(qc, _rng(name))
        qc.measure(range(width), range(width))
        return qc

    register(name)(build)


# --- state preparation ---------------------------------------------------------------------


def _unit(vector: np.ndarray) -> list[float]:
    return [float(x) for x in vector / np.linalg.norm(vector)]


_with_gate("state_preparation_1q", 1, lambda rng: StatePreparation(random_statevector(2, seed=11)), scramble=False)
_with_gate(
    "state_preparation_2q", 3, lambda rng: StatePreparation(random_statevector(4, seed=12)), [2, 0], scramble=False
)
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
    "pauli_evolution_sum",
    3,
    lambda rng: PauliEvolutionGate(SparsePauliOp(["XYZ", "YXZ", "ZZI", "IIZ"], [0.5, -0.3, 1.1, 0.7]), time=0.9),
)
_with_gate(
    "pauli_evolution_list",
    3,
    lambda rng: PauliEvolutionGate(
        [SparsePauliOp(["XXI", "YYI"], [0.2, 0.6]), SparsePauliOp(["ZZI", "IIY"], [0.8, -0.4])], time=1.3
    ),
)
_with_gate(
    "hamiltonian_gate",
    2,
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
    _with_gate(
        f"mcphase_{_controls}", _controls + 1, lambda rng, c=_controls: MCPhaseGate(float(rng.uniform(-3, 3)), c)
    )


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
    "controlled_pauli_evolution",
    3,
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


def _composed(
    make: Callable[[np.random.Generator], QuantumCircuit],
) -> Callable[[QuantumCircuit, np.random.Generator], None]:
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
_with_gate(
    "graph_state_4",
    4,
    lambda rng: GraphStateGate([[0, 1, 1, 0], [1, 0, 1, 1], [1, 1, 0, 0], [0, 1, 0, 0]]),
    scramble=False,
)
_prepared("real_amplitudes_3", 3, _composed(lambda rng: _bound(real_amplitudes(3, reps=2), rng)))
_prepared("efficient_su2_3", 3, _composed(lambda rng: _bound(efficient_su2(3, reps=1), rng)))
_prepared("quantum_volume_4", 4, _composed(lambda rng: quantum_volume(4, seed=61)))
_prepared("iqp_3", 3, _composed(lambda rng: iqp([[6, 5, 3], [5, 4, 5], [3, 5, 1]])))
_prepared(
    "hidden_linear_function_3", 3, _composed(lambda rng: hidden_linear_function([[1, 1, 0], [1, 0, 1], [0, 1, 1]]))
)
_prepared("grover_3", 3, _composed(_grover))
_prepared("phase_estimation_3", 4, _composed(_phase_estimation))

# --- random circuits ------------------------------------------------------------------------

for _seed, (_width, _depth) in enumerate([(3, 4), (4, 5), (5, 3), (4, 6), (6, 3)]):
    register(f"random_circuit_{_seed}")(
        lambda w=_width, d=_depth, s=_seed: random_circuit(w, d, max_operands=3, measure=True, seed=100 + s)
    )
register("random_circuit_reset")(lambda: random_circuit(4, 5, max_operands=2, measure=True, reset=True, seed=120))
register("random_circuit_conditional")(
    lambda: random_circuit(4, 4, max_operands=2, measure=True, conditional=True, seed=121)
)
