"""The tests' client: ``qserver_client.Client`` with the raw calls tests need besides.

``Stack`` submits with no result type unless asked (tests check the server's defaults), gives
each upload 30 s and each wait 120 s, keeps the server's generated ``stub`` for raw gRPC calls
and answers ``result_response()`` with the bare HTTP response. ``properties`` and ``chunks`` build raw
``AddJob`` streams.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from protos.generated import jobs_pb2, jobs_pb2_grpc
from qserver_client import Client, wire
from qserver_client.wire import chunks

__all__ = ["Stack", "chunks", "properties"]


def properties(
    *,
    counts: bool = False,
    quasi_dist: bool = False,
    expval: bool = False,
    backend: str = "aer",
    metadata: dict | str | None = None,
) -> jobs_pb2.JobData:
    """The first message of a submission (no result type unless asked)."""
    return wire.properties(backend=backend, counts=counts, quasi_dist=quasi_dist, expval=expval, metadata=metadata)


class Stack(Client):
    """Talks to a running stack through nginx (``Client``'s arguments: ``url``, ``grpc``, ...)."""

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.stub = jobs_pb2_grpc.JobsStub(self.channel)

    def add_job_stream(self, messages: Iterable[jobs_pb2.JobData], timeout: float = 30) -> str:
        """Send a raw stream of JobData; returns the job id or raises grpc.RpcError."""
        return self.submit_messages(messages, timeout=timeout)

    def submit(self, qasm: str, *, counts: bool = False, timeout: float = 30, **props: Any) -> str:
        """Submit ``qasm`` with the given properties; returns the job id."""
        return super().submit(qasm, counts=counts, timeout=timeout, **props)

    def wait(self, job_id: str, timeout: float = 120, **options: Any) -> dict:
        """Wait until the job reaches a terminal status; returns its JSON."""
        return super().wait(job_id, timeout, **options)

    def run(self, qasm: str, *, counts: bool = False, timeout: float = 120, **props: Any) -> dict:
        """Submit and wait; returns the final job JSON."""
        return self.wait(self.submit(qasm, counts=counts, **props), timeout)

    def result_response(self, job_id: str, wait_s: float = 0.0) -> httpx.Response:
        """GET /api/v1/job/result/{id} (not asserted); ``wait_s`` > 0 waits for the job to end."""
        params = {"wait_s": wait_s} if wait_s else None
        return self.http.get(f"/api/v1/job/result/{job_id}", params=params, timeout=30 + wait_s)
