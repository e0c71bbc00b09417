"""The query of a listing (GET /api/v1/jobs and /history) and the header of its next page."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

NEXT_CURSOR = "X-Next-Cursor"  # a listing's header: the cursor of its next page


def query(
    status: str | Sequence[str] | None,
    backend: str | None,
    order: str,
    limit: int | None,
    since: datetime | str | None,
    fields: str | Sequence[str] | None,
    cursor: int,
) -> dict[str, Any]:
    """The query of GET /jobs or /history: only what differs from the server's defaults, so
    that a plain call sends only ``cursor``, as upstream's client does."""
    params: dict[str, Any] = {"cursor": cursor}
    if status:
        params["status"] = status if isinstance(status, str) else ",".join(status)
    if backend is not None:
        params["backend"] = backend
    if order != "asc":
        params["order"] = order
    if limit is not None:
        params["limit"] = limit
    if since is not None:
        params["since"] = since.isoformat() if isinstance(since, datetime) else since
    if fields is not None:
        params["fields"] = fields if isinstance(fields, str) else ",".join(fields)
    return params
