"""The plugin routes: list the admitted plugins, admit one from the package index, remove one."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter

from api import distribution
from api.deps import AdminDep, ConnDep, PluginNameDep, PoolDep, SettingsDep
from api.models import AdmittedPlugin, ErrorDetail, Plugin, RemovedPlugin
from core import capabilities, store
from core.domain import BUILTIN_BACKENDS, BUILTIN_PLUGIN
from core.errors import Conflict

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["plugins"])

BUILT_IN: dict[str, tuple[str, ...]] = {BUILTIN_PLUGIN: BUILTIN_BACKENDS}
"""Plugins that are part of QServer (migration 0001 seeds them): admission downloads nothing."""

_AUTH_ERRORS = {
    401: {"model": ErrorDetail, "description": "authentication is on: no, a wrong or a revoked API key"},
    403: {"model": ErrorDetail, "description": "a user's key: admins only"},
}
_ADMIT_ERRORS = {
    **_AUTH_ERRORS,
    400: {"model": ErrorDetail, "description": "not a bare package name"},
    404: {"model": ErrorDetail, "description": "no such package on the configured index"},
    409: {"model": ErrorDetail, "description": "already admitted, or a backend name is taken"},
    422: {"model": ErrorDetail, "description": "the package is not a QServer plugin"},
    502: {"model": ErrorDetail, "description": "the package index could not be reached"},
    504: {"model": ErrorDetail, "description": "the download ran past its time limit"},
}
_REMOVE_ERRORS = {
    **_AUTH_ERRORS,
    400: {"model": ErrorDetail, "description": "not a bare package name"},
    404: {"model": ErrorDetail, "description": "no such plugin admitted"},
    409: {"model": ErrorDetail, "description": "jobs on its backends are pending or running"},
}


@router.get("/plugins", response_model=list[Plugin])
async def list_plugins(conn: ConnDep) -> list[dict[str, Any]]:
    """The admitted plugins, the built-in aer-plugin first, then in the order they were admitted,
    each with its version and backends (GET /backend/{name} gives a backend's capabilities)."""
    plugins = await store.list_plugins(conn)
    for plugin in plugins:
        if plugin["builtin"]:
            plugin["version"] = capabilities.qserver_version()
    return plugins


@router.post("/plugin/{name:path}", status_code=201, response_model=AdmittedPlugin, responses=_ADMIT_ERRORS)
async def admit_plugin(admin: AdminDep, name: PluginNameDep, pool: PoolDep, settings: SettingsDep) -> dict[str, Any]:
    """Admit a plugin (admins only): download its wheel from the configured index, register its backends.

    The backends come from ``<import_name>/backends.txt`` in the wheel, their capabilities from
    ``<import_name>/capabilities.json`` if it ships one; nothing of the package runs here. The
    built-in ``aer-plugin`` downloads nothing: admitting it (again) enables backend ``aer``. No
    connection is held during the download.
    """
    async with pool.connection() as conn:
        if name in BUILT_IN:
            await store.enable_builtin_plugin(conn, name=name, backends=BUILT_IN[name])
            log.info("plugin=%s built in: backends %s enabled", name, BUILT_IN[name])
            return {"name": name, "version": None, "backends": list(BUILT_IN[name])}
        plugin = await store.get_plugin(conn, name=name)
    if plugin is not None:
        raise Conflict(f"plugin {name} is already admitted (version {plugin['version']})")
    dist = await distribution.fetch_plugin(
        name, index_url=settings.plugin_index_url, timeout_s=settings.plugin_download_timeout_s
    )
    async with pool.connection() as conn:
        await store.admit_plugin(
            conn, name=name, version=dist.version, backends=dist.backends, capabilities=dist.capabilities
        )
    log.info("plugin=%s version=%s admitted: backends %s", name, dist.version, dist.backends)
    return {"name": name, "version": dist.version, "backends": list(dist.backends)}


@router.delete("/plugin/{name:path}", response_model=RemovedPlugin, responses=_REMOVE_ERRORS)
async def remove_plugin(admin: AdminDep, name: PluginNameDep, conn: ConnDep) -> dict[str, Any]:
    """Remove a plugin and its backends (admins only); 409 while jobs on them are pending or running.

    The built-in ``aer-plugin`` is disabled instead (backend ``aer`` hidden and refused)
    until it is admitted again. Jobs of a removed plugin keep their data.
    """
    await store.remove_plugin(conn, name=name)
    log.info("plugin=%s removed", name)
    return {"name": name, "removed": True}
