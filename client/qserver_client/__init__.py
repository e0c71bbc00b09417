"""qserver-client: submit OpenQASM programs to a QServer and wait for their results.

    from qserver_client import Client

    with Client("qserver.lan", grpc_port=50051, http_port=8080) as client:
        job = client.run(BELL, counts=True, metadata={"shots": 1000})
        print(job["status"], job["results"]["counts"])

Submission goes over gRPC (``Jobs/AddJob``), reading and waiting over REST
(``/api/v1/job/...``). Errors derive from ``QServerClientError`` (``qserver_client.errors``);
``qserver_client.wire`` builds raw ``AddJob`` streams. Needs no server package.
"""

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

__all__ = [
    "TERMINAL",
    "ApiError",
    "ApiUnreachable",
    "Client",
    "JobFailed",
    "JobNotFound",
    "QServerClientError",
    "SubmitError",
    "WaitTimeout",
]
