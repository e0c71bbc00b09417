"""Processes on this machine (through psutil): alive, argv, sessions, pid files, stop, log tails."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """True for a running (not zombie) process."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except (psutil.Error, ValueError):
        return False


def cmdline(pid: int) -> list[str]:
    """The process's argv, or [] when it is gone (or not ours to read)."""
    try:
        return psutil.Process(pid).cmdline()
    except (psutil.Error, ValueError):
        return []


def all_pids() -> list[int]:
    """Every process id on this machine."""
    return psutil.pids()


def pids_in_session(sid: int) -> list[int]:
    """The live processes of session ``sid`` (a process started with start_new_session)."""
    found = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid and pid_alive(pid):
                found.append(pid)
        except OSError:
            continue
    return found


def read_pid(path: Path) -> int | None:
    """The pid stored in ``path`` if that process still runs, else None."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def terminate(pids: Iterable[int], *, timeout: float = 15.0) -> None:
    """SIGTERM the processes, then SIGKILL whatever still runs after ``timeout`` seconds.

    A zombie counts as stopped (its parent reaps it; a child of ours is reaped here)."""
    processes = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            process.terminate()
        except (psutil.Error, ValueError):
            continue
        processes.append(process)
    deadline = time.monotonic() + timeout
    while processes:
        psutil.wait_procs(processes, timeout=0.2)  # reaps our own children
        processes = [process for process in processes if pid_alive(process.pid)]
        if time.monotonic() >= deadline:
            break
    for process in processes:
        log.warning("pid %s ignored SIGTERM for %.0f s: SIGKILL", process.pid, timeout)
        try:
            process.kill()
        except psutil.Error:
            pass


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' when there is none)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
