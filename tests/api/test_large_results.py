"""Large results (issue 12, point 6): passed through as stored, read under admission, and one
caller's concurrent big reads never fail or hold up another caller's requests.

The app runs in-process over the real test database; results are written as the executor writes
them (store.finish_job_sync). Callers are told apart as nginx tells them: X-Real-IP.
"""

from __future__ import annotations

import asyncio
import random
import time

import httpx

from api.large_reads import LargeReads
from tests.api.conftest import MakeJob

V1 = "/api/v1"
HEAVY = {"x-real-ip": "10.0.0.1"}
OTHER = {"x-real-ip": "10.0.0.2"}


def big_counts(keys: int = 120_000, seed: int = 7) -> dict[str, int]:
    """Counts of a 20-qubit job with ``keys`` outcomes: about 3.5 MB of JSON, ~1 MB stored."""
    rng = random.Random(seed)
    return {format(rng.getrandbits(20), "020b"): rng.randint(1, 99) for _ in range(keys)}


async def test_a_large_result_reads_back_exactly(client: httpx.AsyncClient, make_job: MakeJob, db) -> None:
    counts = big_counts()
    job_id = await make_job(status="finished", results={"counts": counts, "expval": [0.25, -1.0]})
    stored = db.execute("SELECT pg_column_size(counts) AS n FROM results WHERE job_id = %s", (job_id,)).fetchone()["n"]
    assert stored > 256 * 1024  # over api_inline_result_bytes: read on its own, admitted

    result = await client.get(f"{V1}/job/result/{job_id}", headers=HEAVY)
    assert result.status_code == 200
    assert result.json()["counts"] == counts
    assert result.json()["expval"] == [0.25, -1.0]
    assert result.json()["quasi_dist"] is None
    assert result.json()["job_id"] == str(job_id)

    job = await client.get(f"{V1}/job/{job_id}", headers=HEAVY)
    assert job.status_code == 200
    assert job.json()["results"] == {"counts": counts, "quasi_dist": None, "expval": [0.25, -1.0]}
    assert job.json()["status"] == "finished" and job.json()["id"] == str(job_id)


async def test_small_results_keep_their_json_shape(client: httpx.AsyncClient, make_job: MakeJob) -> None:
    job_id = await make_job(
        status="finished", results={"counts": {"00": 498, "11": 502}, "quasi_dist": {"0": 0.5, "3": 0.5}}
    )
    job = (await client.get(f"{V1}/job/{job_id}")).json()
    assert job["results"] == {"counts": {"00": 498, "11": 502}, "quasi_dist": {"0": 0.5, "3": 0.5}, "expval": None}
    assert job["result_types"] == {"counts": True, "quasi_dist": False, "expval": False}
    assert job["submission_date"].endswith("Z") and job["metadata"] == {"shots": 1000}
    page = (await client.get(f"{V1}/jobs", params={"cursor": job["pointer"] - 1})).json()
    assert page[0] == job


async def test_one_callers_big_reads_never_fail_or_slow_another_caller(
    client: httpx.AsyncClient, make_job: MakeJob
) -> None:
    counts = big_counts(seed=11)
    big = await make_job(status="finished", results={"counts": counts})
    small = await make_job(status="finished", results={"counts": {"0": 1000}})

    async def heavy_read() -> httpx.Response:
        return await client.get(f"{V1}/job/result/{big}", headers=HEAVY)

    async def other_read() -> tuple[int, float]:
        started = time.perf_counter()
        response = await client.get(f"{V1}/job/{small}", headers=OTHER)
        listing = await client.get(f"{V1}/jobs", headers=OTHER)
        return max(response.status_code, listing.status_code), time.perf_counter() - started

    heavy = [asyncio.create_task(heavy_read()) for _ in range(20)]
    others = []
    for _ in range(10):
        others.append(await other_read())
        await asyncio.sleep(0.02)
    heavy_answers = await asyncio.gather(*heavy)

    assert [code for code, _ in others] == [200] * 10
    assert max(seconds for _, seconds in others) < 1.0, others
    codes = sorted(response.status_code for response in heavy_answers)
    assert set(codes) <= {200, 429, 503}, codes
    assert 200 in codes and 429 in codes  # one at a time per caller; the rest are told to wait
    for response in heavy_answers:
        if response.status_code == 200:
            assert response.json()["counts"] == counts
        else:
            assert response.headers["retry-after"] == "1"
            assert "QSERVER_API_LARGE_READS" in response.json()["detail"]


async def test_large_reads_are_capped_per_process(client: httpx.AsyncClient, make_job: MakeJob, app) -> None:
    big = await make_job(status="finished", results={"counts": big_counts(seed=13)})
    small = await make_job(status="finished", results={"counts": {"0": 1000}})
    default = app.state.large_reads
    app.state.large_reads = LargeReads(at_once=1, per_caller=1, wait_s=0.0)
    try:
        answers = await asyncio.gather(
            *(client.get(f"{V1}/job/result/{big}", headers={"x-real-ip": f"10.0.1.{n}"}) for n in range(3)),
            client.get(f"{V1}/job/result/{small}", headers=OTHER),
        )
    finally:
        app.state.large_reads = default
    *heavy, other = answers
    assert other.status_code == 200  # a small result never waits for admission
    assert sorted(response.status_code for response in heavy) == [200, 503, 503]
    assert all(response.headers.get("retry-after") == "1" for response in heavy if response.status_code == 503)
