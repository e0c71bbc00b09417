"""A worker's Postgres connection: one per use in a worker process (the task path, a warm
executor, the heartbeat thread), opened on first use, reopened after it broke, and the writes
the worker makes over it (start: claimed to running, hand-back, heartbeat, outcomes)."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from core import store
from core.settings import get_settings

# A write whose connection broke (Postgres restarted) is retried on a new one: safe, since
# every outcome write is guarded on the job running. The failed try drops its connection.
retry_db_write = retry(
    retry=retry_if_exception_type(psycopg.OperationalError),
    stop=stop_after_attempt(3),
    wait=wait_exponential(multiplier=0.2, max=2),
    reraise=True,
)


def _unstorable(error: psycopg.DataError) -> str:
    return f"the results could not be stored: {str(error).strip()}"


class WorkerDb:
    """One Postgres connection of a worker (settings.database_dsn, read on the node).

    Args:
        synchronous_commit: False for a warm executor: its commits do not wait for the WAL
            flush (about 0.2 ms a batch here). Should Postgres crash within the moment after,
            the jobs are still running in the database and the dispatcher's reaper runs them
            again; results are recomputable. Submissions and claims keep waiting for the flush.
    """

    def __init__(self, *, synchronous_commit: bool = True) -> None:
        self._conn: psycopg.Connection | None = None
        self._synchronous_commit = synchronous_commit

    def conn(self) -> psycopg.Connection:
        """The open connection, (re)opened if there is none or it broke.

        Raises:
            psycopg.OperationalError: Postgres is not reachable.
        """
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = store.connect_sync(get_settings().database_dsn)
            if not self._synchronous_commit:
                self._conn.execute("SET synchronous_commit = off")
        return self._conn

    def close(self) -> None:
        """Close the connection, if one is open; the next use opens a new one."""
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def drop(self) -> None:
        """Forget the connection (it broke); the next use opens a new one."""
        self._conn = None

    def database(self) -> str:
        """host:port/dbname of this worker's database (to tell a misconfigured node apart)."""
        info = self.conn().info
        return f"{info.host}:{info.port}/{info.dbname}"

    @retry_db_write
    def mark_started(self, job_id: uuid.UUID, node_id: str | None) -> bool:
        """The job's simulation starts on ``node_id``: the guarded claimed-to-running step
        (store.mark_started_sync), with ``start_time`` and the first heartbeat. Call it right
        before simulating; a broken connection is reopened and the write retried, up to 3 times.

        Returns:
            True: run it. False: the job is no longer claimed (canceled or deleted meanwhile):
            drop it without simulating (report it DROPPED).

        Raises:
            psycopg.OperationalError: Postgres stayed unreachable (do not run the job).
        """
        try:
            return store.mark_started_sync(self.conn(), job_id=job_id, node_id=node_id)
        except psycopg.OperationalError:
            self.drop()
            raise

    @retry_db_write
    def hand_back(self, job_id: uuid.UUID) -> bool:
        """The job was started here but not simulated (it needs more memory than granted, or it
        goes to another worker): running back to claimed, for the dispatcher to place again.
        False if it was no longer running (canceled meanwhile)."""
        try:
            return store.hand_back_sync(self.conn(), job_id=job_id)
        except psycopg.OperationalError:
            self.drop()
            raise

    @retry_db_write
    def bindings(self, job_id: uuid.UUID) -> bytes | None:
        """The sweep's bindings as sent (an NPY file, core/sweeps.py), or None."""
        try:
            return store.job_bindings_sync(self.conn(), job_id=job_id)
        except psycopg.OperationalError:
            self.drop()
            raise

    @retry_db_write
    def clear_items(self, job_id: uuid.UUID) -> None:
        """Remove what an earlier attempt of the sweep stored (store.clear_items_sync)."""
        try:
            store.clear_items_sync(self.conn(), job_id=job_id)
        except psycopg.OperationalError:
            self.drop()
            raise

    @retry_db_write
    def save_items(self, job_id: uuid.UUID, first: int, items: list[dict[str, Any]], node_id: str | None) -> bool:
        """Store a chunk of a running sweep's results (store.save_items_sync); False when the
        job no longer runs (stop the sweep)."""
        try:
            return store.save_items_sync(self.conn(), job_id=job_id, first=first, items=items, node_id=node_id)
        except psycopg.OperationalError:
            self.drop()
            raise

    def heartbeat(self, job_id: uuid.UUID) -> None:
        """The job is still running here. Any database error drops the connection (the next
        beat tries again)."""
        try:
            store.heartbeat_sync(self.conn(), job_id=job_id)
        except psycopg.Error:
            self.drop()

    @retry_db_write
    def record_job(
        self, job_id: uuid.UUID, results: dict[str, Any] | None, error: str | None, node_id: str | None
    ) -> tuple[bool, str | None]:
        """Write one job's outcome, if it is still running: its results (``error`` None) or
        ``error``. Results Postgres refuses make the job fail with Postgres' reason. A broken
        connection is reopened and the write retried, up to 3 times.

        Returns:
            (written, the error written: None when it finished); (False, ``error``) when the
            job was no longer running and nothing was written.

        Raises:
            psycopg.OperationalError: Postgres stayed unreachable.
        """
        try:
            written = self._record_one_by_one(
                [(job_id, results or {})] if error is None else [],
                [] if error is None else [(job_id, error)],
                node_id,
            )
        except psycopg.OperationalError:
            self.drop()
            raise
        return (True, written[job_id]) if job_id in written else (False, error)

    @retry_db_write
    def record(
        self,
        *,
        finished: list[tuple[uuid.UUID, dict[str, Any]]],
        failed: list[tuple[uuid.UUID, str]],
        node_id: str | None,
        run_s: dict[uuid.UUID, float] | None = None,
    ) -> dict[uuid.UUID, str | None]:
        """Write many jobs' outcomes in one statement (store.record_outcomes_sync), each only
        if the job is still running (or claimed: a warm executor's job never marked started).
        When Postgres refuses a result, the jobs are written one at a time instead, and the job
        whose results were refused fails with Postgres' reason.
        A broken connection is reopened and the write retried, up to 3 times.

        Args:
            finished: (job id, {result type: JSON-ready value}) per job that finished.
            failed: (job id, error text) per job that failed.
            node_id: the node that ran them.
            run_s: {job id: seconds it ran}: sets the ``start_time`` of a job still claimed.

        Returns:
            {job id: None (written finished) or the error written (failed)} for the jobs
            written; a job missing from it was no longer running, and nothing of it was written.

        Raises:
            psycopg.OperationalError: Postgres stayed unreachable.
        """
        if not finished and not failed:
            return {}
        try:
            try:
                written = store.record_outcomes_sync(
                    self.conn(), finished=finished, failed=failed, node_id=node_id, run_s=run_s
                )
            except psycopg.DataError:
                return self._record_one_by_one(finished, failed, node_id, run_s)
        except psycopg.OperationalError:
            self.drop()
            raise
        errors = dict(failed)
        return {job_id: errors.get(job_id) for job_id in written}

    def _record_one_by_one(
        self,
        finished: list[tuple[uuid.UUID, dict[str, Any]]],
        failed: list[tuple[uuid.UUID, str]],
        node_id: str | None,
        run_s: dict[uuid.UUID, float] | None = None,
    ) -> dict[uuid.UUID, str | None]:
        conn, written, failed = self.conn(), {}, list(failed)

        def ran(job_id: uuid.UUID) -> float | None:  # None: the task path, only a started job is written
            return None if run_s is None else run_s.get(job_id, 0.0)

        for job_id, results in finished:
            try:
                if store.finish_job_sync(conn, job_id=job_id, results=results, node_id=node_id, run_s=ran(job_id)):
                    written[job_id] = None
            except psycopg.DataError as exc:
                failed.append((job_id, _unstorable(exc)))
        for job_id, error in failed:
            if store.fail_job_sync(conn, job_id=job_id, error=error, node_id=node_id, run_s=ran(job_id)):
                written[job_id] = error
        return written
