"""Large results: their JSON is passed through as Postgres stores it, and their reads are admitted
so that one user's big reads never make another user's requests fail or wait.

A job's results up to ``settings.api_inline_result_bytes`` (stored size) come with the job in the
route's one statement and need no admission. Larger ones are read on their own, each read holding
a pooled connection only for its query, and only while admitted: at most
``settings.api_large_reads_per_caller`` at once per caller (more: 429) and
``settings.api_large_reads`` at once in this api process (a read waits up to
``settings.api_large_read_wait_s`` for a slot, then 503). Both answers carry ``Retry-After``.
Nothing else in the api waits on this admission.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import Request
from psycopg_pool import AsyncConnectionPool

from api.models import Job, row_model
from core import store
from core.auth import Caller
from core.errors import QServerError
from core.store.reads import RESULT_TYPES


class LargeReadRefused(QServerError):
    """A large result's read was not admitted: HTTP ``status`` (429 or 503) with Retry-After."""

    def __init__(self, message: str, *, status: int, retry_after_s: int = 1):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class LargeReads:
    """Admission of reads of large results in one api process (see the module's docstring)."""

    def __init__(self, *, at_once: int, per_caller: int, wait_s: float):
        self._slots = asyncio.Semaphore(at_once)
        self._per_caller = per_caller
        self._wait_s = wait_s
        self._by_caller: collections.Counter[str] = collections.Counter()

    @contextlib.asynccontextmanager
    async def admit(self, who: str, size_bytes: int) -> AsyncIterator[None]:
        """Hold a slot for one large read by ``who`` (a caller's name or address).

        Raises:
            LargeReadRefused: 429 when ``who`` already has its share of large reads running,
                503 when no slot frees within the wait.
        """
        if self._by_caller[who] >= self._per_caller:
            raise LargeReadRefused(
                f"a result of {size_bytes} stored bytes: you already have {self._by_caller[who]} large "
                "read(s) running; read one at a time (QSERVER_API_LARGE_READS_PER_CALLER)",
                status=429,
            )
        self._by_caller[who] += 1
        try:
            try:
                async with asyncio.timeout(self._wait_s):
                    await self._slots.acquire()
            except TimeoutError:
                raise LargeReadRefused(
                    f"a result of {size_bytes} stored bytes: the server is busy reading other large "
                    "results (QSERVER_API_LARGE_READS); try again",
                    status=503,
                ) from None
            try:
                yield
            finally:
                self._slots.release()
        finally:
            self._by_caller[who] -= 1
            if not self._by_caller[who]:
                del self._by_caller[who]


def caller_key(request: Request, caller: Caller) -> str:
    """Whose read this is: the API key's user, else the client's address as nginx saw it."""
    if caller.name:
        return f"user:{caller.name}"
    address = request.headers.get("x-real-ip") or (request.client.host if request.client else "?")
    return f"address:{address}"


async def large_results(
    request: Request, caller: Caller, pool: AsyncConnectionPool, large_reads: LargeReads, jobs: list[dict[str, Any]]
) -> dict[uuid.UUID, dict[str, Any]]:
    """The results of those ``jobs`` (rows of store.get_job_raw or a listing) that were too large
    to come with them, read under the admission of large reads: {job id: raw results row}. A
    lean row without results needs none. Raises LargeReadRefused (429/503)."""
    large = [job for job in jobs if not job.get("results_inline", True)]
    if not large:
        return {}
    size = sum(job["results_bytes"] for job in large)
    async with large_reads.admit(caller_key(request, caller), size):
        async with pool.connection() as conn:
            return await store.raw_results(conn, job_ids=[job["id"] for job in large])


def results_json(raw: Mapping[str, str | None] | None) -> str:
    """{counts, quasi_dist, expval} as JSON, each value the JSON text Postgres holds (or null)."""
    raw = raw or {}
    return "{" + ",".join(f'"{name}":{raw.get(name) or "null"}' for name in RESULT_TYPES) + "}"


RAW_FIELDS = ("results", "receipt")  # Job fields passed through as the JSON text Postgres holds
# The other fields of Job, in its order: what job_body checks and writes with pydantic.
_JOB_HEAD = row_model(Job, tuple(name for name in Job.model_fields if name not in RAW_FIELDS))


def job_body(job: Mapping[str, Any], raw: Mapping[str, str | None] | None) -> str:
    """The Job JSON of ``job`` (from store.get_job_raw or list_jobs_page) with ``raw`` results.

    Every field but ``results`` and ``receipt`` (raw JSON text) is checked and written by the
    Job model, as FastAPI would.
    """
    text = _JOB_HEAD.model_validate(job).model_dump_json()
    return f'{text[:-1]},"results":{results_json(raw)},"receipt":{job.get("receipt") or "null"}}}'


def result_body(raw: Mapping[str, Any], sweep: Mapping[str, Any] | None = None) -> str:
    """The JobResult JSON: {id, job_id, counts, quasi_dist, expval} from a raw results row,
    and a sweep's summary (``sweep``, core.sweeps.summary) when it is one."""
    ids = f'"id":{json.dumps(str(raw["id"]))},"job_id":{json.dumps(str(raw["job_id"]))}'
    body = "{" + ids + "," + results_json(raw)[1:]
    return body if sweep is None else f'{body[:-1]},"sweep":{json.dumps(sweep)}}}'
