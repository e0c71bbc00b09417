"""OpenQASM 2/3 text to a bound Qiskit circuit: version detection, loading, parameter binding."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from qiskit import QuantumCircuit, qasm2, qasm3
from qiskit.circuit import Delay
from qiskit.exceptions import ExperimentalWarning

from plugins.aer.errors import CircuitError

# The Rust OpenQASM 3 parser warns on every call that it is experimental; we choose it knowingly.
warnings.filterwarnings(
    "ignore",
    message="This is an experimental native version of the OpenQASM 3 importer",
    category=ExperimentalWarning,
)

_LEADING = re.compile(r"(?:\s+|//[^\n]*|/\*.*?\*/)*", re.DOTALL)
_VERSION = re.compile(r"OPENQASM\s+(\d+)(\.\d+)?\s*;")
_COMMENT_OR_STRING = re.compile(r'"[^"\n]*"|//[^\n]*|/\*.*?\*/', re.DOTALL)
_INCLUDE = re.compile(r'\binclude\s*"([^"\n]*)"')
_DEFINITION = re.compile(r"\bgate\s+([A-Za-z_][A-Za-z0-9_]*)")
# How deep expressions and blocks may nest. Qiskit's Rust parsers recurse once per level and
# die with SIGSEGV (no exception) somewhere past 2 000 levels on an 8 MiB stack; the reference
# OpenQASM 3 importer (ANTLR, Python) runs out of recursion past about 300. No real program
# comes near 100.
MAX_NESTING = 100
_BRACKETS = re.compile(r"[^()\[\]{}]+")
_OPENING = np.frombuffer(b"([{", dtype=np.uint8)
_UNARY_RUN = re.compile(r"(?:[-+~!]\s*){" + str(MAX_NESTING + 1) + ",}")
# An imaginary literal as Qiskit's exporters write it (`0.8j`, Python's form) or OpenQASM 3's `0.8im`.
_COMPLEX_LITERAL = re.compile(r"(?<![\w.])(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?:[jJ]|im)\b")
# `gate NAME(params) {` with no qubit between the name and the body.
_GATE_WITHOUT_QUBITS = re.compile(r"\bgate\s+([A-Za-z_]\w*)\s*(?:\([^)]*\))?\s*\{")
# Where a loader's message points: qasm2 `<input>:L,C:`, ours `syntax error at L,C`, the
# reference importer's `L,C: ...`.
_POSITION = re.compile(r"(?:<input>:|\bat |^)(\d+),\d+")
# Qiskit's qasm2 exporter writes a second Delay as `opaque delay_<id>(param0) q0;`.
_OPAQUE_DELAY = re.compile(r"\bopaque\s+(delay_\d+)\s*\(\s*\w+\s*\)\s*\w+\s*;")
# Never swallow these while trying one loader after another.
_NOT_LOADER_ERRORS = (KeyboardInterrupt, SystemExit, GeneratorExit)


def _version_statement(text: str) -> re.Match[str] | None:
    """The `OPENQASM n[.m];` statement after leading blank lines and comments, or None."""
    start = _LEADING.match(text).end()
    return _VERSION.match(text, start)


def qasm_version(text: str) -> int:
    """Major OpenQASM version (2 or 3, or whatever the header says) of a program's text.

    The version statement may follow blank lines and `//` or `/* */` comments. A program without
    one is OpenQASM 3, where the statement is optional. Never raises.
    """
    match = _version_statement(text.removeprefix("\ufeff"))
    return int(match.group(1)) if match else 3


def _includes(text: str) -> list[str]:
    """File names in the program's `include "..."` statements, comments ignored."""
    return _INCLUDE.findall(_code(text))


def defined_gates(text: str) -> set[str]:
    """Names the program defines itself with `gate NAME`, comments ignored (an `opaque` declaration
    has no body of its own: the library instruction of that name, e.g. `delay`, gives it meaning)."""
    return set(_DEFINITION.findall(_code(text)))


def _code(text: str) -> str:
    """The program with its comments blanked out (string literals kept)."""
    return _COMMENT_OR_STRING.sub(lambda m: m.group(0) if m.group(0).startswith('"') else " ", text)


def check_nesting(text: str) -> None:
    """Refuse a program whose expressions or blocks nest deeper than MAX_NESTING.

    Cheap (C-speed scans over the text) and done before any parser sees it, since the native
    parsers crash the process rather than raise on deep nesting. Brackets `( [ {` count
    together (a stray closing bracket never makes the depth negative); so do runs of unary
    operators (`- - - x`), which nest without brackets. Raises CircuitError naming the depth
    and the limit.
    """
    if text.count("(") + text.count("[") + text.count("{") > MAX_NESTING:
        depth = nesting_depth(_code(text))
        if depth > MAX_NESTING:
            raise CircuitError(f"expression or block nested {depth} deep; at most {MAX_NESTING}")
    run = _UNARY_RUN.search(text)
    if run is not None:
        operators = sum(run.group(0).count(op) for op in "-+~!")
        raise CircuitError(f"{operators} unary operators in a row (each one nests); at most {MAX_NESTING}")


def nesting_depth(code: str) -> int:
    """The deepest nesting of `( [ {` brackets in ``code`` (0 for none)."""
    brackets = _BRACKETS.sub("", code)
    if not brackets:
        return 0
    chars = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    steps = np.where(np.isin(chars, _OPENING), 1, -1)
    level = np.cumsum(steps)
    floor = np.minimum.accumulate(np.minimum(level, 0))
    return int((level - floor).max())


def refused_construct(text: str, message: str) -> str | None:
    """What in `text` a loader refused, in words, for its error `message`; None if not found.

    Names the constructs Qiskit's own exporters write and its loaders refuse: complex-number
    literals (state_preparation, initialize, diagonal arguments) and gates with no qubits
    (qasm3.dumps' global_phase); otherwise quotes the statement on the line the message
    points at. Only called once loading has failed.
    """
    code = _code(text)
    complex_literal = _COMPLEX_LITERAL.search(code)
    if complex_literal is not None:
        line = code.count("\n", 0, complex_literal.start()) + 1
        return (
            f"line {line} has a complex-number literal, {complex_literal.group(0)}, in "
            f"`{_statement(text, line)}`: OpenQASM has no complex numbers (Qiskit's exporters write "
            "them as the arguments of state_preparation, initialize and diagonal gates; transpile such "
            "a circuit to basis gates before exporting it)"
        )
    no_qubits = _GATE_WITHOUT_QUBITS.search(code)
    if no_qubits is not None:
        line = code.count("\n", 0, no_qubits.start()) + 1
        return (
            f"gate {no_qubits.group(1)} (line {line}) is defined on no qubits; an OpenQASM gate acts on at "
            "least one (Qiskit's OpenQASM 3 exporter writes global_phase so)"
        )
    position = _POSITION.search(message)
    if position is not None:
        line = int(position.group(1))
        statement = _statement(text, line)
        if statement:
            return f"line {line} is `{statement}`"
    return None


def _statement(text: str, line: int, limit: int = 120) -> str:
    """Line `line` (1-based) of `text`, stripped and cut to `limit` characters ('' past the end)."""
    lines = text.split("\n", line)
    if line < 1 or len(lines) < line:
        return ""
    statement = lines[line - 1].strip()
    return statement if len(statement) <= limit else statement[: limit - 3] + "..."


def _message(exc: BaseException) -> str:
    """A loader exception's own message (Qiskit errors keep it in `.message`, unquoted)."""
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        message = str(exc)
    if not message:
        # The reference importer's syntax errors carry no text; ANTLR's token says where.
        cause = exc.__cause__.args[0] if exc.__cause__ is not None and exc.__cause__.args else None
        token = getattr(cause, "offendingToken", None)
        if token is not None:
            return f"syntax error at {token.line},{token.column} near {token.text!r}"
        return type(exc).__name__
    if type(exc).__module__ in ("builtins", "pyo3_runtime"):
        return f"{type(exc).__name__}: {message}"
    return message


def _load_qasm2(text: str, defined: set[str]) -> QuantumCircuit:
    # The permissive settings of QuantumCircuit.from_qasm_str (so `u(...)`, as Qiskit's own
    # exporter writes it, loads), except that no include file is read from disk: qelib1.inc is
    # built in, and a user's program must not read files on the node that runs it. A name the
    # program defines itself is its own: Qiskit would otherwise put its library gate of that
    # name in place of the program's definition (swap, cswap, ...: Qiskit/qiskit#13339).
    # A redefinition of a gate of the included qelib1.inc stays an error ("already defined").
    # Qiskit's own exporter writes each Delay after the first as `opaque delay_<id>(t) q0;`: such
    # an opaque declaration is the library delay too, as `opaque delay` is.
    delays = [
        qasm2.CustomInstruction(name, 1, 1, _delay, builtin=False)
        for name in set(_OPAQUE_DELAY.findall(_code(text))) - defined
    ]
    return qasm2.loads(
        text,
        include_path=(),
        custom_instructions=[ci for ci in qasm2.LEGACY_CUSTOM_INSTRUCTIONS if ci.name not in defined] + delays,
        custom_classical=qasm2.LEGACY_CUSTOM_CLASSICAL,
        strict=False,
    )


def _renamed(text: str, name: str) -> str:
    """`text` with the identifier `name` renamed, outside string literals, to a name it does not use.

    Qiskit's circuits take any instruction named `store` for their classical store and fail with
    an IndexError (Qiskit/qiskit#16938); a program's own gate of that name runs under another.
    """
    fresh = f"{name}_gate"
    while re.search(rf"\b{fresh}\b", text):
        fresh += "_"
    pattern = re.compile(rf'"[^"\n]*"|\b{name}\b')
    return pattern.sub(lambda m: m.group(0) if m.group(0).startswith('"') else fresh, text)


def _delay(duration: float) -> Delay:
    """Qiskit's delay of `duration` dt (idle time: nothing to a simulator)."""
    return Delay(duration, "dt")


def _load_qasm3(text: str, header: re.Match[str] | None, defined: set[str]) -> QuantumCircuit:
    # Qiskit's Rust parser is ~50x faster than the reference importer but handles less (no
    # `input`, no `OPENQASM 3;` short header, no gate of the program's own: it refuses unknown
    # names and, worse, takes a definition named like a stdgates.inc gate for the library gate
    # even without the include). It reads any included file itself (and prints its content when
    # it fails), so it only sees stdgates.inc.
    if not defined and set(_includes(text)) <= {"stdgates.inc"}:
        fast_text = text
        if header is not None and header.group(2) is None:  # `OPENQASM 3;` -> `OPENQASM 3.0;`
            fast_text = text[: header.end(1)] + ".0" + text[header.end(1) :]
        try:
            return qasm3.loads_experimental(fast_text)
        except BaseException as exc:  # noqa: BLE001 - it panics with a BaseException subclass
            if isinstance(exc, _NOT_LOADER_ERRORS):
                raise
    return qasm3.loads(text)


def load_circuit(text: str) -> QuantumCircuit:
    """Parse an OpenQASM 2 or 3 program (a str) into a QuantumCircuit, once.

    OpenQASM 2 goes to `qiskit.qasm2.loads` with the legacy permissive settings; OpenQASM 3 to
    Qiskit's Rust parser and, where it refuses the program or the program defines gates of its
    own, to the reference importer (qiskit-qasm3-import). A gate the program defines is always
    its own, whatever library or simulator gate shares its name (see plugins.aer.unroll for the
    other half). Raises CircuitError carrying the loader's own message for any loader exception
    (parse errors, unsupported features, even a plain TypeError), for a version other than 2
    or 3, and for nesting deeper than MAX_NESTING (checked before any parser runs).
    """
    text = text.removeprefix("\ufeff")
    header = _version_statement(text)
    version = int(header.group(1)) if header else 3
    if version not in (2, 3):
        raise CircuitError(f"unsupported OpenQASM version {version}: this backend reads 2 and 3")
    check_nesting(text)
    defined = defined_gates(text)
    if "store" in defined:
        text = _renamed(text, "store")
        defined = defined_gates(text)
    try:
        if version == 2:
            return _load_qasm2(text, defined)
        return _load_qasm3(text, header, defined)
    except BaseException as exc:  # noqa: BLE001 - any loader failure is the circuit's fault
        if isinstance(exc, _NOT_LOADER_ERRORS):
            raise
        message = _message(exc)
        construct = refused_construct(text, message)
        if construct is not None:
            message = f"{message}; {construct}"
        raise CircuitError(f"OpenQASM {version} program does not load: {message}") from exc


def bind_parameters(circuit: QuantumCircuit, parameters: Mapping[str, Any] | None) -> QuantumCircuit:
    """Bind the circuit's free parameters (OpenQASM 3 `input`s) by name; returns a new circuit.

    `parameters` is metadata 'parameters': {name: real number}, or None. Raises CircuitError when
    it is not such a mapping, names a parameter the circuit does not have, or leaves one of the
    circuit's parameters unbound (the message names them).
    """
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, Mapping):
        raise CircuitError("metadata 'parameters' must be an object of {name: number}")
    declared = {parameter.name: parameter for parameter in circuit.parameters}
    unknown = sorted(str(name) for name in parameters if name not in declared)
    if unknown:
        has = f"it has: {', '.join(sorted(declared))}" if declared else "it has none"
        raise CircuitError(f"metadata 'parameters' names {', '.join(unknown)}, which the circuit does not have ({has})")
    unbound = [name for name in declared if name not in parameters]
    if unbound:
        raise CircuitError(f"circuit has unbound parameters: {', '.join(unbound)}; give them in metadata 'parameters'")
    values = {}
    for name, value in parameters.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise CircuitError(f"metadata 'parameters' value for {name} must be a finite number, got {value!r}")
        values[declared[name]] = float(value)
    return circuit.assign_parameters(values, inplace=False) if values else circuit


def active_qubits(circuit: QuantumCircuit) -> int:
    """How many of the circuit's qubits any instruction (barriers aside) touches."""
    used = set()
    for instruction in circuit.data:
        if instruction.operation.name != "barrier":
            used.update(instruction.qubits)
    return len(used)
