"""Test client: submits over gRPC with our generated stubs and reads over REST, both through nginx."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import grpc
import httpx

from protos.generated import jobs_pb2, jobs_pb2_grpc

CHUNK = 16 * 1024
TERMINAL = {"finished", "failed", "canceled"}


def properties(
    *, counts: bool = False, quasi_dist: bool = False, expval: bool = False,
    backend: str = "aer", metadata: dict | str | None = None,
) -> jobs_pb2.JobData:
    """The first message of a submission."""
    text = metadata if isinstance(metadata, str) else json.dumps(metadata or {})
    return jobs_pb2.JobData(
        properties=jobs_pb2.JobProperties(
            resultTypeCounts=counts, resultTypeQuasiDist=quasi_dist, resultTypeExpVal=expval,
            targetSimulator=backend, metadata=text,
        )
    )


def chunks(qasm: str) -> Iterator[jobs_pb2.JobData]:
    """The program in 16 KiB chunks, as the upstream client sends it."""
    for start in range(0, len(qasm), CHUNK):
        yield jobs_pb2.JobData(qasmChunk=qasm[start : start + CHUNK])


class Stack:
    """Talks to a running stack through nginx: gRPC on ``grpc_port``, REST on ``http_port``."""

    def __init__(self, host: str, grpc_port: int, http_port: int):
        self.channel = grpc.insecure_channel(f"{host}:{grpc_port}", compression=grpc.Compression.Gzip)
        self.stub = jobs_pb2_grpc.JobsStub(self.channel)
        self.http = httpx.Client(base_url=f"http://{host}:{http_port}", timeout=30)

    def add_job_stream(self, messages: Iterable[jobs_pb2.JobData], timeout: float = 30) -> str:
        """Send a raw stream of JobData; returns the job id or raises grpc.RpcError."""
        return self.stub.AddJob(iter(messages), timeout=timeout).id

    def submit(self, qasm: str, **props: Any) -> str:
        """Submit ``qasm`` with the given properties; returns the job id."""
        return self.add_job_stream([properties(**props), *chunks(qasm)])

    def job(self, job_id: str) -> dict:
        """GET /api/v1/job/{id}, asserting 200."""
        response = self.http.get(f"/api/v1/job/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, job_id: str, timeout: float = 120) -> dict:
        """Poll the job until it reaches a terminal status; returns its JSON."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")
            time.sleep(0.05)

    def run(self, qasm: str, **props: Any) -> dict:
        """Submit and wait; returns the final job JSON."""
        return self.wait(self.submit(qasm, **props))

    def result(self, job_id: str, wait_s: float = 0.0) -> httpx.Response:
        """GET /api/v1/job/result/{id} (not asserted); ``wait_s`` > 0 waits for the job to end."""
        params = {"wait_s": wait_s} if wait_s else None
        return self.http.get(f"/api/v1/job/result/{job_id}", params=params)
