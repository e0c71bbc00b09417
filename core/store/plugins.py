"""Plugins and their backends: admission, the built-in plugin, removal, lookups."""

from __future__ import annotations

from typing import Any

import psycopg

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
    backend = await get_backend(conn, name=name)
    if backend is None:
        raise BackendNotFound(f"backend {show(name)} does not exist; GET /api/v1/backends lists them")
    if not backend["enabled"]:
        raise BackendDisabled(f"backend {name!r} is disabled: its plugin {backend['plugin']!r} was removed")
    return backend


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
        cur = await conn.execute(_INSERT_BACKENDS, (name, list(backends)))
        if len(await cur.fetchall()) != len(backends):
            taken = await _backends_of_others(conn, name=name, backends=backends)
            raise Conflict(_taken(name, "(built in)", taken))


async def admit_plugin(conn: psycopg.AsyncConnection, *, name: str, version: str, backends: tuple[str, ...]) -> None:
    """Record a plugin and its (enabled) backends in one transaction.

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
        cur = await conn.execute(_INSERT_BACKENDS, (name, list(backends)))
        if len(await cur.fetchall()) != len(backends):  # another admission took one meanwhile
            taken = await _backends_of_others(conn, name=name, backends=backends)
            raise Conflict(_taken(name, version, taken))


_INSERT_BACKENDS = """
INSERT INTO backends (backend_name, plugin)
SELECT b, %s FROM unnest(%s::text[]) WITH ORDINALITY AS u(b, n) ORDER BY n
ON CONFLICT (backend_name) DO UPDATE SET enabled = true WHERE backends.plugin = EXCLUDED.plugin
RETURNING backend_name
"""


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
    """Enabled backends with pointer > cursor, PAGE_SIZE a page, in pointer order: {id, pointer,
    backend_name, plugin, needs_gpu}."""
    cur = await conn.execute(
        "SELECT id, pointer, backend_name, plugin, needs_gpu FROM backends"
        " WHERE enabled AND pointer > %s ORDER BY pointer LIMIT %s",
        (cursor, PAGE_SIZE),
    )
    return await cur.fetchall()


async def third_party_plugins(conn: psycopg.AsyncConnection) -> list[str]:
    """Names of the admitted plugins other than the built-in one."""
    cur = await conn.execute("SELECT name FROM plugins WHERE NOT builtin ORDER BY name")
    return [row["name"] for row in await cur.fetchall()]
