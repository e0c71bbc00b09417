"""The one place errors become HTTP answers: ``{"detail": message}`` with a status code."""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from core.errors import (
    BackendDisabled,
    BackendNotFound,
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InvalidJob,
    JobNotFound,
    NotAPlugin,
    PluginNotFound,
    QServerError,
    SchemaOutOfDate,
    TooManyPending,
    Unauthenticated,
)

log = logging.getLogger(__name__)


class NoResults(JobNotFound):
    """The job exists but has no results (not yet, or never): HTTP 404."""


class InvalidName(QServerError):
    """A plugin name that is not a bare package name: HTTP 400."""


class IndexUnavailable(QServerError):
    """The package index could not be reached or pip failed: HTTP 502."""


class DownloadTimedOut(IndexUnavailable):
    """A plugin's download ran past its time limit and was killed: HTTP 504."""


# First match wins; anything else derived from QServerError is the caller's fault (400).
_STATUS: tuple[tuple[type[QServerError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (TooManyPending, 429),
    (InvalidJob, 400),
    (JobNotFound, 404),
    (BackendNotFound, 404),
    (BackendDisabled, 404),  # hidden from /backends, so unknown to REST clients
    (PluginNotFound, 404),
    (Conflict, 409),
    (IdempotencyConflict, 409),
    (NotAPlugin, 422),
    (DownloadTimedOut, 504),  # before its base class
    (IndexUnavailable, 502),
    (SchemaOutOfDate, 503),
)


def status_for(error: QServerError) -> int:
    """The HTTP status code for a QServer error."""
    for cls, code in _STATUS:
        if isinstance(error, cls):
            return code
    return 400


def _answer(code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    if code == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(status_code=code, content={"detail": message}, headers=headers)


async def _qserver_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QServerError)
    retry_after = getattr(exc, "retry_after_s", None)
    code = getattr(exc, "status", None) or status_for(exc)
    log.info("%s %s -> %d: %s", request.method, request.url.path, code, exc)
    return _answer(code, str(exc), {"Retry-After": str(retry_after)} if retry_after else None)


def _describe(error: dict) -> str:
    loc = [str(part) for part in error.get("loc", ()) if part not in ("path", "query", "body")]
    where = ".".join(loc) or "request"
    message = f"{where}: {error.get('msg', 'invalid value')}"
    if "input" in error and isinstance(error["input"], (str, int, float)):
        message += f" (got {error['input']!r})"
    return message


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message = "; ".join(_describe(e) for e in exc.errors()) or "malformed request"
    log.info("%s %s -> 400: %s", request.method, request.url.path, message)
    return _answer(400, message)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s -> 503: database unavailable: %s", request.method, request.url.path, exc)
    return _answer(503, "the database is unavailable, try again later")


async def _bad_value(request: Request, exc: Exception) -> JSONResponse:
    log.info("%s %s -> 400: %s", request.method, request.url.path, exc)
    return _answer(400, f"the request holds a value the database cannot take: {str(exc).strip()[:200]}")


def install(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""
    app.add_exception_handler(QServerError, _qserver_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    # e.g. a NUL character in a path parameter: the client's input, not our fault
    app.add_exception_handler(psycopg.DataError, _bad_value)
