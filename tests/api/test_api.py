"""The REST api against a real Postgres, through the ASGI app (no mocks of the database)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from api.deps import get_conn, get_pool
from core.domain import WAITING_IN_QUEUE, ResultType

V1 = "/api/v1"
MakeJob = Callable[..., Awaitable[uuid.UUID]]
GHZ = (
    'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[3] q;\nbit[3] c;\n'
    "h q[0];\ncx q[0], q[1];\ncx q[1], q[2];\nc = measure q;\n"
)
BELL_RESULTS = {"counts": {"11 0": 1000}, "quasi_dist": {"6": 1.0}, "expval": [0.5, -1.0]}
ALL_TYPES = (ResultType.COUNTS, ResultType.QUASI_DIST, ResultType.EXPVAL)
JOB_KEYS = {
    "id",
    "pointer",
    "target_simulator",
    "qasm",
    "status",
    "submission_date",
    "start_time",
    "finish_time",
    "metadata",
    "result_types",
    "results",
    "error",
    "node_id",
    "attempts",
    "waiting_for",
    "memory_bytes",
    "owner",
    "sweep",
    "receipt",
}


def _utc(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    assert when.utcoffset() == timedelta(0), text
    return when


@pytest.fixture
def no_database(app: Any):
    """Make any connection checkout fail the test: proves a route answered without the DB."""
    calls: list[str] = []

    async def refuse() -> None:
        calls.append("get_conn")
        raise AssertionError("a connection was checked out")

    class RefusingPool:
        def connection(self):
            calls.append("get_conn")
            raise AssertionError("a connection was checked out")

    app.dependency_overrides[get_conn] = refuse
    app.dependency_overrides[get_pool] = RefusingPool
    try:
        yield calls
    finally:
        del app.dependency_overrides[get_conn]
        del app.dependency_overrides[get_pool]


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{V1}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "OK"}


async def test_pending_job_json(client: httpx.AsyncClient, make_job: MakeJob) -> None:
    before = datetime.now(UTC)
    job_id = await make_job(metadata={"shots": 1000, "tags": ["gpu"], "custom": {"x": 1}}, qasm=GHZ)
    response = await client.get(f"{V1}/job/{job_id}")
    assert response.status_code == 200
    job = response.json()
    assert set(job) == JOB_KEYS
    assert job["id"] == str(job_id)
    assert isinstance(job["pointer"], int) and job["pointer"] > 0
    assert job["target_simulator"] == "aer"
    assert job["qasm"] == GHZ
    assert job["status"] == "pending"
    assert abs(_utc(job["submission_date"]) - before) < timedelta(minutes=1)
    assert job["start_time"] is None and job["finish_time"] is None
    assert job["metadata"] == {"shots": 1000, "tags": ["gpu"], "custom": {"x": 1}}
    assert job["result_types"] == {"counts": True, "quasi_dist": False, "expval": False}
    assert job["results"] == {"counts": None, "quasi_dist": None, "expval": None}
    assert job["error"] is None and job["node_id"] is None
    assert job["attempts"] == 0
    assert job["waiting_for"] == WAITING_IN_QUEUE and job["memory_bytes"] is None


async def test_finished_job_json(client: httpx.AsyncClient, make_job: MakeJob) -> None:
    job_id = await make_job(
        status="finished",
        result_types=ALL_TYPES,
        results=BELL_RESULTS,
        node_id="node-7",
        metadata={"shots": 1000, "obs": [[["ZZ", 1.0]], [["XX", -1.0]]]},
    )
    job = (await client.get(f"{V1}/job/{job_id}")).json()
    assert job["status"] == "finished"
    assert job["result_types"] == {"counts": True, "quasi_dist": True, "expval": True}
    assert job["results"] == BELL_RESULTS
    assert job["node_id"] == "node-7"
    assert job["attempts"] == 1
    assert job["error"] is None
    submitted, started, finished = (_utc(job[k]) for k in ("submission_date", "start_time", "finish_time"))
    assert submitted <= started <= finished


async def test_result_of_finished_job(client: httpx.AsyncClient, make_job: MakeJob) -> None:
    job_id = await make_job(status="finished", result_types=ALL_TYPES, results=BELL_RESULTS)
    response = await client.get(f"{V1}/job/result/{job_id}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "job_id", "counts", "quasi_dist", "expval"}
    uuid.UUID(body["id"])
    assert body["job_id"] == str(job_id)
    assert body["counts"] == {"11 0": 1000}
    assert body["quasi_dist"] == {"6": 1.0}
    assert body["expval"] == [0.5, -1.0]


async def test_result_of_counts_only_job(client: httpx.AsyncClient, make_job: MakeJob) -> None:
    job_id = await make_job(status="finished", results={"counts": {"00": 510, "11": 490}})
    body = (await client.get(f"{V1}/job/result/{job_id}")).json()
    assert body["counts"] == {"00": 510, "11": 490}
    assert body["quasi_dist"] is None and body["expval"] is None


@pytest.mark.parametrize("status", ["pending", "running"])
async def test_no_results_yet(client: httpx.AsyncClient, make_job: MakeJob, status: str) -> None:
    job_id = await make_job(status=status)
    response = await client.get(f"{V1}/job/result/{job_id}")
    assert response.status_code == 404
    assert response.json() == {"detail": f"job {job_id} has no results: it is {status}"}


async def test_no_results_when_failed(client: httpx.AsyncClient, make_job: MakeJob) -> None:
    job_id = await make_job(status="failed", error="unknown gate 'foo' on line 3")
    response = await client.get(f"{V1}/job/result/{job_id}")
    assert response.status_code == 404
    assert response.json() == {"detail": f"job {job_id} has no results: it failed: unknown gate 'foo' on line 3"}
    job = (await client.get(f"{V1}/job/{job_id}")).json()
    assert job["status"] == "failed"
    assert job["error"] == "unknown gate 'foo' on line 3"
    assert job["finish_time"] is not None


@pytest.mark.parametrize("path", ["/job/{id}", "/job/result/{id}"])
async def test_unknown_job_is_404(client: httpx.AsyncClient, path: str) -> None:
    job_id = uuid.uuid4()
    response = await client.get(V1 + path.format(id=job_id))
    assert response.status_code == 404
    assert response.json() == {"detail": f"job {job_id} not found"}


@pytest.mark.parametrize("path", ["/job/not-a-uuid", "/job/result/not-a-uuid", "/job/result"])
async def test_malformed_job_id_is_400_without_a_query(
    client: httpx.AsyncClient, no_database: list[str], path: str
) -> None:
    response = await client.get(V1 + path)
    assert response.status_code == 400
    assert "is not a UUID" in response.json()["detail"]
    assert no_database == []


async def test_no_database_fixture_does_catch_a_checkout(client: httpx.AsyncClient, no_database: list[str]) -> None:
    # The proof above is only worth something if a well-formed id does reach get_conn.
    with pytest.raises(AssertionError):
        await client.get(f"{V1}/job/{uuid.uuid4()}")
    assert no_database == ["get_conn"]


async def test_jobs_keyset_paging(client: httpx.AsyncClient, make_job: MakeJob) -> None:
    ids = [str(await make_job()) for _ in range(25)]
    first = (await client.get(f"{V1}/job/{ids[0]}")).json()["pointer"]

    page1 = (await client.get(f"{V1}/jobs", params={"cursor": first - 1})).json()
    assert isinstance(page1, list) and len(page1) == 20
    assert [job["id"] for job in page1] == ids[:20]
    assert all(set(job) == JOB_KEYS for job in page1)
    pointers = [job["pointer"] for job in page1]
    assert pointers == sorted(pointers)

    page2 = (await client.get(f"{V1}/jobs", params={"cursor": pointers[-1]})).json()
    assert [job["id"] for job in page2] == ids[20:]

    page3 = (await client.get(f"{V1}/jobs", params={"cursor": page2[-1]["pointer"]})).json()
    assert page3 == []


async def test_jobs_without_cursor_starts_at_the_beginning(client: httpx.AsyncClient, make_job: MakeJob) -> None:
    await make_job()
    response = await client.get(f"{V1}/jobs")
    assert response.status_code == 200
    page = response.json()
    assert 1 <= len(page) <= 20
    assert page == (await client.get(f"{V1}/jobs", params={"cursor": 0})).json()


@pytest.mark.parametrize("route", ["/jobs", "/backends"])
@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", str(2**63)])
async def test_bad_cursor_is_400(client: httpx.AsyncClient, route: str, cursor: str) -> None:
    response = await client.get(V1 + route, params={"cursor": cursor})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail.startswith("cursor: ")


async def test_backends(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{V1}/backends")
    assert response.status_code == 200
    backends = response.json()
    aer = [b for b in backends if b["backend_name"] == "aer"]
    assert len(aer) == 1
    assert set(aer[0]) == {"backend_name", "id", "pointer", "plugin", "needs_gpu", "capabilities"}
    assert aer[0]["plugin"] == "aer-plugin"
    assert (await client.get(f"{V1}/backends", params={"cursor": aer[0]["pointer"]})).json() == [
        b for b in backends if b["pointer"] > aer[0]["pointer"]
    ]

    one = await client.get(f"{V1}/backend/aer")
    assert one.status_code == 200
    assert one.json() == aer[0]

    missing = await client.get(f"{V1}/backend/nope")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "backend 'nope' does not exist; GET /api/v1/backends lists them"}


async def test_disabled_backend_is_hidden(client: httpx.AsyncClient, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO backends (backend_name, plugin, enabled) VALUES ('gone1', 'gone-plugin', false)")
    try:
        response = await client.get(f"{V1}/backend/gone1")
        assert response.status_code == 404
        assert response.json()["detail"] == ("backend 'gone1' is disabled: its plugin 'gone-plugin' was removed")
        names = [b["backend_name"] for b in (await client.get(f"{V1}/backends")).json()]
        assert "gone1" not in names
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM backends WHERE backend_name = 'gone1'")


async def test_docs_use_local_swagger_assets(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert "/static/swagger/swagger-ui-bundle.js" in docs.text
    assert "/static/swagger/swagger-ui.css" in docs.text
    assert "/openapi.json" in docs.text
    assert "cdn.jsdelivr.net" not in docs.text

    js = await client.get("/static/swagger/swagger-ui-bundle.js")
    assert js.status_code == 200
    assert "javascript" in js.headers["content-type"]
    assert "SwaggerUIBundle" in js.text
    css = await client.get("/static/swagger/swagger-ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")

    assert (await client.get("/redoc")).status_code == 404


async def test_openapi_documents_the_routes(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    paths = ("/health", "/job/{id}", "/job/result/{id}", "/jobs", "/backends", "/backend/{name}")
    for path in paths:
        assert V1 + path in spec["paths"], path
    job = spec["components"]["schemas"]["Job"]
    assert JOB_KEYS <= set(job["properties"])
    ok = spec["paths"][f"{V1}/jobs"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"]["type"] == "array"
    assert "/docs" not in spec["paths"]


async def test_swagger_index_redirects_to_docs(client: httpx.AsyncClient) -> None:
    response = await client.get("/swagger/index.html")
    assert response.status_code == 307
    assert response.headers["location"] == "/docs"


async def test_finished_job_has_a_history_row(client: httpx.AsyncClient, make_job: MakeJob, dsn: str) -> None:
    job_id = await make_job(status="finished", results={"counts": {"11 0": 1000}})
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT status, results, result_types FROM history WHERE job_id = %s", (job_id,)).fetchall()
    assert rows == [
        (
            "finished",
            {"counts": {"11 0": 1000}, "quasi_dist": None, "expval": None},
            {"counts": True, "quasi_dist": False, "expval": False},
        )
    ]


async def test_lifespan_refuses_an_old_schema(dsn: str) -> None:
    from api.app import create_app
    from core.errors import SchemaOutOfDate
    from core.settings import Settings

    empty = dsn + "_empty"
    name = empty.rsplit("/", 1)[1]
    with psycopg.connect(dsn.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        app = create_app(Settings(database_url=empty))
        with pytest.raises(SchemaOutOfDate, match="qserver db upgrade"):
            async with app.router.lifespan_context(app):
                pass
    finally:
        with psycopg.connect(dsn.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_timestamps_are_utc_whatever_the_session_time_zone(settings: Any, make_job: MakeJob) -> None:
    from api.app import create_app

    tokyo = settings.model_copy(update={"database_url": settings.database_dsn + "?options=-c%20TimeZone%3DAsia/Tokyo"})
    app = create_app(tokyo)
    job_id = await make_job(status="running")
    async with app.router.lifespan_context(app):
        async with app.state.pool.connection() as conn:
            cur = await conn.execute("SELECT start_time FROM jobs WHERE id = %s", (job_id,))
            row = await cur.fetchone()
        assert row["start_time"].utcoffset() == timedelta(hours=9)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            job = (await http.get(f"{V1}/job/{job_id}")).json()
    assert job["start_time"].endswith("Z")
    assert _utc(job["start_time"]) == row["start_time"]
