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
    """

    job: ClaimedJob
    memory_bytes: int
    threads: int = 1
    device: str = "CPU"

    @property
    def job_id(self) -> uuid.UUID:
        """The job's id."""
        return self.job.id


@dataclass(frozen=True)
class Report:
    """What one run of a job ended as.

    Attributes:
        job_id: the job's id.
        outcome: what it ended as (core.domain.Outcome): FINISHED and FAILED were written by
            the worker; DROPPED and NEEDS_MEMORY wrote nothing; the runner reports CANCELED,
            TIMED_OUT, LOST, ERROR and UNKNOWN.
        run_ms: the worker's time on it (milliseconds; 0 when no worker reported).
        node_id: the Ray node it ran on (None outside Ray, or when no worker reported).
        error: FAILED: the error written; LOST and ERROR: Ray's message.
        kind: LOST: "worker" or "node"; ERROR: "runtime_env", "oom" or Ray's exception type.
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
