"""What the client raises: one base class, one subclass per way a call can go wrong."""

from __future__ import annotations

from typing import Any

import grpc


class QServerClientError(Exception):
    """Base class of every error this package raises."""


class SubmitError(QServerClientError, grpc.RpcError):
    """``AddJob`` did not answer a job id: the server refused the job, or was not reached.

    A ``grpc.RpcError`` too, with its ``code()`` (a ``grpc.StatusCode``, e.g. NOT_FOUND for an
    unknown backend, INVALID_ARGUMENT for bad metadata, UNAVAILABLE when the server or its
    queue is down: worth retrying) and ``details()`` (the server's message).
    """

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"AddJob: {code.name}: {details}")
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        """The gRPC status code."""
        return self._code

    def details(self) -> str:
        """The server's message (or gRPC's, when the server was not reached)."""
        return self._details


class ApiError(QServerClientError):
    """The REST api answered something other than what was asked for.

    ``status`` is the HTTP status (401 for a missing or wrong key, 503 when the database is
    down, ...), ``detail`` the api's message.
    """

    def __init__(self, method: str, path: str, status: int, detail: str):
        super().__init__(f"{method} {path}: HTTP {status}: {detail}")
        self.status, self.detail = status, detail


class JobNotFound(ApiError):
    """HTTP 404 for a job: no such id, or (authentication on) another user's job."""


class ApiUnreachable(QServerClientError, ConnectionError):
    """The REST api could not be reached (connection refused, timed out, TLS failed)."""


class WaitTimeout(QServerClientError, TimeoutError):
    """The job did not end within the wait; ``job`` is its JSON as last seen."""

    def __init__(self, job: dict[str, Any], timeout: float):
        super().__init__(f"job {job.get('id')} still {job.get('status')} after {timeout:g} s")
        self.job = job


class JobFailed(QServerClientError):
    """The job ended without results (``failed`` or ``canceled``); ``job`` is its JSON,
    ``job["error"]`` the reason a failed job gives."""

    def __init__(self, job: dict[str, Any]):
        reason = job.get("error") or "(no reason given)"
        super().__init__(f"job {job.get('id')} {job.get('status')}: {reason}")
        self.job = job
