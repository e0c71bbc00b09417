"""What a backend can run: the ``capabilities`` of GET /api/v1/backend/{name} and /backends.

    {"methods": [...], "max_qubits": {method: most active qubits}, "result_types": [...],
     "plugin_version": str, "needs_gpu": bool}

or None where a third-party plugin declares nothing.

The built-in backends' (aer, aer_gpu) are computed (:func:`builtin`): the Aer methods QServer
runs a measured circuit with (``unitary`` and ``superop`` cannot measure, so they are left
out), each bounded by QSERVER_MAX_ACTIVE_QUBITS and, for a method whose state grows with the
qubits (a statevector holds 2^n amplitudes, a density matrix 4^n), by the memory of the
largest node alive now that can run the backend (one with a GPU for aer_gpu), with
plugins.aer.sizing's model: a worker, the state and 1/8 more (tests check the two agree). With
no node alive, the settings bound them alone. aer_gpu keeps its state on the GPU, whose memory
is not known here: the node's memory bounds it. Their version is QServer's own, as receipts say.

A third-party plugin declares its own in ``<import name>/capabilities.json`` in its wheel, read
at admission without running it (:func:`parse_declaration`), for instance::

    {"methods": ["statevector"], "max_qubits": {"statevector": 30},
     "result_types": ["counts", "quasi_dist"], "needs_gpu": false,
     "backends": {"fake2": {"needs_gpu": true}}}

The top-level keys hold for every backend of the plugin; ``backends`` overrides them for the
backends it names. Any key may be left out: no methods, no bounds, the three result types, no
GPU. ``needs_gpu`` becomes the backend's own (its jobs are placed on a node with a GPU);
``plugin_version`` is the admitted version.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.domain import BUILTIN_PLUGIN, ResultType
from core.errors import NotAPlugin

# The Aer methods QServer runs measured circuits with (plugins.aer.simulate), in Aer's order.
AER_METHODS_RUN = ("statevector", "density_matrix", "stabilizer", "extended_stabilizer", "matrix_product_state")
RESULT_TYPES = tuple(kind.value for kind in ResultType)
# plugins.aer.sizing's memory model (not imported: it loads Qiskit): a Ray worker with Qiskit
# and Aer loaded, and 16 bytes per amplitude of 2^(exponent x qubits) amplitudes.
WORKER_BYTES = 256 * 1024 * 1024
STATE_EXPONENT = {"statevector": 1, "density_matrix": 2}


def state_bytes(qubits: int, method: str) -> int:
    """What a circuit of ``qubits`` active qubits needs with ``method`` besides its gates: a
    worker, and the state plus 1/8 for a method with an amplitude state (plugins.aer.sizing.size)."""
    exponent = STATE_EXPONENT.get(method)
    if exponent is None:
        return WORKER_BYTES
    state = 16 * 2 ** (exponent * qubits)
    return WORKER_BYTES + state + state // 8


def qubits_in(memory_bytes: int, method: str, most: int) -> int:
    """The most active qubits, up to ``most``, whose ``method`` state fits in ``memory_bytes``."""
    if method not in STATE_EXPONENT:
        return most
    qubits = 0
    while qubits < most and state_bytes(qubits + 1, method) <= memory_bytes:
        qubits += 1
    return qubits


def qserver_version() -> str | None:
    """The installed QServer's version (the built-in plugin's), None when not installed."""
    try:
        return importlib.metadata.version("qserver")
    except importlib.metadata.PackageNotFoundError:
        return None


def builtin(*, needs_gpu: bool, max_active_qubits: Mapping[str, int], memory_bytes: int | None) -> dict[str, Any]:
    """The capabilities of a built-in Aer backend.

    ``max_active_qubits``: settings.max_active_qubits ({method: most}); ``memory_bytes``: the
    memory of the largest alive node that can run it (None or 0: no node alive, no bound)."""
    methods = [method for method in AER_METHODS_RUN if method in max_active_qubits]
    return {
        "methods": methods,
        "max_qubits": {
            method: qubits_in(memory_bytes, method, max_active_qubits[method])
            if memory_bytes
            else max_active_qubits[method]
            for method in methods
        },
        "result_types": list(RESULT_TYPES),
        "plugin_version": qserver_version(),
        "needs_gpu": needs_gpu,
    }


def of_backend(row: Mapping[str, Any], *, max_active_qubits: Mapping[str, int]) -> dict[str, Any] | None:
    """The capabilities of a backend as store.describe_backend gives it: computed for a built-in
    one (:func:`builtin`), else what its plugin declared at admission with the plugin's version
    and the backend's ``needs_gpu``; None when the plugin declared nothing."""
    if row["plugin_builtin"] or row["plugin"] == BUILTIN_PLUGIN:
        return builtin(needs_gpu=row["needs_gpu"], max_active_qubits=max_active_qubits, memory_bytes=row["node_memory"])
    if row["capabilities"] is None:
        return None
    return {**row["capabilities"], "plugin_version": row["plugin_version"], "needs_gpu": row["needs_gpu"]}


Name = Annotated[str, Field(min_length=1, max_length=100)]


class _Declared(BaseModel):
    """What capabilities.json may say of a backend."""

    model_config = ConfigDict(extra="forbid")

    methods: list[Name] | None = None
    max_qubits: dict[Name, Annotated[int, Field(ge=1)]] | None = None
    result_types: list[ResultType] | None = None
    needs_gpu: bool | None = None


class _Declaration(_Declared):
    """A whole capabilities.json."""

    backends: dict[str, _Declared] = {}


def parse_declaration(text: str, *, backends: tuple[str, ...], where: str) -> dict[str, dict[str, Any]]:
    """Each backend's declared capabilities, {backend: {methods, max_qubits, result_types,
    needs_gpu}}, from the text of a plugin's capabilities.json (see the module's docstring).

    Raises:
        NotAPlugin: not JSON, a key or value the format does not have, or a backend that is not
            one of ``backends``; the message starts with ``where`` (the plugin and the file).
    """
    try:
        declaration = _Declaration.model_validate(json.loads(text))
    except json.JSONDecodeError as error:
        raise NotAPlugin(f"{where} is not JSON: {error}") from None
    except ValidationError as error:
        first = error.errors()[0]
        place = ".".join(str(part) for part in first["loc"]) or "the file"
        raise NotAPlugin(f"{where}: {place}: {first['msg']}") from None
    unknown = sorted(set(declaration.backends).difference(backends))
    if unknown:
        raise NotAPlugin(f"{where} names backend {unknown[0]!r}, which backends.txt does not")
    plugin = declaration.model_dump(exclude={"backends"}, exclude_none=True, mode="json")
    defaults = {"methods": [], "max_qubits": {}, "result_types": list(RESULT_TYPES), "needs_gpu": False}
    return {
        name: {
            **defaults,
            **plugin,
            **declaration.backends.get(name, _Declared()).model_dump(exclude_none=True, mode="json"),
        }
        for name in backends
    }
