"""The web page with authentication on (the api in-process over real Postgres): login and logout,
the session cookie's flags and contents, the cookie on the REST api, CSRF, revocation, and what
an admin and a user see."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from http.cookies import SimpleCookie
from typing import Any

import httpx
import psycopg
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from api.ui import session
from core import auth, store
from tests.auth.conftest import SECRET, MakeJob, MakeKey, bearer
from tests.pages import find, table
from tests.served import serve

V1 = "/api/v1"
Browser = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def browser(auth_app: Any) -> AsyncIterator[Browser]:
    """``browser()`` -> a client of its own (own cookie jar) to the auth-on app; ``browser(https=True)``
    reaches it as https://. No redirect is followed."""
    made: list[httpx.AsyncClient] = []

    def make(*, https: bool = False) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=auth_app)
        client = httpx.AsyncClient(transport=transport, base_url="https://test" if https else "http://test")
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            await client.aclose()


async def login(client: httpx.AsyncClient, key: str, *, next: str = "/ui", **headers: str) -> httpx.Response:  # noqa: A002
    """POST the login form; the cookie lands in the client's jar."""
    return await client.post("/ui/login", data={"api_key": key, "next": next}, headers=headers)


def set_cookie(response: httpx.Response) -> dict[str, Any]:
    """The session cookie's value and attributes, as Set-Cookie gave them."""
    header = [h for h in response.headers.get_list("set-cookie") if h.startswith(session.COOKIE + "=")]
    assert len(header) == 1, response.headers
    morsel = SimpleCookie(header[0])[session.COOKIE]
    flags = {part.strip().split("=")[0].lower() for part in header[0].split(";")[1:]}
    return {"value": morsel.value, "flags": flags, **{k: morsel[k] for k in ("path", "samesite", "max-age")}}


async def csrf_of(client: httpx.AsyncClient, path: str = "/ui") -> str:
    """The CSRF token the page's forms carry."""
    page = await client.get(path)
    assert page.status_code == 200, page.text
    return find(page.text, "input", name="csrf")[0].attrs["value"]


async def test_a_page_without_a_login_goes_to_the_login(browser: Browser):
    client = browser()
    job_id = uuid.uuid4()
    response = await client.get(f"/ui/job/{job_id}")
    assert response.status_code == 303
    assert response.headers["location"] == f"/ui/login?next=%2Fui%2Fjob%2F{job_id}"
    form = await client.get(response.headers["location"])
    assert form.status_code == 200
    assert find(form.text, "input", name="api_key")[0].attrs["type"] == "password"
    assert find(form.text, "input", name="next")[0].attrs["value"] == f"/ui/job/{job_id}"
    for path in ("/ui", "/ui/cluster"):
        assert (await client.get(path)).status_code == 303


async def test_login_sets_an_http_only_lax_cookie_holding_no_key(browser: Browser, make_key: MakeKey):
    key = make_key("carol")
    client = browser()
    response = await login(client, key, next="/ui/cluster")
    assert response.status_code == 303 and response.headers["location"] == "/ui/cluster"
    cookie = set_cookie(response)
    assert "httponly" in cookie["flags"] and "secure" not in cookie["flags"]
    assert cookie["samesite"].lower() == "lax" and cookie["path"] == "/"
    assert int(cookie["max-age"]) == 12 * 3600
    secret_part = key.rsplit("_", 1)[1]
    assert secret_part not in cookie["value"] and key not in cookie["value"]
    page = await client.get("/ui")
    assert page.status_code == 200
    assert make_key.owner(key) in find(page.text, "span", class_="who")[0].text


@pytest.mark.parametrize("how", ["https", "x-forwarded-proto"])
async def test_the_cookie_is_secure_over_tls(browser: Browser, make_key: MakeKey, how: str):
    key = make_key("dave")
    if how == "https":
        response = await login(browser(https=True), key)
    else:  # nginx's TLS server says so
        response = await login(browser(), key, **{"X-Forwarded-Proto": "https"})
    assert response.status_code == 303
    assert "secure" in set_cookie(response)["flags"]


@pytest.mark.parametrize(
    ("key", "message"),
    [("", "missing API key"), ("not-a-key", "malformed API key"), (f"qsk_{'a' * 12}_{'W' * 43}", "invalid API key")],
)
async def test_a_wrong_key_is_refused_with_the_form_again(browser: Browser, key: str, message: str):
    response = await login(browser(), key)
    assert response.status_code == 401
    assert message in find(response.text, "p", id="login-error")[0].text
    assert not response.headers.get_list("set-cookie")


async def test_a_revoked_key_cannot_log_in(browser: Browser, make_key: MakeKey, db: psycopg.Connection):
    key = make_key("erin")
    store.revoke_api_key_sync(db, key_id=auth.parse_key(key))
    response = await login(browser(), key)
    assert response.status_code == 401 and "was revoked" in response.text


async def test_login_never_redirects_elsewhere(browser: Browser, make_key: MakeKey):
    key = make_key("frank")
    for target in ("https://evil.example/ui", "//evil.example/ui", "/api/v1/jobs", "/uix"):
        response = await login(browser(), key, next=target)
        assert response.headers["location"] == "/ui", target
    response = await login(browser(), key, next="/ui/job/x?y=1")
    assert response.headers["location"] == "/ui/job/x?y=1"


async def test_a_user_sees_their_own_jobs_only(browser: Browser, make_key: MakeKey, make_job: MakeJob):
    alice, bob = make_key("alice"), make_key("bob")
    mine = await make_job(owner=make_key.owner(alice), status="finished")
    theirs = await make_job(owner=make_key.owner(bob), status="finished")
    client = browser()
    await login(client, alice)
    page = (await client.get("/ui")).text
    ids = {row.attrs["data-id"] for row in find(page, "tr") if "data-id" in row.attrs}
    assert str(mine) in ids and str(theirs) not in ids
    assert {row[3] for row in table(page, "jobs")[1:]} == {make_key.owner(alice)}  # the owner column
    assert (await client.get(f"/ui/job/{mine}")).status_code == 200
    other = await client.get(f"/ui/job/{theirs}")
    assert other.status_code == 404 and "not found" in other.text


async def test_the_cookie_authenticates_rest_reads_and_changes_with_the_csrf_header(
    browser: Browser, make_key: MakeKey, make_job: MakeJob, db: psycopg.Connection
):
    key = make_key("gina")
    job_id = await make_job(owner=make_key.owner(key), status="pending")
    client = browser()
    await login(client, key)
    assert (await client.get(f"{V1}/job/{job_id}")).json()["status"] == "pending"
    assert [j["id"] for j in (await client.get(f"{V1}/jobs")).json()] == [str(job_id)]
    refused = await client.put(f"{V1}/job/cancel/{job_id}")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    wrong = await client.put(f"{V1}/job/cancel/{job_id}", headers={session.CSRF_HEADER: "x" * 43})
    assert wrong.status_code == 403
    assert db.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()["status"] == "pending"
    token = await csrf_of(client)
    done = await client.put(f"{V1}/job/cancel/{job_id}", headers={session.CSRF_HEADER: token})
    assert done.status_code == 200 and done.json()["status"] == "canceled"
    # an API key in a header wins over the cookie, and needs no token
    other = make_key("hank")
    assert (await client.get(f"{V1}/jobs", headers=bearer(other))).json() == []


async def test_cancel_and_delete_on_the_page_need_the_csrf_token(
    browser: Browser, make_key: MakeKey, make_job: MakeJob, db: psycopg.Connection
):
    key = make_key("ivy")
    job_id = await make_job(owner=make_key.owner(key), status="running")
    client = browser()
    await login(client, key)
    page = (await client.get(f"/ui/job/{job_id}")).text
    form = find(page, "form", id="cancel-form")[0]
    token = next(e for e in find(page, "input", name="csrf") if form in e.parents).attrs["value"]

    def status() -> str:
        return db.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()["status"]

    for data in ({}, {"csrf": ""}, {"csrf": token[:-2] + "xx"}):
        refused = await client.post(f"/ui/job/{job_id}/cancel", data=data)
        assert refused.status_code == 403, data
        assert "CSRF" in find(refused.text, "p", id="error-message")[0].text
        assert status() == "running"
    done = await client.post(f"/ui/job/{job_id}/cancel", data={"csrf": token})
    assert done.status_code == 303 and status() == "canceled"

    assert (await client.post(f"/ui/job/{job_id}/delete", data={})).status_code == 403
    assert status() == "canceled"
    deleted = await client.post(f"/ui/job/{job_id}/delete", data={"csrf": token})
    assert deleted.status_code == 303
    assert db.execute("SELECT count(*) AS n FROM jobs WHERE id = %s", (job_id,)).fetchone()["n"] == 0


async def test_another_sessions_token_does_not_pass(browser: Browser, make_key: MakeKey, make_job: MakeJob, db):
    key = make_key("jill")
    job_id = await make_job(owner=make_key.owner(key), status="pending")
    first, second = browser(), browser()
    await login(first, key)
    await login(second, key)
    token = await csrf_of(first)
    assert token != await csrf_of(second)
    refused = await second.post(f"/ui/job/{job_id}/cancel", data={"csrf": token})
    assert refused.status_code == 403
    assert db.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()["status"] == "pending"


async def test_revoking_the_key_ends_the_session(browser: Browser, make_key: MakeKey, db: psycopg.Connection):
    key = make_key("kim")
    client = browser()
    await login(client, key)
    assert (await client.get("/ui")).status_code == 200
    cookie = client.cookies.get(session.COOKIE)
    store.revoke_api_key_sync(db, key_id=auth.parse_key(key))
    rest = await client.get(f"{V1}/jobs")
    assert rest.status_code == 401 and "was revoked" in rest.json()["detail"]
    page = await client.get("/ui")
    assert page.status_code == 303 and page.headers["location"] == "/ui/login?next=%2Fui"
    # the same cookie sent again later is still refused (the page cleared it in this browser)
    again = browser()
    again.cookies.set(session.COOKIE, cookie)
    assert (await again.get(f"{V1}/jobs")).status_code == 401


async def test_a_forged_or_expired_cookie_is_refused(browser: Browser, make_key: MakeKey):
    key = make_key("lee")
    key_id = auth.parse_key(key)
    forged = URLSafeTimedSerializer("another-secret-" + "z" * 40, salt="qserver.ui.session").dumps(
        {"k": key_id, "c": "t"}
    )

    class Yesterday(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 13 * 3600

    expired = URLSafeTimedSerializer(
        SECRET, salt="qserver.ui.session", signer=Yesterday, signer_kwargs={"digest_method": hashlib.sha256}
    ).dumps({"k": key_id, "c": "t"})
    for value, message in ((forged, "not valid"), (expired, "expired"), ("garbage", "not valid")):
        client = browser()
        client.cookies.set(session.COOKIE, value)
        rest = await client.get(f"{V1}/jobs")
        assert rest.status_code == 401 and message in rest.json()["detail"], value
        page = await client.get("/ui")
        assert page.status_code == 303 and page.headers["location"] == "/ui/login?next=%2Fui"
        assert "max-age=0" in page.headers["set-cookie"].lower()  # the bad cookie is cleared


async def test_logout_needs_the_token_and_clears_the_cookie(browser: Browser, make_key: MakeKey):
    key = make_key("mia")
    client = browser()
    await login(client, key)
    token = await csrf_of(client)
    refused = await client.post("/ui/logout", data={})
    assert refused.status_code == 403
    assert (await client.get("/ui")).status_code == 200
    out = await client.post("/ui/logout", data={"csrf": token})
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    cleared = [h for h in out.headers.get_list("set-cookie") if h.startswith(session.COOKIE)]
    assert cleared and "max-age=0" in cleared[0].lower()
    assert (await client.get("/ui")).status_code == 303


async def test_the_cluster_page_shows_nodes_to_admins_only(browser: Browser, make_key: MakeKey, db: psycopg.Connection):
    node_id = f"ui-auth-{uuid.uuid4().hex[:6]}"
    db.execute(
        "INSERT INTO nodes (node_id, address, hostname, tags, alive, cpus_total, cpus_free, gpus_total,"
        " gpus_free, memory_total, memory_free, jobs_running) VALUES (%s, '10.9.8.7', 'secret-host',"
        " ARRAY['uiauthtag'], true, 4, 4, 0, 0, 8589934592, 4294967296, 0)",
        (node_id,),
    )
    try:
        admin, user = browser(), browser()
        await login(admin, make_key("root", role="admin"))
        await login(user, make_key("nina"))
        seen = (await admin.get("/ui/cluster")).text
        assert find(seen, "tr", data_node=node_id) and "10.9.8.7" in seen and "secret-host" in seen
        page = await user.get("/ui/cluster")
        assert page.status_code == 200
        assert not find(page.text, "table", id="nodes") and "10.9.8.7" not in page.text
        assert "secret-host" not in page.text and node_id not in page.text
        assert "uiauthtag" in find(page.text, "p", id="tags")[0].text
        assert "aer" in find(page.text, "table", id="backends")[0].text
        totals = dict((row[0], row[1]) for row in table(page.text, "totals"))
        assert int(totals["Nodes alive"]) >= 1
    finally:
        db.execute("DELETE FROM nodes WHERE node_id = %s", (node_id,))


@pytest.fixture(scope="module")
def served(auth_settings):
    """The auth-on api over real HTTP (uvicorn), for the event streams the page opens."""
    with serve(auth_settings) as server:
        yield server


async def test_the_event_streams_take_the_session_cookie(served, make_key: MakeKey, make_job: MakeJob):
    key = make_key("otto")
    owner = make_key.owner(key)
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        # uvicorn applies nginx's X-Forwarded-Proto from loopback: the cookie is Secure
        secure = await login(client, key, **{"X-Forwarded-Proto": "https"})
        assert "secure" in set_cookie(secure)["flags"]
        client.cookies.clear()
        await login(client, key)
        async with client.stream("GET", f"{V1}/events") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            job_id = await make_job(owner=owner, status="running")
            seen: list[str] = []
            async with asyncio.timeout(10):
                async for line in stream.aiter_lines():
                    seen.append(line)
                    if line.startswith("data:") and str(job_id) in line and '"running"' in line:
                        break
            assert "event: status" in seen
        done = await make_job(owner=owner, status="finished")
        body = (await client.get(f"{V1}/job/{done}/events")).text
        assert "event: status" in body and "event: end" in body and '"11":7' in body.replace(" ", "")
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as anonymous:
        assert (await anonymous.get(f"{V1}/events")).status_code == 401
