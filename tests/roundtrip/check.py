"""Exporting each circuit, Qiskit's own loaders, and the one check both round-trip tests make.

- CASES: [(circuit name, exporter)] for exporter in EXPORTERS = ("qasm2", "qasm3").
- exported(name, exporter): the exporter's text, or ExportRefused with the exporter's message;
  exported_or_skip: the same, skipping the test on a refusal; exportable(): every exportable case.
- loader_refusal(text, exporter): Qiskit's own loaders' messages when ALL of them refuse the text.
- check_outcome(...): the one assertion both test files make about a run's counts or error;
  check_job(...): the same for a job of the stack (its JSON from GET /api/v1/job/{id}).
- SHOTS, SEED, METADATA: what every run asks for.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from qiskit import (
    QuantumCircuit,
    qasm2,
    qasm3,
)

from tests.roundtrip import dynamic  # noqa: F401 - registers its circuits
from tests.roundtrip.library import CIRCUITS
from tests.roundtrip.reference import SEED, Reference, reference, tvd, tvd_bound

EXPORTERS = ("qasm2", "qasm3")
SHOTS = 4000
# The job metadata of every run (plugins.aer.run's and the stack's).
METADATA = {"shots": SHOTS, "seed": SEED}
# Outcomes with less reference probability than this do not count in the support size given to
# tvd_bound. An honest backend samples one of them with probability at most
# SHOTS * 2**6 * NEGLIGIBLE < 1e-6 (6 clbits at most), which adds to tvd_bound's alpha; any
# such outcome in the counts still counts fully in the TVD.
NEGLIGIBLE = 1e-12


CASES: list[tuple[str, str]] = [(name, exporter) for name in CIRCUITS for exporter in EXPORTERS]


@functools.cache
def circuit(name: str) -> QuantumCircuit:
    """The built circuit of CIRCUITS[name], built once (do not modify it)."""
    return CIRCUITS[name]()


@functools.cache
def reference_of(name: str) -> Reference:
    """reference(circuit(name)), computed once per circuit name."""
    return reference(circuit(name))


# ---------------------------------------------------------------------------------------------
# Exporting, Qiskit's own loaders, and the one check
# ---------------------------------------------------------------------------------------------


class ExportRefused(Exception):
    """The exporter itself cannot write the circuit; the message is the exporter's."""


_DUMPS = {"qasm2": qasm2.dumps, "qasm3": qasm3.dumps}


@functools.cache
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


def check_outcome(
    name: str, exporter: str, text: str, shots: int, counts: Mapping[str, int] | None = None, error: str | None = None
) -> None:
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
