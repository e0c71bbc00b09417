"""Warm executors: long-lived Ray actors that run small built-in Aer jobs in batches.

A Ray task per job costs milliseconds of scheduling (driver, raylet, worker) on top of
a simulation that itself takes about one; for the many small jobs of a parameter
sweep that overhead is the whole cost. The dispatcher therefore keeps a few
executors per cluster (one per CPU, spread over the nodes), each with Qiskit and
Aer imported, a tiny circuit already run and its own Postgres connection open, and
hands each one as many small jobs at once as have queued up (``run_batch``). The
outcomes of a batch are written in one statement (``store.record_outcomes_sync``).

Only jobs that are cheap by construction go this way (dispatcher/placement.py,
``runs_in_batch``); a job whose circuit turns out larger than ``budget_bytes`` is
handed back untouched (status "slow") and runs as its own Ray task, which can be
given more memory, timed out and canceled on its own.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any

import psycopg

from cluster import executor
from core import store
from core.settings import get_settings

log = logging.getLogger(__name__)


class Executor:
    """One warm executor (a Ray actor); ``run_batch`` runs jobs one after another.

    Args:
        budget_bytes: the most memory a job of a batch may need (plugins.aer.sizing); a
            job that needs more is returned with status "slow" and nothing written.
    """

    def __init__(self, budget_bytes: int) -> None:
        self._budget = budget_bytes
        self._conn: psycopg.Connection | None = None
        self._node_id = executor._node_id()
        executor.warm_up(0.0)

    def ready(self) -> dict[str, Any]:
        """{"pid", "node_id"} of this executor (answers once it is warm)."""
        return {"pid": os.getpid(), "node_id": self._node_id}

    def run_batch(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run claimed jobs and record their outcomes in one write.

        Args:
            jobs: claimed jobs as dicts, as ``cluster.executor.run_job`` takes them.

        Returns:
            One outcome per job, in order: {"job_id", "status", "run_ms", "node_id"} with status
            "finished" or "failed" (written), "dropped" (no longer running: canceled or deleted
            meanwhile, nothing written) or "slow" (it needs more than this executor's memory
            budget; nothing written, the dispatcher runs it as a task of its own).
        """
        finished: list[tuple[uuid.UUID, dict[str, Any]]] = []
        failed: list[tuple[uuid.UUID, str]] = []
        outcomes: list[dict[str, Any]] = []
        for job in jobs:
            job_id = uuid.UUID(job["id"])
            started = time.perf_counter()
            status = "finished"
            try:
                results = executor.compute({**job, "memory_bytes": self._budget})
                executor.check_storable(results)
                finished.append((job_id, results))
            except executor.MoreMemory:
                status = "slow"
            except Exception as exc:  # noqa: BLE001 - every failure becomes a failed job
                failed.append((job_id, executor.error_message(exc)))
                status = "failed"
            outcomes.append({
                "job_id": job["id"], "status": status, "node_id": self._node_id,
                "run_ms": (time.perf_counter() - started) * 1e3,
            })
        written = self._record(finished, failed)
        for outcome in outcomes:
            if outcome["status"] in ("finished", "failed") and uuid.UUID(outcome["job_id"]) not in written:
                outcome["status"] = "dropped"
                outcome["database"] = self.database()
        return outcomes

    def database(self) -> str:
        """host:port/dbname of this executor's database."""
        info = self._db().info
        return f"{info.host}:{info.port}/{info.dbname}"

    def _db(self) -> psycopg.Connection:
        """This executor's connection, reopened if it broke. Its commits do not wait for the
        WAL flush (synchronous_commit off, about 0.2 ms a batch here): should Postgres crash
        within the moment after, the jobs are still running in the database, and the
        dispatcher's reaper runs them again. Results are recomputable; submissions (ingest)
        and claims (dispatcher) keep waiting for the flush."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = store.connect_sync(get_settings().database_dsn)
            self._conn.execute("SET synchronous_commit = off")
        return self._conn

    @executor.retry_db_write
    def _record(
        self, finished: list[tuple[uuid.UUID, dict[str, Any]]], failed: list[tuple[uuid.UUID, str]]
    ) -> set[uuid.UUID]:
        """Write the batch's outcomes; the ids written. A broken connection is reopened and
        the write retried (safe: every write is guarded on status = 'running'). Results
        Postgres refuses fail their own job, not the batch."""
        if not finished and not failed:
            return set()
        try:
            try:
                return store.record_outcomes_sync(self._db(), finished=finished, failed=failed, node_id=self._node_id)
            except psycopg.DataError:
                return self._record_one_by_one(finished, failed)
        except psycopg.OperationalError:
            self._conn = None
            raise

    def _record_one_by_one(
        self, finished: list[tuple[uuid.UUID, dict[str, Any]]], failed: list[tuple[uuid.UUID, str]]
    ) -> set[uuid.UUID]:
        conn, written = self._db(), set()
        for job_id, results in finished:
            try:
                if store.finish_job_sync(conn, job_id=job_id, results=results, node_id=self._node_id):
                    written.add(job_id)
            except psycopg.DataError as exc:
                failed.append((job_id, f"the results could not be stored: {str(exc).strip()}"))
        for job_id, error in failed:
            if store.fail_job_sync(conn, job_id=job_id, error=error, node_id=self._node_id):
                written.add(job_id)
        return written
