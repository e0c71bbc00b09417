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

    ``status`` is the HTTP status, ``detail`` the api's message (its ``{"detail": ...}``). The
    subclasses name the statuses a caller may want to tell apart; any other is an ``ApiError``.
    """

    def __init__(self, method: str, path: str, status: int, detail: str):
        super().__init__(f"{method} {path}: HTTP {status}: {detail}")
        self.status, self.detail = status, detail


class BadRequest(ApiError):
    """HTTP 400: a malformed id, cursor or parameter."""


class Unauthenticated(ApiError):
    """HTTP 401: authentication is on and the key is missing, wrong or revoked."""


class Forbidden(ApiError):
    """HTTP 403: the key is a user's and the call is for admins."""


class NotFound(ApiError):
    """HTTP 404: no such job or backend (``JobNotFound``, ``BackendNotFound``), or no results."""


class JobNotFound(NotFound):
    """HTTP 404 for a job: no such id, or (authentication on) another user's job."""


class BackendNotFound(NotFound):
    """HTTP 404 for a backend: no such name, or its plugin was removed or disabled."""


class NoResults(NotFound):
    """HTTP 404 for the results of a job that exists but is still pending or running."""


class Conflict(ApiError):
    """HTTP 409: the job's status does not allow it (cancel an ended job, delete a running one)."""


class TooManyRequests(ApiError):
    """HTTP 429: too many pending jobs or large reads at once; try again later."""


class Unavailable(ApiError):
    """HTTP 502, 503 or 504: the api is up but the database or nginx's upstream is not."""


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


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    429: TooManyRequests,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def api_error(method: str, path: str, status: int, detail: str, *, not_found: type[NotFound] = NotFound) -> ApiError:
    """The error for an HTTP answer ``status`` with the api's ``detail``; a 404 is ``not_found``
    (the route knows what was missing)."""
    kind = not_found if status == 404 else _BY_STATUS.get(status, ApiError)
    return kind(method, path, status, detail)
