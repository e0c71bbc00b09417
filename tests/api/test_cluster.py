"""GET /api/v1/cluster, the cluster reads of core.store, and the job and backend fields of 0004."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from core import store
from core.domain import WAITING_IN_QUEUE

V1 = "/api/v1"
MakeJob = Callable[..., Awaitable[uuid.UUID]]
GIB = 2**30
VERSIONS = {"qserver": "0.1.0", "python": "3.11.9", "ray": "2.60.0"}

# (node_id, address, hostname, tags, alive, cpus total/free, gpus total/free,
#  memory total/free, jobs_running, first_seen, last_seen), deliberately out of order.
NODES = [
    (
        "n-desk",
        "192.168.1.30",
        "desk",
        ["gpu", "big"],
        False,
        16.0,
        16.0,
        1.0,
        1.0,
        64 * GIB,
        60 * GIB,
        0,
        "2025-01-01 09:00:00+00",
        "2025-01-03 22:00:00+00",
    ),
    (
        "n-worker",
        "192.168.1.20",
        None,
        ["cpu", "fast"],
        True,
        4.0,
        1.5,
        0.0,
        0.0,
        8 * GIB,
        3 * GIB,
        2,
        "2025-01-02 10:00:00+01",
        "2025-01-04 12:00:00+00",
    ),
    (
        "n-head",
        "192.168.1.10",
        "head",
        ["cpu"],
        True,
        8.0,
        6.0,
        0.0,
        0.0,
        24 * GIB,
        20 * GIB,
        1,
        "2025-01-01 08:00:00+00",
        "2025-01-04 12:00:01+00",
    ),
]


def _node_json(row: tuple[Any, ...], first_seen: str, last_seen: str) -> dict[str, Any]:
    keys = (
        "node_id",
        "address",
        "hostname",
        "tags",
        "alive",
        "cpus_total",
        "cpus_free",
        "gpus_total",
        "gpus_free",
        "memory_total",
        "memory_free",
        "jobs_running",
    )
    return {
        **dict(zip(keys, row[:12], strict=False)),
        "versions": VERSIONS,
        "first_seen": first_seen,
        "last_seen": last_seen,
    }


@pytest.fixture
def nodes(db: psycopg.Connection) -> Iterator[Callable[[list[tuple[Any, ...]]], None]]:
    """An empty ``nodes`` table (this database is the tests' own) and a way to fill it."""
    db.execute("DELETE FROM nodes")

    def insert(rows: list[tuple[Any, ...]]) -> None:
        for row in rows:
            db.execute(
                "INSERT INTO nodes (node_id, address, hostname, tags, alive, cpus_total,"
                " cpus_free, gpus_total, gpus_free, memory_total, memory_free, jobs_running,"
                " first_seen, last_seen, versions)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (*row, Jsonb(VERSIONS)),
            )

    try:
        yield insert
    finally:
        db.execute("DELETE FROM nodes")


@pytest.fixture
async def aconn(dsn: str) -> AsyncIterator[psycopg.AsyncConnection]:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row)
    try:
        yield conn
    finally:
        await conn.close()


async def test_cluster_lists_nodes_and_totals(client: httpx.AsyncClient, nodes: Any) -> None:
    nodes(NODES)
    response = await client.get(f"{V1}/cluster")
    assert response.status_code == 200
    desk, worker, head = NODES
    assert response.json() == {
        "nodes": [
            _node_json(head, "2025-01-01T08:00:00Z", "2025-01-04T12:00:01Z"),
            _node_json(worker, "2025-01-02T09:00:00Z", "2025-01-04T12:00:00Z"),
            _node_json(desk, "2025-01-01T09:00:00Z", "2025-01-03T22:00:00Z"),
        ],
        "totals": {
            "nodes_alive": 2,
            "nodes_known": 3,
            "cpus_total": 12.0,
            "cpus_free": 7.5,
            "gpus_total": 0.0,
            "gpus_free": 0.0,
            "memory_total": 32 * GIB,
            "memory_free": 23 * GIB,
            "jobs_running": 3,
            "tags": ["cpu", "fast"],
            "tags_known": ["big", "cpu", "fast", "gpu"],
        },
    }


async def test_empty_cluster(client: httpx.AsyncClient, nodes: Any) -> None:
    response = await client.get(f"{V1}/cluster")
    assert response.status_code == 200
    assert response.json() == {
        "nodes": [],
        "totals": {
            "nodes_alive": 0,
            "nodes_known": 0,
            "cpus_total": 0,
            "cpus_free": 0,
            "gpus_total": 0,
            "gpus_free": 0,
            "memory_total": 0,
            "memory_free": 0,
            "jobs_running": 0,
            "tags": [],
            "tags_known": [],
        },
    }


async def test_cluster_in_openapi(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    get = spec["paths"][f"{V1}/cluster"]["get"]
    schema = get["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Cluster"}
    assert "Admin-only" in get["description"]
    schemas = spec["components"]["schemas"]
    assert set(schemas["Node"]["properties"]) == {
        "node_id",
        "address",
        "hostname",
        "tags",
        "alive",
        "cpus_total",
        "cpus_free",
        "gpus_total",
        "gpus_free",
        "memory_total",
        "memory_free",
        "jobs_running",
        "versions",
        "first_seen",
        "last_seen",
    }
    assert set(schemas["ClusterTotals"]["properties"]) == {
        "nodes_alive",
        "nodes_known",
        "cpus_total",
        "cpus_free",
        "gpus_total",
        "gpus_free",
        "memory_total",
        "memory_free",
        "jobs_running",
        "tags",
        "tags_known",
    }
    assert {"waiting_for", "memory_bytes"} <= set(schemas["Job"]["properties"])
    assert "needs_gpu" in schemas["Backend"]["properties"]


async def test_list_nodes_order(aconn: psycopg.AsyncConnection, nodes: Any) -> None:
    nodes(NODES)
    rows = await store.list_nodes(aconn)
    assert [r["node_id"] for r in rows] == ["n-head", "n-worker", "n-desk"]
    assert rows[0]["tags"] == ["cpu"] and rows[0]["versions"] == VERSIONS


async def test_cluster_capabilities(aconn: psycopg.AsyncConnection, nodes: Any) -> None:
    assert await store.cluster_capabilities(aconn) == {
        "tags_known": set(),
        "tags_alive": set(),
        "gpus_known": False,
        "gpus_alive": False,
        "memory_largest_known": 0,
        "memory_largest_alive": 0,
        "nodes_known": 0,
        "nodes_alive": 0,
    }
    nodes(NODES)
    assert await store.cluster_capabilities(aconn) == {
        "tags_known": {"big", "cpu", "fast", "gpu"},
        "tags_alive": {"cpu", "fast"},
        "gpus_known": True,
        "gpus_alive": False,
        "memory_largest_known": 64 * GIB,
        "memory_largest_alive": 24 * GIB,
        "nodes_known": 3,
        "nodes_alive": 2,
    }


async def test_backend_needs_gpu(aconn: psycopg.AsyncConnection) -> None:
    assert await store.backend_needs_gpu(aconn, name="aer") is False
    assert await store.backend_needs_gpu(aconn, name="aer_gpu") is True
    assert await store.backend_needs_gpu(aconn, name="nope") is None


async def test_backends_say_whether_they_need_a_gpu(client: httpx.AsyncClient) -> None:
    backends = {b["backend_name"]: b for b in (await client.get(f"{V1}/backends")).json()}
    assert backends["aer"]["needs_gpu"] is False
    assert backends["aer_gpu"]["needs_gpu"] is True
    assert backends["aer_gpu"]["plugin"] == "aer-plugin"
    one = await client.get(f"{V1}/backend/aer_gpu")
    assert one.status_code == 200
    assert one.json() == backends["aer_gpu"]
    assert (await client.get(f"{V1}/backend/aer")).json()["needs_gpu"] is False


async def test_waiting_job_says_what_it_waits_for(
    client: httpx.AsyncClient, make_job: MakeJob, db: psycopg.Connection
) -> None:
    job_id = await make_job(backend="aer_gpu", metadata={"shots": 10, "tags": ["gpu"]})
    plain = await make_job()
    waiting = "a node with tag 'gpu' (known, offline now)"
    db.execute(
        "UPDATE jobs SET waiting_for = %s, memory_bytes = %s WHERE id = %s",
        (waiting, 5 * GIB, job_id),
    )
    job = (await client.get(f"{V1}/job/{job_id}")).json()
    assert job["status"] == "pending"
    assert job["waiting_for"] == waiting
    assert job["memory_bytes"] == 5 * GIB
    other = (await client.get(f"{V1}/job/{plain}")).json()
    assert other["waiting_for"] == WAITING_IN_QUEUE and other["memory_bytes"] is None

    pointer = job["pointer"]
    page = (await client.get(f"{V1}/jobs", params={"cursor": pointer - 1})).json()
    assert page[0]["id"] == str(job_id)
    assert page[0]["waiting_for"] == waiting and page[0]["memory_bytes"] == 5 * GIB
