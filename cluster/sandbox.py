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


def _serve(conn: Connection, node: str | None, progress: Any) -> None:
    """The child: warm up, then run each list of Works received, write their outcomes itself
    (cluster.batch.write_outcomes, over a connection of its own) and send back
    ``("written", [Report per work])``; or, when Postgres could not be written,
    ``("unwritten", [(Report, results) per work])`` for the executor to write. ``progress``
    holds [the index of the work being run (-1 between lists and while writing), when it
    started (time.monotonic)] for the executor to watch."""
    try:
        ctypes.CDLL("libc.so.6").prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the child still exits when its pipe closes
        pass
    from cluster import executor
    from cluster.batch import write_outcomes
    from cluster.workerdb import WorkerDb
    from plugins import aer

    aer.run(_WARM_UP, {"shots": 10, "obs": [[["ZZ", 1.0]]]}, ["counts", "quasi_dist", "expval"])
    db = WorkerDb(synchronous_commit=False)
    try:
        db.conn()  # opened while warming up, not at the first batch's write
    except Exception:  # noqa: BLE001 - Postgres down now: the first write tries again
        pass
    conn.send("ready")
    while True:
        try:
            works = conn.recv()
        except (EOFError, OSError):
            return
        answers = []
        for i, work in enumerate(works):
            progress[1] = time.monotonic()  # the time first: an index read is never older
            progress[0] = i
            answers.append(executor.execute(work, node))
        progress[0] = -1
        try:
            conn.send(("written", write_outcomes(db, answers, node)))
        except Exception as error:  # noqa: BLE001 - Postgres unreachable: the executor writes them
            log.warning("the child could not write %d outcomes (%s): the executor writes them", len(works), error)
            conn.send(("unwritten", answers))


@dataclass(frozen=True)
class Stop:
    """Why a run was stopped: "canceled", "dropped" (no longer claimed), "overran" (past its
    time) or "memory" (``resident``: the child's resident bytes then)."""

    why: str  # "canceled", "dropped", "overran" or "memory"
    resident: int = 0


class _Child:
    """One child process and the executor's end of its pipe."""

    def __init__(self, context: Any, node: str | None) -> None:
        self.conn, theirs = multiprocessing.Pipe()
        self.progress = context.RawArray("d", [-1.0, 0.0])  # shared: see _serve
        self.process = context.Process(
            target=_serve, args=(theirs, node, self.progress), daemon=True, name="qserver-sandbox"
        )
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

    def current(self) -> tuple[int, float]:
        """(the index of the work the child runs, -1 between lists; when it started, monotonic s)."""
        return int(self.progress[0]), self.progress[1]

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
    """Runs works one after another in a child process that :meth:`cancel`, a time limit or a
    memory limit can stop.

    Args:
        node: the Ray node id the reports name.
        running_after_s: how long a job simulates before ``run_all``'s ``on_start`` marks it
            started (settings.batch_running_after_s).

    Thread-safe for one caller of :meth:`run_all` and any callers of :meth:`cancel`.
    """

    def __init__(self, node: str | None, running_after_s: float = 0.0) -> None:
        self._running_after_s = running_after_s
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(PRELOAD)
        self._node = node
        self._lock = threading.Lock()
        self._running: list[Work] | None = None  # the works the child runs now
        self._canceled: set[uuid.UUID] = set()
        self._child = _Child(self._context, node)
        self._spare = _Child(self._context, node)
        self._child.wait_ready(None)

    def pids(self) -> list[int]:
        """The process ids of the child that runs jobs and of the spare."""
        return [pid for pid in (self._child.pid, self._spare.pid) if pid is not None]

    def run_all(
        self,
        works: list[Work],
        on_start: Callable[[Work], bool] | None = None,
        write: Callable[[list[tuple[Report, dict[str, Any] | None]]], list[Report]] | None = None,
    ) -> list[Report]:
        """Run ``works`` one after another in the child (cluster.executor.execute), each at most
        ``work.max_run_s`` seconds with the child's resident memory at most ``work.memory_bytes``,
        and have their outcomes written (cluster.batch.write_outcomes) by the child.

        The works go to the child in one message and come back in one; meanwhile the executor
        wakes every WATCH_S to look at which job runs (shared memory), for how long and in how
        much memory, and stops it if it must. A job that is stopped or crashes ends its child;
        the spare runs the others again (those the child had finished, whose answers died with
        it, too) and a new spare is started.

        Args:
            works: the jobs, in order.
            on_start: called (again and again: it must be idempotent) once a job has simulated
                ``running_after_s`` seconds (most jobs end sooner and are never marked): marks it
                started (claimed to running); False means the job is no longer claimed
                (canceled or deleted meanwhile): its run is stopped.
            write: writes (report, result) pairs the child could not write (Postgres was
                unreachable from it) and returns their reports, as write_outcomes does; None:
                they are returned unwritten, FINISHED and FAILED as they were.

        Returns:
            One report per work, in order: as ``executor.execute`` reports it and written
            (FINISHED, FAILED; DROPPED: no longer running, nothing written); or CANCELED (the
            job was canceled before or while it ran: the run was stopped), DROPPED (``on_start``
            said it is no longer claimed: stopped), NEEDS_MEMORY kind OVERRAN (it ran past
            ``work.max_run_s``: stopped) or kind MEMORY (the child grew past
            ``work.memory_bytes``: stopped; ``report.memory`` asks for twice what it had
            reached), LOST kind "crash" (the child died by itself: a crash in the loader or
            simulator; ``report.error`` names the signal).
        """
        answers: dict[uuid.UUID, Report] = {}
        todo = list(works)
        while todo:
            todo = self._run_some(todo, on_start, write, answers)
        return [answers[work.job_id] for work in works]

    def _run_some(
        self,
        works: list[Work],
        on_start: Callable[[Work], bool] | None,
        write: Callable[[list[tuple[Report, dict[str, Any] | None]]], list[Report]] | None,
        answers: dict[uuid.UUID, Report],
    ) -> list[Work]:
        """Run ``works`` in the ready child, putting each answer in ``answers``; the works to run
        again when the child ended before it answered (none when it answered)."""
        with self._lock:
            canceled = set(self._canceled)
        for work in works:  # canceled while they waited here: never sent
            if work.job_id in canceled:
                answers[work.job_id] = Report(work.job_id, Outcome.CANCELED, 0.0, self._node)
        works = [work for work in works if work.job_id not in canceled]
        if not works:
            return []
        child, stop, at = self._ready_child(), None, (-1, time.monotonic())
        with self._lock:
            self._running = works
        try:
            child.conn.send(works)
            while not child.conn.poll(WATCH_S):
                at = child.current()
                if 0 <= at[0] < len(works):
                    stop = self._check(child, works[at[0]], time.monotonic() - at[1], on_start)
                    if stop is not None:
                        break
            else:
                kind, done = child.conn.recv()
                if kind == "unwritten":
                    done = write(done) if write is not None else [report for report, _ in done]
                answers.update(zip((work.job_id for work in works), done, strict=True))
                # grown past a job's budget: the spare goes on. Read only after a batch that the
                # watch saw (WATCH_S or longer): loading and simulating grow a child by ~85 MiB/s
                # at most (measured), so a shorter one cannot have grown it by more than ~4 MiB
                # unseen, and the next longer batch sees what they add up to.
                limit = works[-1].memory_bytes
                grown = limit and at[0] >= 0 and child.resident_bytes() > limit
                if child.killed or grown:
                    self._replace(child)
                return []
        except (EOFError, OSError):  # the child died: killed by cancel(), or a crash
            at = child.current()  # which work it died in (the shared memory outlives it)
        finally:
            with self._lock:
                self._running = None
                canceled, killed = set(self._canceled), child.killed
        self._replace(child)
        i, since = at
        if not 0 <= i < len(works):  # it died outside any work (taking or answering the batch):
            for work in works:  # each one is reported crashed, never sent round again (no loop)
                answers[work.job_id] = self._stopped(work, child, 0.0, None, work.job_id in canceled)
            return []
        work = works[i]
        if work.job_id not in canceled and stop is None and killed:  # killed for another's cancel
            return works
        run_ms = (time.monotonic() - since) * 1e3
        answers[work.job_id] = self._stopped(work, child, run_ms, stop, work.job_id in canceled)
        return works[:i] + works[i + 1 :]  # those it had finished lost their answers with it

    def _check(self, child: _Child, work: Work, elapsed: float, on_start: Callable[[Work], bool] | None) -> Stop | None:
        """Why the child must stop running ``work`` after ``elapsed`` seconds, or None."""
        with self._lock:
            if work.job_id in self._canceled:
                return Stop("canceled")
        if on_start is not None and elapsed >= self._running_after_s and not on_start(work):
            return Stop("dropped")
        if work.max_run_s is not None and elapsed > work.max_run_s:
            return Stop("overran")
        resident = child.resident_bytes()
        if work.memory_bytes and resident > work.memory_bytes:
            return Stop("memory", resident)
        return None

    def _stopped(self, work: Work, child: _Child, run_ms: float, stop: Stop | None, canceled: bool) -> Report:
        """The report of a run that gave no answer (``stop`` None: the child died)."""
        job_id, node = work.job_id, self._node
        if canceled:
            log.info("job_id=%s canceled: its simulation was stopped after %.0f ms", job_id, run_ms)
            return Report(job_id, Outcome.CANCELED, run_ms, node)
        if stop is not None and stop.why == "dropped":
            log.info("job_id=%s no longer claimed (canceled or deleted): stopped", job_id)
            return Report(job_id, Outcome.DROPPED, run_ms, node)
        if stop is not None and stop.why == "overran":
            log.info("job_id=%s ran past %g s on the fast path: stopped", job_id, work.max_run_s)
            message = f"ran past the fast path's {work.max_run_s:g} s: stopped, to run as a task of its own"
            return Report(job_id, Outcome.NEEDS_MEMORY, run_ms, node, error=message, kind=OVERRAN)
        if stop is not None:  # memory
            log.info(
                "job_id=%s grew to %d MiB, past %d MiB: stopped", job_id, stop.resident >> 20, work.memory_bytes >> 20
            )
            message = (
                f"grew to {stop.resident >> 20} MiB while loading or simulating, past the "
                f"{work.memory_bytes >> 20} MiB it was granted: stopped"
            )
            need = MemoryNeed(2 * stop.resident, "measured", 0)
            return Report(job_id, Outcome.NEEDS_MEMORY, run_ms, node, error=message, kind=MEMORY, memory=need)
        code = child.process.exitcode
        signal_name = signal.Signals(-code).name if code is not None and code < 0 else f"exit code {code}"
        log.warning("job_id=%s: the process running it died (%s)", job_id, signal_name)
        error = f"the process simulating it died: {signal_name}"
        return Report(job_id, Outcome.LOST, run_ms, node, kind="crash", error=error)

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
        """Stop job ``job_id``: kill the child if it is running it, else skip or stop it when its
        turn comes (until :meth:`forget`). True if it was running."""
        with self._lock:
            self._canceled.add(job_id)
            i, _ = self._child.current()
            running = self._running
            if running is None or not 0 <= i < len(running) or running[i].job_id != job_id:
                return False
            self._child.killed = True  # under the lock: the child still runs this batch
            try:
                os.kill(self._child.pid, signal.SIGKILL)  # run_all() sees its pipe close, reaps, replaces it
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
