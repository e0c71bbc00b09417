"""End to end through nginx: gRPC submit -> RabbitMQ -> dispatcher -> Ray -> Postgres -> REST."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from tests.circuits import BELL, BELL_QASM3, GHZ5


def test_bell_counts_quasi_dist_and_expval(stack):
    job = stack.run(
        BELL,
        counts=True,
        quasi_dist=True,
        expval=True,
        metadata={"shots": 2000, "obs": [[["ZZ", 1.0]], [["XX", 1.0]]]},
    )
    assert job["status"] == "finished", job["error"]
    counts = job["results"]["counts"]
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 2000
    assert 800 <= counts.get("00", 0) <= 1200
    quasi = job["results"]["quasi_dist"]
    assert set(quasi) <= {"0", "3"}
    assert quasi["0"] == pytest.approx(0.5, abs=0.05) and quasi["3"] == pytest.approx(0.5, abs=0.05)
    # counts and quasi_dist come from one simulation run
    assert quasi["0"] == pytest.approx(counts["00"] / 2000)
    assert job["results"]["expval"] == pytest.approx([1.0, 1.0])

    result = stack.result_response(job["id"])
    assert result.status_code == 200
    body = result.json()
    assert body["job_id"] == job["id"] and body["counts"] == counts
    assert body["expval"] == pytest.approx([1.0, 1.0])


def test_job_json_has_what_the_contract_says(stack):
    job_id = stack.submit(BELL, counts=True, metadata={"shots": 100})
    uuid.UUID(job_id)
    job = stack.wait(job_id)
    assert job["id"] == job_id
    assert job["target_simulator"] == "aer"
    assert job["qasm"] == BELL
    assert job["metadata"] == {"shots": 100}
    assert job["result_types"] == {"counts": True, "quasi_dist": False, "expval": False}
    assert job["results"]["quasi_dist"] is None and job["results"]["expval"] is None
    assert job["error"] is None and job["attempts"] == 1 and job["node_id"]
    submitted, started, finished = (
        datetime.fromisoformat(job[k]) for k in ("submission_date", "start_time", "finish_time")
    )
    assert submitted.tzinfo is not None and submitted <= started <= finished


def test_default_shots_are_1000(stack):
    job = stack.run(BELL, counts=True)
    assert sum(job["results"]["counts"].values()) == 1000


def test_openqasm3_circuit(stack):
    job = stack.run(BELL_QASM3, counts=True)
    assert job["status"] == "finished", job["error"]
    assert set(job["results"]["counts"]) <= {"00", "11"}


def test_ghz_5_qubits(stack):
    job = stack.run(GHZ5, counts=True, quasi_dist=True)
    assert job["status"] == "finished", job["error"]
    assert set(job["results"]["counts"]) <= {"00000", "11111"}
    assert set(job["results"]["quasi_dist"]) <= {"0", "31"}


def test_seeded_job_gives_the_same_counts_twice(stack):
    meta = {"shots": 500, "seed": 1234}
    first, second = (stack.run(GHZ5, counts=True, metadata=meta) for _ in range(2))
    assert first["results"]["counts"] == second["results"]["counts"]
    other = stack.run(GHZ5, counts=True, metadata={"shots": 500, "seed": 99})
    assert other["results"]["counts"] != first["results"]["counts"]


def test_simulator_failure_is_a_failed_job_and_the_next_job_runs(stack):
    job = stack.run(BELL, expval=True, metadata={"obs": [[["ZZZ", 1.0]]]})
    assert job["status"] == "failed"
    assert "obs[0] acts on 3 qubits but the circuit has 2" in job["error"]
    assert job["results"]["expval"] is None
    result = stack.result_response(job["id"])
    assert result.status_code == 404
    assert "failed" in result.json()["detail"]

    nxt = stack.run(BELL, counts=True)
    assert nxt["status"] == "finished"


def test_jobs_listing_shows_submitted_jobs(stack):
    job_id = stack.submit(BELL, counts=True)
    stack.wait(job_id)
    cursor, seen = 0, []
    while True:
        page = stack.http.get("/api/v1/jobs", params={"cursor": cursor}).json()
        if not page:
            break
        assert len(page) <= 20
        seen += [j["id"] for j in page]
        cursor = page[-1]["pointer"]
    assert job_id in seen
    assert len(seen) == len(set(seen))


def test_history_row_for_each_terminal_job(stack, db):
    job = stack.run(BELL, counts=True)
    rows = db.execute("SELECT status, results->'counts' FROM history WHERE job_id = %s", (job["id"],)).fetchall()
    assert len(rows) == 1
    assert rows[0][0] == "finished" and rows[0][1] == job["results"]["counts"]
