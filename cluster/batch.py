"""Warm executors: long-lived Ray actors that run small built-in Aer jobs in batches.

A Ray task per job costs milliseconds of scheduling (driver, raylet, worker) on top of
a simulation that itself takes about one; for the many small jobs of a parameter
sweep that overhead is the whole cost. The dispatcher therefore keeps a few
executors per cluster (one per CPU, spread over the nodes), each with Qiskit and
Aer imported, a tiny circuit already run and its own Postgres connection open, and
hands each one as many small jobs at once as have queued up (``run_batch``). The
outcomes of a batch are written in one statement (``write_outcomes``) by the child process that
ran them, before they travel back.

Only jobs that are cheap by construction go this way (dispatcher/placement.py,
``runs_in_batch``); a job whose circuit turns out larger than ``budget_bytes``, or whose
estimated time is over ``Work.max_estimate_s``, is handed back untouched
(Outcome.NEEDS_MEMORY, ``kind`` says why) and runs as its own Ray task, which can be given
more memory, timed out and canceled on its own. Each job is parsed and simulated in a child
process (cluster/sandbox.py), so that :meth:`Executor.cancel` and ``Work.max_run_s`` can stop
it without stopping the executor: the jobs behind it in the batch run next, in a spare child.
The actor runs with ``max_concurrency=2`` so that a cancel reaches it during a batch.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import replace
from typing import Any

from cluster import executor
from cluster.messages import Report, Work
from cluster.sandbox import Sandbox
from cluster.workerdb import WorkerDb
from core.domain import Outcome
from core.settings import get_settings


class Executor:
    """One warm executor (a Ray actor); ``run_batch`` runs jobs one after another.

    Args:
        budget_bytes: the most memory a job of a batch may need (plugins.aer.sizing); a
            job that needs more comes back NEEDS_MEMORY, with nothing written.
    """

    def __init__(self, budget_bytes: int) -> None:
        self._budget = budget_bytes
        self._db = WorkerDb(synchronous_commit=False)
        self._node_id = executor.node_id()
        self._one_batch = threading.Lock()
        self._db.conn()
        self._sandbox = Sandbox(self._node_id, get_settings().batch_running_after_s)

    def ready(self) -> dict[str, Any]:
        """{"pid", "node_id", "children"} of this executor (answers once it is warm);
        ``children``: the pids of its child processes (cluster/sandbox.py)."""
        return {"pid": os.getpid(), "node_id": self._node_id, "children": self._sandbox.pids()}

    def cancel(self, job_id: uuid.UUID) -> bool:
        """Stop job ``job_id`` of the running batch: kill its simulation if it runs (its CPU is
        free at once; the batch goes on), else skip it when its turn comes. True if it ran."""
        return self._sandbox.cancel(job_id)

    def run_batch(self, works: list[Work]) -> list[Report]:
        """Run claimed jobs and record their outcomes in one write.

        Args:
            works: claimed jobs, as ``cluster.executor.run_job`` takes them; each runs with
                this executor's memory budget.

        Returns:
            One Report per job, in order: FINISHED or FAILED (written), DROPPED (no longer
            running: canceled or deleted meanwhile, nothing written; ``database`` names this
            executor's database), CANCELED (canceled while it ran or waited here: stopped,
            nothing written), LOST (the child process running it died by itself: nothing
            written) or NEEDS_MEMORY (nothing written: the dispatcher runs it as a task of its
            own, not counting this run as an attempt; ``kind``: over this executor's memory
            budget, estimated over ``max_estimate_s``, or stopped after ``max_run_s``).

        Raises:
            psycopg.OperationalError: Postgres stayed unreachable for the batch's write.
        """
        with self._one_batch:
            try:
                return self._run_batch(works)
            finally:
                self._sandbox.forget()

    def _run_batch(self, works: list[Work]) -> list[Report]:
        started: set[uuid.UUID] = set()

        def mark_started(work: Work) -> bool:  # the job runs past running_after_s: show it running
            if work.job_id in started:  # asked again while it runs, or run again in a new child
                return True
            started.add(work.job_id)
            return self._db.mark_started(work.job_id, self._node_id)

        def write(answers: list[tuple[Report, dict[str, Any] | None]]) -> list[Report]:
            return write_outcomes(self._db, answers, self._node_id)  # the child could not write them

        works = [
            work if work.memory_bytes == self._budget else replace(work, memory_bytes=self._budget) for work in works
        ]
        reports = self._sandbox.run_all(works, mark_started, write)
        for work, report in zip(works, reports, strict=True):
            if report.outcome is Outcome.NEEDS_MEMORY and work.job_id in started:  # not run here: claimed again
                self._db.hand_back(work.job_id)
        return [
            replace(report, database=self.database()) if report.outcome is Outcome.DROPPED else report
            for report in reports
        ]

    def database(self) -> str:
        """host:port/dbname of this executor's database."""
        return self._db.database()


def write_outcomes(
    db: WorkerDb, answers: list[tuple[Report, dict[str, Any] | None]], node_id: str | None
) -> list[Report]:
    """Write the outcomes of a batch's runs in one statement (``WorkerDb.record``): each FINISHED
    report with its results, each FAILED one with its error; other reports are not written.

    Called where the batch ran (the executor's child process, cluster/sandbox.py), so that the
    outcome is stored without a hop back to the executor first.

    Args:
        answers: (report, results) per job, as ``cluster.executor.execute`` returns them.
        node_id: the node that ran them.

    Returns:
        One Report per answer, in order: as given, except a FINISHED or FAILED job that was no
        longer running (canceled or deleted meanwhile: nothing written) is DROPPED, and a
        FINISHED one whose results Postgres refused is FAILED with Postgres' reason.

    Raises:
        psycopg.OperationalError: Postgres stayed unreachable (nothing written).
    """
    finished = [(report.job_id, results) for report, results in answers if report.outcome is Outcome.FINISHED]
    failed = [(report.job_id, report.error) for report, _ in answers if report.outcome is Outcome.FAILED]
    run_s = {report.job_id: report.run_ms / 1e3 for report, _ in answers}
    written = db.record(finished=finished, failed=failed, node_id=node_id, run_s=run_s)
    reports = []
    for report, _ in answers:
        if report.outcome in (Outcome.FINISHED, Outcome.FAILED):
            if report.job_id not in written:
                report = replace(report, outcome=Outcome.DROPPED)
            elif written[report.job_id] is not None and report.error is None:  # results refused
                report = replace(report, outcome=Outcome.FAILED, error=written[report.job_id])
        reports.append(report)
    return reports
