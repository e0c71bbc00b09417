"""The REST api with authentication on (ASGI app, real Postgres): 401s, ownership, admin routes."""

from __future__ import annotations

import uuid

import httpx
import pytest

from core import auth, store
from tests.auth.conftest import bearer

V1 = "/api/v1"
OTHER_SCHEME = {"Authorization": "Basic dXNlcjpwdw=="}


def job_routes(job_id: uuid.UUID) -> list[tuple[str, str]]:
    return [
        ("GET", f"{V1}/job/{job_id}"),
        ("GET", f"{V1}/job/result/{job_id}"),
        ("PUT", f"{V1}/job/cancel/{job_id}"),
        ("DELETE", f"{V1}/job/{job_id}"),
        ("GET", f"{V1}/jobs"),
        ("GET", f"{V1}/history"),
        ("GET", f"{V1}/cluster"),
        ("POST", f"{V1}/plugin/aer-plugin"),
        ("DELETE", f"{V1}/plugin/aer-plugin"),
    ]


async def test_every_job_route_refuses_a_missing_wrong_or_revoked_key(api, db, make_key, make_job):
    owner_key = make_key("owner", role="admin")
    job_id = await make_job(owner=make_key.owner(owner_key), status="finished")
    revoked = make_key("gone", role="admin")
    store.revoke_api_key_sync(db, key_id=auth.parse_key(revoked))
    wrong = f"qsk_{auth.parse_key(owner_key)}_" + "W" * 43
    cases = {
        "missing": ({}, "missing API key"),
        "malformed": (bearer("not-a-key"), "malformed API key"),
        "wrong": (bearer(wrong), "invalid API key"),
        "wrong x-api-key": ({"X-API-Key": wrong}, "invalid API key"),
        "revoked": (bearer(revoked), "was revoked"),
        "other scheme": (OTHER_SCHEME, "Bearer <key>"),
    }
    for method, path in job_routes(job_id):
        for case, (headers, message) in cases.items():
            response = await api.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, case, response.text)
            assert message in response.json()["detail"], (method, path, case)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "counts" not in response.text
    # none of it changed anything
    job = (await api.get(f"{V1}/job/{job_id}", headers=bearer(owner_key))).json()
    assert job["status"] == "finished" and job["results"]["counts"] == {"11": 7}
    backends = (await api.get(f"{V1}/backends")).json()
    assert "aer" in [b["backend_name"] for b in backends]


async def test_a_malformed_id_without_a_key_is_401_first(api):
    response = await api.get(f"{V1}/job/not-a-uuid")
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/health", "/backends", "/backend/aer"])
async def test_open_routes_need_no_key(api, path):
    response = await api.get(f"{V1}{path}")
    assert response.status_code == 200, response.text


async def test_docs_and_openapi_need_no_key(api):
    assert (await api.get("/docs")).status_code == 200
    spec = (await api.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}
    job = spec["paths"][f"{V1}/job/{{id}}"]["get"]
    assert "401" in job["responses"] and job.get("security")
    assert "403" in spec["paths"][f"{V1}/cluster"]["get"]["responses"]
    assert not spec["paths"][f"{V1}/backends"]["get"].get("security")


@pytest.mark.parametrize("how", ["bearer", "x-api-key"])
async def test_both_headers_carry_a_key(api, make_key, make_job, how):
    key = make_key("alice")
    job_id = await make_job(owner=make_key.owner(key))
    headers = bearer(key) if how == "bearer" else {"X-API-Key": key}
    response = await api.get(f"{V1}/job/{job_id}", headers=headers)
    assert response.status_code == 200
    assert response.json()["owner"] == make_key.owner(key)


async def test_a_user_never_sees_or_changes_another_users_job(api, db, make_key, make_job):
    alice, bob = make_key("alice"), make_key("bob")
    a = make_key.owner(alice)
    finished = await make_job(owner=a, status="finished")
    pending = await make_job(owner=a)
    unknown = uuid.uuid4()

    def not_found(response: httpx.Response, job_id: uuid.UUID) -> None:
        assert response.status_code == 404, response.text
        assert response.json() == {"detail": f"job {job_id} not found"}  # as for an unknown id

    for job_id in (finished, pending, unknown):
        not_found(await api.get(f"{V1}/job/{job_id}", headers=bearer(bob)), job_id)
        not_found(await api.get(f"{V1}/job/result/{job_id}", headers=bearer(bob)), job_id)
        not_found(await api.put(f"{V1}/job/cancel/{job_id}", headers=bearer(bob)), job_id)
        not_found(await api.delete(f"{V1}/job/{job_id}", headers=bearer(bob)), job_id)
    # nothing changed
    rows = db.execute("SELECT id, status FROM jobs WHERE id = ANY(%s)", ([finished, pending],)).fetchall()
    assert {r["id"]: r["status"] for r in rows} == {finished: "finished", pending: "pending"}

    bobs = (await api.get(f"{V1}/jobs", headers=bearer(bob))).json()
    assert not {str(finished), str(pending)} & {j["id"] for j in bobs}
    history = (await api.get(f"{V1}/history", headers=bearer(bob))).json()
    assert str(finished) not in {h["job_id"] for h in history}

    # alice sees and changes her own
    assert (await api.get(f"{V1}/job/result/{finished}", headers=bearer(alice))).json()["counts"] == {"11": 7}
    no_results = await api.get(f"{V1}/job/result/{pending}", headers=bearer(alice))
    assert no_results.status_code == 404 and "it is pending" in no_results.json()["detail"]
    mine = {j["id"] for j in (await api.get(f"{V1}/jobs", headers=bearer(alice))).json()}
    assert mine == {str(finished), str(pending)}
    assert (await api.put(f"{V1}/job/cancel/{pending}", headers=bearer(alice))).json()["status"] == "canceled"
    again = await api.put(f"{V1}/job/cancel/{pending}", headers=bearer(alice))
    assert again.status_code == 409  # her own job: the real reason


async def test_history_is_per_user_and_outlives_the_job(api, make_key, make_job):
    alice, bob = make_key("alice"), make_key("bob")
    a_job = await make_job(owner=make_key.owner(alice), status="finished")
    b_job = await make_job(owner=make_key.owner(bob), status="failed")
    deleted = await api.delete(f"{V1}/job/{a_job}", headers=bearer(alice))
    assert deleted.status_code == 200

    a_history = (await api.get(f"{V1}/history", headers=bearer(alice))).json()
    assert [h["job_id"] for h in a_history] == [str(a_job)]
    assert a_history[0]["owner"] == make_key.owner(alice)
    assert a_history[0]["results"]["counts"] == {"11": 7}
    b_history = (await api.get(f"{V1}/history", headers=bearer(bob))).json()
    assert [h["job_id"] for h in b_history] == [str(b_job)]


async def test_paging_a_users_jobs(api, make_key, make_job):
    alice, bob = make_key("alice"), make_key("bob")
    mine = []
    for _i in range(25):
        mine.append(await make_job(owner=make_key.owner(alice)))
        await make_job(owner=make_key.owner(bob))
    page1 = (await api.get(f"{V1}/jobs", headers=bearer(alice))).json()
    assert [j["id"] for j in page1] == [str(i) for i in mine[:20]]
    page2 = (await api.get(f"{V1}/jobs", params={"cursor": page1[-1]["pointer"]}, headers=bearer(alice))).json()
    assert [j["id"] for j in page2] == [str(i) for i in mine[20:]]


async def test_an_admin_sees_and_changes_every_job(api, make_key, make_job):
    admin, alice, bob = make_key("root", role="admin"), make_key("alice"), make_key("bob")
    a_job = await make_job(owner=make_key.owner(alice), status="finished")
    b_job = await make_job(owner=make_key.owner(bob))
    anonymous = await make_job(owner=None)  # submitted while authentication was off

    for job_id, owner in ((a_job, make_key.owner(alice)), (b_job, make_key.owner(bob)), (anonymous, None)):
        response = await api.get(f"{V1}/job/{job_id}", headers=bearer(admin))
        assert response.status_code == 200 and response.json()["owner"] == owner
    assert (await api.get(f"{V1}/job/result/{a_job}", headers=bearer(admin))).status_code == 200
    ids = {j["id"] for j in (await api.get(f"{V1}/jobs", params={"cursor": 0}, headers=bearer(admin))).json()}
    assert {str(a_job), str(b_job), str(anonymous)} <= ids  # the fixtures delete other tests' jobs
    assert (await api.put(f"{V1}/job/cancel/{b_job}", headers=bearer(admin))).json()["status"] == "canceled"
    history = (await api.get(f"{V1}/history", headers=bearer(admin))).json()
    assert {str(a_job), str(b_job)} <= {h["job_id"] for h in history}
    assert (await api.delete(f"{V1}/job/{a_job}", headers=bearer(admin))).status_code == 200
    # users don't see jobs without an owner
    assert (await api.get(f"{V1}/job/{anonymous}", headers=bearer(alice))).status_code == 404


async def test_a_user_gets_403_on_plugins_and_the_cluster(api, db, make_key):
    user = make_key("alice")
    for method, path in (
        ("GET", f"{V1}/cluster"),
        ("POST", f"{V1}/plugin/aer-plugin"),
        ("DELETE", f"{V1}/plugin/aer-plugin"),
        ("POST", f"{V1}/plugin/some-plugin"),
    ):
        response = await api.request(method, path, headers=bearer(user))
        assert response.status_code == 403, (method, path, response.text)
        assert "for admins only" in response.json()["detail"]
    enabled = db.execute("SELECT enabled FROM backends WHERE backend_name = 'aer'").fetchone()
    assert enabled["enabled"]


async def test_an_admin_may_use_plugins_and_the_cluster(api, make_key):
    admin = make_key("root", role="admin")
    assert (await api.get(f"{V1}/cluster", headers=bearer(admin))).status_code == 200
    removed = await api.delete(f"{V1}/plugin/aer-plugin", headers=bearer(admin))
    assert removed.status_code == 200, removed.text
    admitted = await api.post(f"{V1}/plugin/aer-plugin", headers=bearer(admin))
    assert admitted.status_code == 201, admitted.text


async def test_revocation_takes_effect_on_the_next_request(api, db, make_key, make_job):
    key = make_key("alice")
    job_id = await make_job(owner=make_key.owner(key))
    assert (await api.get(f"{V1}/job/{job_id}", headers=bearer(key))).status_code == 200
    store.revoke_api_key_sync(db, key_id=auth.parse_key(key))  # the app's cache TTL is 0 here
    assert (await api.get(f"{V1}/job/{job_id}", headers=bearer(key))).status_code == 401
