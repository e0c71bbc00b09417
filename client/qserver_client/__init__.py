"""qserver-client: submit OpenQASM programs to a QServer and get their results.

    from qserver_client import Client

    with Client(url="http://qserver.lan:8080") as client:  # gRPC: qserver.lan:50051
        job = client.run(BELL, counts=True, metadata={"shots": 1000})
        print(job["status"], job["results"]["counts"])

Submission goes over gRPC (``Jobs/AddJob``), the rest over REST (``/api/v1``). Errors derive
from ``QServerClientError`` (``qserver_client.errors``); ``qserver_client.wire`` builds raw
``AddJob`` streams. Needs no server package.
"""

from __future__ import annotations

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
    "QServerClientError",
    "SubmitError",
    "TooManyRequests",
    "Unauthenticated",
    "Unavailable",
    "WaitTimeout",
]
