"""How the user's commands print: JSON documents for scripts, rich tables for people, ids
alone for ``-q``. Times are shown in the local time zone; the JSON keeps the server's ISO 8601."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from qserver_client.cli.common import out

STATUS_STYLES = {
    "pending": "dim",
    "running": "cyan",
    "finished": "green",
    "failed": "red",
    "canceled": "yellow",
}


def print_json(data: Any) -> None:
    """``data`` as one indented JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_json_line(data: Any) -> None:
    """``data`` as one line of JSON on stdout (a stream of them: JSON Lines)."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_ids(ids: Iterable[Any]) -> None:
    """One id (or name) a line on stdout."""
    for value in ids:
        sys.stdout.write(f"{value}\n")
    sys.stdout.flush()


def status_text(status: str | None) -> Text:
    """A job status, coloured for a terminal."""
    return Text(status or "-", style=STATUS_STYLES.get(status or "", ""))


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 time of the api (``...Z`` or ``+00:00``), or None."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def local_time(value: str | None) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in the local time zone, ``-`` for none."""
    moment = parse_time(value)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def seconds(value: float | None) -> str:
    """A duration for people: ``850ms``, ``12.3s``, ``4m05s``, ``2h03m``; ``-`` for none."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def run_seconds(job: Mapping[str, Any]) -> float | None:
    """How long the job ran: start to finish, or to now while it runs; None before it starts."""
    start = parse_time(job.get("start_time"))
    if start is None:
        return None
    end = parse_time(job.get("finish_time")) or datetime.now(start.tzinfo)
    return max(0.0, (end - start).total_seconds())


# columns never wrapped on a narrow terminal (an id cut in two cannot be copied); the others wrap
UNWRAPPED = frozenset({"ID", "JOB ID", "STATUS", "SUBMITTED", "RAN", "NAME", "OUTCOME"})


def table(*columns: str) -> Table:
    """A table for people: a header line, no borders (grep-able when piped); ids, statuses and
    times are never wrapped, the other columns wrap between words."""
    shown = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in columns:
        shown.add_column(column, no_wrap=column in UNWRAPPED, overflow="fold")
    return shown


def _note(job: Mapping[str, Any]) -> str:
    """What a job row adds: why it waits, or why it failed (first line)."""
    text = job.get("waiting_for") or job.get("error") or ""
    return text.splitlines()[0] if text else ""


def jobs_table(jobs: Sequence[Mapping[str, Any]], *, history: bool = False) -> Table:
    """Jobs (or history rows) as a table: id, status, backend, owner (when any has one),
    submitted, how long it ran, attempts, and why it waits or failed."""
    owners = any(job.get("owner") for job in jobs)
    shown = table(
        "JOB ID" if history else "ID", "STATUS", "BACKEND", *(["OWNER"] if owners else []), "SUBMITTED", "RAN", "NOTE"
    )
    for job in jobs:
        shown.add_row(
            str(job["job_id"] if history else job["id"]),
            status_text(job.get("status")),
            job.get("target_simulator") or "-",
            *([job.get("owner") or "-"] if owners else []),
            local_time(job.get("submission_date")),
            seconds(run_seconds(job)),
            Text(_note(job)),
        )
    return shown


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


def job_table(job: Mapping[str, Any]) -> Table:
    """One job as two columns, field and value (its program and results are left out: ``-o
    json`` has them, ``qserver result`` shows the results)."""
    wanted = [name for name, on in (job.get("result_types") or {}).items() if on]
    rows: list[tuple[str, Any]] = [
        ("id", str(job["id"])),
        ("status", status_text(job.get("status"))),
        ("backend", job.get("target_simulator")),
        ("owner", job.get("owner")),
        ("submitted", local_time(job.get("submission_date"))),
        ("started", local_time(job.get("start_time"))),
        ("finished", local_time(job.get("finish_time"))),
        ("ran", seconds(run_seconds(job))),
        ("attempts", job.get("attempts")),
        ("node", job.get("node_id")),
        ("waiting for", job.get("waiting_for")),
        ("memory", f"{job['memory_bytes'] / 2**20:.0f} MiB" if job.get("memory_bytes") else None),
        ("result types", ", ".join(wanted)),
        ("metadata", _compact(job.get("metadata") or {})),
        ("sweep", _compact(job["sweep"]) if job.get("sweep") else None),
        ("error", job.get("error")),
        ("receipt", _compact(job["receipt"]) if job.get("receipt") else None),
    ]
    shown = Table(box=None, show_header=False, pad_edge=False)
    shown.add_column(style="bold", no_wrap=True)
    shown.add_column(overflow="fold")
    for name, value in rows:
        if value not in (None, ""):
            shown.add_row(name, value if isinstance(value, Text) else Text(str(value)))
    return shown


def print_results(results: Mapping[str, Any]) -> None:
    """A job's results for people: counts (most frequent first, with their share of the shots),
    the quasi-distribution, expectation values (one per PUB), a sweep's summary."""
    printed = False
    if results.get("counts"):
        counts = results["counts"]
        shots = sum(counts.values()) or 1
        shown = table("OUTCOME", "COUNT", "SHARE")
        for outcome, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            shown.add_row(outcome, str(count), f"{count / shots:.4f}")
        out.print(shown)
        printed = True
    if results.get("quasi_dist"):
        shown = table("OUTCOME", "QUASI-PROBABILITY")
        for outcome, value in sorted(results["quasi_dist"].items(), key=lambda item: (-item[1], item[0])):
            shown.add_row(outcome, f"{value:.6g}")
        out.print(shown)
        printed = True
    if results.get("expval") is not None:
        shown = table("PUB", "EXPECTATION VALUE")
        for index, value in enumerate(results["expval"]):
            shown.add_row(str(index), f"{value:.6g}")
        out.print(shown)
        printed = True
    if results.get("sweep"):
        sweep = results["sweep"]
        out.print(
            f"sweep over {', '.join(sweep['parameters'])}: shape {sweep['shape']}, "
            f"{sweep['done']} of {sweep['bindings']} bindings done; items: {sweep['items']}",
            highlight=False,
        )
        printed = True
    if not printed:
        out.print("(no results)", highlight=False)
