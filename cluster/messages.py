"""The messages across the Ray boundary: what the dispatcher hands a worker (:class:`Work`) and
what comes back (:class:`Report`). Frozen dataclasses, pickled by Ray; the job id stays a
``uuid.UUID`` on both sides."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from core.domain import MemoryNeed, Outcome
from core.store import ClaimedJob


@dataclass(frozen=True)
class Work:
    """One claimed job and what the dispatcher decided for its run.

    Attributes:
        job: the job as claimed (program, metadata, result types, plugin, attempts).
        memory_bytes: the memory Ray granted the run (bytes); a circuit that needs more
            comes back NEEDS_MEMORY with nothing written.
        threads: the CPUs Ray granted it: Aer's thread count for a large circuit.
        device: Aer's device, "CPU" or "GPU" (settings.aer_gpu_device for a GPU backend).
        max_estimate_s: the fast path's budget (seconds): a built-in Aer job whose estimated
            time (plugins.aer.sizing.cost) exceeds it comes back NEEDS_MEMORY, kind "estimate",
            unsimulated. None (a task of its own): no bound.
        max_run_s: the fast path's time limit (seconds): a run past it is stopped and comes
            back NEEDS_MEMORY, kind "overran" (cluster/sandbox.py). None: no limit here.
    """

    job: ClaimedJob
    memory_bytes: int
    threads: int = 1
    device: str = "CPU"
    max_estimate_s: float | None = None
    max_run_s: float | None = None

    @property
    def job_id(self) -> uuid.UUID:
        """The job's id."""
        return self.job.id


# Why a job was handed back (Report.kind of NEEDS_MEMORY): it needs more memory than granted;
# its estimated time is over the fast path's budget (never simulated); it ran past the fast
# path's time limit and was stopped (that run is not counted as an attempt).
MEMORY, ESTIMATE, OVERRAN = "memory", "estimate", "overran"


@dataclass(frozen=True)
class Report:
    """What one run of a job ended as.

    Attributes:
        job_id: the job's id.
        outcome: what it ended as (core.domain.Outcome): FINISHED and FAILED were written by
            the worker; DROPPED and NEEDS_MEMORY wrote nothing; the runner reports CANCELED,
            TIMED_OUT, LOST, ERROR and UNKNOWN; a warm executor CANCELED (its run stopped) and
            LOST (the process running it died). NEEDS_MEMORY means: hand the job back, it
            needs a worker of its own; ``kind`` says why (MEMORY, ESTIMATE, OVERRAN).
        run_ms: the worker's time on it (milliseconds; 0 when no worker reported).
        node_id: the Ray node it ran on (None outside Ray, or when no worker reported).
        error: FAILED: the error written; LOST and ERROR: Ray's message.
        kind: LOST: "crash" (the process simulating the job died, its node alive: a warm
            executor's child, or a task's worker), "worker" (a warm executor or the runner died)
            or "node"; ERROR: "runtime_env", "oom" or Ray's exception type;
            NEEDS_MEMORY: MEMORY, ESTIMATE or OVERRAN.
        memory: NEEDS_MEMORY: what the circuit needs.
        database: DROPPED: host:port/dbname of the worker's database (to tell a node that
            writes to another database apart).
    """

    job_id: uuid.UUID
    outcome: Outcome
    run_ms: float = 0.0
    node_id: str | None = None
    error: str | None = None
    kind: str | None = None
    memory: MemoryNeed | None = None
    database: str | None = None
