"""Parameter sweeps as one job: the program once, its bindings beside it, the results in pages.

``export_circuit`` turns a parametrised Qiskit circuit into the OpenQASM 3 program a sweep
sends (its parameters renamed to plain ``input float[64]`` identifiers); ``submit_sweep`` sends
the program and an array of parameter values as one ``AddJob`` stream (the sweep contract:
metadata ``sweep.parameters`` names the values' last axis); ``sweep_items`` reads a finished
sweep's per-binding results from ``GET /api/v1/job/{id}/items``, all pages, in the bindings'
flat C order.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
from qiskit import QuantumCircuit, qasm3
from qiskit.circuit import Parameter

from qserver_client import wire
from qserver_client.errors import ApiError, ApiUnreachable, JobNotFound

if TYPE_CHECKING:
    from qserver_client.client import Client

ITEMS_PAGE = 10_000  # the items route's largest page (limit 1..10000)


@dataclass(frozen=True)
class ExportedCircuit:
    """A circuit as a sweep sends it.

    ``qasm``: the OpenQASM 3 program; ``parameters``: the circuit's own parameters in
    ``circuit.parameters`` order (the order ``BindingsArray.as_array(parameters)`` puts values
    in); ``names``: the ``input float[64]`` names they have in ``qasm``, in the same order (what
    metadata ``sweep.parameters`` lists).
    """

    qasm: str
    parameters: tuple[Parameter, ...]
    names: tuple[str, ...]


def export_circuit(circuit: QuantumCircuit) -> ExportedCircuit:
    """The circuit as OpenQASM 3 with its parameters renamed ``p0``, ``p1``, ... in
    ``circuit.parameters`` order.

    Qiskit's own names (``θ``, a ParameterVector's ``x[3]``) are not OpenQASM identifiers and
    the exporter would escape them; plain names survive the round trip, so the server binds
    values by them. The prefix moves (``_p0``, ``__p0``, ...) when the circuit already uses a
    name it would make (a register, an instruction). Raises ValueError when the exported program
    does not declare every parameter under its new name (``qiskit.qasm3.QASM3ExporterError`` for
    a circuit the exporter cannot write: transpile it to standard gates first).
    """
    originals = tuple(circuit.parameters)
    prefix = _free_prefix(circuit, len(originals))
    names = tuple(f"{prefix}{index}" for index in range(len(originals)))
    if originals:
        renamed = {old: Parameter(name) for old, name in zip(originals, names, strict=True)}
        circuit = circuit.assign_parameters(renamed, inplace=False)
    text = qasm3.dumps(circuit)
    declared = set(re.findall(r"^\s*input\s+float\[64\]\s+([A-Za-z_][A-Za-z_0-9]*)\s*;", text, flags=re.M))
    missing = [name for name in names if name not in declared]
    if missing:
        raise ValueError(f"the exported program does not declare the parameters {', '.join(missing)} as inputs")
    return ExportedCircuit(qasm=text, parameters=originals, names=names)


def _free_prefix(circuit: QuantumCircuit, count: int) -> str:
    """``p``, or ``_p``, ``__p``, ...: the first prefix none of whose ``count`` names the circuit
    already uses for a register or an instruction."""
    taken = {register.name for register in (*circuit.qregs, *circuit.cregs)}
    taken |= {instruction.operation.name for instruction in circuit.data}
    prefix = "p"
    while any(f"{prefix}{index}" in taken for index in range(count)):
        prefix = "_" + prefix
    return prefix


def submit_sweep(
    client: Client,
    qasm3_program: str,
    parameters: Sequence[str],
    values: Any,
    *,
    backend: str = "aer",
    counts: bool = True,
    expval: bool = False,
    obs: Sequence[Any] | None = None,
    shots: int | None = None,
    seed: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> str:
    """Submit one job that runs ``qasm3_program`` at every binding of ``values``; its job id.

    ``parameters``: the names of the program's ``input float[64]`` parameters, in the order of
    the last axis of ``values`` (an array of shape ``(*shape, P)``, ``P = len(parameters) >= 1``;
    ``shape`` may be ``()``: one binding). ``counts`` / ``expval``: the results wanted at each
    binding (``expval`` needs ``obs``: one list of ``[pauli, coefficient]`` pairs per
    observable, each on all the program's qubits, qubit 0 rightmost). ``shots`` and ``seed``
    apply to each binding. ``metadata``: any other job metadata (method, tags, timeout_s, ...).
    Raises ValueError for values that do not fit the parameters (checked before anything is
    sent), ``SubmitError`` when the server refuses the job.
    """
    names = [str(name) for name in parameters]
    if not names:
        raise ValueError("a sweep needs at least one parameter; send a program without parameters as a plain job")
    array = np.asarray(values, dtype=float)
    if array.ndim < 1 or array.shape[-1] != len(names):
        raise ValueError(f"values of shape {array.shape} do not end in one axis of {len(names)} parameters")
    meta = dict(metadata or {})
    if "parameters" in meta or "sweep" in meta:
        raise ValueError("metadata 'parameters' or 'sweep' cannot be given to a sweep: it sets 'sweep' itself")
    meta["sweep"] = {"parameters": names}
    for key, value in (("shots", shots), ("seed", seed), ("obs", obs)):
        if value is not None:
            meta[key] = value
    first = wire.properties(backend=backend, counts=counts, expval=expval, metadata=meta)
    bindings = wire.bindings_chunks(array)  # checked here, before the stream starts
    return client.submit_messages(itertools.chain([first], wire.chunks(qasm3_program), bindings))


def sweep_items(client: Client, job_id: str, page: int = ITEMS_PAGE) -> list[dict[str, Any]]:
    """Every listed item of a sweep job (``{"index", "counts"?, "quasi_dist"?, "expval"?}``),
    read ``page`` at a time from ``GET /api/v1/job/{id}/items``, in the bindings' flat C order.

    A finished sweep lists all its bindings; one still running lists those whose chunk is done.
    Raises ``JobNotFound`` (unknown job, another user's, or not a sweep), ``ApiError``,
    ``ApiUnreachable``; ValueError for a page outside 1..``ITEMS_PAGE``.
    """
    if not 1 <= page <= ITEMS_PAGE:
        raise ValueError(f"page must be 1..{ITEMS_PAGE}, got {page}")
    path = f"/api/v1/job/{job_id}/items"
    items: list[dict[str, Any]] = []
    offset, total = 0, 1
    while offset < total:
        try:
            response = client.http.get(path, params={"offset": offset, "limit": page})
        except httpx.TransportError as error:
            raise ApiUnreachable(f"GET {path}: {error!r}") from error
        if response.status_code != 200:
            kind = JobNotFound if response.status_code == 404 else ApiError
            raise kind("GET", path, response.status_code, _detail(response))
        body = response.json()
        total = int(body["bindings"])
        items.extend(body["items"])
        offset += page
    return items


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text
