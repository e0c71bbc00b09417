"""The pool's JSON loader (core/store/connect.py) reads what json.loads reads, the same way."""

from __future__ import annotations

import json
from typing import Any

import pytest
from psycopg.pq import Format

from core.store.connect import _json_loads


@pytest.mark.parametrize(
    "text",
    ["{}", '{"shots": 100, "x": [1.5, -0.0, 1e-9, 12345678901234567890], "é": "\\u00e9\\ud83d\\ude00"}', "null", "[]"],
)
def test_it_is_json_loads(text: str) -> None:
    data = text.encode()
    assert json.dumps(_json_loads(data)) == json.dumps(json.loads(data))


async def test_the_pool_s_connections_use_it(app: Any) -> None:
    async with app.state.pool.connection() as conn:
        for name in ("json", "jsonb"):
            loader = conn.adapters.get_loader(conn.adapters.types[name].oid, Format.TEXT)
            assert loader._loads is _json_loads
        cur = await conn.execute("""SELECT '{"b": [1, 2.50], "a": "é"}'::jsonb AS b, '{"z": 1, "a": 2}'::json AS j""")
        assert await cur.fetchone() == {"b": {"a": "é", "b": [1, 2.5]}, "j": {"z": 1, "a": 2}}
