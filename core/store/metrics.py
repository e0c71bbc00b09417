"""What the api's ``/metrics`` reads at scrape time, in one statement: jobs by backend and
status, the nodes online, and the jobs that ended since the previous scrape (history rows)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import psycopg

# Most history rows one scrape reads; the rest come with the next scrapes.
TAIL_LIMIT = 20_000

_SNAPSHOT = """
WITH ended AS (
    SELECT h.pointer, h.target_simulator AS backend, h.status,
           coalesce(r.receipt->>'method', h.metadata->>'method', 'auto') AS method,
           extract(epoch FROM h.start_time - h.submission_date)::float8 AS queue_wait_s,
           extract(epoch FROM h.finish_time - h.start_time)::float8 AS run_s,
           coalesce(r.receipt ? 'cached_from', false) AS cached
      FROM history h LEFT JOIN results r ON r.job_id = h.job_id
     WHERE h.pointer > %(after)s OR h.pointer = ANY(%(holes)s)
     ORDER BY h.pointer
     LIMIT %(limit)s
)
SELECT
    (SELECT coalesce(json_agg(json_build_array(backend, status, n)), '[]')
       FROM (SELECT target_simulator AS backend, status, count(*) AS n FROM jobs GROUP BY 1, 2) c) AS jobs,
    (SELECT coalesce(json_agg(backend_name ORDER BY backend_name), '[]') FROM backends WHERE enabled) AS backends,
    (SELECT count(*) FROM nodes) AS nodes_known,
    (SELECT coalesce(json_agg(n ORDER BY n.node_id), '[]')
       FROM (SELECT node_id, hostname, cpus_total, cpus_free, gpus_total, gpus_free, memory_total,
                    memory_free, jobs_running
               FROM nodes WHERE alive) n) AS nodes,
    (SELECT coalesce(json_agg(e ORDER BY e.pointer), '[]') FROM ended e) AS ended,
    (SELECT coalesce(max(pointer), 0) FROM history) AS history_last
"""


async def metrics_snapshot(
    conn: psycopg.AsyncConnection, *, after: int | None, holes: Collection[int] = ()
) -> dict[str, Any]:
    """Jobs, nodes and newly ended jobs, read in one statement (one round trip).

    ``after``: the last history pointer already counted (None: count nothing yet, only say
    where history ends); ``holes``: pointers below it not seen yet (a transaction that
    committed after a later one), read again.

    Returns:
        {"jobs": [[backend, status, count], ...] (status as stored, ``claimed`` included),
         "backends": [enabled backend names],
         "nodes_known": int,
         "nodes": [{node_id, hostname, cpus_total, cpus_free, gpus_total, gpus_free,
                    memory_total, memory_free (bytes), jobs_running}] (online nodes only),
         "ended": [{pointer, backend, status, method, queue_wait_s, run_s (seconds; None
                    when the job never started), cached (answered from the cache)}],
                  ordered by pointer, at most TAIL_LIMIT,
         "history_last": the highest history pointer (0 without history)}
    """
    cur = await conn.execute(
        _SNAPSHOT,
        {"after": 2**62 if after is None else after, "holes": list(holes), "limit": TAIL_LIMIT},
    )
    row = await cur.fetchone()
    assert row is not None
    return row
