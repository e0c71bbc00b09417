"""qserver-client: submit OpenQASM programs to a QServer and wait for their results.

    from qserver_client import Client

    with Client("qserver.lan", grpc_port=50051, http_port=8080) as client:
        job = client.run(BELL, counts=True, metadata={"shots": 1000})
        print(job["status"], job["results"]["counts"])

Submission goes over gRPC (``Jobs/AddJob``), reading and waiting over REST
(``/api/v1/job/...``). Errors derive from ``QServerClientError`` (``qserver_client.errors``);
``qserver_client.wire`` builds raw ``AddJob`` streams. Needs no server package.

Qiskit's primitives run on a QServer with ``QServerSamplerV2`` and ``QServerEstimatorV2``
(``qserver_client.primitives``; each PUB one job, a sweep when it has parameters), and
parameter sweeps of OpenQASM 3 programs with ``submit_sweep`` / ``sweep_items``
(``qserver_client.sweeps``). Those names load Qiskit when first used, not on import.
"""

import importlib
from typing import TYPE_CHECKING, Any

from qserver_client.client import TERMINAL, Client
from qserver_client.errors import (
    ApiError,
    ApiUnreachable,
    JobFailed,
    JobNotFound,
    QServerClientError,
    SubmitError,
    WaitTimeout,
)

if TYPE_CHECKING:
    from qserver_client.primitives import QServerEstimatorV2, QServerJob, QServerSamplerV2
    from qserver_client.sweeps import export_circuit, submit_sweep, sweep_items

# name -> module: imported on first use, so `import qserver_client` does not load Qiskit
_QISKIT_NAMES = {
    "QServerEstimatorV2": "qserver_client.primitives",
    "QServerJob": "qserver_client.primitives",
    "QServerSamplerV2": "qserver_client.primitives",
    "export_circuit": "qserver_client.sweeps",
    "submit_sweep": "qserver_client.sweeps",
    "sweep_items": "qserver_client.sweeps",
}


def __getattr__(name: str) -> Any:
    module = _QISKIT_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "TERMINAL",
    "ApiError",
    "ApiUnreachable",
    "Client",
    "JobFailed",
    "JobNotFound",
    "QServerClientError",
    "QServerEstimatorV2",
    "QServerJob",
    "QServerSamplerV2",
    "SubmitError",
    "WaitTimeout",
    "export_circuit",
    "submit_sweep",
    "sweep_items",
]
