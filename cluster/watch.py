"""The thread that watches a job running as a Ray task of its own: it marks the job alive every
``heartbeat_s`` (so that a job whose worker or node dies unseen is noticed by the dispatcher's
reaper), and it keeps the job within the memory Ray granted it.

Aer's ``max_memory_mb`` bounds a statevector, not what loading a program or a third-party plugin
takes, and no limit may be set on a Ray worker process itself (Ray's own threads and buffers live
in it). So the watch measures: every WATCH_S it reads the worker's resident memory, and a job that
grows it past its grant is failed with what it reached and the worker ended (SIGKILL: its memory
goes back to the node at once, and Ray starts a fresh worker for the next task). The grant covers
a worker (plugins.aer.sizing.WORKER_BYTES); a reused worker that kept memory from an earlier job
(Python and malloc rarely give it back) is measured from where this job found it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid

import psutil

from cluster.workerdb import WorkerDb
from core.settings import get_settings

log = logging.getLogger(__name__)
WATCH_S = 0.1  # how often the worker's memory is read (seconds)
MIB = 1024 * 1024


def ceiling_bytes(granted: int, found: int, worker: int) -> int:
    """The most resident memory a job granted ``granted`` bytes may bring its worker to, when it
    found the worker at ``found`` bytes and a worker alone is counted as ``worker`` bytes in the
    grant: the grant, or for a worker already past ``worker`` (memory kept from an earlier job)
    that much more."""
    return max(found, worker) + max(granted - worker, 0)


class Watch:
    """Watches one job in this worker process until :meth:`stop`.

    Args:
        job_id: the job (running: it was marked started).
        granted: the memory Ray granted the task (bytes); 0 watches no memory.
        node: the Ray node id, written with the failure.
        db: the connection the beats and a failure go over (not the task's own: used from this
            thread while the task's thread simulates).
        kill: what ends the worker when the job grows past its grant (tests pass their own).
    """

    def __init__(self, job_id: uuid.UUID, granted: int, node: str | None, db: WorkerDb, kill=None) -> None:
        self._job_id, self._granted, self._node, self._db = job_id, granted, node, db
        self._kill = kill or (lambda: os.kill(os.getpid(), signal.SIGKILL))
        self._process = psutil.Process()
        self._found = self._process.memory_info().rss  # where this job found its worker
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"watch-{job_id}", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        from plugins.aer.sizing import WORKER_BYTES

        beat_every = get_settings().heartbeat_s
        next_beat = time.monotonic() + beat_every
        ceiling = ceiling_bytes(self._granted, self._found, WORKER_BYTES)
        while not self._done.wait(WATCH_S):
            resident = self._process.memory_info().rss
            if self._granted and resident > ceiling:
                self._over(resident, ceiling)
                return
            if time.monotonic() >= next_beat:
                self._db.heartbeat(self._job_id)
                next_beat += beat_every

    def _over(self, resident: int, ceiling: int) -> None:
        """Fail the job with what it reached, then end this worker (the simulation with it)."""
        granted = self._granted // MIB
        allowed = (
            f"the {granted} MiB it was granted"
            if ceiling <= self._granted
            else f"the {ceiling // MIB} MiB its {granted} MiB grant allows a worker that held {self._found // MIB} MiB"
        )
        error = (
            f"out of memory: the job grew its worker process to {resident // MIB} MiB, past {allowed}; "
            f"it needs more than {granted} MiB (the estimate from its program and circuit fell short)"
        )
        log.warning("job_id=%s %s: ending the worker", self._job_id, error)
        try:
            self._db.record_job(self._job_id, None, error, self._node)
        finally:
            self._kill()

    def stop(self) -> None:
        """End the watch; waits up to 5 s for the thread."""
        self._done.set()
        self._thread.join(timeout=5)
