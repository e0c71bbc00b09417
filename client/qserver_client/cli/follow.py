"""Following one job to its end from its events stream (``GET /api/v1/job/{id}/events``, read
with ``Client.events``), for ``submit --wait`` and ``watch``: a live line on stderr saying its
status, what it waits for, its node and attempts (on a terminal a spinner that is redrawn, else
one line per change, for logs), bounded by a timeout, interruptible with Ctrl-C.

The stream is read in a thread of its own, so the timeout and Ctrl-C work whatever the
stream does (it may be quiet for minutes: a long job's stream carries keep-alives only).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from datetime import datetime
from typing import Any

import typer
from rich.markup import escape

from qserver_client.cli.common import Exit, err
from qserver_client.cli.render import parse_time, print_results, seconds
from qserver_client.client import TERMINAL, Client
from qserver_client.errors import WaitTimeout

TICK_S = 0.25  # how often the spinner's clock is redrawn


def progress_line(job_id: str, state: Mapping[str, Any]) -> str:
    """``job ID: STATUS`` with what the job waits for, its node, its attempt and for how long it
    has been in that status (pending: since submission; running: since it started)."""
    status = state.get("status") or "submitted"
    parts = [f"job {job_id}: {status}"]
    if state.get("waiting_for"):
        parts.append(str(state["waiting_for"]))
    if state.get("node_id"):
        parts.append(f"node {str(state['node_id'])[:12]}")
    if state.get("attempts"):
        parts.append(f"attempt {state['attempts']}")
    since = parse_time(state.get("start_time") if status == "running" else state.get("submission_date"))
    if since is not None and status not in TERMINAL:
        parts.append(seconds(max(0.0, (datetime.now(since.tzinfo) - since).total_seconds())))
    return " · ".join(parts)


def _shown(state: Mapping[str, Any]) -> tuple:
    """What a line without its clock says: a change of it is printed (off a terminal)."""
    return tuple(state.get(name) for name in ("status", "waiting_for", "node_id", "attempts"))


def _read(client: Client, job_id: str, events: queue.Queue) -> None:
    """Put each event of the job's stream on ``events`` (the last is its ``end``), or the error
    that ended the stream."""
    try:
        for event in client.events(job_id):
            events.put(event)
    except Exception as error:
        events.put(error)


def follow(
    client: Client,
    job_id: str,
    timeout: float,
    *,
    show: bool = True,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Follow the job until it ends; returns the stream's ``end`` event (``status``, and
    ``results`` or ``error``). ``show``: the progress line on stderr; ``on_event``: called with
    each event as it comes (``{"event": name, **data}``).

    Raises ``WaitTimeout`` after ``timeout`` seconds (``.job``: the state last seen),
    ``KeyboardInterrupt`` on Ctrl-C, and what ``Client.events`` raises (``JobNotFound``,
    ``ApiUnreachable``: no answer, or the stream broke before the job's end, ...).
    """
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {"id": job_id}
    events: queue.Queue = queue.Queue()
    threading.Thread(target=_read, args=(client, job_id, events), daemon=True).start()
    live = show and err.is_terminal  # a redrawn spinner; off a terminal, a line per change
    last_shown: tuple | None = None
    short = job_id[:8]  # the spinner's line fits a narrow terminal (the full id is printed above)
    with err.status(escape(progress_line(short, state))) if live else nullcontext() as spinner:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(state, timeout)
            try:
                item = events.get(timeout=min(remaining, TICK_S))
            except queue.Empty:
                if spinner is not None:  # the clock moves on
                    spinner.update(escape(progress_line(short, state)))
                continue
            if isinstance(item, Exception):
                raise item
            if on_event is not None:
                on_event(item)
            state.update({key: value for key, value in item.items() if key != "event"})
            if item.get("event") == "end":
                return item
            if spinner is not None:
                spinner.update(escape(progress_line(short, state)))
            elif show and _shown(state) != last_shown:
                last_shown = _shown(state)
                err.print(escape(progress_line(job_id, state)), highlight=False)


def finish(client: Client, end: dict[str, Any], *, show_results: bool) -> None:
    """After a job's ``end`` event: its results as tables on stdout (``show_results``), or, for
    a failed or canceled job, its error on stderr and exit 1."""
    if end["status"] == "finished":
        if show_results:
            results = end.get("results")
            if results is None:  # large results the api did not admit for the event: read them now
                results = client.result(end["id"])
            print_results({**results, "sweep": end["sweep"]} if end.get("sweep") else results)
        return
    reason = end.get("error") or "(no reason given)"
    err.print(f"[red]job {escape(end['id'])} {end['status']}:[/] {escape(reason)}")
    raise typer.Exit(Exit.FAILED)
