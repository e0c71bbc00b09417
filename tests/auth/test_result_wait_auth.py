"""GET /job/result/{id}?wait_s= with authentication on: a wait answered from the job's end
notification (migration 0014) answers its owner (and admins) only, as the read does."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import psycopg

from core import store
from tests.auth.conftest import bearer

V1 = "/api/v1"
COUNTS = {"00": 3, "11": 4}


async def _wait_while(api: httpx.AsyncClient, job_id: uuid.UUID, key: str, write, *, wait_s: float = 30):
    """A wait on ``job_id`` as ``key``'s user, during which ``write`` runs on another connection."""
    waiting = asyncio.create_task(api.get(f"{V1}/job/result/{job_id}", params={"wait_s": wait_s}, headers=bearer(key)))
    await asyncio.sleep(0.3)
    await asyncio.to_thread(write)
    return await asyncio.wait_for(waiting, wait_s + 10)


def _finish(dsn: str, job_id: uuid.UUID):
    def write() -> None:
        with store.connect_sync(dsn) as conn:
            done = store.record_outcomes_sync(conn, finished=[(job_id, {"counts": COUNTS})], failed=[], node_id="n")
            assert done == {job_id}

    return write


async def test_the_owner_and_an_admin_are_answered_from_the_notification(api, auth_dsn, make_key, make_job) -> None:
    alice, admin = make_key("alice"), make_key("root", role="admin")
    for key in (alice, admin):
        job_id = await make_job(owner=make_key.owner(alice), status="running")
        waited = await _wait_while(api, job_id, key, _finish(auth_dsn, job_id))
        plain = await api.get(f"{V1}/job/result/{job_id}", headers=bearer(alice))
        assert waited.status_code == plain.status_code == 200
        assert waited.content == plain.content and waited.json()["counts"] == COUNTS


async def test_another_users_wait_is_404_at_once(api, make_key, make_job) -> None:
    alice, bob = make_key("alice"), make_key("bob")
    job_id = await make_job(owner=make_key.owner(alice), status="running")
    started = time.monotonic()
    response = await api.get(f"{V1}/job/result/{job_id}", params={"wait_s": 30}, headers=bearer(bob))
    assert response.status_code == 404 and response.json() == {"detail": f"job {job_id} not found"}
    assert time.monotonic() - started < 5


async def test_a_notification_naming_another_owner_is_not_answered(api, auth_dsn, make_key, make_job) -> None:
    """Defense in depth: a change whose owner is not the caller's never answers, even for the
    caller's own job id (nothing of ours sends one; it is forged here)."""
    bob = make_key("bob")
    job_id = await make_job(owner=make_key.owner(bob), status="running")
    forged = f'{job_id} finished {time.time()} alice\n20\n{uuid.uuid4()}\n{{"11": 1000}}\n\n'

    def forge() -> None:
        with psycopg.connect(auth_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, %s)", (store.JOB_STATUS_CHANNEL, forged))

    response = await _wait_while(api, job_id, bob, forge, wait_s=1.5)
    assert response.status_code == 404
    assert response.json() == {"detail": f"job {job_id} has no results: it is running"}
