"""How much memory a circuit needs on Aer, from its active qubits, the method Aer will use and
its gates after expansion; and how long it takes.

Aer's automatic method picks the stabilizer simulator for Clifford circuits and
otherwise the statevector one (qiskit-aer, "Simulation methods"); a statevector of
n qubits holds 2^n complex doubles (16·2^n bytes), a density matrix or unitary
16·4^n, a superoperator 16·16^n. Aer drops qubits no instruction touches, so n is
the number of active qubits, never the declared width.

Each gate costs memory too, whatever the width: Qiskit's circuit, the unrolled copy and
Aer's own (measured here with Qiskit 2 and Aer 0.17, peak resident memory over a warm
process: 1.9-2.6 KB per gate of a loaded program, 5.2 KB per gate its own definitions
expand to; GATE_BYTES is 1.15x the worst). Before a program is parsed only its length is
known: loading costs up to 16 B per byte of OpenQASM 2 and 794 B per byte of OpenQASM 3
(Qiskit's reference importer; its Rust parser about 290): PROGRAM_BYTES_* are 1.5x those.
"""

from __future__ import annotations

from dataclasses import dataclass

from qiskit import QuantumCircuit

from plugins.aer.circuits import active_qubits

MIB = 1024 * 1024
# A Ray worker with Qiskit and Aer loaded, before any simulation (about 100 MiB measured).
WORKER_BYTES = 256 * MIB
# Memory per gate after expansion, and per byte of program while it loads (see above).
GATE_BYTES = 6 * 1024
PROGRAM_BYTES_QASM2, PROGRAM_BYTES_QASM3 = 24, 1200
# Gates a warm executor's job may have (its memory budget counts them: dispatcher/placement.py).
BATCH_GATES = 8192
# Gates of the Clifford group Aer's stabilizer method runs, plus non-unitary bookkeeping.
CLIFFORD = frozenset(
    {
        "id",
        "x",
        "y",
        "z",
        "h",
        "s",
        "sdg",
        "sx",
        "sxdg",
        "cx",
        "cy",
        "cz",
        "swap",
        "iswap",
        "ecr",
        "dcx",
        "measure",
        "reset",
        "barrier",
        "delay",
    }
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
        Size with memory_bytes = WORKER_BYTES + the simulation's state (+1/8 margin) + GATE_BYTES
        per gate after expansion (a for loop's body once per iteration); the stabilizer,
        extended-stabilizer and matrix-product-state methods count no state (it grows
        polynomially for the circuits they suit).
    """
    qubits = active_qubits(circuit)
    if method == "automatic":
        method = "stabilizer" if is_clifford(circuit) else "statevector"
    exponent = _EXPONENT.get(method, 0)
    state = 16 * 2 ** (exponent * qubits) if exponent else 0
    gates = GATE_BYTES * _gates(circuit)
    return Size(method=method, active_qubits=qubits, memory_bytes=WORKER_BYTES + state + state // 8 + gates)


def size_before_expansion(circuit: QuantumCircuit, expanded: int, method: str) -> Size:
    """What ``circuit`` needs at least, before its definitions are expanded: a worker and
    GATE_BYTES for each of its gates and the ``expanded`` ones its definitions will make
    (plugins.aer.unroll.expanded_gates); no state yet. Checked first, so that a program whose
    definitions expand past a worker's grant is handed back before the expansion is built."""
    gates = _gates(circuit) + expanded
    return Size(method=method, active_qubits=active_qubits(circuit), memory_bytes=WORKER_BYTES + GATE_BYTES * gates)


# --- time -------------------------------------------------------------------------------
# Operations that make Aer simulate every shot on its own (no sampling of one final state):
# resets, noise and state preparation, and any control flow (conditionals read a measurement).
PER_SHOT_OPERATIONS = frozenset(
    {
        "reset",
        "initialize",
        "kraus",
        "superop",
        "quantum_channel",
        "roerror",
        "set_statevector",
        "set_density_matrix",
        "if_else",
        "while_loop",
        "for_loop",
        "switch_case",
    }
)
# Amplitude updates per second Aer does on one thread, per-shot, here (a 12-qubit circuit of
# 1000 gates, 1000 shots: 6.8 s, estimated 8.4 s); errs towards slow, so that a job the fast
# path takes is rarely stopped for running past its time limit.
AMPLITUDES_PER_S = 5.0e8
_IGNORED = frozenset({"barrier", "delay"})


@dataclass(frozen=True)
class Cost:
    """What a circuit costs to simulate: its active qubits, gates after expansion (inside control
    flow too, a for loop's body once per iteration), shots, whether Aer must simulate every shot
    on its own (``per_shot``), and the estimated seconds on one thread."""

    active_qubits: int
    gates: int
    shots: int
    per_shot: bool
    seconds: float


class TooSlow(Exception):
    """The job is estimated to take longer than the time it may take here; carries the estimate."""

    def __init__(self, cost: Cost, budget_s: float):
        super().__init__(
            f"estimated {cost.seconds:.2f} s ({cost.gates} gates on {cost.active_qubits} active qubits, "
            f"{cost.shots} shots{', each simulated on its own' if cost.per_shot else ''}), budget {budget_s:g} s"
        )
        self.cost = cost
        self.budget_s = budget_s


def _gates(circuit: QuantumCircuit) -> int:
    """Instructions other than barriers and delays, counting inside control-flow blocks (a for
    loop's body once per iteration, a while loop's once)."""
    count = 0
    for instruction in circuit.data:
        operation = instruction.operation
        if operation.name in _IGNORED:
            continue
        blocks = getattr(operation, "blocks", ())
        if not blocks:
            count += 1
            continue
        repeats = len(operation.params[0]) if operation.name == "for_loop" else 1
        count += 1 + repeats * sum(_gates(block) for block in blocks)
    return count


def needs_per_shot(circuit: QuantumCircuit) -> bool:
    """True when Aer cannot sample all shots from one final state: a reset, noise, state
    preparation or control flow anywhere, or an operation on a qubit after its measurement
    (a mid-circuit measurement)."""
    measured: set = set()
    for instruction in circuit.data:
        name = instruction.operation.name
        if name in PER_SHOT_OPERATIONS:
            return True
        if name == "measure":
            measured.update(instruction.qubits)
        elif name not in _IGNORED and measured.intersection(instruction.qubits):
            return True
    return False


def cost(circuit: QuantumCircuit, method: str, shots: int, runs: int = 1) -> Cost:
    """The estimated time of ``runs`` simulations of ``circuit`` with Aer ``method`` and ``shots``.

    Each gate updates the whole state (2^n amplitudes for a statevector, 4^n for a density
    matrix, about n/32 words of a stabilizer tableau), once in all or, for a circuit that
    :func:`needs_per_shot`, once per shot; sampling the shots from the final state costs one
    pass over it and a little per shot, except on a stabilizer tableau, where every
    measurement of every shot costs ~n^2/16 (measured here: 200 qubits, 1000 shots ~1 s).
    Rough by design (Aer fuses gates of wide circuits, so it often runs faster): enough to
    tell milliseconds from seconds before simulating.
    """
    qubits = active_qubits(circuit)
    gates = _gates(circuit)
    if method == "automatic":
        method = "stabilizer" if is_clifford(circuit) else "statevector"
    per_shot = needs_per_shot(circuit)
    passes = shots if per_shot else 1
    exponent = _EXPONENT.get(method, 0)
    if exponent:
        state = 2 ** (exponent * qubits)
        work = gates * state * passes + state + shots * max(qubits, 1)
    else:  # a stabilizer tableau: a gate updates ~n/32 words, each measurement of each shot ~n^2/16
        measured = sum(1 for instruction in circuit.data if instruction.operation.name == "measure")
        work = gates * (qubits / 32 + 1) * passes + shots * measured * (qubits * qubits / 16 + 250)
    return Cost(qubits, gates, shots, per_shot, runs * work / AMPLITUDES_PER_S)
