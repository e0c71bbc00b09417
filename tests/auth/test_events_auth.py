"""Event streams with authentication on, over real HTTP (uvicorn) and the real database: a user's
/events carries their jobs only (an admin's, everyone's), another user's job stream is 404, a
stream needs a key, and the per-caller bound on streams is per user."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from core import store
from core.settings import Settings
from qserver_client import Client
from qserver_client.errors import JobNotFound, Unauthenticated
from tests.auth.conftest import MakeJob, MakeKey, bearer
from tests.served import Reader, Served, serve, until_true


@pytest.fixture(scope="module")
def served(auth_settings: Settings) -> Iterator[Served]:
    """The auth-on api on real HTTP, 2 streams a caller."""
    with serve(auth_settings.model_copy(update={"events_streams_per_caller": 2})) as server:
        yield server


def client(served: Served, key: str | None) -> Client:
    return Client(url=served.url, grpc="127.0.0.1:1", api_key=key or "")


async def test_a_users_events_are_their_own_an_admins_everyones(
    served: Served, make_key: MakeKey, make_job: MakeJob, db: psycopg.Connection
) -> None:
    alice_key, bob_key, admin_key = make_key("alice"), make_key("bob"), make_key("root", role="admin")
    alice, bob = make_key.owner(alice_key), make_key.owner(bob_key)
    alices, bobs = await make_job(owner=alice, status="running"), await make_job(owner=bob, status="running")
    await until_true(lambda: served.app.state.waiters.watch_count == 0)  # earlier tests' streams closed
    with client(served, alice_key) as as_alice, client(served, admin_key) as as_admin:
        mine = Reader(as_alice.all_events(), until=lambda event: event["id"] == str(alices))
        everyones = Reader(as_admin.all_events(), until=lambda event: event["id"] == str(alices))
        await until_true(lambda: served.app.state.waiters.watch_count == 2)
        assert await asyncio.to_thread(store.fail_job_sync, db, job_id=bobs, error="boom", node_id=None)
        assert await asyncio.to_thread(store.fail_job_sync, db, job_id=alices, error="boom", node_id=None)
        seen_by_alice = await mine.rest()
        seen_by_admin = await everyones.rest()
    assert [(e["id"], e["owner"], e["status"]) for e in seen_by_alice] == [(str(alices), alice, "failed")]
    assert [(e["id"], e["owner"]) for e in seen_by_admin if e["id"] in (str(alices), str(bobs))] == [
        (str(bobs), bob),
        (str(alices), alice),
    ]


async def test_another_users_job_stream_is_404_and_a_key_is_needed(
    served: Served, make_key: MakeKey, make_job: MakeJob
) -> None:
    alice_key, bob_key = make_key("alice"), make_key("bob")
    alices = await make_job(owner=make_key.owner(alice_key), status="finished")
    with client(served, bob_key) as as_bob, client(served, None) as anonymous, client(served, alice_key) as as_alice:
        with pytest.raises(JobNotFound, match=f"job {alices} not found"):
            await asyncio.to_thread(lambda: next(as_bob.events(str(alices))))
        for stream in (anonymous.events(str(alices)), anonymous.all_events()):
            with pytest.raises(Unauthenticated):
                await asyncio.to_thread(next, stream)
        events = await asyncio.to_thread(lambda: list(as_alice.events(str(alices))))
    assert [(e["event"], e["status"]) for e in events] == [("status", "finished"), ("end", "finished")]
    assert events[-1]["results"]["counts"] == {"11": 7}
    await until_true(lambda: served.app.state.streams.open == 0)


async def test_the_bound_on_streams_is_per_user(served: Served, make_key: MakeKey) -> None:
    alice_key, bob_key = make_key("alice"), make_key("bob")
    async with httpx.AsyncClient(base_url=served.url) as http:
        async with http.stream("GET", "/api/v1/events", headers=bearer(alice_key)):
            async with http.stream("GET", "/api/v1/events", headers=bearer(alice_key)):
                refused = await http.get("/api/v1/events", headers=bearer(alice_key))
                assert refused.status_code == 429 and refused.headers["Retry-After"] == "5"
                async with http.stream("GET", "/api/v1/events", headers=bearer(bob_key)) as bobs:
                    assert bobs.status_code == 200
