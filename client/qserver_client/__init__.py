"""qserver-client: submit OpenQASM programs or Qiskit circuits to a QServer and get their results.

    from qserver_client import Client

    with Client(url="http://qserver.lan:8080") as client:  # gRPC: qserver.lan:50051
        job = client.run(BELL, counts=True, metadata={"shots": 1000})
        print(job["status"], job["results"]["counts"])
        backend = client.backend("aer")  # a Qiskit BackendV2
        print(backend.run(transpile(circuit, backend), shots=1000).result().get_counts())

Submission goes over gRPC (``Jobs/AddJob``), the rest over REST (``/api/v1``). Errors derive
from ``QServerClientError`` (``qserver_client.errors``); ``qserver_client.wire`` builds raw
``AddJob`` streams. Needs no server package; Qiskit is imported only for ``QServerBackend``
(``qserver_client.backend``), when it is first used.
"""

from __future__ import annotations

from typing import Any

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

_QISKIT = {"QServerBackend", "QServerBackendJob"}  # in qserver_client.backend, which imports Qiskit

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
    "SubmitError",
    "TooManyRequests",
    "Unauthenticated",
    "Unavailable",
    "WaitTimeout",
]


def __getattr__(name: str) -> Any:
    """``QServerBackend`` and ``QServerBackendJob``, imported (with Qiskit) on first use."""
    if name in _QISKIT:
        from qserver_client import backend

        return getattr(backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
