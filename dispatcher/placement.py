"""Placement: a pure function from a claimed job to the Ray options of its task."""

from __future__ import annotations

from typing import Any

from core.store import ClaimedJob


def task_options(job: ClaimedJob) -> dict[str, Any]:
    """Ray ``.options(...)`` for the task that runs ``job``.

    One CPU per job. Ray's own retries are off (``max_retries=0``): a job is retried
    only by QServer, deliberately, never behind its back.
    """
    return {
        "num_cpus": 1,
        "max_retries": 0,
        "retry_exceptions": False,
        "name": f"job-{job.id}",
    }
