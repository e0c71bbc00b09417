"""The api's /metrics (jobs, nodes, ended jobs' histograms, result waits) and its readiness."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import psycopg
import pytest

from api.app import create_app
from api.metrics import MAX_HOLES, ClusterMetrics, method_label
from core import store
from core.settings import Settings
from tests.conftest import fresh_database
from tests.scrape import has, parse, value


async def scrape(client: httpx.AsyncClient) -> dict:
    answer = await client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return parse(answer.text)


async def test_jobs_by_backend_and_status_count_what_the_table_holds(client, make_job):
    before = await scrape(client)
    for _ in range(3):
        await make_job(status="finished", results={"counts": {"00": 1}})
    await make_job(status="failed")
    await make_job(status="pending")
    await make_job(status="pending")
    await make_job(status="claimed")
    after = await scrape(client)

    def delta(status: str) -> float:
        labels = {"backend": "aer", "status": status}
        return value(after, "qserver_jobs", **labels) - value(before, "qserver_jobs", **labels)

    assert [delta(s) for s in ("finished", "failed", "pending", "claimed", "running")] == [3, 1, 2, 1, 0]
    # every status of every enabled backend is exported, at 0 when no job has it
    assert has(after, "qserver_jobs", backend="aer_gpu", status="canceled")
    assert value(after, "qserver_api_database_up") == 1


async def test_jobs_that_end_fill_the_histograms_by_backend_and_method(client, make_job):
    await scrape(client)  # the api counts what ends after its first scrape
    before = await scrape(client)
    for _ in range(2):
        await make_job(status="finished", results={"counts": {"00": 1}, "receipt": {"method": "stabilizer", "seed": 1}})
    await make_job(status="failed", metadata={"method": "matrix_product_state"})
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    stabilizer = {"backend": "aer", "method": "stabilizer"}
    assert delta("qserver_job_queue_wait_seconds_count", **stabilizer) == 2
    assert delta("qserver_job_run_seconds_count", **stabilizer) == 2
    assert delta("qserver_jobs_ended_total", status="finished", **stabilizer) == 2
    # a job without a receipt is labelled with the method it asked for
    mps = {"backend": "aer", "method": "matrix_product_state"}
    assert delta("qserver_jobs_ended_total", status="failed", **mps) == 1
    assert delta("qserver_job_run_seconds_count", **mps) == 1
    # seconds: these jobs waited and ran for well under a minute, and not for nothing
    assert 0 < delta("qserver_job_queue_wait_seconds_sum", **stabilizer) < 60
    assert delta("qserver_job_run_seconds_bucket", le="60.0", **stabilizer) == 2
    # scraped again, nothing is counted twice
    again = await scrape(client)
    assert value(again, "qserver_jobs_ended_total") == value(after, "qserver_jobs_ended_total")


async def test_jobs_answered_from_the_cache_are_ended_but_not_timed(client, make_job, db):
    await scrape(client)
    before = await scrape(client)
    job_id = await make_job(status="finished", results={"counts": {"00": 1}, "receipt": {"method": "statevector"}})
    db.execute(
        "UPDATE results SET receipt = receipt || jsonb_build_object('cached_from', %s::text) WHERE job_id = %s",
        (str(uuid.uuid4()), job_id),
    )
    after = await scrape(client)
    labels = {"backend": "aer", "method": "statevector"}
    ended = value(after, "qserver_jobs_ended_total", **labels) - value(before, "qserver_jobs_ended_total", **labels)
    timed = value(after, "qserver_job_run_seconds_count", **labels) - value(
        before, "qserver_job_run_seconds_count", **labels
    )
    assert (ended, timed) == (1, 0)


def ended_row(pointer: int, method: str = "statevector") -> dict:
    return {
        "pointer": pointer,
        "backend": "aer",
        "status": "finished",
        "method": method,
        "queue_wait_s": 0.01,
        "run_s": 0.02,
        "cached": False,
    }


def test_a_history_row_committed_late_is_counted_once_when_it_shows_up():
    from prometheus_client import CollectorRegistry

    metrics = ClusterMetrics(CollectorRegistry())
    metrics._after = 10
    now = time.monotonic()
    metrics._count([ended_row(12)], now)  # 11's transaction has not committed yet
    assert (metrics._after, set(metrics._holes)) == (12, {11})
    metrics._count([ended_row(11), ended_row(13)], now)
    assert (metrics._after, metrics._holes) == (13, {})
    assert metrics.ended.labels("aer", "statevector", "finished")._value.get() == 3
    # a gap of a million pointers (rolled-back transactions) keeps only the last MAX_HOLES
    metrics._count([ended_row(13 + 1_000_000)], now)
    assert len(metrics._holes) == MAX_HOLES and max(metrics._holes) == 13 + 999_999


def test_method_labels_stay_bounded():
    assert [method_label(m) for m in ("statevector", "auto", "tensor_network", "x" * 300, None)] == [
        "statevector",
        "auto",
        "other",
        "other",
        "other",
    ]


@pytest.fixture
def node_rows(dsn):
    nodes = [
        {
            "node_id": f"metrics-{i}-" + uuid.uuid4().hex,
            "address": f"10.0.0.{i}",
            "hostname": f"box{i}",
            "tags": [],
            "alive": alive,
            "cpus_total": 4.0,
            "cpus_free": 3.0,
            "gpus_total": float(i),
            "gpus_free": 0.0,
            "memory_total": 8 * 2**30,
            "memory_free": 2**30,
            "jobs_running": 1,
            "versions": {},
        }
        for i, alive in ((1, True), (2, True), (3, False))
    ]
    yield nodes
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM nodes WHERE node_id = ANY(%s)", ([n["node_id"] for n in nodes],))


async def test_online_nodes_with_their_cpus_gpus_and_memory(client, node_rows, dsn):
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await store.save_nodes(conn, nodes=[n for n in node_rows if n["alive"]])
        await store.save_nodes(conn, nodes=node_rows)  # the third one: known, offline
    samples = await scrape(client)
    assert value(samples, "qserver_nodes_online") == 2
    assert value(samples, "qserver_nodes_known") == 3
    first, second, offline = (n["node_id"] for n in node_rows)
    assert value(samples, "qserver_node_cpus", node_id=first, hostname="box1") == 4
    assert value(samples, "qserver_node_cpus_free", node_id=first) == 3
    assert value(samples, "qserver_node_gpus", node_id=second) == 2
    assert value(samples, "qserver_node_memory_bytes", node_id=second) == 8 * 2**30
    assert value(samples, "qserver_node_memory_free_bytes", node_id=second) == 2**30
    assert value(samples, "qserver_node_jobs_running", node_id=first) == 1
    assert not has(samples, "qserver_node_cpus", node_id=offline)


async def test_result_waits_are_counted_while_they_wait(client, make_job, db):
    job_id = await make_job(status="running")
    waiting = asyncio.create_task(client.get(f"/api/v1/job/result/{job_id}", params={"wait_s": 20}))
    deadline = time.monotonic() + 10
    while value(await scrape(client), "qserver_api_result_waits") != 1:
        assert time.monotonic() < deadline, "the wait was never counted"
        await asyncio.sleep(0.05)
    await asyncio.to_thread(store.finish_job_sync, db, job_id=job_id, results={"counts": {"11": 5}}, node_id="n")
    answer = await waiting
    assert answer.status_code == 200 and answer.json()["counts"] == {"11": 5}
    assert value(await scrape(client), "qserver_api_result_waits") == 0
    assert has(await scrape(client), "qserver_api_event_streams")


async def test_readiness_when_the_database_and_listener_are_up(client):
    deadline = time.monotonic() + 10
    while (answer := await client.get("/api/v1/health/ready")).status_code != 200:
        assert time.monotonic() < deadline, answer.text
        await asyncio.sleep(0.1)
    assert answer.json() == {
        "service": "api",
        "status": "OK",
        "checks": {"database": "ok", "job_done_listener": "ok"},
    }


async def test_without_its_database_the_api_is_not_ready_and_says_so_in_its_metrics():
    dsn = "postgresql://postgres@127.0.0.1:5432/qserver_test_api_gone"
    made = fresh_database(dsn)
    next(made)
    app = create_app(Settings(database_url=dsn, db_pool_size=1))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert value(await scrape(client), "qserver_api_database_up") == 1
            next(made, None)  # the database is dropped (its connections ended)
            answer = await client.get("/api/v1/health/ready")
            assert answer.status_code == 503
            body = answer.json()
            assert body["status"] == "unavailable"
            assert body["checks"]["database"].startswith("no database connection")
            samples = await scrape(client)
            assert value(samples, "qserver_api_database_up") == 0
            assert not has(samples, "qserver_jobs")
