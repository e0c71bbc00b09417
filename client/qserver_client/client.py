"""``Client``: submit a circuit over gRPC, read and wait for the job over REST.

One ``Client`` holds one gRPC channel and one HTTP connection pool to a QServer (through nginx:
gRPC on 50051 and REST on 8080 by default, both on 443 with TLS). Proxy settings in the
environment are ignored: a QServer is reached directly.
"""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from qserver_client import wire
from qserver_client._generated import jobs_pb2
from qserver_client.errors import (
    ApiError,
    ApiUnreachable,
    JobFailed,
    JobNotFound,
    SubmitError,
    WaitTimeout,
)

TERMINAL = frozenset({"finished", "failed", "canceled"})  # a job in one of these never changes
WAIT_ROUND_S = 10.0  # longest single GET /job/result?wait_s= (the server caps it at 30 s by default)


def host_port(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Client:
    """A QServer's jobs: submit over gRPC ``Jobs/AddJob``, read over REST ``/api/v1/job/...``.

    ``host``: name or address of the QServer (its nginx); ``grpc_port`` / ``http_port``: its
    gRPC and REST ports (with TLS usually both 443); ``api_key``: sent as ``Authorization:
    Bearer`` on both when the server has authentication on; ``tls``: HTTPS and a secure gRPC
    channel, checking the server's certificate against ``ca_file`` (a PEM file, e.g. the
    ``ca.crt`` of ``qserver certs``) or, without it, the system's CAs; ``timeout``: seconds a
    REST request may take (a wait adds its own). ``channel`` (a ``grpc.Channel``) and ``http``
    (an ``httpx.Client`` with the base URL and key set) are there for calls this class does
    not wrap. Close it (``close()`` or ``with Client(...) as client:``) when done.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        grpc_port: int = 50051,
        http_port: int = 8080,
        *,
        api_key: str | None = None,
        tls: bool = False,
        ca_file: str | Path | None = None,
        timeout: float = 30.0,
    ):
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None
        target = host_port(host, grpc_port)
        options = [("grpc.enable_http_proxy", 0)]
        if tls:
            roots = Path(ca_file).read_bytes() if ca_file else None
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
            self.channel = grpc.secure_channel(target, credentials, options=options, compression=grpc.Compression.Gzip)
            verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file)
        else:
            self.channel = grpc.insecure_channel(target, options=options, compression=grpc.Compression.Gzip)
            verify = True
        self.http = httpx.Client(
            base_url=f"{'https' if tls else 'http'}://{host_port(host, http_port)}",
            headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
            timeout=timeout,
            verify=verify,
            trust_env=False,
        )
        self._add_job = wire.add_job(self.channel)
        self._health = wire.health_check(self.channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections and the gRPC channel."""
        self.http.close()
        self.channel.close()

    # --- gRPC --------------------------------------------------------------------------------

    def submit(
        self,
        qasm: str,
        *,
        backend: str = "aer",
        counts: bool = True,
        quasi_dist: bool = False,
        expval: bool = False,
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        timeout: float = 300.0,
        idempotency_key: str | None = None,
    ) -> str:
        """Submit an OpenQASM 2 or 3 program; returns the job id (a UUID as text).

        ``counts``, ``quasi_dist``, ``expval``: the results wanted (``expval`` needs ``obs`` in
        the metadata: one list of ``[pauli, coefficient]`` pairs per PUB); ``metadata``: shots,
        seed, obs, method, timeout_s, ...; ``tags``: node tags the job must run on (stored as
        metadata ``tags``); ``timeout``: seconds for the upload (each attempt);
        ``idempotency_key``: 1 to 200 printable ASCII characters naming this submission (default:
        a new random one). A submission whose answer was lost is sent again under its key, as
        ``submit_messages`` says: the server stores one job whatever the number of attempts.
        Raises ``SubmitError`` when the server refuses the job or cannot be reached (its
        ``code()`` says which; ALREADY_EXISTS: the key was used before for another request).
        """
        meta = dict(metadata or {})
        if tags is not None:
            meta["tags"] = list(tags)
        first = wire.properties(backend=backend, counts=counts, quasi_dist=quasi_dist, expval=expval, metadata=meta)
        return self.submit_messages([first, *wire.chunks(qasm)], timeout=timeout, idempotency_key=idempotency_key)

    SUBMIT_ATTEMPTS = 4  # sends of one submission at most, under one idempotency key
    RESEND_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})  # answer lost

    def submit_messages(
        self, messages: Iterable[jobs_pb2.JobData], *, timeout: float = 300.0, idempotency_key: str | None = None
    ) -> str:
        """Send a ready ``AddJob`` stream (``wire.properties``, then ``wire.chunks``); returns the
        job id. Raises ``SubmitError`` as ``submit`` does.

        The stream goes with gRPC metadata ``idempotency-key`` (``idempotency_key``, else a new
        random key). A list or tuple of messages is sent again, with the same key, when the
        answer did not come (UNAVAILABLE, DEADLINE_EXCEEDED: the server may have stored the job
        or not), up to ``SUBMIT_ATTEMPTS`` times with a growing pause (0.25 s, 0.5 s, 1 s, plus
        jitter); the server answers a repeat with the job it stored, which runs once. Refusals are
        never sent again. Any other iterable is streamed as it is read, and sent once (send it
        again yourself, with the same messages and key).
        """
        key = uuid.uuid4().hex if idempotency_key is None else idempotency_key
        metadata = (*(self._metadata or ()), ("idempotency-key", key))
        attempts = Retrying(
            stop=stop_after_attempt(self.SUBMIT_ATTEMPTS if isinstance(messages, list | tuple) else 1),
            wait=wait_exponential(multiplier=0.25, max=2.0) + wait_random(0, 0.25),
            retry=retry_if_exception(lambda e: isinstance(e, grpc.RpcError) and e.code() in self.RESEND_CODES),
            reraise=True,
        )
        try:
            return attempts(lambda: self._add_job(iter(messages), timeout=timeout, metadata=metadata).id)
        except grpc.RpcError as error:
            raise SubmitError(error.code(), error.details() or "") from error

    def health(self, timeout: float = 10.0) -> str:
        """gRPC ``Jobs/HealthCheck``: "OK" from a serving ingest. Raises ``SubmitError`` (with
        the gRPC code, e.g. UNAVAILABLE) when it does not answer."""
        try:
            return self._health(jobs_pb2.HealthCheckInput(), timeout=timeout).status
        except grpc.RpcError as error:
            raise SubmitError(error.code(), error.details() or "") from error

    # --- REST --------------------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, Any] | None = None, wait_s: float = 0.0) -> httpx.Response:
        try:
            return self.http.get(path, params=params, timeout=self.timeout + wait_s)
        except httpx.TransportError as error:
            raise ApiUnreachable(f"GET {self.http.base_url}{path}: {error!r}") from error

    @staticmethod
    def _error(response: httpx.Response, path: str) -> ApiError:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        kind = JobNotFound if response.status_code == 404 else ApiError
        return kind("GET", path, response.status_code, str(detail))

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /api/v1/job/{id}``: the job's JSON (id, status, qasm, metadata, result_types,
        results, error, timings, ...). Raises ``JobNotFound`` (404: unknown id, or another
        user's job), ``ApiError`` for another answer, ``ApiUnreachable``."""
        path = f"/api/v1/job/{job_id}"
        response = self._get(path)
        if response.status_code != 200:
            raise self._error(response, path)
        return response.json()

    def _result_round(self, job_id: str, wait_s: float) -> dict[str, Any] | None:
        """One ``GET /job/result/{id}?wait_s=``: the results, or None when the job has none
        (yet or ever)."""
        path = f"/api/v1/job/result/{job_id}"
        response = self._get(path, {"wait_s": round(wait_s, 3)}, wait_s)
        if response.status_code == 200:
            return response.json()
        if response.status_code == 404:
            return None  # no results (or no job: self.job() tells which)
        raise self._error(response, path)

    def _wait(self, job_id: str, timeout: float, on_status: Callable[[str], None] | None) -> tuple[dict, dict | None]:
        """Wait until the job is terminal: (its JSON, or a stub {id, status} when results came,
        the results or None)."""
        deadline = time.monotonic() + timeout
        nap = 0.05
        while True:
            started = time.monotonic()
            remaining = max(0.0, deadline - started)
            results = self._result_round(job_id, min(remaining, WAIT_ROUND_S))
            if results is not None:
                return {"id": job_id, "status": "finished"}, results
            job = self.job(job_id)
            if on_status is not None:
                on_status(job["status"])
            if job["status"] in TERMINAL and job["status"] != "finished":
                return job, None
            if time.monotonic() >= deadline:
                raise WaitTimeout(job, timeout)
            if time.monotonic() - started < nap:  # a server that does not wait: poll gently
                time.sleep(nap)
                nap = min(nap * 2, 1.0)

    def wait(
        self, job_id: str, timeout: float = 600.0, *, on_status: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        """Wait until the job is finished, failed or canceled; returns its JSON (as ``job()``).

        Waits on the server (``GET /api/v1/job/result/{id}?wait_s=``, at most ``WAIT_ROUND_S``
        a round): the answer comes as soon as the job ends, with no polling. ``timeout``:
        seconds; ``on_status`` is called with the status after each round that did not end
        the wait. Raises ``WaitTimeout`` (``.job``: the job as last seen), ``JobNotFound``,
        ``ApiError``, ``ApiUnreachable``.
        """
        job, results = self._wait(job_id, timeout, on_status)
        return self.job(job_id) if results is not None else job

    def wait_result(self, job_id: str, timeout: float = 600.0) -> dict[str, Any]:
        """Wait for the job's results; returns ``{"counts": {bitstring: shots} | None,
        "quasi_dist": {outcome: probability} | None, "expval": [float, ...] | None}`` (those
        asked for are set). One request when the job ends within a round. Raises ``JobFailed``
        (failed or canceled; ``.job["error"]`` says why), and what ``wait`` raises.
        """
        job, results = self._wait(job_id, timeout, None)
        if results is None:
            raise JobFailed(job)
        return results

    def run(
        self,
        qasm: str,
        *,
        backend: str = "aer",
        counts: bool = True,
        quasi_dist: bool = False,
        expval: bool = False,
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        timeout: float = 600.0,
    ) -> dict[str, Any]:
        """``submit`` then ``wait``: the job's JSON once it has ended (check ``["status"]``:
        a failed job is returned, not raised). ``timeout`` bounds the wait; raises what
        ``submit`` and ``wait`` raise."""
        job_id = self.submit(
            qasm,
            backend=backend,
            counts=counts,
            quasi_dist=quasi_dist,
            expval=expval,
            metadata=metadata,
            tags=tags,
        )
        return self.wait(job_id, timeout)
