"""A warm executor's child process: where each fast-path job is parsed and simulated, so that
a simulation can be stopped.

Aer does not listen to interrupts: the only way to stop a simulation is to end the process
that runs it. A warm executor (cluster/batch.py) keeps its Postgres connection, its batch
and its Ray actor, and runs each job in a child process instead; to stop a job (canceled, or
running past the fast path's time limit) it kills the child (SIGKILL: its CPU is free at
once) and goes on with the next job of the batch in a spare child, started beforehand.

Children are forked by multiprocessing's fork server, which imported Qiskit, Aer and the
built-in plugin once (``PRELOAD``), so a new child costs a fork and a tiny warm-up circuit,
never a cold start; one spare is always kept. A child dies with its executor (its parent
death signal is SIGKILL), and exits when the executor's end of its pipe closes.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import psutil

from cluster.messages import MEMORY, OVERRAN, Report, Work
from core.domain import MemoryNeed, Outcome

log = logging.getLogger(__name__)
PRELOAD = ["plugins.aer", "cluster.executor"]
_PR_SET_PDEATHSIG = 1
WATCH_S = 0.05  # how often a running child's time and memory are checked (seconds)
_WARM_UP = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'


def _serve(conn: Connection, node: str | None) -> None:
    """The child: warm up, then run each Work received and send back (Report, results)."""
    try:
        ctypes.CDLL("libc.so.6").prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the child still exits when its pipe closes
        pass
    from cluster import executor
    from plugins import aer

    aer.run(_WARM_UP, {"shots": 10, "obs": [[["ZZ", 1.0]]]}, ["counts", "quasi_dist", "expval"])
    conn.send("ready")
    while True:
        try:
            work = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(executor.execute(work, node))


@dataclass(frozen=True)
class Stop:
    """Why a run was stopped: "dropped" (no longer claimed), "overran" (past its time) or
    "memory" (``resident``: the child's resident bytes then)."""

    why: str
    resident: int = 0


class _Child:
    """One child process and the executor's end of its pipe."""

    def __init__(self, context: Any, node: str | None) -> None:
        self.conn, theirs = multiprocessing.Pipe()
        self.process = context.Process(target=_serve, args=(theirs, node), daemon=True, name="qserver-sandbox")
        self.process.start()
        theirs.close()
        self.ready = False
        self.killed = False
        self._psutil: psutil.Process | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return self.process.pid

    def wait_ready(self, timeout_s: float | None) -> bool:
        """Wait for the child's warm-up; False if it died or did not answer in ``timeout_s``."""
        if not self.ready:
            try:
                self.ready = self.conn.poll(timeout_s) and self.conn.recv() == "ready"
            except (EOFError, OSError):
                return False
        return self.ready

    def resident_bytes(self) -> int:
        """The child's resident memory (bytes); 0 once it is gone."""
        try:
            if self._psutil is None:
                self._psutil = psutil.Process(self.process.pid)
            return self._psutil.memory_info().rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess, TypeError):
            return 0

    def kill(self) -> None:
        """SIGKILL the child and reap it (its CPU is free once this returns)."""
        try:
            os.kill(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, TypeError):
            pass
        self.process.join(timeout=5)
        self.conn.close()


class Sandbox:
    """Runs works one at a time in a child process that :meth:`cancel` or a time limit can stop.

    Args:
        node: the Ray node id the reports name.
        running_after_s: how long a job simulates before ``run``'s ``on_start`` marks it
            started (settings.batch_running_after_s).

    Thread-safe for one caller of :meth:`run` and any callers of :meth:`cancel`.
    """

    def __init__(self, node: str | None, running_after_s: float = 0.0) -> None:
        self._running_after_s = running_after_s
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(PRELOAD)
        self._node = node
        self._lock = threading.Lock()
        self._current: uuid.UUID | None = None
        self._canceled: set[uuid.UUID] = set()
        self._child = _Child(self._context, node)
        self._spare = _Child(self._context, node)
        self._child.wait_ready(None)

    def pids(self) -> list[int]:
        """The process ids of the child that runs jobs and of the spare."""
        return [pid for pid in (self._child.pid, self._spare.pid) if pid is not None]

    def run(self, work: Work, on_start: Callable[[Work], bool] | None = None) -> tuple[Report, dict[str, Any] | None]:
        """Run ``work`` in the child (cluster.executor.execute), at most ``work.max_run_s`` seconds,
        with the child's resident memory at most ``work.memory_bytes``.

        Args:
            work: the job.
            on_start: called once the job has simulated ``running_after_s`` seconds without
                answering (most jobs answer sooner and are never marked): marks it started
                (claimed to running); False means the job is no longer claimed (canceled or
                deleted meanwhile): its run is stopped.

        Returns:
            (report, results) as ``executor.execute`` returns them; or, with None: CANCELED (the
            job was canceled before or while it ran: the run was stopped), DROPPED (``on_start``
            said it is no longer claimed: stopped), NEEDS_MEMORY kind OVERRAN (it ran past
            ``work.max_run_s``: stopped) or kind MEMORY (the child grew past ``work.memory_bytes``:
            stopped; ``report.memory`` asks for twice what it had reached), LOST kind "crash" (the
            child died by itself: a crash in the loader or simulator; ``report.error`` names the
            signal). After a stop or a crash the spare child takes over and a new spare is started.
        """
        started = time.perf_counter()
        with self._lock:
            if work.job_id in self._canceled:
                return Report(work.job_id, Outcome.CANCELED, 0.0, self._node), None
            self._current = work.job_id
        answer = stop = None
        child = self._ready_child()
        try:
            child.conn.send(work)
            answer, stop = self._await(child, work, on_start, started)
        except (EOFError, OSError):  # the child died: killed by cancel(), or a crash
            pass
        finally:
            with self._lock:
                self._current = None
                canceled, killed = work.job_id in self._canceled, child.killed
        if answer is not None:
            # canceled as it finished (its outcome write finds the job canceled), or grown past
            # what a job may have: the spare takes over
            if killed or (work.memory_bytes and child.resident_bytes() > work.memory_bytes):
                self._replace(child)
            return answer
        run_ms = (time.perf_counter() - started) * 1e3
        self._replace(child)
        return self._stopped(work, child, run_ms, stop, canceled)

    def _await(
        self, child: _Child, work: Work, on_start: Callable[[Work], bool] | None, started: float
    ) -> tuple[tuple[Report, dict[str, Any] | None] | None, Stop | None]:
        """Wait for the child's answer: (answer, None), or (None, why it must be stopped).

        Raises:
            EOFError, OSError: the child died.
        """
        deadline = None if work.max_run_s is None else started + work.max_run_s
        if on_start is not None:
            first = self._running_after_s if deadline is None else min(self._running_after_s, work.max_run_s)
            if child.conn.poll(first):
                return child.conn.recv(), None
            try:
                if not on_start(work):
                    return None, Stop("dropped")
            except BaseException:  # Postgres unreachable: nothing of this job may go on
                child.kill()
                raise
        while True:
            left = None if deadline is None else deadline - time.perf_counter()
            if left is not None and left <= 0:
                return None, Stop("overran")
            if child.conn.poll(WATCH_S if left is None else min(WATCH_S, left)):
                return child.conn.recv(), None
            resident = child.resident_bytes()
            if work.memory_bytes and resident > work.memory_bytes:
                return None, Stop("memory", resident)

    def _stopped(
        self, work: Work, child: _Child, run_ms: float, stop: Stop | None, canceled: bool
    ) -> tuple[Report, None]:
        """The report of a run that gave no answer (``stop`` None: the child died)."""
        job_id, node = work.job_id, self._node
        if canceled:
            log.info("job_id=%s canceled: its simulation was stopped after %.0f ms", job_id, run_ms)
            return Report(job_id, Outcome.CANCELED, run_ms, node), None
        if stop is not None and stop.why == "dropped":
            log.info("job_id=%s no longer claimed (canceled or deleted): stopped", job_id)
            return Report(job_id, Outcome.DROPPED, run_ms, node), None
        if stop is not None and stop.why == "overran":
            log.info("job_id=%s ran past %g s on the fast path: stopped", job_id, work.max_run_s)
            message = f"ran past the fast path's {work.max_run_s:g} s: stopped, to run as a task of its own"
            return Report(job_id, Outcome.NEEDS_MEMORY, run_ms, node, error=message, kind=OVERRAN), None
        if stop is not None:  # memory
            log.info(
                "job_id=%s grew to %d MiB, past %d MiB: stopped", job_id, stop.resident >> 20, work.memory_bytes >> 20
            )
            message = (
                f"grew to {stop.resident >> 20} MiB while loading or simulating, past the "
                f"{work.memory_bytes >> 20} MiB it was granted: stopped"
            )
            need = MemoryNeed(2 * stop.resident, "measured", 0)
            return Report(job_id, Outcome.NEEDS_MEMORY, run_ms, node, error=message, kind=MEMORY, memory=need), None
        code = child.process.exitcode
        signal_name = signal.Signals(-code).name if code is not None and code < 0 else f"exit code {code}"
        log.warning("job_id=%s: the process running it died (%s)", job_id, signal_name)
        error = f"the process simulating it died: {signal_name}"
        return Report(job_id, Outcome.LOST, run_ms, node, kind="crash", error=error), None

    def _ready_child(self) -> _Child:
        """The child to run the next job, warm; one that died warming up is replaced.

        Raises:
            RuntimeError: three children in a row died warming up.
        """
        for _ in range(3):
            if self._child.wait_ready(None):
                return self._child
            self._replace(self._child)
        raise RuntimeError("the executor's child processes die while warming up")

    def cancel(self, job_id: uuid.UUID) -> bool:
        """Stop job ``job_id``: kill the child if it is running it, else skip it when its turn
        comes (until :meth:`forget`). True if it was running."""
        with self._lock:
            self._canceled.add(job_id)
            if self._current != job_id:
                return False
            self._child.killed = True  # under the lock: the child still runs this job
            try:
                os.kill(self._child.pid, signal.SIGKILL)  # run() sees its pipe close, reaps, replaces it
            except ProcessLookupError:  # it died by itself meanwhile
                pass
        return True

    def forget(self) -> None:
        """Drop the canceled ids (at the end of a batch: they will not come again)."""
        with self._lock:
            self._canceled.clear()

    def _replace(self, dead: _Child) -> None:
        dead.kill()
        self._child, self._spare = self._spare, _Child(self._context, self._node)

    def close(self) -> None:
        """Kill both children."""
        self._child.kill()
        self._spare.kill()
