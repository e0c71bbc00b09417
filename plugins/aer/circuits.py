"""OpenQASM 2/3 text to a bound Qiskit circuit: version detection, loading, parameter binding."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from typing import Any

from qiskit import QuantumCircuit, qasm2, qasm3
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
    code = _COMMENT_OR_STRING.sub(lambda m: m.group(0) if m.group(0).startswith('"') else " ", text)
    return _INCLUDE.findall(code)


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


def _load_qasm2(text: str) -> QuantumCircuit:
    # The permissive settings of QuantumCircuit.from_qasm_str (so `u(...)`, as Qiskit's own
    # exporter writes it, loads), except that no include file is read from disk: qelib1.inc is
    # built in, and a user's program must not read files on the node that runs it.
    return qasm2.loads(
        text,
        include_path=(),
        custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS,
        custom_classical=qasm2.LEGACY_CUSTOM_CLASSICAL,
        strict=False,
    )


def _load_qasm3(text: str, header: re.Match[str] | None) -> QuantumCircuit:
    # Qiskit's Rust parser is ~50x faster than the reference importer but handles less (no
    # `input`, no user-defined gates, no `OPENQASM 3;` short header). It reads any included
    # file itself (and prints its content when it fails), so it only sees stdgates.inc.
    if set(_includes(text)) <= {"stdgates.inc"}:
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
    Qiskit's Rust parser and, where it refuses the program, to the reference importer
    (qiskit-qasm3-import). Raises CircuitError carrying the loader's own message for any loader
    exception (parse errors, unsupported features, even a plain TypeError), and for a version
    other than 2 or 3.
    """
    text = text.removeprefix("\ufeff")
    header = _version_statement(text)
    version = int(header.group(1)) if header else 3
    if version not in (2, 3):
        raise CircuitError(f"unsupported OpenQASM version {version}: this backend reads 2 and 3")
    try:
        if version == 2:
            return _load_qasm2(text)
        return _load_qasm3(text, header)
    except BaseException as exc:  # noqa: BLE001 - any loader failure is the circuit's fault
        if isinstance(exc, _NOT_LOADER_ERRORS):
            raise
        raise CircuitError(f"OpenQASM {version} program does not load: {_message(exc)}") from exc


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
        raise CircuitError(
            f"metadata 'parameters' names {', '.join(unknown)}, which the circuit does not have ({has})"
        )
    unbound = [name for name in declared if name not in parameters]
    if unbound:
        raise CircuitError(
            f"circuit has unbound parameters: {', '.join(unbound)}; give them in metadata 'parameters'"
        )
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
