"""GET /jobs and /history with filters, both orders, page sizes and lean rows, against a few
thousand jobs inserted with SQL (not run), checked against SQL of their own; and the answer
upstream's client gets (only ``cursor``) byte for byte as the code before the filters wrote it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from pydantic import TypeAdapter

from api.large_reads import job_body
from api.models import HistoryEntry, Job
from core import store
from core.errors import InvalidQuery
from core.store.listing import _limit
from core.store.reads import _JOB_FIELDS, _raw_results, raw_job_json

V1 = "/api/v1"
MakeJob = Callable[..., Awaitable[uuid.UUID]]
BULK = 3000
BACKENDS = ("bulk-a", "bulk-b", "bulk-c")  # no other test's backends
BASE = datetime(2031, 3, 1, tzinfo=UTC)  # job i was submitted BASE + i minutes (every 10th: out of order)
INLINE = 256 * 1024  # the tests' settings: api_inline_result_bytes (the default)
pytestmark = pytest.mark.usefixtures("bulk")


@pytest.fixture(scope="module")
def bulk(dsn: str) -> Iterator[None]:
    """BULK jobs on BACKENDS in every status (claimed ones too), finished ones with results,
    terminal ones with history rows (the trigger writes them); deleted afterwards."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO jobs (id, target_simulator, qasm, metadata, submission_date)
            SELECT gen_random_uuid(), (%(backends)s::text[])[1 + i %% 3], 'OPENQASM 2.0; // ' || i,
                   jsonb_build_object('shots', i),
                   %(base)s + make_interval(mins => CASE WHEN i %% 10 = 0 THEN %(n)s - i ELSE i END)
              FROM generate_series(1, %(n)s) AS i
            """,
            {"backends": list(BACKENDS), "base": BASE, "n": BULK},
        )
        mine = "target_simulator = ANY(%(backends)s) AND metadata->>'shots' IS NOT NULL"
        args = {"backends": list(BACKENDS)}
        conn.execute(f"INSERT INTO result_types (job_id, counts) SELECT id, true FROM jobs WHERE {mine}", args)
        conn.execute(
            "INSERT INTO results (job_id, counts) SELECT id, jsonb_build_object('0', (metadata->>'shots')::int)"
            f" FROM jobs WHERE {mine} AND (metadata->>'shots')::int %% 13 NOT IN (0, 1, 2, 3, 4, 5)",
            args,
        )
        for remainder, change in [
            (0, "status = 'failed', error = 'boom', start_time = submission_date, finish_time = submission_date"),
            (1, "status = 'canceled', finish_time = submission_date"),
            (2, "status = 'running', start_time = submission_date, node_id = 'node-1', attempts = 1"),
            (3, "status = 'claimed', attempts = 1"),
        ]:
            which = f"{mine} AND (metadata->>'shots')::int %% 13 = {remainder}"
            conn.execute(f"UPDATE jobs SET {change} WHERE {which}", args)
        conn.execute(  # remainders 4, 5 stay pending; the others finished
            "UPDATE jobs SET status = 'finished', start_time = submission_date, finish_time = submission_date,"
            f" node_id = 'node-1', attempts = 1 WHERE {mine} AND (metadata->>'shots')::int %% 13 > 5",
            args,
        )
        conn.execute("ANALYZE jobs; ANALYZE history")
        yield
        conn.execute("DELETE FROM jobs WHERE target_simulator = ANY(%s)", (list(BACKENDS),))
        conn.execute("DELETE FROM history WHERE target_simulator = ANY(%s)", (list(BACKENDS),))


def expected(
    db: psycopg.Connection,
    table: str,
    *,
    order: str = "asc",
    statuses: list[str] | None = None,
    backends: tuple[str, ...] = BACKENDS,
    since: datetime | None = None,
) -> list[int]:
    """The pointers a listing should give, by plain SQL of its own (pending includes claimed)."""
    stored = None if statuses is None else [*statuses, *(["claimed"] if "pending" in statuses else [])]
    rows = db.execute(
        f"SELECT pointer FROM {table} WHERE target_simulator = ANY(%s)"
        " AND (%s::text[] IS NULL OR status = ANY(%s)) AND (%s::timestamptz IS NULL OR submission_date >= %s)"
        f" ORDER BY pointer {order}",
        (list(backends), stored, stored, since, since),
    ).fetchall()
    return [row["pointer"] for row in rows]


async def walk(client: httpx.AsyncClient, route: str, params: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Every page of a listing, following X-Next-Cursor; checks the header is absent on the last."""
    pages, params = [], dict(params)
    while True:
        response = await client.get(f"{V1}{route}", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        following = response.headers.get("x-next-cursor")
        if following is None:
            return pages
        assert int(following) == page[-1]["pointer"] and len(page) == params.get("limit", 20)
        params["cursor"] = following


def pointers(pages: list[list[dict[str, Any]]]) -> list[int]:
    return [row["pointer"] for page in pages for row in page]


@pytest.mark.parametrize("route", ["/jobs", "/history"])
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [7, 250, 1000])
async def test_keyset_both_ways_without_duplicates_or_gaps(
    client: httpx.AsyncClient, db: psycopg.Connection, route: str, order: str, limit: int
) -> None:
    table = route.strip("/") if route == "/history" else "jobs"
    want = expected(db, table, order=order, backends=("bulk-b",))
    pages = await walk(client, route, {"backend": "bulk-b", "order": order, "limit": limit})
    assert pointers(pages) == want  # in order, each once, none left out
    assert len(want) == BULK // 3 if table == "jobs" else 0 < len(want) < BULK // 3
    assert [len(page) for page in pages[:-1]] == [limit] * (len(pages) - 1)
    assert {row["target_simulator"] for page in pages for row in page} == {"bulk-b"}


async def test_desc_from_the_newest_and_from_a_cursor(client: httpx.AsyncClient) -> None:
    newest = (await client.get(f"{V1}/jobs", params={"order": "desc", "limit": 1, "fields": "id"})).json()
    everything = pointers(await walk(client, "/jobs", {"limit": 1000}))
    assert newest[0]["pointer"] == everything[-1]
    middle = everything[len(everything) // 2]
    page = (await client.get(f"{V1}/jobs", params={"order": "desc", "cursor": middle, "limit": 5})).json()
    assert [job["pointer"] for job in page] == everything[len(everything) // 2 - 5 : len(everything) // 2][::-1]
    same = await client.get(f"{V1}/jobs", params={"order": "desc", "cursor": 0, "limit": 1, "fields": "id"})
    assert same.json() == newest


@pytest.mark.parametrize(
    ("statuses", "query"),
    [
        (["pending"], "pending"),  # claimed jobs are pending to their users
        (["failed", "canceled"], "failed,canceled"),
        (["running", "finished"], ["running", "finished"]),  # repeated
        (["finished", "failed", "canceled", "pending", "running"], "Finished, FAILED,canceled,pending,running"),
    ],
)
@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_status_backend_and_since_combined(
    client: httpx.AsyncClient, db: psycopg.Connection, statuses: list[str], query: Any, order: str
) -> None:
    since = BASE + timedelta(minutes=1000.5)
    want = expected(db, "jobs", order=order, statuses=statuses, backends=("bulk-a",), since=since)
    assert want and len(want) < BULK // 3
    params = {"status": query, "backend": "bulk-a", "since": since.isoformat(), "order": order, "limit": 100}
    pages = await walk(client, "/jobs", params)
    assert pointers(pages) == want
    rows = [row for page in pages for row in page]
    assert {row["status"] for row in rows} == set(statuses)
    assert all(_when(row["submission_date"]) >= since for row in rows)
    ended = [s for s in statuses if s in ("finished", "failed", "canceled")]
    if ended:  # history: the rows of the same jobs that ended
        pages = await walk(client, "/history", {**params, "status": ",".join(ended)})
        history = [row for page in pages for row in page]
        assert [h["pointer"] for h in history] == expected(
            db, "history", order=order, statuses=ended, backends=("bulk-a",), since=since
        )
        assert sorted(h["job_id"] for h in history) == sorted(row["id"] for row in rows if row["status"] in ended)


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    "since",
    ["2031-03-01T16:40:30Z", "2031-03-01T18:40:30+02:00", "2031-03-01T16:40:30", "2031-03-01T16:40:30.000+00:00"],
)
async def test_since_in_any_time_zone(client: httpx.AsyncClient, db: psycopg.Connection, since: str) -> None:
    # 16:40:30 UTC is BASE + 1000.5 minutes; without a zone it is UTC
    want = expected(db, "jobs", backends=("bulk-c",), since=BASE + timedelta(minutes=1000.5))
    pages = await walk(client, "/jobs", {"since": since, "backend": "bulk-c", "limit": 1000, "fields": "id"})
    assert pointers(pages) == want and 0 < len(want) < BULK // 3


async def test_a_date_alone_is_its_midnight_utc(client: httpx.AsyncClient, db: psycopg.Connection) -> None:
    want = expected(db, "jobs", backends=("bulk-c",), since=datetime(2031, 3, 2, tzinfo=UTC))
    pages = await walk(client, "/jobs", {"since": "2031-03-02", "backend": "bulk-c", "limit": 1000, "fields": "id"})
    assert pointers(pages) == want and len(want) > 100


async def test_default_limit_is_twenty_and_a_page_of_one(client: httpx.AsyncClient) -> None:
    page = await client.get(f"{V1}/jobs", params={"backend": "bulk-a"})
    assert len(page.json()) == 20 and page.headers["x-next-cursor"] == str(page.json()[-1]["pointer"])
    one = await client.get(f"{V1}/jobs", params={"backend": "bulk-a", "limit": 1})
    assert [job["id"] for job in one.json()] == [page.json()[0]["id"]]


LEAN = ["status", "target_simulator", "owner", "submission_date", "finish_time"]


async def test_lean_rows_hold_the_fields_asked_for_and_are_small(client: httpx.AsyncClient) -> None:
    params = {"backend": "bulk-a", "order": "desc", "limit": 100}
    full = await client.get(f"{V1}/jobs", params=params)
    lean = await client.get(f"{V1}/jobs", params={**params, "fields": ",".join(["finish_time", *LEAN, "id"])})
    assert lean.headers["x-next-cursor"] == full.headers["x-next-cursor"]
    assert len(lean.content) < len(full.content) * 0.7
    order = ["id", "pointer", "target_simulator", "status", "submission_date", "finish_time", "owner"]
    for row, whole in zip(lean.json(), full.json(), strict=True):
        assert list(row) == order  # the Job model's order, id and pointer always
        assert row == {key: whole[key] for key in order}


async def test_every_field_lean_is_the_full_row(client: httpx.AsyncClient, make_job: MakeJob) -> None:
    """Each field alone, and all of them, as the full row writes it: results and receipt (raw
    JSON text), result types, a sweep's summary, waiting_for, timestamps."""
    receipt = {"seed": 7, "method": "stabilizer", "plugin": "aer-plugin"}
    jobs = [
        await make_job(status="finished", results={"counts": {"11": 3}, "expval": [0.5], "receipt": receipt}),
        await make_job(metadata={"sweep": {"parameters": ["t"], "shape": [3]}, "shots": 10}),
        await make_job(status="claimed"),
        await make_job(status="failed", error="no luck: ünïcode"),
    ]
    first = (await client.get(f"{V1}/job/{jobs[0]}")).json()["pointer"]
    params = {"cursor": first - 1, "limit": 4}
    full = (await client.get(f"{V1}/jobs", params=params)).json()
    assert [job["id"] for job in full] == [str(job) for job in jobs]
    assert full[0]["receipt"]["seed"] == 7 and full[1]["sweep"]["shape"] == [3]
    for name in store.JOB_FIELDS:
        lean = (await client.get(f"{V1}/jobs", params={**params, "fields": name})).json()
        assert lean == [{key: job[key] for key in ("id", "pointer", name)} for job in full], name
    everything = await client.get(f"{V1}/jobs", params={**params, "fields": ",".join(store.JOB_FIELDS)})
    assert everything.json() == full and list(everything.json()[0]) == list(full[0])


async def test_history_lean_rows(client: httpx.AsyncClient) -> None:
    params = {"backend": "bulk-c", "status": "failed", "order": "desc", "limit": 10}
    full = (await client.get(f"{V1}/history", params=params)).json()
    lean = (await client.get(f"{V1}/history", params={**params, "fields": "job_id,error,sweep,results"})).json()
    assert len(full) == 10 and {row["status"] for row in full} == {"failed"}
    keys = ["id", "pointer", "job_id", "error", "results", "sweep"]
    assert lean == [{key: row[key] for key in keys} for row in full]
    assert [list(row) for row in lean] == [keys] * 10


def test_the_field_lists_are_the_models() -> None:
    assert store.HISTORY_FIELDS == tuple(HistoryEntry.model_fields)
    # a full job row is the model's fields with results and receipt written last
    assert store.JOB_FIELDS == (*(f for f in Job.model_fields if f not in ("results", "receipt")), "results", "receipt")


@pytest.mark.parametrize("route", ["/jobs", "/history"])
@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"status": "done"}, "status: unknown status 'done'; use pending, running, finished, failed, canceled"),
        ({"status": ["finished", "nope,failed"]}, "status: unknown status 'nope'"),
        ({"order": "newest"}, "order: Input should be 'asc' or 'desc' (got 'newest')"),
        ({"limit": 0}, "limit: Input should be greater than or equal to 1 (got '0')"),
        ({"limit": 1001}, "limit: Input should be less than or equal to 1000 (got '1001')"),
        ({"limit": "many"}, "limit: Input should be a valid integer"),
        ({"since": "yesterday"}, "since: Input should be a valid datetime or date"),
        ({"cursor": -1}, "cursor: Input should be greater than or equal to 0 (got '-1')"),
        ({"fields": "id,qbits"}, "fields: unknown field 'qbits'; the fields are id, pointer, "),
        ({"backend": "b" * 101}, "backend: String should have at most 100 characters"),
    ],
)
async def test_a_bad_parameter_is_400_naming_it(
    client: httpx.AsyncClient, route: str, params: dict[str, Any], detail: str
) -> None:
    response = await client.get(f"{V1}{route}", params=params)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(detail), response.json()


async def test_history_fields_are_its_own(client: httpx.AsyncClient) -> None:
    refused = await client.get(f"{V1}/history", params={"fields": "qasm"})
    assert refused.status_code == 400
    assert refused.json()["detail"] == f"fields: unknown field 'qasm'; the fields are {', '.join(store.HISTORY_FIELDS)}"
    assert (await client.get(f"{V1}/jobs", params={"fields": "job_id"})).status_code == 400


def test_listing_checks_what_the_store_is_given() -> None:
    with pytest.raises(InvalidQuery, match="since: 2031-03-01T00:00:00 has no time zone"):
        store.Listing(since=datetime(2031, 3, 1))
    with pytest.raises(InvalidQuery, match="order: 'up' is not an order"):
        store.Listing(order="up")
    with pytest.raises(InvalidQuery, match="limit: 1001 rows is out of bounds; use 1 to 1000"):
        store.Listing(limit=1001)
    with pytest.raises(InvalidQuery, match="cursor: -2 is not a pointer"):
        store.Listing(cursor=-2)
    assert store.parse_statuses(["a, b", "", "C"]) == frozenset({"a", "b", "c"})
    assert store.pick_fields(["status", " owner,id"], store.JOB_FIELDS) == ("id", "pointer", "status", "owner")


def test_only_a_read_with_no_value_but_the_cursor_has_a_literal_limit() -> None:
    # a literal LIMIT lets Postgres keep one generic plan; an owner's, a backend's or a time's
    # best plan depends on its value (a rare backend's own index), so theirs stays a parameter
    assert _limit(store.Listing(cursor=5), None) == ("LIMIT 21", [])
    assert _limit(store.Listing(order="desc", limit=1000, statuses=frozenset({"failed"})), None) == ("LIMIT 1001", [])
    for listing, owner in [
        (store.Listing(backend="aer"), None),
        (store.Listing(since=BASE), None),
        (store.Listing(), "ann"),
    ]:
        assert _limit(listing, owner) == ("LIMIT %s", [21])


# --- upstream's client: only `cursor` ------------------------------------------------------


async def _old_jobs_page(dsn: str, cursor: int) -> bytes:
    """GET /jobs?cursor= as the code before the filters answered it: its statement (reads.py's
    list_jobs_raw) and the route's writing of each row (api/routes.py's list_jobs)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        cur = await conn.execute(
            f"SELECT {_JOB_FIELDS}, {_raw_results(INLINE)} FROM jobs j"
            " LEFT JOIN result_types rt ON rt.job_id = j.id LEFT JOIN results r ON r.job_id = j.id"
            " WHERE j.pointer > %s ORDER BY j.pointer LIMIT %s",
            (cursor, 20),
        )
        jobs = [raw_job_json(row) for row in await cur.fetchall()]
    assert all(job["results_inline"] for job in jobs)
    return f"[{','.join(job_body(job, job['results']) for job in jobs)}]".encode()


def _old_history_page(db: psycopg.Connection, cursor: int) -> bytes:
    """GET /history?cursor= as the code before the filters answered it: reads.py's list_history
    statement, written by FastAPI through list[HistoryEntry] (JSONResponse's json.dumps)."""
    rows = db.execute(
        "SELECT id, pointer, job_id, target_simulator, status, metadata, error, node_id,"
        " attempts, submission_date, start_time, finish_time, result_types, results, owner"
        " FROM history WHERE pointer > %s ORDER BY pointer LIMIT %s",
        (cursor, 20),
    ).fetchall()
    for row in rows:
        row["results"] = row["results"] or {"counts": None, "quasi_dist": None, "expval": None}
        row["sweep"] = None  # no sweeps among these jobs
    adapter = TypeAdapter(list[HistoryEntry])
    content = adapter.dump_python(adapter.validate_python(rows), mode="json")
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


async def test_cursor_only_is_byte_for_byte_the_old_answer(
    client: httpx.AsyncClient, dsn: str, db: psycopg.Connection
) -> None:
    jobs = pointers(await walk(client, "/jobs", {"limit": 1000, "fields": "id"}))
    history = pointers(await walk(client, "/history", {"limit": 1000, "fields": "id"}))
    for cursor in (0, jobs[0], jobs[len(jobs) // 2], jobs[-25], jobs[-1]):
        response = await client.get(f"{V1}/jobs", params={"cursor": cursor})
        assert response.status_code == 200
        assert response.content == await _old_jobs_page(dsn, cursor)
        assert response.headers["content-type"] == "application/json"
    assert (await client.get(f"{V1}/jobs")).content == await _old_jobs_page(dsn, 0)
    for cursor in (0, history[len(history) // 2], history[-1]):
        response = await client.get(f"{V1}/history", params={"cursor": cursor})
        assert response.status_code == 200
        assert response.content == _old_history_page(db, cursor)
