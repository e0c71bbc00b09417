"""The cluster's nodes as the dispatcher records them, and what the cluster can offer."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

_UPSERT_NODE = """
INSERT INTO nodes (node_id, address, hostname, tags, alive, cpus_total, cpus_free, gpus_total,
                   gpus_free, memory_total, memory_free, jobs_running, versions, head, node_key,
                   last_seen)
VALUES (%(node_id)s, %(address)s, %(hostname)s, %(tags)s, true, %(cpus_total)s,
        %(cpus_free)s, %(gpus_total)s, %(gpus_free)s, %(memory_total)s, %(memory_free)s,
        %(jobs_running)s, %(versions)s, %(head)s, %(node_key)s, now())
ON CONFLICT (node_id) DO UPDATE SET
    address = EXCLUDED.address, hostname = EXCLUDED.hostname, alive = true,
    cpus_free = EXCLUDED.cpus_free, gpus_free = EXCLUDED.gpus_free,
    memory_free = EXCLUDED.memory_free, jobs_running = EXCLUDED.jobs_running,
    tags = EXCLUDED.tags, cpus_total = EXCLUDED.cpus_total, gpus_total = EXCLUDED.gpus_total,
    memory_total = EXCLUDED.memory_total, versions = EXCLUDED.versions, head = EXCLUDED.head,
    node_key = EXCLUDED.node_key, last_seen = now()
"""


async def save_nodes(conn: psycopg.AsyncConnection, *, nodes: list[dict[str, Any]]) -> None:
    """Record the nodes Ray reports (dicts with the columns of ``nodes``, ``head`` and
    ``node_key`` included) in one transaction.

    Alive nodes are upserted. Every other row is marked not alive, keeping what the node
    offered (tags, CPUs, GPUs, memory: it may come back); a dead node Ray still lists is never
    inserted, so a node `qserver node forget` removed stays forgotten. The offline rows whose
    ``node_key`` an alive node carries are deleted: that node is the same machine's come back
    (with a new Ray node id).
    """
    alive = [node for node in nodes if node["alive"]]
    async with conn.transaction():
        for node in alive:
            await conn.execute(
                _UPSERT_NODE,
                {"head": False, "node_key": None, **node, "versions": Jsonb(node.get("versions") or {})},
            )
        await conn.execute(
            "UPDATE nodes SET alive = false, cpus_free = 0, gpus_free = 0, memory_free = 0,"
            " jobs_running = 0 WHERE alive AND NOT node_id = ANY(%s)",
            ([node["node_id"] for node in alive],),
        )
        keys = [node["node_key"] for node in alive if node.get("node_key")]
        if keys:
            await conn.execute("DELETE FROM nodes WHERE NOT alive AND node_key = ANY(%s)", (keys,))


async def known_nodes(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """Every node on record: node_id, alive, tags, gpus_total, memory_total, cpus_total, head,
    jobs_running, and draining (bool: `qserver node drain` asked for it)."""
    cur = await conn.execute(
        "SELECT node_id, alive, tags, gpus_total, memory_total, cpus_total, head, jobs_running,"
        " draining_since IS NOT NULL AS draining FROM nodes"
    )
    return await cur.fetchall()


async def cancel_drain(conn: psycopg.AsyncConnection, *, node_ids: list[str]) -> None:
    """Take back the drain of ``node_ids`` (the dispatcher cannot drain them)."""
    await conn.execute("UPDATE nodes SET draining_since = NULL WHERE node_id = ANY(%s)", (node_ids,))


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


_NODE_ROW_SYNC = (
    "SELECT node_id, address, hostname, tags, alive, cpus_total, cpus_free, gpus_total, gpus_free,"
    " memory_total, memory_free, jobs_running, versions, last_seen, head, node_key, draining_since FROM nodes"
)


def list_nodes_sync(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every row of ``nodes`` (for `qserver node status`), alive first, by address: the columns
    of :func:`list_nodes` but first_seen, plus head, node_key and draining_since.

    Raises:
        psycopg.errors.UndefinedTable: the schema has no ``nodes`` table yet.
    """
    return conn.execute(f"{_NODE_ROW_SYNC} ORDER BY alive DESC, address, node_id").fetchall()


def nodes_matching_sync(conn: psycopg.Connection, *, prefix: str) -> list[dict[str, Any]]:
    """The rows (as :func:`list_nodes_sync`) whose node id starts with ``prefix`` (hex digits)."""
    return conn.execute(
        f"{_NODE_ROW_SYNC} WHERE left(node_id, length(%(p)s)) = %(p)s ORDER BY node_id", {"p": prefix}
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


def node_by_key_sync(conn: psycopg.Connection, *, node_key: str) -> dict[str, Any] | None:
    """The alive row (as :func:`list_nodes_sync`) whose node_key is ``node_key``, else the
    offline one seen last; None when there is none."""
    return conn.execute(
        f"{_NODE_ROW_SYNC} WHERE node_key = %s ORDER BY alive DESC, last_seen DESC LIMIT 1", (node_key,)
    ).fetchone()


def request_drain_sync(conn: psycopg.Connection, *, node_id: str) -> bool:
    """Mark the alive node ``node_id`` draining (kept when it already is); False when there is
    no such alive node."""
    cur = conn.execute(
        "UPDATE nodes SET draining_since = coalesce(draining_since, now()) WHERE node_id = %s AND alive",
        (node_id,),
    )
    return cur.rowcount == 1


def forget_node_sync(conn: psycopg.Connection, *, node_id: str) -> bool:
    """Delete the row of the offline node ``node_id``; False when there is no such offline node.
    Its tags, GPUs and memory stop counting as known (admission, placement)."""
    return conn.execute("DELETE FROM nodes WHERE node_id = %s AND NOT alive", (node_id,)).rowcount == 1


def running_jobs_on_node_sync(conn: psycopg.Connection, *, node_id: str, limit: int = 10) -> tuple[int, list[str]]:
    """How many jobs run on ``node_id`` now, and the ids of the first ``limit`` (by start)."""
    rows = conn.execute(
        "SELECT id::text, count(*) OVER () AS n FROM jobs WHERE status = 'running' AND node_id = %s"
        " ORDER BY start_time LIMIT %s",
        (node_id, limit),
    ).fetchall()
    return (rows[0]["n"] if rows else 0), [row["id"] for row in rows]
