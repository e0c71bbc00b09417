"""qserver-client: submit OpenQASM programs or Qiskit circuits to a QServer and get their results.

    from qserver_client import Client

    with Client(url="http://qserver.lan:8080") as client:  # gRPC: qserver.lan:50051
        job = client.run(BELL, counts=True, metadata={"shots": 1000})
        print(job["status"], job["results"]["counts"])
        backend = client.backend("aer")  # a Qiskit BackendV2
        print(backend.run(transpile(circuit, backend), shots=1000).result().get_counts())

Submission goes over gRPC (``Jobs/AddJob``), the rest over REST (``/api/v1``). Errors derive
from ``QServerClientError`` (``qserver_client.errors``); ``qserver_client.wire`` builds raw
``AddJob`` streams. Needs no server package.

Qiskit runs on a QServer through ``QServerBackend`` (``client.backend(name)``, a BackendV2),
``QServerSamplerV2`` and ``QServerEstimatorV2`` (``qserver_client.primitives``; each PUB one
job, a sweep when it has parameters), and parameter sweeps of OpenQASM 3 programs with
``submit_sweep`` / ``sweep_items`` (``qserver_client.sweeps``). Those names load Qiskit when
first used, not on import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from qserver_client.client import TERMINAL, Client
from qserver_client.errors import (
    ApiError,
    ApiUnreachable,
    BackendNotFound,
    BadRequest,
    Conflict,
    Forbidden,
    JobFailed,
    JobNotFound,
    NoResults,
    NotFound,
    QServerClientError,
    SubmitError,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
    WaitTimeout,
)

if TYPE_CHECKING:
    from qserver_client.backend import QServerBackend, QServerBackendJob
    from qserver_client.primitives import QServerEstimatorV2, QServerJob, QServerSamplerV2
    from qserver_client.sweeps import export_circuit, submit_sweep, sweep_items

# name -> module: imported on first use, so `import qserver_client` does not load Qiskit
_QISKIT_NAMES = {
    "QServerBackend": "qserver_client.backend",
    "QServerBackendJob": "qserver_client.backend",
    "QServerEstimatorV2": "qserver_client.primitives",
    "QServerJob": "qserver_client.primitives",
    "QServerSamplerV2": "qserver_client.primitives",
    "export_circuit": "qserver_client.sweeps",
    "submit_sweep": "qserver_client.sweeps",
    "sweep_items": "qserver_client.sweeps",
}

__all__ = [
    "TERMINAL",
    "ApiError",
    "ApiUnreachable",
    "BackendNotFound",
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "JobFailed",
    "JobNotFound",
    "NoResults",
    "NotFound",
    "QServerBackend",
    "QServerBackendJob",
    "QServerClientError",
    "QServerEstimatorV2",
    "QServerJob",
    "QServerSamplerV2",
    "SubmitError",
    "TooManyRequests",
    "Unauthenticated",
    "Unavailable",
    "WaitTimeout",
    "export_circuit",
    "submit_sweep",
    "sweep_items",
]


def __getattr__(name: str) -> Any:
    """The Qiskit-facing names (``_QISKIT_NAMES``), imported (with Qiskit) on first use."""
    module = _QISKIT_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
