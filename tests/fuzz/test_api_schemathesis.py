"""Schemathesis over the api's OpenAPI spec, through its ASGI app, on the scratch database.

For every operation: no 5xx, and every 4xx is JSON with a non-empty ``detail``. Two apps:
authentication off (every route reaches the database), and on (hostile Authorization and
X-API-Key headers next to an admin's and a user's real keys). The scratch database holds
a few jobs in each status, anonymous and the user's; generated ids and names are often
swapped for theirs, or for hostile strings, so the routes reach real rows, not only 404s.

``POST /api/v1/plugin/{name}`` (plugin admission) is excluded: it downloads from the package
index; so are the event streams (``.../events``), which last as long as their job. Nothing is
stubbed; they are left out with schemathesis' ``exclude`` filter.

The schemas are built when pytest collects this module, before the scratch database
exists: ``app.openapi()`` touches no database, and schemathesis enters the app's lifespan
(schema check, pool) at the first request. (``from_asgi`` would start the lifespan to fetch
/openapi.json; ``schemathesis.pytest.from_fixture``, which would defer that, fails on
pytest 9 with "'Function' object has no attribute '_nodeid'" in schemathesis 4.32.)
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, event
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from api.app import create_app
from core import auth, store
from core.domain import JobSpec, ResultType
from core.settings import Settings
from tests.fuzz.scratch import DSN

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
EXAMPLES = int(os.environ.get("QSERVER_FUZZ_EXAMPLES", "60"))
SECRET = "fuzz-api-secret-" + "s" * 40
USER = "fuzz-user"

# Filled by the fixtures, read while cases are drawn.
KNOWN_IDS: list[str] = []
KEYS: dict[str, str] = {}

HOSTILE_NAMES = [
    "",
    " ",
    ".",
    "..",
    "../../etc/passwd",
    "aer\n",
    "aer ",
    "AER",
    "a\nb",
    "é",
    "\u202eaer",
    "a" * 1000,
    "' OR 1=1 --",
    "aer;DROP TABLE jobs",
    "%00",
    "%2e%2e%2f",
    "{}",
    "aer-plugin",
    "aer_plugin",
    "aer.plugin",
    "a" * 101,
    "-aer",
    "aer==1.0",
    "git+https://x/y",
    "--index-url=http://x",
    "\t",
    # "a\x00b" is left out: GET /api/v1/backend/a%00b answers 500 (test_nul_in_backend_name_is_a_400 below)
]
HOSTILE_IDS = [
    "",
    "0",
    "null",
    "00000000-0000-0000-0000-000000000000",
    "00000000-0000-0000-0000-000000000000\n",
    "{00000000-0000-0000-0000-000000000000}",
    "urn:uuid:00000000-0000-0000-0000-000000000000",
    "0000000000000000000000000000_000",
    "ffffffff-ffff-ffff-ffff-ffffffffffffff",
    "\x00",
    "é" * 40,
    "' OR 1=1 --",
    "a" * 1000,
]


async def _make_jobs(dsn: str, owner: str | None) -> list[uuid.UUID]:
    """Jobs of ``owner`` in each status: pending, running, finished (with results), failed, canceled."""
    ids = []
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row)
    sconn = store.connect_sync(dsn)
    try:
        for status in ("pending", "running", "finished", "failed", "canceled"):
            job_id = uuid.uuid4()
            spec = JobSpec(
                backend="aer",
                result_types=(ResultType.COUNTS, ResultType.QUASI_DIST),
                metadata={"shots": 10, "extra": {"nested": [1, 2.5, None, "é"]}},
                qasm=BELL,
            )
            await store.insert_job(conn, job_id=job_id, spec=spec, owner=owner)
            ids.append(job_id)
            if status == "canceled":
                await store.cancel_job(conn, job_id=job_id)
            if status in ("running", "finished", "failed"):
                assert await store.claim_jobs(conn, job_ids=[job_id]) != []
                assert store.mark_started_sync(sconn, job_id=job_id, node_id="node-1")
            if status == "finished":
                results = {"counts": {"00": 6, "11": 4}, "quasi_dist": {"0": 0.6, "3": 0.4}}
                assert store.finish_job_sync(sconn, job_id=job_id, results=results, node_id="node-1")
            if status == "failed":
                assert store.fail_job_sync(sconn, job_id=job_id, error="boom", node_id="node-1")
    finally:
        await conn.close()
        sconn.close()
    return ids


@pytest.fixture(scope="module")
def scratch_data(fuzz_dsn: str, fuzz_db: psycopg.Connection) -> Iterator[None]:
    """Jobs (anonymous and the user's) and two keys (admin, user) in the scratch database."""
    ids = asyncio.run(_make_jobs(fuzz_dsn, None)) + asyncio.run(_make_jobs(fuzz_dsn, USER))
    KNOWN_IDS[:] = [str(i) for i in ids]
    KEYS["admin"] = auth.create_key_sync(fuzz_db, secret=SECRET, owner="fuzz-admin", role="admin")[1]
    KEYS["user"] = auth.create_key_sync(fuzz_db, secret=SECRET, owner=USER, role="user")[1]
    yield
    fuzz_db.execute("DELETE FROM jobs WHERE id = ANY(%s)", (ids,))


def _settings(**changes) -> Settings:
    return Settings(
        database_url=DSN,
        db_pool_size=2,
        ingest_host="127.0.0.1",
        api_host="127.0.0.1",
        nginx_bind="127.0.0.1",
        # GET /job/result/{id}?wait_s= up to 30 s on a pending job: cut short, so that hundreds
        # of generated waits run in seconds (tests/api/test_result_wait.py tests the wait)
        max_result_wait_s=0.05,
        **changes,
    )


def _schema(app):
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app
    # Admission downloads the plugin's wheel from the package index: left out, not stubbed.
    # An event stream lasts as long as its job (/events: for ever), and an ASGI call reads a
    # whole response: left out (tests/api/test_events.py tests their refusals).
    return schema.exclude(method="POST", path="/api/v1/plugin/{name}").exclude(path_regex=r"/events$")


def _swap_path(path_parameters):
    """Often a job id of the scratch database, or a hostile id or name, instead of the generated one."""
    params = path_parameters or {}
    if "id" in params:
        options = [st.sampled_from(KNOWN_IDS), st.sampled_from(HOSTILE_IDS)] if KNOWN_IDS else []
        return st.one_of(st.just(params), *[o.map(lambda v: {**params, "id": v}) for o in options])
    if "name" in params:
        return st.one_of(st.just(params), st.sampled_from(HOSTILE_NAMES).map(lambda v: {**params, "name": v}))
    return st.just(params)


# What an HTTP client sends as a header value: latin-1, no leading whitespace (requests refuses it)
_latin1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60).map(str.strip)


def _swap_headers(headers):
    """A real key (admin or user), a hostile one, or what schemathesis made."""
    headers = dict(headers or {})
    keys = st.sampled_from(["admin", "user"]).map(lambda role: KEYS.get(role, ""))
    junk = st.one_of(
        _latin1,
        st.just("qsk_000000000000_" + "a" * 43),
        st.just("x" * 8000),
        keys.map(lambda k: k[:-1] + ("A" if k[-1:] != "A" else "B")),  # one character off
        keys.map(lambda k: k + "\t"),
    )
    value = st.one_of(keys, junk)
    return st.one_of(
        st.just(headers),
        st.builds(
            lambda v, scheme: {**headers, "Authorization": scheme + v},
            value,
            st.sampled_from(["Bearer ", "bearer ", "Basic ", "", "Bearer\t"]),
        ),
        value.map(lambda v: {**headers, "X-API-Key": v}),
    )


OPEN = _schema(create_app(_settings(auth="off")))
KEYED = _schema(create_app(_settings(auth="on", auth_secret=SECRET, auth_cache_ttl_s=0)))


for _schema_ in (OPEN, KEYED):
    _schema_.hook("flatmap_path_parameters")(lambda context, params: _swap_path(params))
KEYED.hook("flatmap_headers")(lambda context, headers: _swap_headers(headers))


@schemathesis.pytest.parametrize(open=OPEN, keyed=KEYED)
@hsettings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_no_5xx_and_every_4xx_says_why(case, scratch_data):
    response = case.call()
    event(f"HTTP {response.status_code}")  # --hypothesis-show-statistics
    where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    assert response.status_code < 500, where
    if 400 <= response.status_code < 500:
        content_type = (response.headers.get("content-type") or [""])[0]  # header values are lists
        assert content_type.startswith("application/json"), where
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("detail"), str), where
        assert body["detail"].strip(), where


# --- bugs the fuzzing found, kept as regression tests ---------------------------------------------


async def test_nul_in_backend_name_is_a_400(fuzz_dsn, scratch_data):
    app = create_app(_settings(auth="off"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.get("/api/v1/backend/a%00b")
    assert response.status_code == 400, response.text
