"""The job's status machine (core.domain.TRANSITIONS) against real Postgres: every store
operation that changes a job's status is tried on a job in every status; the allowed changes
happen, the others are refused and leave the job as it was."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psycopg
import pytest

from core import store
from core.domain import TERMINAL_STATUSES, TRANSITIONS, JobSpec, JobStatus, ResultType, can_move
from core.errors import Conflict
from core.store import jobs, outcomes
from tests.conftest import fresh_database

DSN = "postgresql://postgres@127.0.0.1:5432/qserver_test_status_machine"
BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
RESULTS = {"counts": {"11": 1}}
P, R, FI, FA, C = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED)

Operation = Callable[[psycopg.AsyncConnection, psycopg.Connection, uuid.UUID], Awaitable[Any]]


async def _cancel(aconn, sconn, job_id):
    try:
        await store.cancel_job(aconn, job_id=job_id)
    except Conflict:
        pass  # refused: the job is already finished, failed or canceled


def _sync(call) -> Operation:
    async def run(aconn, sconn, job_id):
        return call(sconn, job_id)

    return run


# Every store operation that changes a job's status: (the status it moves a job to, the call).
OPERATIONS: dict[str, tuple[JobStatus, Operation]] = {
    "claim_jobs": (R, lambda a, s, j: store.claim_jobs(a, job_ids=[j])),
    "park_job": (P, lambda a, s, j: store.park_job(a, job_id=j, waiting_for="a node with tag 'x'")),
    "requeue_job": (P, lambda a, s, j: store.requeue_job(a, job_id=j)),
    "recover_orphans (requeued)": (P, lambda a, s, j: store.recover_orphans(a, job_ids=[j], max_attempts=99)),
    "recover_orphans (failed)": (FA, lambda a, s, j: store.recover_orphans(a, job_ids=[j], max_attempts=1)),
    "finish_job_sync": (FI, _sync(lambda s, j: store.finish_job_sync(s, job_id=j, results=RESULTS, node_id="n"))),
    "record_outcomes_sync (finished)": (
        FI, _sync(lambda s, j: store.record_outcomes_sync(s, finished=[(j, RESULTS)], failed=[], node_id="n")),
    ),
    "record_outcomes_sync (failed)": (
        FA, _sync(lambda s, j: store.record_outcomes_sync(s, finished=[], failed=[(j, "boom")], node_id="n")),
    ),
    "fail_job": (FA, lambda a, s, j: store.fail_job(a, job_id=j, error="boom")),
    "fail_job_sync": (FA, _sync(lambda s, j: store.fail_job_sync(s, job_id=j, error="boom", node_id="n"))),
    "cancel_job": (C, _cancel),
}


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    yield from fresh_database(DSN)


async def _job_in(aconn: psycopg.AsyncConnection, status: JobStatus) -> uuid.UUID:
    """A new job put straight into ``status`` (raw SQL, around the store, on purpose)."""
    job_id = uuid.uuid4()
    spec = JobSpec(backend="aer", result_types=(ResultType.COUNTS,), metadata={}, qasm=BELL)
    await store.insert_job(aconn, job_id=job_id, spec=spec)
    await aconn.execute(
        "UPDATE jobs SET status = %s, attempts = 1, start_time = now() WHERE id = %s", (status.value, job_id)
    )
    return job_id


async def _status_after(dsn: str, operation: Operation, source: JobStatus) -> JobStatus:
    aconn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row)
    sconn = store.connect_sync(dsn)
    try:
        job_id = await _job_in(aconn, source)
        await operation(aconn, sconn, job_id)
        row = await (await aconn.execute("SELECT status FROM jobs WHERE id = %s", (job_id,))).fetchone()
        return JobStatus(row["status"])
    finally:
        await aconn.close()
        sconn.close()


PAIRS = [(s, t) for s, t in itertools.product(JobStatus, JobStatus) if s != t]


@pytest.mark.parametrize("source, target", PAIRS, ids=[f"{s.value}->{t.value}" for s, t in PAIRS])
def test_every_change_from_every_status(dsn, source, target):
    """Each operation that moves jobs to ``target`` moves a job in ``source`` there exactly when
    TRANSITIONS allows it; otherwise the job keeps its status."""
    allowed = can_move(source, target)
    for name, (moves_to, operation) in OPERATIONS.items():
        if moves_to is not target:
            continue
        after = asyncio.run(_status_after(dsn, operation, source))
        assert after is (target if allowed else source), f"{name} on a {source.value} job left it {after.value}"


def test_every_status_a_job_may_reach_has_an_operation():
    """The store operations above are all there are to the statuses TRANSITIONS lets a job
    reach: each such status is some operation's target, and no operation has another."""
    made = {target for target, _ in OPERATIONS.values()}
    assert {t for targets in TRANSITIONS.values() for t in targets} == made


def test_terminal_statuses_are_never_left():
    assert set(TRANSITIONS) == set(JobStatus)
    for status in JobStatus:
        assert status.is_terminal() == (not TRANSITIONS[status]) == (status in TERMINAL_STATUSES)


def test_a_guard_for_a_change_the_machine_does_not_allow_is_refused_at_import():
    with pytest.raises(ValueError, match="finished"):
        jobs.Move((FI,), R)
    with pytest.raises(ValueError):
        jobs.Move((P,), FI)
    with pytest.raises(ValueError):
        jobs.Move((), R)
    assert jobs.Move((P, R), C).where("j") == "j.status IN ('pending', 'running')"
    assert outcomes.FINISH.set == "status = 'finished'" and outcomes.FINISH.where() == "status = 'running'"
