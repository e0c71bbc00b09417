"""Status tells the truth, through the whole stack: jobs queued behind a slow one are `pending`
(no start_time, no node, `waiting_for` the queue or an executor) until their simulation starts,
`running` only with a start_time and a node, and each runs once (one attempt, one history row)."""

from __future__ import annotations

import time

from core.domain import WAITING_FOR_EXECUTOR, WAITING_IN_QUEUE
from tests.circuits import BELL

# 12 qubits, a mid-circuit measurement (per-shot simulation): small, but a few seconds of work
SLOW = (
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[12];\ncreg c[12];\n'
    + "h q;\n"
    + "".join(f"cx q[{i}],q[{i + 1}];\nt q[{i + 1}];\n" for i in range(11)) * 20
    + "measure q[0] -> c[0];\nh q;\nmeasure q -> c;\n"
)


def test_jobs_behind_a_slow_one_are_pending_until_they_start(stack, db):
    slow = stack.submit(SLOW, counts=True, metadata={"shots": 3000})
    behind = [stack.submit(BELL, counts=True) for _ in range(6)]
    seen: dict[str, set[str]] = {job_id: set() for job_id in [slow, *behind]}
    waits: set[str] = set()
    deadline = time.monotonic() + 120
    while any(stack.job(j)["status"] not in ("finished", "failed") for j in seen):
        assert time.monotonic() < deadline, "the jobs did not finish"
        for job_id in seen:
            job = stack.job(job_id)
            seen[job_id].add(job["status"])
            if job["status"] == "pending":
                assert job["start_time"] is None and job["node_id"] is None, job
                assert job["waiting_for"] in (WAITING_IN_QUEUE, WAITING_FOR_EXECUTOR), job
                waits.add(job["waiting_for"])
            elif job["status"] == "running":
                assert job["start_time"] is not None and job["node_id"], job
                assert job["waiting_for"] is None, job
        time.sleep(0.05)
    for job_id in seen:
        job = stack.job(job_id)
        assert job["status"] == "finished", job["error"]
        assert job["attempts"] == 1 and job["start_time"] >= job["submission_date"]
        assert seen[job_id] <= {"pending", "running", "finished"}
        rows = db.execute("SELECT status FROM history WHERE job_id = %s", (job_id,)).fetchall()
        assert rows == [("finished",)]
