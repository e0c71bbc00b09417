"""The built-in backends' capabilities: Aer's methods QServer runs, each bounded by the settings
and by the memory of the largest alive node that can run the backend (a GPU node for aer_gpu)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from core import capabilities

V1 = "/api/v1"
GIB = 1024**3
METHODS = ["statevector", "density_matrix", "stabilizer", "extended_stabilizer", "matrix_product_state"]
SETTINGS_BOUNDS = {  # core.settings' default max_active_qubits, less unitary and superop
    "statevector": 34,
    "density_matrix": 17,
    "stabilizer": 10_000,
    "extended_stabilizer": 63,
    "matrix_product_state": 1_000,
}


@pytest.fixture
def nodes(db: psycopg.Connection) -> Iterator[Callable[..., None]]:
    """An empty ``nodes`` table (this database is the tests' own) and a way to add a node."""
    db.execute("DELETE FROM nodes")

    def add(node_id: str, *, memory: int, gpus: float = 0, alive: bool = True) -> None:
        db.execute(
            "INSERT INTO nodes (node_id, address, alive, gpus_total, memory_total) VALUES (%s, '10.0.0.1', %s, %s, %s)",
            (node_id, alive, gpus, memory),
        )

    try:
        yield add
    finally:
        db.execute("DELETE FROM nodes")


async def caps(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    response = await client.get(f"{V1}/backend/{name}")
    assert response.status_code == 200, response.text
    return response.json()["capabilities"]


async def test_without_nodes_the_settings_bound_them(client: httpx.AsyncClient, nodes: Any) -> None:
    aer = await caps(client, "aer")
    assert aer == {
        "methods": METHODS,
        "max_qubits": SETTINGS_BOUNDS,
        "result_types": ["counts", "quasi_dist", "expval"],
        "plugin_version": capabilities.qserver_version(),
        "needs_gpu": False,
    }
    assert aer["plugin_version"]  # QServer is installed (pip install -e .)
    assert await caps(client, "aer_gpu") == {**aer, "needs_gpu": True}


async def test_the_largest_alive_node_bounds_the_state_methods(client: httpx.AsyncClient, nodes: Any) -> None:
    nodes("small", memory=2 * GIB)
    nodes("big", memory=64 * GIB)
    nodes("gone", memory=1024 * GIB, alive=False)  # left: counts no more
    nodes("gpu", memory=12 * GIB, gpus=1)
    # 64 GiB: 256 MiB + 16 B x 2^31 x 9/8 fits, 2^32 does not; a density matrix 4^15
    assert (await caps(client, "aer"))["max_qubits"] == {**SETTINGS_BOUNDS, "statevector": 31, "density_matrix": 15}
    # aer_gpu runs on the GPU node only: 12 GiB
    assert (await caps(client, "aer_gpu"))["max_qubits"] == {
        **SETTINGS_BOUNDS,
        "statevector": 29,
        "density_matrix": 14,
    }
    listed = (await client.get(f"{V1}/backends")).json()
    assert [b["capabilities"] for b in listed[:2]] == [await caps(client, "aer"), await caps(client, "aer_gpu")]


async def test_the_settings_bound_a_large_node(
    client: httpx.AsyncClient, nodes: Any, use_settings: Callable[..., Any]
) -> None:
    nodes("huge", memory=4096 * GIB)
    assert (await caps(client, "aer"))["max_qubits"]["statevector"] == 34  # 37 would fit
    use_settings(max_active_qubits={"statevector": 20, "stabilizer": 500, "superop": 5})
    assert await caps(client, "aer") == {
        "methods": ["statevector", "stabilizer"],
        "max_qubits": {"statevector": 20, "stabilizer": 500},
        "result_types": ["counts", "quasi_dist", "expval"],
        "plugin_version": capabilities.qserver_version(),
        "needs_gpu": False,
    }


def test_qubits_in_memory() -> None:
    for memory in (300 * 1024**2, GIB, 7 * GIB, 64 * GIB):
        for method in ("statevector", "density_matrix"):
            qubits = capabilities.qubits_in(memory, method, 1000)
            assert capabilities.state_bytes(qubits, method) <= memory < capabilities.state_bytes(qubits + 1, method)
    assert capabilities.qubits_in(100 * 1024**2, "statevector", 34) == 0  # not even a worker
    assert capabilities.qubits_in(GIB, "stabilizer", 10_000) == 10_000  # no state counted
