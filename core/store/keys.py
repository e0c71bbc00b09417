"""API keys: create, list, revoke (the CLI), look up and touch (ingest, api)."""

from __future__ import annotations

from typing import Any

import psycopg


def insert_api_key_sync(conn: psycopg.Connection, *, key_id: str, owner: str, role: str, key_hash: bytes) -> bool:
    """Store a key's hash; False (nothing stored) if ``key_id`` is taken."""
    cur = conn.execute(
        "INSERT INTO api_keys (key_id, owner, role, hash) VALUES (%s, %s, %s, %s) ON CONFLICT (key_id) DO NOTHING",
        (key_id, owner, role, key_hash),
    )
    return cur.rowcount == 1


def list_api_keys_sync(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every key, oldest first: {key_id, owner, role, created_at, revoked_at, last_used_at} (never the hash)."""
    cur = conn.execute(
        "SELECT key_id, owner, role, created_at, revoked_at, last_used_at FROM api_keys ORDER BY created_at, key_id"
    )
    return cur.fetchall()


def revoke_api_key_sync(conn: psycopg.Connection, *, key_id: str) -> dict[str, Any] | None:
    """Revoke a key (once: a revoked key keeps its first ``revoked_at``).

    Returns {key_id, owner, revoked_at, newly} or None when no key has that id.
    """
    cur = conn.execute(
        "WITH before AS (SELECT revoked_at FROM api_keys WHERE key_id = %(id)s FOR UPDATE)"
        " UPDATE api_keys k SET revoked_at = coalesce(k.revoked_at, now()) FROM before"
        " WHERE k.key_id = %(id)s"
        " RETURNING k.key_id, k.owner, k.revoked_at, before.revoked_at IS NULL AS newly",
        {"id": key_id},
    )
    return cur.fetchone()


async def get_api_key(conn: psycopg.AsyncConnection, *, key_id: str) -> dict[str, Any] | None:
    """{owner, role, hash, revoked_at, stale} of a key (one primary-key lookup), or None.

    ``stale``: ``last_used_at`` is unset or more than a minute old.
    """
    cur = await conn.execute(
        "SELECT owner, role, hash, revoked_at,"
        " (last_used_at IS NULL OR last_used_at < now() - interval '1 minute') AS stale"
        " FROM api_keys WHERE key_id = %s",
        (key_id,),
    )
    return await cur.fetchone()


async def touch_api_key(conn: psycopg.AsyncConnection, *, key_id: str) -> None:
    """Record that a key was used now."""
    await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE key_id = %s", (key_id,))
