"""Plugins and their backends: admission, the built-in plugin, removal, lookups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from core.domain import show
from core.errors import (
    BackendDisabled,
    BackendNotFound,
    Conflict,
    PluginNotFound,
)
from core.store.connect import PAGE_SIZE


async def get_backend(conn: psycopg.AsyncConnection, *, name: str) -> dict[str, Any] | None:
    """The backend row {id, pointer, backend_name, plugin, enabled, needs_gpu}, or None."""
    cur = await conn.execute(
        "SELECT id, pointer, backend_name, plugin, enabled, needs_gpu FROM backends WHERE backend_name = %s",
        (name,),
    )
    return await cur.fetchone()


async def require_backend(conn: psycopg.AsyncConnection, *, name: str) -> dict[str, Any]:
    """The enabled backend called ``name``.

    Raises:
        BackendNotFound: no backend has that name.
        BackendDisabled: its plugin was removed.
    """
    return _enabled(name, await get_backend(conn, name=name))


def _enabled(name: str, backend: dict[str, Any] | None) -> dict[str, Any]:
    if backend is None:
        raise BackendNotFound(f"backend {show(name)} does not exist; GET /api/v1/backends lists them")
    if not backend["enabled"]:
        raise BackendDisabled(f"backend {name!r} is disabled: its plugin {backend['plugin']!r} was removed")
    return backend


# A backend with what its capabilities are made of (core.capabilities): what its plugin declared,
# the plugin's version and whether it is built in, and the memory of the largest node alive now
# that can run it (with a GPU when it needs one; null when none is alive).
_DETAILS = """
SELECT b.id, b.pointer, b.backend_name, b.plugin, b.enabled, b.needs_gpu, b.capabilities,
       p.builtin AS plugin_builtin, p.version AS plugin_version,
       (SELECT max(n.memory_total) FROM nodes n
         WHERE n.alive AND (NOT b.needs_gpu OR n.gpus_total >= 1)) AS node_memory
  FROM backends b LEFT JOIN plugins p ON p.name = b.plugin
"""


async def describe_backend(conn: psycopg.AsyncConnection, *, name: str) -> dict[str, Any]:
    """The enabled backend called ``name`` with its details: {id, pointer, backend_name, plugin,
    enabled, needs_gpu, capabilities (declared, or None), plugin_builtin, plugin_version,
    node_memory (bytes, or None)}.

    Raises:
        BackendNotFound: no backend has that name.
        BackendDisabled: its plugin was removed.
    """
    cur = await conn.execute(f"{_DETAILS} WHERE b.backend_name = %s", (name,))
    return _enabled(name, await cur.fetchone())


async def get_plugin(conn: psycopg.AsyncConnection, *, name: str) -> dict[str, Any] | None:
    """The plugin row {name, version, builtin, admitted_at}, or None."""
    cur = await conn.execute("SELECT name, version, builtin, admitted_at FROM plugins WHERE name = %s", (name,))
    return await cur.fetchone()


async def enable_builtin_plugin(conn: psycopg.AsyncConnection, *, name: str, backends: tuple[str, ...]) -> None:
    """(Re-)enable the backends of a built-in plugin, recreating any missing row.

    Nothing is downloaded or updated in ``plugins`` (no ``qserver_plugins`` notification,
    ``admitted_at`` unchanged): a built-in plugin lives in the base environment.

    Raises:
        Conflict: one of ``backends`` belongs to another plugin.
    """
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO plugins (name, builtin) VALUES (%s, true) ON CONFLICT (name) DO NOTHING",
            (name,),
        )
        cur = await conn.execute(_INSERT_BACKENDS, _backend_rows(name, backends, None))
        if len(await cur.fetchall()) != len(backends):
            taken = await _backends_of_others(conn, name=name, backends=backends)
            raise Conflict(_taken(name, "(built in)", taken))


async def admit_plugin(
    conn: psycopg.AsyncConnection,
    *,
    name: str,
    version: str,
    backends: tuple[str, ...],
    capabilities: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Record a plugin and its (enabled) backends in one transaction.

    ``capabilities``: what the plugin declares per backend (core.capabilities.parse_declaration),
    stored with the backend; its ``needs_gpu`` becomes the backend's. None: it declares nothing.

    The plugin row's INSERT notifies ``qserver_plugins`` at commit, so the dispatcher
    starts building its runtime_env.

    Raises:
        Conflict: the plugin is already admitted, or one of ``backends`` belongs to
            another plugin.
    """
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO plugins (name, version, builtin) VALUES (%s, %s, false)"
            " ON CONFLICT (name) DO NOTHING RETURNING name",
            (name, version),
        )
        if await cur.fetchone() is None:
            existing = await get_plugin(conn, name=name)
            version = existing["version"] if existing else None
            raise Conflict(f"plugin {name} is already admitted (version {version})")
        taken = await _backends_of_others(conn, name=name, backends=backends)
        if taken:
            raise Conflict(_taken(name, version, taken))
        cur = await conn.execute(_INSERT_BACKENDS, _backend_rows(name, backends, capabilities))
        if len(await cur.fetchall()) != len(backends):  # another admission took one meanwhile
            taken = await _backends_of_others(conn, name=name, backends=backends)
            raise Conflict(_taken(name, version, taken))


_INSERT_BACKENDS = """
INSERT INTO backends (backend_name, plugin, capabilities, needs_gpu)
SELECT b, %(plugin)s, (d.caps -> b) - 'needs_gpu', coalesce((d.caps -> b ->> 'needs_gpu')::boolean, false)
  FROM unnest(%(backends)s::text[]) WITH ORDINALITY AS u(b, n), (SELECT %(caps)s::jsonb AS caps) AS d
 ORDER BY n
ON CONFLICT (backend_name) DO UPDATE SET enabled = true WHERE backends.plugin = EXCLUDED.plugin
RETURNING backend_name
"""


def _backend_rows(
    plugin: str, backends: tuple[str, ...], capabilities: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, Any]:
    return {"plugin": plugin, "backends": list(backends), "caps": Jsonb(dict(capabilities or {}))}


async def _backends_of_others(
    conn: psycopg.AsyncConnection, *, name: str, backends: tuple[str, ...]
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT backend_name, plugin FROM backends WHERE backend_name = ANY(%s) AND plugin <> %s ORDER BY pointer",
        (list(backends), name),
    )
    return await cur.fetchall()


def _taken(name: str, version: str, taken: list[dict[str, Any]]) -> str:
    names = ", ".join(f"{t['backend_name']} (plugin {t['plugin']})" for t in taken)
    return f"plugin {name} {version} ships backend names that other plugins already registered: {names}"


async def remove_plugin(conn: psycopg.AsyncConnection, *, name: str) -> None:
    """Remove a plugin unless a job on one of its backends is pending or running.

    One transaction with the plugin row locked (``FOR UPDATE``). A built-in plugin keeps
    its rows and has its backends disabled; any other loses its backend rows and its
    plugin row. Jobs keep their data: they name backends, with no foreign key.

    Known window: ingest checks the backend, then inserts the job, outside this lock; a
    submission whose check ran just before the removal committed can still insert a
    pending job on a removed backend (the dispatcher then fails it: no such backend).

    Raises:
        PluginNotFound: no plugin of that name is admitted.
        Conflict: jobs on its backends are pending or running (their number is named).
    """
    async with conn.transaction():
        cur = await conn.execute("SELECT name, builtin FROM plugins WHERE name = %s FOR UPDATE", (name,))
        plugin = await cur.fetchone()
        if plugin is None:
            raise PluginNotFound(f"plugin {name} is not admitted")
        cur = await conn.execute(
            "SELECT count(*) AS n FROM jobs WHERE status IN ('pending', 'claimed', 'running')"
            " AND target_simulator IN (SELECT backend_name FROM backends WHERE plugin = %s)",
            (name,),
        )
        active = (await cur.fetchone())["n"]
        if active:
            jobs = "job is" if active == 1 else "jobs are"
            raise Conflict(
                f"plugin {name} cannot be removed: {active} {jobs} pending or running on its"
                " backends; wait for them to end or cancel them (PUT /api/v1/job/cancel/<id>)"
            )
        if plugin["builtin"]:
            await conn.execute("UPDATE backends SET enabled = false WHERE plugin = %s", (name,))
        else:
            await conn.execute("DELETE FROM backends WHERE plugin = %s", (name,))
            await conn.execute("DELETE FROM plugins WHERE name = %s", (name,))


async def backend_needs_gpu(conn: psycopg.AsyncConnection, *, name: str) -> bool | None:
    """Whether the backend called ``name`` needs a GPU; None when there is no such backend."""
    cur = await conn.execute("SELECT needs_gpu FROM backends WHERE backend_name = %s", (name,))
    row = await cur.fetchone()
    return None if row is None else row["needs_gpu"]


async def list_backends(conn: psycopg.AsyncConnection, *, cursor: int = 0) -> list[dict[str, Any]]:
    """Enabled backends with pointer > cursor, PAGE_SIZE a page, in pointer order, each as
    describe_backend gives it."""
    cur = await conn.execute(
        f"{_DETAILS} WHERE b.enabled AND b.pointer > %s ORDER BY b.pointer LIMIT %s", (cursor, PAGE_SIZE)
    )
    return await cur.fetchall()


async def list_plugins(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """Every admitted plugin, the built-in one first, then in the order they were admitted:
    {name, version (None for the built-in one), builtin, admitted_at, backends (names, in
    pointer order), enabled (whether its backends are: False for a removed built-in plugin)}."""
    cur = await conn.execute(
        "SELECT p.name, p.version, p.builtin, p.admitted_at,"
        " coalesce(array_agg(b.backend_name ORDER BY b.pointer) FILTER (WHERE b.backend_name IS NOT NULL), '{}')"
        " AS backends, coalesce(bool_or(b.enabled), false) AS enabled"
        " FROM plugins p LEFT JOIN backends b ON b.plugin = p.name"
        " GROUP BY p.name ORDER BY p.builtin DESC, p.admitted_at, p.name"
    )
    return await cur.fetchall()


async def third_party_plugins(conn: psycopg.AsyncConnection) -> list[str]:
    """Names of the admitted plugins other than the built-in one."""
    cur = await conn.execute("SELECT name FROM plugins WHERE NOT builtin ORDER BY name")
    return [row["name"] for row in await cur.fetchall()]
