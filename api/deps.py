"""Request dependencies, named as types: the caller, a pooled connection or the pool, settings, parsed ids."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.distribution import check_plugin_name
from api.large_reads import LargeReads
from api.ui import session
from api.waiters import JobFeed
from core.auth import ANONYMOUS, Caller, KeyVerifier, key_from_headers
from core.domain import parse_job_id
from core.settings import Settings


async def get_conn(request: Request) -> AsyncIterator[AsyncConnection]:
    """Check a connection out of the app's pool for the length of the route function."""
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn:
        yield conn


async def job_id(id: Annotated[str, Path(description="the job's id, a UUID")]) -> uuid.UUID:
    """The ``{id}`` path parameter as a UUID.

    Raises:
        InvalidJob: it is not a UUID (HTTP 400), before any database work.
    """
    return parse_job_id(id)


async def plugin_name(
    name: Annotated[str, Path(description="a package name: letters, digits, '-' and '_'", examples=["fake-plugin"])],
) -> str:
    """The ``{name}`` path parameter as a canonical package name.

    Raises:
        InvalidName: not a bare package name (HTTP 400), before any database work.
    """
    return check_plugin_name(name)


_BEARER = HTTPBearer(auto_error=False, description="`Authorization: Bearer qsk_...` (when authentication is on)")
_API_KEY = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="`X-API-Key: qsk_...` (when authentication is on)"
)


async def get_caller(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    api_key: Annotated[str | None, Depends(_API_KEY)],
) -> Caller:
    """Who sends the request: from its API key, else from the web page's session cookie (a
    change with the cookie needs the session's ``X-CSRF-Token``: api/ui/session.py), or
    ANONYMOUS (sees everything) with auth off.

    Raises:
        Unauthenticated: authentication is on and the key is missing, wrong or revoked, or the
            session cookie invalid, expired or its key revoked (HTTP 401), before any other work.
        Forbidden: a change made with the session cookie without its CSRF token (HTTP 403).
    """
    verifier: KeyVerifier | None = request.app.state.keys
    if verifier is None:
        return ANONYMOUS
    if bearer is not None:
        key = bearer.credentials
    else:  # HTTPBearer ignores another scheme (Basic ...): say so rather than "missing"
        key = key_from_headers(request.headers.get("authorization"), api_key)
    if key is None and session.COOKIE in request.cookies:
        caller, _ = await session.session_caller(request, sent_csrf=request.headers.get(session.CSRF_HEADER))
        return caller
    return await verifier.verify(request.app.state.pool, key)


async def get_admin(request: Request, caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    """The caller, if an admin.

    Raises:
        Forbidden: a user's key (HTTP 403).
    """
    caller.require_admin(f"{request.method} {request.url.path}")
    return caller


async def get_pool(request: Request) -> AsyncConnectionPool:
    """The app's connection pool, for routes that must not hold a connection while they wait."""
    return request.app.state.pool


async def get_waiters(request: Request) -> JobFeed:
    """The app's waiters on jobs' ends and watches of their changes (api/waiters.py)."""
    return request.app.state.waiters


async def get_large_reads(request: Request) -> LargeReads:
    """The app's admission of large result reads (api/large_reads.py)."""
    return request.app.state.large_reads


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


CallerDep = Annotated[Caller, Depends(get_caller)]
"""The caller (401 without a valid key when authentication is on). Declare it first: a request
without a key is refused before anything else. ``caller.owner_filter`` scopes the store calls."""

AdminDep = Annotated[Caller, Depends(get_admin)]
"""An admin caller: 401 without a valid key, 403 for a user's key."""

ConnDep = Annotated[AsyncConnection, Depends(get_conn, scope="function")]
"""A pooled connection (autocommit, dict rows), returned to the pool when the route returns."""

JobIdDep = Annotated[uuid.UUID, Depends(job_id)]
"""A well-formed job id. Declare it before ConnDep: dependencies resolve in order, so a
malformed id is refused before a connection is checked out."""

PoolDep = Annotated[AsyncConnectionPool, Depends(get_pool)]
"""The pool itself: check a connection out only around database work."""

WaitersDep = Annotated[JobFeed, Depends(get_waiters)]
"""Waits for a job to end, or watches jobs' changes, on the app's one LISTEN connection."""

LargeReadsDep = Annotated[LargeReads, Depends(get_large_reads)]
"""Admission of reads of large results: hold it around such a read only."""
SettingsDep = Annotated[Settings, Depends(get_settings)]
"""The settings the app was created with."""

PluginNameDep = Annotated[str, Depends(plugin_name)]
"""A valid plugin name, PEP 503-normalized (``Fake_Plugin`` -> ``fake-plugin``)."""
