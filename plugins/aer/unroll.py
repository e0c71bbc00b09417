"""A loaded circuit made of instructions Aer runs as they are, decided by what each one is.

Aer runs an instruction by its name. A gate of the program's own that shares a name with one
of Aer's instructions (a user `swap` that flips both qubits, Qiskit's exporter writing a
`UnitaryGate` as `gate unitary`, an OpenQASM 3 `rx` defined without stdgates.inc) would run
as Aer's instruction of that name, silently wrong; Qiskit's transpiler passes decide by name
too (Qiskit/qiskit#13339, Qiskit/qiskit-aer#2232). So an instruction is left to Aer only when
it *is* the library instruction of its name: a Qiskit standard gate, or one of the few
non-gate instructions the loaders make (measure, reset, barrier, delay, control flow, store).
Every other instruction is replaced by its definition, recursively, within a limit on how many
gates the definitions may expand to.
"""

from __future__ import annotations

from dataclasses import dataclass

from qiskit import QuantumCircuit
from qiskit.circuit import (
    Barrier,
    BoxOp,
    CircuitInstruction,
    ControlFlowOp,
    Delay,
    Instruction,
    Measure,
    Reset,
    Store,
)

from plugins.aer.errors import CircuitError

# Qiskit's own instruction classes that Aer runs under their names.
_LIBRARY_CLASSES = (Measure, Reset, Barrier, Delay, Store, ControlFlowOp)  # box: not in Aer's names
# How deep gate definitions may call one another (each level is one Python frame here).
MAX_DEFINITION_DEPTH = 200
DEFAULT_MAX_EXPANDED_GATES = 50_000


def is_native(operation: Instruction, native: frozenset[str]) -> bool:
    """True when Aer runs ``operation`` as it is: its name is one of Aer's (``native``) and it
    is the library instruction of that name (a Qiskit standard gate, or measure, reset,
    barrier, delay, store or control flow), not a gate of the program's own that shares it."""
    if operation.name not in native:
        return False
    if getattr(operation, "_standard_gate", None) is not None:
        return True
    return isinstance(operation, _LIBRARY_CLASSES)


def _all_native(circuit: QuantumCircuit, native: frozenset[str]) -> bool:
    for instruction in circuit.data:
        operation = instruction.operation
        if not is_native(operation, native):
            return False
        if isinstance(operation, ControlFlowOp) and not all(_all_native(b, native) for b in operation.blocks):
            return False
    return True


@dataclass
class _Budget:
    """Gates the program's definitions may still expand to."""

    limit: int
    used: int = 0

    def take(self, name: str) -> None:
        self.used += 1
        if self.used > self.limit:
            raise _too_many(self.limit, name)


def _too_many(limit: int, name: str) -> CircuitError:
    return CircuitError(
        f"the program's gate definitions expand to more than {limit} gates "
        f"(while expanding {name!r}); at most {limit} (QSERVER_MAX_EXPANDED_GATES)"
    )


def unroll(
    circuit: QuantumCircuit, native: frozenset[str], max_expanded_gates: int = DEFAULT_MAX_EXPANDED_GATES
) -> QuantumCircuit:
    """``circuit`` with every instruction that Aer would not run as what it is replaced by its
    definition, recursively (inside control-flow blocks too); the circuit itself when there is
    none. Definitions' global phases are kept.

    Args:
        native: the names of the instructions Aer runs (``AerSimulator().operation_names``).
        max_expanded_gates: the most instructions that expanding definitions may produce (the
            program's written instructions do not count).

    Raises:
        CircuitError: an instruction has no definition (an `opaque` gate, a name Aer does not
            know), definitions nest deeper than MAX_DEFINITION_DEPTH, or they expand to more
            than ``max_expanded_gates`` instructions.
    """
    if _all_native(circuit, native):
        return circuit
    expanded_gates(circuit, native, max_expanded_gates)  # refused at once, before building any of it
    return _unroll_block(circuit, native, _Budget(max_expanded_gates))


def expanded_gates(circuit: QuantumCircuit, native: frozenset[str], limit: int | None = None) -> int:
    """How many instructions :func:`unroll` would make by expanding definitions (what its limit
    counts), counted without building them: each distinct gate (name, width, parameters) is
    counted once, so a program whose definitions double 17 times costs 18 counts, not 2^17.

    Raises:
        CircuitError: the count passes ``limit`` (the same message as :func:`unroll`'s), or
            definitions nest deeper than MAX_DEFINITION_DEPTH.
    """
    memo: dict[tuple, int] = {}
    total = 0
    for instruction in circuit.data:
        total += _count(instruction.operation, native, memo, 0)
        if limit is not None and total > limit:
            raise _too_many(limit, instruction.operation.name)
    return total


def _count(operation: Instruction, native: frozenset[str], memo: dict[tuple, int], depth: int) -> int:
    """Instructions that expanding ``operation`` makes below it (each at any depth counts once)."""
    if is_native(operation, native):
        if isinstance(operation, ControlFlowOp):
            return sum(_count(i.operation, native, memo, 0) for block in operation.blocks for i in block.data)
        return 0
    try:
        key = (operation.name, operation.num_qubits, operation.num_clbits, repr(operation.params))
    except Exception:  # noqa: BLE001 - a parameter without a repr: counted, not remembered
        key = None
    if key is not None and key in memo:
        return memo[key]
    if depth >= MAX_DEFINITION_DEPTH:
        raise CircuitError(
            f"gate definitions call one another more than {MAX_DEFINITION_DEPTH} deep; at most {MAX_DEFINITION_DEPTH}"
        )
    definition = operation.blocks[0] if isinstance(operation, BoxOp) else _definition(operation)
    if definition is None:  # unroll says why
        return 0
    count = sum(1 + _count(inner.operation, native, memo, depth + 1) for inner in definition.data)
    if key is not None:
        memo[key] = count
    return count


def _unroll_block(circuit: QuantumCircuit, native: frozenset[str], budget: _Budget) -> QuantumCircuit:
    out = circuit.copy_empty_like()
    for instruction in circuit.data:
        _emit(out, instruction.operation, instruction.qubits, instruction.clbits, native, budget, 0)
    return out


def _definition(operation: Instruction) -> QuantumCircuit | None:
    try:
        return operation.definition
    except Exception as exc:  # noqa: BLE001 - a definition that cannot be built is the program's
        raise CircuitError(f"cannot run {operation.name!r} on Aer: {getattr(exc, 'message', None) or exc}") from exc


def _emit(
    out: QuantumCircuit,
    operation: Instruction,
    qubits: tuple,
    clbits: tuple,
    native: frozenset[str],
    budget: _Budget,
    depth: int,
) -> None:
    if depth:
        budget.take(operation.name)
    if is_native(operation, native):
        if isinstance(operation, ControlFlowOp):
            operation = operation.replace_blocks([_unroll_block(b, native, budget) for b in operation.blocks])
        out._append(CircuitInstruction(operation, qubits, clbits))
        return
    if depth >= MAX_DEFINITION_DEPTH:
        raise CircuitError(
            f"gate definitions call one another more than {MAX_DEFINITION_DEPTH} deep; at most {MAX_DEFINITION_DEPTH}"
        )
    if isinstance(operation, BoxOp):
        # Aer has no `box` (Qiskit 2.x's scope): its body runs in its place.
        definition = operation.blocks[0]
    else:
        definition = _definition(operation)
    if definition is None:
        raise CircuitError(
            f"cannot run {operation.name!r} on Aer: it has no definition (an opaque gate, or an "
            "instruction this simulator does not have)"
        )
    qubit_map = dict(zip(definition.qubits, qubits, strict=False))
    clbit_map = dict(zip(definition.clbits, clbits, strict=False))
    out.global_phase += definition.global_phase
    for inner in definition.data:
        _emit(
            out,
            inner.operation,
            tuple(qubit_map[q] for q in inner.qubits),
            tuple(clbit_map[c] for c in inner.clbits),
            native,
            budget,
            depth + 1,
        )
