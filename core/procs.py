"""Processes on this machine, read from /proc: alive, argv, sessions, pid files, stop, log tails."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """True for a running (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    """The process's argv, or [] when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _session_id(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[3])  # state ppid pgrp session ...
    except (OSError, IndexError, ValueError):
        return None


def all_pids() -> list[int]:
    """Every process id on this machine."""
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def pids_in_session(sid: int) -> list[int]:
    """The live processes of session ``sid`` (a process started with start_new_session)."""
    return [pid for pid in all_pids() if _session_id(pid) == sid and pid_alive(pid)]


def read_pid(path: Path) -> int | None:
    """The pid stored in ``path`` if that process still runs, else None."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def terminate(pids: Iterable[int], *, timeout: float = 15.0) -> None:
    """SIGTERM the processes, then SIGKILL whatever still runs after ``timeout`` seconds."""
    pending = [pid for pid in pids if pid_alive(pid)]
    for pid in pending:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        time.sleep(0.2)
        pending = [pid for pid in pending if pid_alive(pid)]
    for pid in pending:
        log.warning("pid %s ignored SIGTERM for %.0f s: SIGKILL", pid, timeout)
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
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
