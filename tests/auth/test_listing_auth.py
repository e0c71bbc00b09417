"""GET /jobs and /history filtered, ordered and lean with authentication on: a user's pages hold
their own rows only, whatever the filters; an admin's hold everyone's."""

from __future__ import annotations

from typing import Any

import httpx

from tests.auth.conftest import bearer

V1 = "/api/v1"


async def walk(api: httpx.AsyncClient, route: str, key: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row of a listing, following X-Next-Cursor."""
    rows, params = [], dict(params)
    while True:
        response = await api.get(f"{V1}{route}", params=params, headers=bearer(key))
        assert response.status_code == 200, response.text
        rows.extend(response.json())
        if "x-next-cursor" not in response.headers:
            return rows
        params["cursor"] = response.headers["x-next-cursor"]


async def test_filters_never_show_another_users_rows(api, make_key, make_job):
    admin, alice, bob = make_key("root", role="admin"), make_key("alice"), make_key("bob")
    owners = {alice: make_key.owner(alice), bob: make_key.owner(bob)}
    made: dict[str, dict[str, str]] = {alice: {}, bob: {}}
    for i in range(12):
        for key in (alice, bob):
            status = ("finished", "failed", "pending")[i % 3]
            made[key][str(await make_job(owner=owners[key], status=status))] = status

    for key in (alice, bob):
        for order in ("asc", "desc"):
            params = {"order": order, "limit": 3, "fields": "owner,status", "status": "finished,failed"}
            rows = await walk(api, "/jobs", key, params)
            assert {row["owner"] for row in rows} == {owners[key]}
            assert {row["id"] for row in rows} == {i for i, s in made[key].items() if s != "pending"}
            pointers = [row["pointer"] for row in rows]
            assert pointers == sorted(pointers, reverse=order == "desc") and len(set(pointers)) == len(pointers)
            history = await walk(api, "/history", key, {**params, "fields": "job_id,owner"})
            assert {row["owner"] for row in history} == {owners[key]}
            assert {row["job_id"] for row in history} == {i for i, s in made[key].items() if s != "pending"}
        pending = await walk(api, "/jobs", key, {"status": "pending", "backend": "aer", "order": "desc"})
        assert {row["id"] for row in pending} == {i for i, s in made[key].items() if s == "pending"}

    everyone = await walk(api, "/jobs", admin, {"order": "desc", "limit": 5, "fields": "owner"})
    assert set(made[alice]) | set(made[bob]) <= {row["id"] for row in everyone}  # fixtures delete others' jobs
    refused = await api.get(f"{V1}/jobs", params={"order": "desc", "fields": "owner", "status": "failed"})
    assert refused.status_code == 401
