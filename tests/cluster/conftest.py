"""A homelab on one machine: ray.cluster_utils.Cluster with a head and two nodes of different
tags and memory, and a QServer stack (ingest, dispatcher, api, nginx) joined to it.

What cannot exist here is mocked, and only that: node B declares a GPU it does not have
(Ray's num_gpus), and GPU jobs run Aer with device CPU in the base environment
(QSERVER_AER_GPU_DEVICE=CPU, QSERVER_GPU_PIP_PACKAGES=[]), so CI never downloads CUDA Aer.
"""

from __future__ import annotations

import os
import time

import psycopg
import pytest

from core.settings import Settings
from tests.conftest import HOMELAB_STATE_DIR

MIB = 1024**2


@pytest.fixture(scope="module")
def homelab_settings() -> Settings:
    """Settings of the homelab stack: its own database, queue, ports and state dir."""
    return Settings(
        database_url="postgresql://postgres@127.0.0.1:5432/qserver_test_homelab",
        queue_name="qserver.test.homelab",
        ingest_port=51072,
        api_port=18021,
        ingest_monitor_port=18022,
        dispatcher_monitor_port=18023,
        nginx_http_port=18100,
        nginx_grpc_port=15071,
        nginx_tls_port=18473,
        state_dir=HOMELAB_STATE_DIR,
        ray_start_head=False,
        executor_warm_workers=1,
        cluster_refresh_s=0.5,
        aer_gpu_device="CPU",
        gpu_pip_packages=[],
    )


class Homelab:
    """The Ray cluster, its nodes by role, and a client for the stack joined to it."""

    def __init__(self, cluster, nodes: dict, client, settings: Settings):
        self.cluster, self.nodes, self.client, self.settings = cluster, nodes, client, settings

    def node_id(self, role: str) -> str:
        return self.nodes[role].node_id

    def add_node(self, role: str, **node_args):
        """Start a node whose workers see this stack's database (nodes read it from their own
        environment, as on a real homelab machine)."""
        saved = os.environ.get("QSERVER_DATABASE_URL")
        os.environ["QSERVER_DATABASE_URL"] = self.settings.database_dsn
        try:
            self.nodes[role] = self.cluster.add_node(**node_args)
        finally:
            os.environ["QSERVER_DATABASE_URL"] = saved
        return self.nodes[role]

    def add_lab_node(self):
        """Node A: tag `lab`, a (mocked) GPU, 768 MiB for jobs."""
        return self.add_node("lab", num_cpus=1, num_gpus=1, memory=768 * MIB, resources={"tag:lab": 1000.0})

    def nodes_table(self) -> dict[str, bool]:
        with psycopg.connect(self.settings.database_dsn, autocommit=True) as conn:
            return dict(conn.execute("SELECT node_id, alive FROM nodes").fetchall())

    def wait_for_node(self, node_id: str, alive: bool, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.nodes_table().get(node_id) != alive:
            assert time.monotonic() < deadline, f"node {node_id[:12]} never became alive={alive}"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def homelab(homelab_settings):
    from ray.cluster_utils import Cluster

    from ops import endpoints
    from ops import stack as stack_ops
    from ops.endpoints import free_port
    from ops.rayhead import ray_env
    from tests.client import Stack
    from tests.conftest import _drop_database

    settings = homelab_settings
    stack_ops.down(settings)
    _drop_database(settings.database_dsn)
    # the cluster runs with the token the dispatcher uses (tests/conftest.py set the variables
    # before Ray was imported; ray_env writes the token file)
    assert ray_env(settings)["RAY_AUTH_TOKEN_PATH"] == os.environ["RAY_AUTH_TOKEN_PATH"]
    cluster = Cluster(initialize_head=False)
    lab = Homelab(cluster, {}, None, settings)
    lab.add_node("head", num_cpus=1, memory=768 * MIB, gcs_server_port=free_port(), include_dashboard=False)
    settings = lab.settings = settings.model_copy(update={"ray_address": cluster.address})
    lab.add_lab_node()
    lab.add_node("big", num_cpus=1, memory=3 * 1024 * MIB, resources={"tag:big": 1000.0})
    nodes = lab.nodes
    try:
        stack_ops.up(settings)
        lab.client = Stack(**endpoints.client_address(settings))
        for node in nodes.values():
            lab.wait_for_node(node.node_id, True)
        yield lab
    finally:
        stack_ops.down(settings)
        cluster.shutdown()
