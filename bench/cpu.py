"""Where the CPU time goes: CPU seconds per part of the stack over a measured stretch.

    with cpu_profile() as profile:
        ...  # the work
    print(profile.table())

Groups processes by what they are (ingest, api, dispatcher, Ray executors, Ray's own
daemons, nginx, Postgres, RabbitMQ, this benchmark's clients) from their command
lines, using psutil. A process that starts or ends inside the stretch counts from its
first or to its last reading.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil

# (group, substrings of the command line, first match wins)
GROUPS = (
    ("bench clients", ("bench.perf",)),
    ("ingest", ("-m ingest", "ingest/__main__")),
    ("api", ("-m api", "api/__main__", "uvicorn")),
    ("dispatcher", ("-m dispatcher", "dispatcher/__main__")),
    ("ray executors", ("ray::Executor", "ray::run_job", "ray::IDLE", "ray::warm_up", "ray::job-")),
    ("ray runner", ("ray::Runner",)),
    ("ray daemons", ("raylet", "gcs_server", "ray/dashboard", "log_monitor", "monitor.py", "runtime_env")),
    ("nginx", ("nginx",)),
    ("postgres", ("postgres",)),
    ("rabbitmq", ("beam.smp", "rabbitmq", "epmd", "erl_child_setup")),
)


def group_of(process: psutil.Process) -> str | None:
    """The group of ``process`` (see GROUPS), or None for the rest of the machine.

    A process no needle matches counts with its nearest matching ancestor (up to three
    generations): the fork server of a warm executor and the children that simulate its jobs
    (cluster/sandbox.py) are the executor's CPU.
    """
    if process.pid == os.getpid():
        return "bench clients"
    try:
        lineage = [process, *process.parents()[:3]]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    for member in lineage:
        try:
            line = " ".join(member.cmdline()) or member.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        for name, needles in GROUPS:
            if any(needle in line for needle in needles):
                return name
    return None


def _snapshot() -> dict[int, tuple[str, float]]:
    seen = {}
    for process in psutil.process_iter():
        name = group_of(process)
        if name is None:
            continue
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        seen[process.pid] = (name, times.user + times.system)
    return seen


@dataclass
class Profile:
    """CPU seconds per group between the start and the end of a ``cpu_profile`` block."""

    seconds: dict[str, float] = field(default_factory=dict)
    jobs: int = 0

    def table(self) -> str:
        """Rows 'group  CPU s  ms per job  share', largest first."""
        total = sum(self.seconds.values()) or 1.0
        rows = [f"{'part':<16}{'CPU s':>8}{'ms/job':>9}{'share':>8}"]
        for name, value in sorted(self.seconds.items(), key=lambda item: -item[1]):
            per_job = f"{value / self.jobs * 1e3:.2f}" if self.jobs else "-"
            rows.append(f"{name:<16}{value:>8.2f}{per_job:>9}{value / total:>8.0%}")
        return "\n".join(rows)


@contextlib.contextmanager
def cpu_profile(jobs: int = 0) -> Iterator[Profile]:
    """Measure CPU seconds per group over the block; ``jobs`` gives the ms/job column."""
    before = _snapshot()
    profile = Profile(jobs=jobs)
    yield profile
    after = _snapshot()
    for pid, (name, used) in after.items():
        start = before.get(pid, (name, 0.0))[1]
        profile.seconds[name] = profile.seconds.get(name, 0.0) + max(used - start, 0.0)
