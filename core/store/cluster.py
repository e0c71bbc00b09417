"""The cluster's nodes as the dispatcher records them, and what the cluster can offer."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

_UPSERT_NODE = """
INSERT INTO nodes (node_id, address, hostname, tags, alive, cpus_total, cpus_free, gpus_total,
                   gpus_free, memory_total, memory_free, jobs_running, versions, last_seen)
VALUES (%(node_id)s, %(address)s, %(hostname)s, %(tags)s, %(alive)s, %(cpus_total)s,
        %(cpus_free)s, %(gpus_total)s, %(gpus_free)s, %(memory_total)s, %(memory_free)s,
        %(jobs_running)s, %(versions)s, now())
ON CONFLICT (node_id) DO UPDATE SET
    address = EXCLUDED.address, hostname = EXCLUDED.hostname, alive = EXCLUDED.alive,
    cpus_free = EXCLUDED.cpus_free, gpus_free = EXCLUDED.gpus_free,
    memory_free = EXCLUDED.memory_free, jobs_running = EXCLUDED.jobs_running,
    -- Ray forgets a dead node's resources; we keep what it offered (it may come back)
    tags = CASE WHEN EXCLUDED.alive THEN EXCLUDED.tags ELSE nodes.tags END,
    cpus_total = CASE WHEN EXCLUDED.alive THEN EXCLUDED.cpus_total ELSE nodes.cpus_total END,
    gpus_total = CASE WHEN EXCLUDED.alive THEN EXCLUDED.gpus_total ELSE nodes.gpus_total END,
    memory_total = CASE WHEN EXCLUDED.alive THEN EXCLUDED.memory_total ELSE nodes.memory_total END,
    versions = CASE WHEN EXCLUDED.alive THEN EXCLUDED.versions ELSE nodes.versions END,
    last_seen = CASE WHEN EXCLUDED.alive THEN now() ELSE nodes.last_seen END
"""


async def save_nodes(conn: psycopg.AsyncConnection, *, nodes: list[dict[str, Any]]) -> None:
    """Upsert the nodes Ray reports (dicts with the columns of ``nodes``) in one transaction;
    nodes Ray no longer reports are marked not alive."""
    async with conn.transaction():
        for node in nodes:
            await conn.execute(_UPSERT_NODE, {**node, "versions": Jsonb(node.get("versions") or {})})
        await conn.execute(
            "UPDATE nodes SET alive = false, cpus_free = 0, gpus_free = 0, memory_free = 0,"
            " jobs_running = 0 WHERE alive AND NOT node_id = ANY(%s)",
            ([node["node_id"] for node in nodes if node["alive"]],),
        )


async def known_nodes(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """Every node ever seen: node_id, alive, tags, gpus_total, memory_total, cpus_total."""
    cur = await conn.execute("SELECT node_id, alive, tags, gpus_total, memory_total, cpus_total FROM nodes")
    return await cur.fetchall()


async def jobs_running_by_node(conn: psycopg.AsyncConnection) -> dict[str, int]:
    """{node id: number of running jobs started there}."""
    cur = await conn.execute(
        "SELECT node_id, count(*) AS n FROM jobs WHERE status = 'running' AND node_id IS NOT NULL GROUP BY node_id"
    )
    return {row["node_id"]: row["n"] for row in await cur.fetchall()}


_NODE_COLUMNS = """
node_id, address, hostname, tags, alive, cpus_total, cpus_free, gpus_total, gpus_free,
memory_total, memory_free, jobs_running, versions, first_seen, last_seen
"""


async def list_nodes(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """Every node ever seen, alive ones first, then in the order they were first seen.

    Each row holds all columns of ``nodes``: {node_id, address, hostname, tags, alive,
    cpus_total, cpus_free, gpus_total, gpus_free, memory_total, memory_free (bytes),
    jobs_running, versions, first_seen, last_seen}.
    """
    cur = await conn.execute(f"SELECT {_NODE_COLUMNS} FROM nodes ORDER BY alive DESC, first_seen, node_id")
    return await cur.fetchall()


_CAPABILITIES = """
SELECT
    coalesce((SELECT array_agg(DISTINCT t) FROM nodes, unnest(tags) AS t), '{}') AS tags_known,
    coalesce((SELECT array_agg(DISTINCT t) FROM nodes, unnest(tags) AS t WHERE alive), '{}')
        AS tags_alive,
    coalesce(bool_or(gpus_total > 0), false) AS gpus_known,
    coalesce(bool_or(gpus_total > 0) FILTER (WHERE alive), false) AS gpus_alive,
    coalesce(max(memory_total), 0) AS memory_largest_known,
    coalesce(max(memory_total) FILTER (WHERE alive), 0) AS memory_largest_alive,
    count(*) AS nodes_known,
    count(*) FILTER (WHERE alive) AS nodes_alive
FROM nodes
"""


async def cluster_capabilities(conn: psycopg.AsyncConnection) -> dict[str, Any]:
    """What the cluster offers, for admission at submission (one query over ``nodes``).

    Returns:
        {"tags_known": set[str] (tags any node ever offered),
         "tags_alive": set[str] (tags of the nodes alive now),
         "gpus_known": bool (whether any node ever offered a GPU),
         "gpus_alive": bool (whether an alive node offers one now),
         "memory_largest_known": int, "memory_largest_alive": int (the largest
         memory_total in bytes; 0 without nodes),
         "nodes_known": int, "nodes_alive": int}
    """
    cur = await conn.execute(_CAPABILITIES)
    row = await cur.fetchone()
    assert row is not None
    return {
        **row,
        "tags_known": set(row["tags_known"]),
        "tags_alive": set(row["tags_alive"]),
    }


# The head row: the node at the head's host (``address`` may be "ip" or "ip:port"), else the
# alive node seen last. A row without versions does not count: nothing to compare with.
_HEAD_VERSIONS = """
SELECT node_id, address, alive, versions, matched
  FROM (SELECT *, (address = %(host)s OR hostname IS NOT DISTINCT FROM %(host)s
                   OR left(address, length(%(prefix)s)) = %(prefix)s) AS matched
          FROM nodes) AS candidates
 WHERE versions <> '{}'::jsonb AND (matched OR alive)
 ORDER BY matched DESC, alive DESC, last_seen DESC
 LIMIT 1
"""


def head_node_versions_sync(conn: psycopg.Connection, *, host: str, prefix: str) -> dict[str, Any] | None:
    """The row {node_id, address, alive, versions, matched} of the head at ``host`` (``prefix``:
    "host:" or "[v6]:"), else of the alive node seen last; None when no row has versions.

    Raises:
        psycopg.errors.UndefinedTable: the schema has no ``nodes`` table yet.
    """
    return conn.execute(_HEAD_VERSIONS, {"host": host, "prefix": prefix}).fetchone()


def list_nodes_sync(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every row of ``nodes`` (for `qserver node status`), alive first, by address.

    Raises:
        psycopg.errors.UndefinedTable: the schema has no ``nodes`` table yet.
    """
    return conn.execute(
        "SELECT node_id, address, hostname, tags, alive, cpus_total, cpus_free, gpus_total, gpus_free,"
        " memory_total, memory_free, jobs_running, versions, last_seen FROM nodes"
        " ORDER BY alive DESC, address, node_id"
    ).fetchall()


async def running_on_nodes(conn: psycopg.AsyncConnection, *, limit: int = 500) -> list[dict[str, Any]]:
    """What runs where: running jobs, by node then start time, at most ``limit``:
    {id, node_id, owner, target_simulator, start_time}."""
    cur = await conn.execute(
        "SELECT id, node_id, owner, target_simulator, start_time FROM jobs"
        " WHERE status = 'running' ORDER BY node_id, start_time, id LIMIT %s",
        (limit,),
    )
    return await cur.fetchall()
