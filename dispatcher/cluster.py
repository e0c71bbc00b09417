"""The cluster as the dispatcher sees it: Ray's nodes, refreshed and written to Postgres.

The dispatcher is the only Ray driver, so it is the one that reads Ray's node list
and keeps table ``nodes`` current for ingest (which refuses jobs no node ever could
run) and the api (GET /api/v1/cluster). When the set of alive nodes changes, jobs
parked waiting for a node are published again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray
from aio_pika.abc import AbstractChannel
from psycopg_pool import AsyncConnectionPool

from core import queue, store
from core.domain import TAG_RESOURCE_PREFIX
from core.settings import Settings
from dispatcher.placement import Node

log = logging.getLogger(__name__)
LABEL_KEYS = ("qserver-version", "python-version", "ray-version")


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
            }
        )
    return rows


class ClusterView:
    """Every node ever seen (alive or not), kept in memory for placement decisions."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._alive: frozenset[str] | None = None
        self._dead: set[str] = set()

    def mark_dead(self, node_id: str) -> None:
        """A node Ray reported dead through a job's error: Ray's node list lags (seconds), so
        placement treats it as offline from now on (a node that comes back has a new id)."""
        self._dead.add(node_id)
        self.nodes = [
            Node(n.node_id, False, n.tags, n.gpus, n.memory, n.cpus) if n.node_id == node_id else n for n in self.nodes
        ]
        if self._alive is not None:
            self._alive = self._alive - {node_id}

    def update(self, rows: list[dict[str, Any]]) -> bool:
        """Take the nodes from Postgres' ``nodes`` table. True when the alive set changed."""
        self.nodes = [
            Node(
                node_id=row["node_id"],
                alive=row["alive"] and row["node_id"] not in self._dead,
                tags=frozenset(row["tags"]),
                gpus=row["gpus_total"],
                memory=row["memory_total"],
                cpus=int(row["cpus_total"] or 0),
            )
            for row in rows
        ]
        alive = frozenset(node.node_id for node in self.nodes if node.alive)
        changed = alive != self._alive
        self._alive = alive
        return changed


async def refresh(settings: Settings, pool: AsyncConnectionPool, view: ClusterView) -> bool:
    """Read Ray's nodes, write them to Postgres, update ``view``. True when alive nodes changed."""
    rows = await asyncio.to_thread(ray_nodes)
    async with pool.connection() as conn:
        running = await store.jobs_running_by_node(conn)
        for row in rows:
            row["jobs_running"] = running.get(row["node_id"], 0) if row["alive"] else 0
        await store.save_nodes(conn, nodes=rows)
        return view.update(await store.known_nodes(conn))


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
    settings: Settings, pool: AsyncConnectionPool, view: ClusterView, publisher: AbstractChannel
) -> None:
    """One refresh (run every ``settings.cluster_refresh_s`` as a task): when the alive nodes
    changed, log them and publish the parked jobs again."""
    if await refresh(settings, pool, view):
        log.info("alive nodes: %s", ", ".join(n.node_id[:12] for n in view.nodes if n.alive))
        await republish_parked(settings, pool, publisher)
