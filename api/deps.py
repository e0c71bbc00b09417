"""Request dependencies, named as types: a pooled connection and a parsed job id."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from core.domain import parse_job_id


async def get_conn(request: Request) -> AsyncIterator[AsyncConnection]:
    """Check a connection out of the app's pool for the length of the route function."""
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn:
        yield conn


def job_id(id: Annotated[str, Path(description="the job's id, a UUID")]) -> uuid.UUID:
    """The ``{id}`` path parameter as a UUID.

    Raises:
        InvalidJob: it is not a UUID (HTTP 400), before any database work.
    """
    return parse_job_id(id)


ConnDep = Annotated[AsyncConnection, Depends(get_conn, scope="function")]
"""A pooled connection (autocommit, dict rows), returned to the pool when the route returns."""

JobIdDep = Annotated[uuid.UUID, Depends(job_id)]
"""A well-formed job id. Declare it before ConnDep: dependencies resolve in order, so a
malformed id is refused before a connection is checked out."""
