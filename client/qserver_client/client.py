"""``Client``: submit a circuit over gRPC, read, wait for, cancel and delete jobs over REST.

One ``Client`` holds one gRPC channel and one HTTP connection pool to a QServer (through nginx:
gRPC on 50051 and REST on 8080 by default, both on 443 with TLS). Proxy settings in the
environment are ignored: a QServer is reached directly.
"""

from __future__ import annotations

import functools
import json
import os
import random
import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import grpc
import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from qserver_client import wire
from qserver_client._generated import jobs_pb2
from qserver_client.address import Address, resolve
from qserver_client.errors import (
    ApiError,
    ApiUnreachable,
    BackendNotFound,
    JobFailed,
    JobNotFound,
    NoResults,
    NotFound,
    SubmitError,
    WaitTimeout,
    api_error,
)
from qserver_client.listing import NEXT_CURSOR, query

if TYPE_CHECKING:
    from qserver_client.backend import QServerBackend

TERMINAL = frozenset({"finished", "failed", "canceled"})  # a job in one of these never changes
WAIT_ROUND_S = 10.0  # longest single GET /job/result?wait_s= (the server caps it at 30 s by default)
API = "/api/v1"


def _channel(address: Address, ca_file: str | Path | None) -> grpc.Channel:
    """A gRPC channel to ``address`` (no proxy; a submission chooses its own compression), TLS
    checked against ``ca_file`` or the system's CAs when the address says TLS."""
    options = [("grpc.enable_http_proxy", 0)]
    if not address.grpc_tls:
        return grpc.insecure_channel(address.grpc_target, options=options)
    roots = Path(ca_file).read_bytes() if ca_file else None
    credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    return grpc.secure_channel(address.grpc_target, credentials, options=options)


@functools.lru_cache(maxsize=8)
def _ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """The TLS context checking the api's certificate against ``ca_file`` (None: the system's
    CAs), built once per process: loading a CA bundle costs ~50 ms of CPU, which every Client
    paid before (even one that never speaks TLS). Contexts are safe to share between threads."""
    return ssl.create_default_context(cafile=ca_file)


# A submission this large or larger goes gzip-compressed; a smaller one as it is (compressing a
# few hundred bytes costs both ends more than sending them).
COMPRESS_FROM_BYTES = 64 * 1024


def _compression(messages: Iterable[jobs_pb2.JobData]) -> grpc.Compression:
    """Gzip for a stream of COMPRESS_FROM_BYTES or more, or of unknown size (an iterator); none
    for a smaller list or tuple of messages."""
    if isinstance(messages, list | tuple) and sum(m.ByteSize() for m in messages) < COMPRESS_FROM_BYTES:
        return grpc.Compression.NoCompression
    return grpc.Compression.Gzip


def _segment(value: str) -> str:
    """``value`` as one URL path segment (a job id or backend name cannot reach another route)."""
    return quote(str(value), safe="")


class Client:
    """A QServer's jobs: submit over gRPC ``Jobs/AddJob``, the rest over REST ``/api/v1``.

    ``url``: the REST base, ``http://host:8080`` or ``https://host`` (HTTPS: TLS);
    ``grpc``: the gRPC address, ``host:port``, ``grpc://host:port`` (plain text) or
    ``grpcs://host:port`` (TLS); without a scheme it is TLS exactly when ``url`` is ``https``,
    and left out it is the url's server (with ``https`` the same port, as nginx serves both
    on 443; with ``http`` port 50051). An IPv6 address goes in brackets (``http://[::1]:8080``,
    ``[::1]:50051``). With neither, ``QSERVER_URL`` and ``QSERVER_GRPC`` give them, else the
    local stack: ``http://127.0.0.1:8080`` and ``127.0.0.1:50051``. ``api_key`` (default
    ``QSERVER_API_KEY``): sent as ``Authorization: Bearer`` when the server has authentication
    on; ``ca_file`` (default ``QSERVER_CA_FILE``): a PEM file (e.g. the ``ca.crt`` of ``qserver
    certs``) that the server's certificate is checked against, for HTTPS and gRPC over TLS;
    without it, the system's CAs. ``timeout``: seconds a REST request may take (a wait adds its
    own). Raises ValueError for an address that does not parse.

    ``url`` and ``grpc_target`` say where it talks to; ``channel`` (a ``grpc.Channel``) and
    ``http`` (an ``httpx.Client`` with the base URL and key set) are there for calls this class
    does not wrap. Close it (``close()`` or ``with Client(...) as client:``) when done.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        grpc: str | None = None,
        api_key: str | None = None,
        ca_file: str | Path | None = None,
        timeout: float = 30.0,
    ):
        address = resolve(url, grpc)
        api_key = api_key if api_key is not None else os.environ.get("QSERVER_API_KEY") or None
        ca_file = str(ca_file) if ca_file is not None else os.environ.get("QSERVER_CA_FILE") or None
        self.url, self.grpc_target = address.url, address.grpc_target
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None
        verify = _ssl_context(ca_file if address.tls else None)
        self.channel = _channel(address, ca_file)
        self.http = httpx.Client(
            base_url=address.url,
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
        again yourself, with the same messages and key). A list or tuple also goes with metadata
        ``stream-messages`` (its length): a stream cut short on the way is then answered
        UNAVAILABLE, and sent again, rather than refused as an empty or broken program.
        """
        key = uuid.uuid4().hex if idempotency_key is None else idempotency_key
        metadata = (*(self._metadata or ()), ("idempotency-key", key))
        resendable = isinstance(messages, list | tuple)
        if resendable:  # the server tells a stream cut short in transit (resent) from an empty program
            metadata = (*metadata, (wire.STREAM_MESSAGES, str(len(messages))))

        compression = _compression(messages)

        def send() -> str:
            return self._add_job(iter(messages), timeout=timeout, metadata=metadata, compression=compression).id

        try:
            try:
                return send()  # the usual case: answered at once, no retry machinery built
            except grpc.RpcError as error:
                if not resendable or error.code() not in self.RESEND_CODES:
                    raise
            time.sleep(0.25 + random.uniform(0, 0.25))  # then 0.5 s, 1 s (plus jitter) between resends
            resends = Retrying(
                stop=stop_after_attempt(self.SUBMIT_ATTEMPTS - 1),
                wait=wait_exponential(multiplier=0.5, max=2.0) + wait_random(0, 0.25),
                retry=retry_if_exception(lambda e: isinstance(e, grpc.RpcError) and e.code() in self.RESEND_CODES),
                reraise=True,
            )
            return resends(send)
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

    def _request(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, wait_s: float = 0.0
    ) -> httpx.Response:
        """One request to ``API + path``; raises ``ApiUnreachable`` when no answer came."""
        try:
            return self.http.request(method, API + path, params=params, timeout=self.timeout + wait_s)
        except httpx.TransportError as error:
            raise ApiUnreachable(f"{method} {self.url}{API}{path}: {error!r}") from error

    def _call(self, method: str, path: str, *, not_found: type[NotFound] = NotFound, **params: Any) -> Any:
        """``_request``, then the answer's JSON; raises the typed ``ApiError`` for another status
        than 200 (a 404 as ``not_found``)."""
        response = self._request(method, path, params or None)
        if response.status_code != 200:
            raise self._error(response, method, path, not_found)
        return response.json()

    @staticmethod
    def _error(response: httpx.Response, method: str, path: str, not_found: type[NotFound] = NotFound) -> ApiError:
        """The typed ``ApiError`` for an answer: its status and the api's ``detail``."""
        try:
            body = response.json()
        except ValueError:
            body = None
        detail = body["detail"] if isinstance(body, dict) and "detail" in body else response.text
        return api_error(method, API + path, response.status_code, str(detail), not_found=not_found)

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /api/v1/job/{id}``: the job's JSON (id, status, qasm, metadata, result_types,
        results, error, timings, ...). Raises ``JobNotFound`` (404: unknown id, or another
        user's job), another ``ApiError`` for another answer (``Unauthenticated``, ...),
        ``ApiUnreachable``."""
        return self._call("GET", f"/job/{_segment(job_id)}", not_found=JobNotFound)

    def _result_round(self, job_id: str, wait_s: float) -> dict[str, Any] | None:
        """One ``GET /job/result/{id}?wait_s=``: the results, or None when the job has none
        (yet or ever)."""
        path = f"/job/result/{_segment(job_id)}"
        response = self._request("GET", path, {"wait_s": round(wait_s, 3)}, wait_s)
        if response.status_code == 200:
            return response.json()
        if response.status_code == 404:
            return None  # no results (or no job: self.job() tells which)
        raise self._error(response, "GET", path)

    def result(self, job_id: str, *, wait_s: float = 0.0) -> dict[str, Any]:
        """``GET /api/v1/job/result/{id}``: the results of a finished job, ``{"counts": ...,
        "quasi_dist": ..., "expval": ...}`` (those asked for are set), or, for a job still
        pending or running, ``NoResults``. ``wait_s``: seconds the server may wait for the job
        to end first (it caps them, at 30 s by default; ``wait`` waits longer). Raises
        ``JobFailed`` (failed or canceled), ``JobNotFound``, ``NoResults``, ``ApiUnreachable``.
        """
        results = self._result_round(job_id, wait_s)
        if results is not None:
            return results
        job = self.job(job_id)
        if job["status"] == "finished":  # it finished between the two requests
            results = self._result_round(job_id, 0.0)
            if results is not None:
                return results
        elif job["status"] in TERMINAL:
            raise JobFailed(job)
        raise NoResults("GET", f"{API}/job/result/{job_id}", 404, f"job {job_id} has no results: it is {job['status']}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        """``PUT /api/v1/job/cancel/{id}``: cancel a pending or running job (a pending one never
        runs, a running one is stopped); the job's JSON after the change. Raises ``Conflict``
        (409) for a job that has already ended (cancel and completion race: the first wins),
        ``JobNotFound``, ``ApiUnreachable``."""
        return self._call("PUT", f"/job/cancel/{_segment(job_id)}", not_found=JobNotFound)

    def delete(self, job_id: str) -> None:
        """``DELETE /api/v1/job/{id}``: delete a job with its results (its history row stays).
        Raises ``Conflict`` (409) while it runs, ``JobNotFound``, ``ApiUnreachable``."""
        self._call("DELETE", f"/job/{_segment(job_id)}", not_found=JobNotFound)

    def _page(self, path: str, params: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int | None]:
        """One page of a listing: its rows and the next page's cursor (X-Next-Cursor; None on the
        last page). Raises the typed ``ApiError`` for another status than 200."""
        response = self._request("GET", path, params)
        if response.status_code != 200:
            raise self._error(response, "GET", path)
        next_cursor = response.headers.get(NEXT_CURSOR)
        return response.json(), None if next_cursor is None else int(next_cursor)

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every row of a listing from ``params["cursor"]`` on, following X-Next-Cursor."""
        while True:
            rows, next_cursor = self._page(path, params)
            yield from rows
            if next_cursor is None:
                return
            params["cursor"] = next_cursor

    def jobs(
        self,
        *,
        status: str | Sequence[str] | None = None,
        backend: str | None = None,
        order: str = "asc",
        limit: int | None = None,
        since: datetime | str | None = None,
        fields: str | Sequence[str] | None = None,
        cursor: int = 0,
    ) -> list[dict[str, Any]]:
        """``GET /api/v1/jobs``: one page of jobs (a user's key: its own), as ``job()`` gives them.

        ``status``: only these (pending, running, finished, failed, canceled; one, a comma list or
        a sequence); ``backend``: only jobs on it; ``order``: "asc" (oldest first: the jobs after
        ``cursor``) or "desc" (newest first: the jobs before ``cursor``; 0 = from the newest);
        ``limit``: rows, 1 to 1000 (None: the server's 20); ``since``: only jobs submitted at or
        after it (a datetime, or ISO 8601 text; without a time zone: UTC); ``fields``: only these
        fields of each job (``id`` and ``pointer`` always come), e.g. ``["status", "owner"]``.
        ``cursor``: a job's ``pointer``. ``iter_jobs`` follows the pages. Raises ``BadRequest``
        (a bad parameter, named), ``Unauthenticated``, ``ApiUnreachable``.
        """
        return self._page("/jobs", query(status, backend, order, limit, since, fields, cursor))[0]

    def iter_jobs(
        self,
        *,
        status: str | Sequence[str] | None = None,
        backend: str | None = None,
        order: str = "asc",
        limit: int | None = None,
        since: datetime | str | None = None,
        fields: str | Sequence[str] | None = None,
        cursor: int = 0,
    ) -> Iterator[dict[str, Any]]:
        """Every job ``jobs()`` would list from ``cursor`` on, page after page (following the
        server's X-Next-Cursor): pages are fetched as the iteration reaches them. ``limit``: rows
        a page (None: the server's 20). Raises, while iterating, what ``jobs`` raises."""
        yield from self._pages("/jobs", query(status, backend, order, limit, since, fields, cursor))

    def history(
        self,
        *,
        status: str | Sequence[str] | None = None,
        backend: str | None = None,
        order: str = "asc",
        limit: int | None = None,
        since: datetime | str | None = None,
        fields: str | Sequence[str] | None = None,
        cursor: int = 0,
    ) -> list[dict[str, Any]]:
        """``GET /api/v1/history``: one page of history rows (one per job that ended: finished,
        failed or canceled; kept after the job is deleted), filtered and ordered as ``jobs()``;
        each row's ``job_id`` names its job. Raises what ``jobs`` raises."""
        return self._page("/history", query(status, backend, order, limit, since, fields, cursor))[0]

    def iter_history(
        self,
        *,
        status: str | Sequence[str] | None = None,
        backend: str | None = None,
        order: str = "asc",
        limit: int | None = None,
        since: datetime | str | None = None,
        fields: str | Sequence[str] | None = None,
        cursor: int = 0,
    ) -> Iterator[dict[str, Any]]:
        """Every history row ``history()`` would list from ``cursor`` on, page after page, as
        ``iter_jobs`` does."""
        yield from self._pages("/history", query(status, backend, order, limit, since, fields, cursor))

    def plugins(self) -> list[dict[str, Any]]:
        """``GET /api/v1/plugins``: the admitted plugins, ``{"name", "version", "backends",
        "builtin", "enabled", "admitted_at"}`` each, the built-in aer-plugin first. Raises
        ``ApiError``, ``ApiUnreachable``."""
        return self._call("GET", "/plugins")

    def backends(self) -> list[dict[str, Any]]:
        """``GET /api/v1/backends``, every page: the enabled backends, ``{"backend_name",
        "plugin", "needs_gpu", "id", "pointer"}`` each. Raises ``ApiError``, ``ApiUnreachable``."""
        backends: list[dict[str, Any]] = []
        while page := self._call("GET", "/backends", cursor=backends[-1]["pointer"] if backends else 0):
            backends.extend(page)
        return backends

    def backend(self, name: str, *, num_qubits: int | None = None) -> QServerBackend:
        """A Qiskit ``BackendV2`` for the server's backend ``name`` (``GET /api/v1/backend/{name}``):
        ``transpile(circuit, backend)``, ``backend.run(circuits, shots=...)``; its
        ``capabilities`` say what the server runs on it (methods, max_qubits per method,
        result_types, plugin_version, needs_gpu; None where its plugin does not declare them).
        ``num_qubits``: the target's size, when the server does not say (see ``QServerBackend``).
        Imports Qiskit.
        Raises ``BackendNotFound`` (404: no such backend, or disabled), ``ApiUnreachable``."""
        from qserver_client.backend import QServerBackend

        info = self._call("GET", f"/backend/{_segment(name)}", not_found=BackendNotFound)
        return QServerBackend(self, info, num_qubits=num_qubits)

    PLUGIN_WAIT_S = 300.0  # admitting a plugin downloads its wheel (the server bounds that)

    def admit_plugin(self, name: str) -> dict[str, Any]:
        """``POST /api/v1/plugin/{name}`` (admins): admit the package ``name`` from the server's
        index and register its backends; ``{"name", "version", "backends"}`` (the built-in
        ``aer-plugin``: enabled again, version null). Raises ``Forbidden`` (a user's key),
        ``NotFound`` (not on the index), ``Conflict`` (already admitted, a backend name taken),
        another ``ApiError`` (400 bad name, 422 not a plugin, 502/504 index unreachable or slow),
        ``ApiUnreachable``."""
        path = f"/plugin/{_segment(name)}"
        response = self._request("POST", path, wait_s=self.PLUGIN_WAIT_S)
        if response.status_code not in (200, 201):
            raise self._error(response, "POST", path)
        return response.json()

    def remove_plugin(self, name: str) -> dict[str, Any]:
        """``DELETE /api/v1/plugin/{name}`` (admins): remove the plugin and its backends (the
        built-in one is disabled); ``{"name", "removed": true}``. Raises ``Forbidden``,
        ``NotFound`` (not admitted), ``Conflict`` (jobs on its backends pending or running),
        ``ApiUnreachable``."""
        return self._call("DELETE", f"/plugin/{_segment(name)}")

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

    # --- live status: server-sent events -----------------------------------------------------

    EVENTS_READ_S = 60.0  # longest silence on an event stream (the server sends a keep-alive every 15 s)

    def events(self, job_id: str) -> Iterator[dict[str, Any]]:
        """``GET /api/v1/job/{id}/events``: the job's live status, without polling. Yields
        ``{"event": "status", "id", "status", "time", "attempts", "waiting_for", "node_id",
        "start_time", "finish_time", "backend", "owner", "submission_date"}`` at once and at each
        change (times as ISO 8601 text), then ``{"event": "end", ...}`` (the same, with
        ``results``, and ``sweep`` for a sweep, when finished; ``error`` when failed or canceled),
        and ends. Closing the iterator early (``break``) closes the stream. Raises ``JobNotFound``
        (404: unknown id, or another user's job), ``TooManyRequests`` (429: you hold the most
        streams a caller may), ``Unavailable`` (503: the server's most), another ``ApiError``,
        ``ApiUnreachable`` (no answer, or the stream broke before the job's end)."""
        path = f"/job/{_segment(job_id)}/events"
        for event in self._events(path, None, JobNotFound):
            yield event
            if event["event"] == "end":
                return
        raise ApiUnreachable(f"GET {self.url}{API}{path}: the stream ended before the job did")

    def all_events(self, status: str | Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """``GET /api/v1/events``: every change of your jobs (an admin's key, or a server without
        authentication: everyone's) as ``{"event": "status", ...}``, the fields ``events`` gives,
        without results; a job shows up at its first change after the stream opened. ``status``:
        only changes to these statuses (a name, a comma list or a sequence of names). It never
        ends on its own: close the iterator (``break``, ``.close()``) to close the stream.
        Raises ``BadRequest`` (400: an unknown status), what ``events`` raises, and
        ``ApiUnreachable`` when the stream breaks."""
        params = None if status is None else {"status": status if isinstance(status, str) else ",".join(status)}
        yield from self._events("/events", params, NotFound)
        raise ApiUnreachable(f"GET {self.url}{API}/events: the stream ended")

    def _events(
        self, path: str, params: Mapping[str, Any] | None, not_found: type[NotFound]
    ) -> Iterator[dict[str, Any]]:
        """The events of the stream at ``API + path``, until the server ends it."""
        timeout = httpx.Timeout(self.timeout, read=max(self.timeout, self.EVENTS_READ_S))
        try:
            with self.http.stream(
                "GET", API + path, params=params, timeout=timeout, headers={"Accept": "text/event-stream"}
            ) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._error(response, "GET", path, not_found)
                yield from sse_events(response.iter_lines())
        except httpx.TransportError as error:
            raise ApiUnreachable(f"GET {self.url}{API}{path}: {error!r}") from error


def sse_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Server-sent events (https://html.spec.whatwg.org/multipage/server-sent-events.html) read
    from a stream's ``lines``: ``{"event": its name ("message" when unnamed), **its data}`` per
    event, its data one JSON object (joined over its ``data:`` lines); comments (keep-alives),
    ``id:`` and ``retry:`` lines are skipped. Raises ``ValueError`` for data that is not JSON."""
    name, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield {"event": name, **json.loads("\n".join(data))}
            name, data = "message", []
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
