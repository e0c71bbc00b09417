"""The cluster as the dispatcher sees it: Ray's nodes, refreshed and written to Postgres.

The dispatcher is the only Ray driver, so it is the one that reads Ray's node list
and keeps table ``nodes`` current for ingest (which refuses jobs no node ever could
run) and the api (GET /api/v1/cluster). When the set of nodes that take jobs changes (one
joins, leaves, starts draining, or is forgotten), jobs parked waiting for a node are published
again: each is decided anew, and one whose tag no node has any more fails saying so.

Draining (`qserver node drain` marks the row): the node takes no new job (placement treats it
as closed, and Ray is asked to drain it: Ray then places no task or actor there), the warm
executors on it are replaced by ones elsewhere once their batch is done, and once no job runs
there any more Ray is asked to stop it: it leaves the cluster.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any, Protocol

import ray
from aio_pika.abc import AbstractChannel
from psycopg_pool import AsyncConnectionPool

from core import queue, store
from core.domain import TAG_RESOURCE_PREFIX
from core.settings import Settings
from dispatcher.placement import Node

log = logging.getLogger(__name__)
LABEL_KEYS = ("qserver-version", "python-version", "ray-version")
NODE_KEY_LABEL = "qserver-node"  # ops/nodes.py NODE_KEY_LABEL: who the node is across restarts
HEAD_RESOURCE = "node:__internal_head__"  # Ray gives the head this resource


def ray_nodes() -> list[dict[str, Any]]:
    """Ray's nodes as rows of table ``nodes`` (memory in bytes, Ray's ``memory`` resource)."""
    free = ray._private.state.available_resources_per_node()
    rows = []
    for node in ray.nodes():
        total = node.get("Resources", {})
        available = free.get(node["NodeID"], {}) if node["Alive"] else {}
        labels = node.get("Labels") or {}
        rows.append(
            {
                "node_id": node["NodeID"],
                "address": node.get("NodeManagerAddress", ""),
                "hostname": node.get("NodeManagerHostname"),
                "tags": sorted(key[len(TAG_RESOURCE_PREFIX) :] for key in total if key.startswith(TAG_RESOURCE_PREFIX)),
                "alive": bool(node["Alive"]),
                "cpus_total": total.get("CPU", 0.0),
                "cpus_free": available.get("CPU", 0.0),
                "gpus_total": total.get("GPU", 0.0),
                "gpus_free": available.get("GPU", 0.0),
                "memory_total": int(total.get("memory", 0)),
                "memory_free": int(available.get("memory", 0)),
                "versions": {key: labels[key] for key in LABEL_KEYS if key in labels},
                "head": HEAD_RESOURCE in total,
                "node_key": labels.get(NODE_KEY_LABEL),
            }
        )
    return rows


class ClusterView:
    """Every node on record (alive or not), kept in memory for placement decisions, and what
    this dispatcher did to drain nodes."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.rows: list[dict[str, Any]] = []  # as store.known_nodes returns them
        self._seen: tuple[frozenset[str], ...] | None = None  # (open, alive, known) node ids
        self._dead: set[str] = set()
        self.ray_drained: set[str] = set()  # nodes Ray accepted to drain
        self.stopped: set[str] = set()  # drained nodes Ray was asked to stop
        self.protected: set[str] = set()  # never drained: the dispatcher's own node, the runner's
        self.ray_refused: set[str] = set()  # nodes Ray would not drain (said once)

    def mark_dead(self, node_id: str) -> None:
        """A node Ray reported dead through a job's error: Ray's node list lags (seconds), so
        placement treats it as offline from now on (a node that comes back has a new id)."""
        self._dead.add(node_id)
        self.nodes = [replace(n, alive=False) if n.node_id == node_id else n for n in self.nodes]
        if self._seen is not None:
            self._seen = (self._seen[0] - {node_id}, self._seen[1] - {node_id}, self._seen[2])

    def update(self, rows: list[dict[str, Any]]) -> bool:
        """Take the nodes from Postgres' ``nodes`` table. True when the nodes that take jobs
        (alive, not draining), the alive ones or the nodes on record changed."""
        self.rows = rows
        self.nodes = [
            Node(
                node_id=row["node_id"],
                alive=row["alive"] and row["node_id"] not in self._dead,
                tags=frozenset(row["tags"]),
                gpus=row["gpus_total"],
                memory=row["memory_total"],
                cpus=int(row["cpus_total"] or 0),
                draining=bool(row.get("draining")),
            )
            for row in rows
        ]
        seen = (
            frozenset(node.node_id for node in self.nodes if node.open),
            frozenset(node.node_id for node in self.nodes if node.alive),
            frozenset(node.node_id for node in self.nodes),
        )
        changed = seen != self._seen
        self._seen = seen
        return changed

    def draining(self) -> set[str]:
        """The alive nodes marked draining (never the head: the dispatcher lives there)."""
        return {row["node_id"] for row in self.rows if row["alive"] and row.get("draining") and not row.get("head")}


async def refresh(settings: Settings, pool: AsyncConnectionPool, view: ClusterView) -> bool:
    """Read Ray's nodes, write them to Postgres, update ``view``. True when alive nodes changed."""
    rows = await asyncio.to_thread(ray_nodes)
    async with pool.connection() as conn:
        running = await store.jobs_running_by_node(conn)
        for row in rows:
            row["jobs_running"] = running.get(row["node_id"], 0) if row["alive"] else 0
        await store.save_nodes(conn, nodes=rows)
        return view.update(await store.known_nodes(conn))


def ray_drain(node_id: str) -> tuple[bool, str]:
    """Ask Ray to drain ``node_id``: it places no new task or actor there; what runs goes on.
    Returns (accepted, Ray's reason when not). Ray's own call (what `ray drain-node` runs,
    autoscaler v2's "preemption" drain, no deadline)."""
    from ray.core.generated import autoscaler_pb2

    gcs = ray._private.worker.global_worker.gcs_client
    reason = autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION")
    return gcs.drain_node(node_id, reason, "qserver node drain", 0)


def ray_stop_node(node_id: str) -> bool:
    """Ask Ray to stop ``node_id``'s raylet (Ray's GCS DrainNode call: the node leaves the
    cluster, ending its workers). True when Ray took the request."""
    gcs = ray._private.worker.global_worker.gcs_client
    return bool(gcs.drain_nodes([bytes.fromhex(node_id)]))


class Drainer(Protocol):
    """What the dispatcher does for a drain (dispatcher/consumer.py Dispatcher)."""

    def retire_executors(self, draining: set[str]) -> dict[str, int]:
        """Replace the idle warm executors on the ``draining`` nodes; {node id: busy ones left}."""
        ...

    async def repark_unplaceable(self) -> int:
        """Park again the jobs waiting in Ray that no open node can run any more."""
        ...


async def drain_step(pool: AsyncConnectionPool, view: ClusterView, dispatcher: Drainer | None) -> None:
    """One step of draining, after a refresh: a drain of a protected node (this dispatcher's
    own, or the runner's: their work would die with it) is cancelled; Ray is asked to drain each
    newly draining node; the jobs waiting in Ray that only such nodes could run are parked
    again; the idle warm executors there are replaced; a node Ray has drained since an earlier
    step, with no job running and no executor left (busy ones finish their batch), is stopped."""
    draining = view.draining()
    refused = draining & view.protected
    if refused:
        async with pool.connection() as conn:
            await store.cancel_drain(conn, node_ids=sorted(refused))
        for node_id in refused:
            log.error(
                "node %s cannot be drained: this dispatcher's Ray connection or the runner that owns the "
                "running jobs lives there (stop the stack with `qserver down` instead); drain cancelled",
                node_id[:12],
            )
        draining -= refused
    settled = draining & view.ray_drained  # drained by Ray at an earlier step
    for node_id in sorted(draining - view.ray_drained):
        accepted, why = await asyncio.to_thread(ray_drain, node_id)
        if accepted:
            view.ray_drained.add(node_id)
            log.info("node %s draining: Ray places nothing new there", node_id[:12])
        elif node_id not in view.ray_refused:
            view.ray_refused.add(node_id)
            log.warning("node %s: Ray refused to drain it (asked again each refresh): %s", node_id[:12], why)
    if not draining or dispatcher is None:
        return
    await dispatcher.repark_unplaceable()
    executors = dispatcher.retire_executors(draining)
    running = {row["node_id"]: row["jobs_running"] for row in view.rows}
    for node_id in sorted(settled - view.stopped):
        if running.get(node_id, 0) or executors.get(node_id, 0):
            continue
        stopped = await asyncio.to_thread(ray_stop_node, node_id)
        log.info("node %s drained (no job runs there): %s", node_id[:12], "stopping it" if stopped else "Ray refused")
        if stopped:
            view.stopped.add(node_id)


async def republish_parked(settings: Settings, pool: AsyncConnectionPool, publisher: AbstractChannel) -> int:
    """Publish the ids of jobs parked waiting for a node (on the dispatcher's long-lived
    ``publisher`` channel); the consumer re-decides each."""
    async with pool.connection() as conn:
        parked = await store.parked_jobs(conn)
    for job_id in parked:
        await queue.publish_job(publisher, settings.queue_name, job_id)
    if parked:
        log.info("nodes changed: %d waiting jobs published again", len(parked))
    return len(parked)


async def refresh_and_republish(
    settings: Settings,
    pool: AsyncConnectionPool,
    view: ClusterView,
    publisher: AbstractChannel,
    dispatcher: Drainer | None = None,
) -> None:
    """One refresh (run every ``settings.cluster_refresh_s`` as a task): when the nodes changed
    (:meth:`ClusterView.update`), log them and publish the parked jobs again; then a step of
    draining (:func:`drain_step`)."""
    if await refresh(settings, pool, view):
        log.info("nodes taking jobs: %s", ", ".join(n.node_id[:12] for n in view.nodes if n.open))
        await republish_parked(settings, pool, publisher)
    await drain_step(pool, view, dispatcher)
