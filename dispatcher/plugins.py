"""Plugin runtime_envs built ahead of the first job: once per node, when a plugin is admitted."""

from __future__ import annotations

import asyncio
import logging

import ray
from psycopg_pool import AsyncConnectionPool
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cluster import executor
from core import store
from core.domain import BUILTIN_PLUGIN
from core.settings import Settings
from dispatcher.placement import plugin_runtime_env

log = logging.getLogger(__name__)

_plugin_backends = ray.remote(executor.plugin_backends)


async def prebuild(settings: Settings, pool: AsyncConnectionPool, name: str) -> None:
    """Build plugin ``name``'s runtime_env on every alive node (a no-CPU task pinned to each).

    Failures are logged, not raised: the job that needs the environment reports them.
    """
    if name == BUILTIN_PLUGIN:
        return
    async with pool.connection() as conn:
        row = await store.get_plugin(conn, name=name)
    if row is None:
        return
    env = plugin_runtime_env(name, row["version"], settings)
    nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
    refs = [
        _plugin_backends.options(
            runtime_env=env,
            num_cpus=0,
            max_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(name)
        for node_id in nodes
    ]
    results = await asyncio.gather(*refs, return_exceptions=True)
    for node_id, result in zip(nodes, results, strict=True):
        if isinstance(result, BaseException):
            log.warning(
                "plugin %s: runtime_env on node %s failed: %s",
                name,
                node_id[:12],
                str(result).strip().splitlines()[-1:],
            )
        else:
            log.info(
                "plugin %s==%s ready on node %s (%d backends)",
                name,
                row["version"],
                node_id[:12],
                len(result["backends"]),
            )


async def prebuild_all(settings: Settings, pool: AsyncConnectionPool) -> None:
    """Build the runtime_envs of every admitted third-party plugin (at dispatcher start)."""
    async with pool.connection() as conn:
        names = await store.third_party_plugins(conn)
    await asyncio.gather(*(prebuild(settings, pool, name) for name in names))
