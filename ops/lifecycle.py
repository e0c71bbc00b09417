"""A node's life after it joined: drain it, see what runs on it before it leaves, forget it.

`qserver node drain` marks the node's row (``nodes.draining_since``); the dispatcher carries the
drain out (dispatcher/cluster.py: no new job, warm executors moved, Ray asked to drain the node,
then to stop it once no job runs there). `qserver node forget` deletes an offline node's row,
so its tags, GPUs and memory stop counting as known. Everything here is SQL through core.store
over a short-lived connection; the commands are ops/cli/node.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from core import store
from core.settings import Settings
from ops.nodes import CheckUnavailable, NodeError, node_key

MIN_PREFIX = 4  # hex digits of a node id that name it (`qserver node status` shows 8)
_HEX = re.compile(r"[0-9a-f]+")


class BadNodeId(NodeError):
    """What names a node is not 4 or more hex digits."""


def _connect(dsn: str, timeout: float = 5.0) -> psycopg.Connection:
    """A short-lived connection to ``dsn`` (committed when its ``with`` block ends).

    Raises:
        CheckUnavailable: Postgres did not answer.
    """
    try:
        return psycopg.connect(dsn, connect_timeout=max(1, int(timeout)), row_factory=dict_row)
    except psycopg.Error as error:
        raise CheckUnavailable(f"Postgres did not answer: {' '.join(str(error).split())}") from None


def _call(dsn: str, work: Callable[[psycopg.Connection], Any]) -> Any:
    """``work(conn)`` in one transaction.

    Raises:
        CheckUnavailable: Postgres is unreachable or has no ``nodes`` table at the newest schema.
    """
    try:
        with _connect(dsn) as conn:
            return work(conn)
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        raise CheckUnavailable("the database's schema is older than this QServer (run `qserver db upgrade`)") from None
    except psycopg.OperationalError as error:
        raise CheckUnavailable(f"Postgres did not answer: {' '.join(str(error).split())}") from None


def find_node(dsn: str, ident: str) -> dict[str, Any]:
    """The node row whose id is ``ident`` or starts with it (at least MIN_PREFIX hex digits).

    Raises:
        BadNodeId: ``ident`` is not 4 or more hex digits.
        NodeError: no node, or several, match (the message lists them).
        CheckUnavailable: Postgres is unreachable.
    """
    prefix = ident.strip().lower()
    if len(prefix) < MIN_PREFIX or not _HEX.fullmatch(prefix):
        raise BadNodeId(
            f"{ident!r} is not a node id: give its first {MIN_PREFIX} or more hex digits "
            "(`qserver node status` lists them)"
        )
    rows = _call(dsn, lambda conn: store.nodes_matching_sync(conn, prefix=prefix))
    if not rows:
        raise NodeError(f"no node's id starts with {prefix} (`qserver node status` lists them)")
    if len(rows) > 1:
        ids = ", ".join(row["node_id"][:12] for row in rows)
        raise NodeError(f"{prefix} names {len(rows)} nodes ({ids}): give more digits")
    return rows[0]


def this_machines_node(settings: Settings, dsn: str) -> dict[str, Any] | None:
    """The row of the node `qserver node join` started from this state dir (found by its key:
    ops/nodes.py node_key), alive first; None when the dispatcher has recorded none."""
    key = node_key(settings, "node")
    return _call(dsn, lambda conn: store.node_by_key_sync(conn, node_key=key))


def running_on(dsn: str, node_id: str, limit: int = 10) -> tuple[int, list[str]]:
    """How many jobs run on ``node_id`` now, and the ids of the first ``limit``.

    Raises:
        CheckUnavailable: Postgres is unreachable.
    """
    return _call(dsn, lambda conn: store.running_jobs_on_node_sync(conn, node_id=node_id, limit=limit))


def request_drain(dsn: str, node: dict[str, Any]) -> None:
    """Mark ``node`` (a row) draining.

    Raises:
        NodeError: it is the head (the dispatcher and the runner live there), or not alive.
        CheckUnavailable: Postgres is unreachable.
    """
    short = node["node_id"][:12]
    if node["head"]:
        raise NodeError(
            f"node {short} is the Ray head: the dispatcher and the runner that owns every job's task "
            "live there, so it cannot be drained; `qserver down` stops it (running jobs run again at "
            "the next `qserver up`)"
        )
    if not node["alive"]:
        raise NodeError(f"node {short} is offline: nothing to drain; `qserver node forget {short}` removes it")
    if not _call(dsn, lambda conn: store.request_drain_sync(conn, node_id=node["node_id"])):
        raise NodeError(f"node {short} left meanwhile: nothing to drain")


@dataclass(frozen=True)
class DrainProgress:
    """Where a drain stands: the node still alive, still draining (False once the dispatcher
    cancelled the drain), and the jobs running there."""

    alive: bool
    draining: bool
    running: int
    job_ids: list[str]

    @property
    def cancelled(self) -> bool:
        """The node is there but no longer draining: the dispatcher refused to drain it."""
        return self.alive and not self.draining


def drain_progress(dsn: str, node_id: str) -> DrainProgress:
    """Whether ``node_id`` is still in the cluster, and what runs there.

    Raises:
        CheckUnavailable: Postgres is unreachable.
    """

    def read(conn: psycopg.Connection) -> DrainProgress:
        rows = store.nodes_matching_sync(conn, prefix=node_id)
        running, ids = store.running_jobs_on_node_sync(conn, node_id=node_id)
        alive = bool(rows) and rows[0]["alive"]
        return DrainProgress(alive, alive and rows[0]["draining_since"] is not None, running, ids)

    return _call(dsn, read)


def wait_drained(
    dsn: str,
    node_id: str,
    *,
    timeout_s: float,
    report: Callable[[DrainProgress], None],
    poll_s: float = 1.0,
) -> DrainProgress:
    """Poll until ``node_id`` has left the cluster, its drain was cancelled, or ``timeout_s`` (0:
    no limit) has passed; ``report`` hears each change of the running jobs. Returns the last
    progress.

    Raises:
        CheckUnavailable: Postgres is unreachable.
    """
    deadline = time.monotonic() + timeout_s if timeout_s else None
    last: DrainProgress | None = None
    while True:
        progress = drain_progress(dsn, node_id)
        if last is None or (progress.running, progress.job_ids) != (last.running, last.job_ids):
            report(progress)
        last = progress
        if not progress.alive or progress.cancelled or (deadline is not None and time.monotonic() >= deadline):
            return progress
        time.sleep(poll_s)


def forget(dsn: str, node: dict[str, Any]) -> list[str]:
    """Delete the row of the offline ``node``; returns the tags no node on record offers any more.

    Raises:
        NodeError: the node is alive (drain it first), or already gone.
        CheckUnavailable: Postgres is unreachable.
    """
    short = node["node_id"][:12]
    if node["alive"]:
        raise NodeError(
            f"node {short} is alive: `qserver node drain {short}` first (it leaves once its jobs "
            "have ended), then forget it"
        )

    def delete(conn: psycopg.Connection) -> list[str]:
        if not store.forget_node_sync(conn, node_id=node["node_id"]):
            raise NodeError(f"node {short} is no longer on record, or came back")
        left = {tag for row in store.list_nodes_sync(conn) for tag in row["tags"]}
        return sorted(set(node["tags"]) - left)

    return _call(dsn, delete)


def offline_nodes(dsn: str) -> list[dict[str, Any]]:
    """Every offline node's row.

    Raises:
        CheckUnavailable: Postgres is unreachable.
    """
    return [row for row in _call(dsn, store.list_nodes_sync) if not row["alive"]]
