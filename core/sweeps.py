"""Sweeps: one program run for many bindings of its parameters, as one job.

A sweep job's metadata holds ``"sweep": {"parameters": [NAME, ...]}``: the program's OpenQASM 3
``input float[64] NAME;`` parameters, in the order of the bindings' last axis. Its bindings
travel beside the program (gRPC ``JobData.bindingsChunk``) as one NPY file: NumPy's own format
(numpy.lib.format, https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html),
float64, C order, shape ``(*shape, P)`` with ``P`` the number of parameters; ``shape`` is the
PUB's shape (``()``: one binding). Ingest reads only the file's header and checks the values;
it stores the bytes as sent and adds ``shape`` to ``metadata.sweep``. Shots, seed and
observables apply to each binding; the results are one item per binding, in flat C order of
``shape``, stored per chunk of bindings (table ``sweep_items``).

No Qiskit here: ingest, the dispatcher and the api import this module.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import InvalidJob

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_PARAMETERS = 10_000  # parameters of one program (a PUB with more is not a homelab's)


@dataclass(frozen=True)
class Sweep:
    """A sweep job's shape.

    Attributes:
        parameters: the program's parameter names, in the order of the bindings' last axis.
        shape: the PUB's shape (the bindings' shape without its last axis).
    """

    parameters: tuple[str, ...]
    shape: tuple[int, ...]

    @property
    def bindings(self) -> int:
        """How many bindings (points) the sweep runs: the product of ``shape``."""
        return math.prod(self.shape)


def check_parameters(sweep: Any) -> tuple[str, ...]:
    """Check metadata ``sweep`` as sent: ``{"parameters": [NAME, ...]}``, nothing else yet.

    Raises:
        InvalidJob: not an object, no or bad parameter names (each an OpenQASM identifier,
            none twice, at least one), or unknown keys.
    """
    if not isinstance(sweep, dict):
        raise InvalidJob('metadata \'sweep\' must be an object, e.g. {"parameters": ["theta"]}')
    unknown = sorted(set(sweep) - {"parameters", "shape"})
    if unknown:
        raise InvalidJob(f"metadata 'sweep' has unknown key(s) {', '.join(map(repr, unknown))}; it takes 'parameters'")
    names = sweep.get("parameters")
    if not isinstance(names, list) or not names:
        raise InvalidJob("metadata 'sweep.parameters' must be a non-empty list of the program's parameter names")
    if len(names) > MAX_PARAMETERS:
        raise InvalidJob(f"metadata 'sweep.parameters' names {len(names)} parameters; at most {MAX_PARAMETERS}")
    for name in names:
        if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
            raise InvalidJob(
                f"metadata 'sweep.parameters' holds {str(name)[:60]!r}: each name is an OpenQASM identifier "
                "(letters, digits, '_'; not starting with a digit)"
            )
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise InvalidJob(f"metadata 'sweep.parameters' names {', '.join(map(repr, twice))} more than once")
    return tuple(names)


def read_header(data: bytes) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """The NPY file's (shape, dtype, fortran_order, where its data starts), from its header.

    Raises:
        InvalidJob: not an NPY file (version 1, 2 or 3).
    """
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"NPY version {version}")
    except ValueError as error:
        raise InvalidJob(f"the bindings are not an NPY file (numpy.save): {str(error)[:200]}") from None
    return tuple(shape), dtype, fortran, stream.tell()


def read_bindings(data: bytes, parameters: tuple[str, ...], max_bindings: int) -> tuple[Sweep, np.ndarray]:
    """Check a sweep's bindings and return its shape and the values, shape ``(bindings, P)``.

    Raises:
        InvalidJob: not an NPY file of float64 in C order, a last axis that is not one value
            per parameter, no binding or more than ``max_bindings``, a value that is not finite.
    """
    shape, dtype, fortran, start = read_header(data)
    if dtype != np.dtype("<f8") or fortran:
        raise InvalidJob(
            f"the bindings must be float64 in C order (numpy.save of a float64 array), got {dtype.str}"
            + (" in Fortran order" if fortran else "")
        )
    if not shape or shape[-1] != len(parameters):
        raise InvalidJob(
            f"the bindings have shape {shape}: their last axis must hold one value per parameter "
            f"({len(parameters)}: {', '.join(parameters[:5])}{', ...' if len(parameters) > 5 else ''})"
        )
    sweep = Sweep(parameters=parameters, shape=shape[:-1])
    if sweep.bindings < 1:
        raise InvalidJob(f"the bindings have shape {shape}: a sweep needs at least one binding")
    if sweep.bindings > max_bindings:
        raise InvalidJob(
            f"the sweep has {sweep.bindings} bindings; at most {max_bindings} (QSERVER_MAX_BINDINGS): split it"
        )
    if len(data) != start + 8 * sweep.bindings * len(parameters):
        raise InvalidJob(
            f"the bindings file is {len(data)} bytes; its header says shape {shape}, "
            f"{start + 8 * sweep.bindings * len(parameters)} bytes: was it cut short?"
        )
    values = np.frombuffer(data, dtype="<f8", offset=start).reshape(sweep.bindings, len(parameters))
    if not np.isfinite(values).all():
        row = int(np.argwhere(~np.isfinite(values))[0][0])
        raise InvalidJob(f"binding {row} holds a value that is not a finite number (NaN or infinity)")
    return sweep, values


def of_metadata(metadata: dict[str, Any]) -> Sweep | None:
    """The sweep of a stored job (its ``metadata.sweep``, shape set by ingest); None when the
    job is not a sweep."""
    sweep = metadata.get("sweep")
    if not isinstance(sweep, dict) or "shape" not in sweep:
        return None
    return Sweep(parameters=tuple(sweep["parameters"]), shape=tuple(sweep["shape"]))


def summary(job_id: Any, metadata: dict[str, Any], done: int) -> dict[str, Any] | None:
    """What the job and result routes show of a sweep: parameters, shape, bindings, how many
    bindings have results (``done``) and where its items are; None when the job is not a sweep."""
    sweep = of_metadata(metadata)
    if sweep is None:
        return None
    return {
        "parameters": list(sweep.parameters),
        "shape": list(sweep.shape),
        "bindings": sweep.bindings,
        "done": done,
        "items": f"/api/v1/job/{job_id}/items",
    }
