"""The job's status machine (core.domain.TRANSITIONS) against real Postgres: every store
operation that changes a job's status is tried on a job in every status; the allowed changes
happen, the others are refused and leave the job as it was."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psycopg
import pytest

from core import store
from core.domain import (
    TERMINAL_STATUSES,
    TRANSITIONS,
    VISIBLE_STATUSES,
    WAITING_FOR_EXECUTOR,
    WAITING_IN_QUEUE,
    JobSpec,
    JobStatus,
    ResultType,
    can_move,
)
from core.errors import Conflict
from core.store import cache, jobs, outcomes
from tests.conftest import fresh_database

DSN = "postgresql://postgres@127.0.0.1:5432/qserver_test_status_machine"
BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
RESULTS = {"counts": {"11": 1}}
P, CL, R, FI, C = JobStatus.PENDING, JobStatus.CLAIMED, JobStatus.RUNNING, JobStatus.FINISHED, JobStatus.CANCELED

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


def changes(*moves: jobs.Move) -> dict[JobStatus, JobStatus]:
    """{source: target} of ``moves``; a later move's sources override an earlier one's."""
    return {source: move.target for move in moves for source in move.sources}


# Every store operation that changes a job's status: (the changes it makes, the call). A status
# missing from the changes is one the operation must leave alone.
OPERATIONS: dict[str, tuple[dict[JobStatus, JobStatus], Operation]] = {
    "claim_jobs": (changes(jobs.CLAIM), lambda a, s, j: store.claim_jobs(a, job_ids=[j])),
    "mark_started_sync": (changes(jobs.START), _sync(lambda s, j: store.mark_started_sync(s, job_id=j, node_id="n"))),
    "hand_back_sync": (changes(jobs.HAND_BACK), _sync(lambda s, j: store.hand_back_sync(s, job_id=j))),
    "park_job": (
        changes(jobs.PARK),
        lambda a, s, j: store.park_job(a, job_id=j, waiting_for="a node with tag 'x'"),
    ),
    "requeue_job": (changes(jobs.REQUEUE), lambda a, s, j: store.requeue_job(a, job_id=j)),
    "recover_orphans (requeued)": (
        changes(outcomes.RECOVER),
        lambda a, s, j: store.recover_orphans(a, job_ids=[j], max_attempts=99),
    ),
    # after its last attempt a running job fails; a claimed one never ran: pending again
    "recover_orphans (failed)": (
        changes(outcomes.RECOVER, outcomes.GIVE_UP),
        lambda a, s, j: store.recover_orphans(a, job_ids=[j], max_attempts=1),
    ),
    "finish_job_sync": (
        changes(outcomes.FINISH),
        _sync(lambda s, j: store.finish_job_sync(s, job_id=j, results=RESULTS, node_id="n")),
    ),
    # a warm executor's job may finish still claimed (never marked started)
    "finish_job_sync (quick)": (
        changes(outcomes.QUICK_FINISH),
        _sync(lambda s, j: store.finish_job_sync(s, job_id=j, results=RESULTS, node_id="n", run_s=0.01)),
    ),
    "record_outcomes_sync (finished)": (
        changes(outcomes.QUICK_FINISH),
        _sync(lambda s, j: store.record_outcomes_sync(s, finished=[(j, RESULTS)], failed=[], node_id="n")),
    ),
    "record_outcomes_sync (failed)": (
        changes(outcomes.QUICK_FAIL),
        _sync(lambda s, j: store.record_outcomes_sync(s, finished=[], failed=[(j, "boom")], node_id="n")),
    ),
    "fail_job": (changes(outcomes.STOP), lambda a, s, j: store.fail_job(a, job_id=j, error="boom")),
    "fail_job_sync": (
        changes(outcomes.FAIL),
        _sync(lambda s, j: store.fail_job_sync(s, job_id=j, error="boom", node_id="n")),
    ),
    "fail_job_sync (quick)": (
        changes(outcomes.QUICK_FAIL),
        _sync(lambda s, j: store.fail_job_sync(s, job_id=j, error="boom", node_id="n", run_s=0.01)),
    ),
    "cancel_job": (changes(jobs.CANCEL), _cancel),
    "finish_from_cache": (
        changes(cache.FROM_CACHE),
        lambda a, s, j: store.finish_from_cache(a, job_id=j, source=j),
    ),
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


CASES = [(name, source) for name in OPERATIONS for source in JobStatus]


@pytest.mark.parametrize("name, source", CASES, ids=[f"{n}:{s.value}" for n, s in CASES])
def test_every_operation_from_every_status(dsn, name, source):
    """Each operation moves a job in ``source`` where its guarded UPDATE says, and leaves a job
    in any other status as it was."""
    made, operation = OPERATIONS[name]
    after = asyncio.run(_status_after(dsn, operation, source))
    expected = made.get(source, source)
    assert after is expected, f"{name} on a {source.value} job left it {after.value}, not {expected.value}"


def test_the_operations_make_exactly_the_changes_the_machine_allows():
    """Every change an operation makes is in TRANSITIONS, and every change in TRANSITIONS is
    made by some operation."""
    made = {(source, target) for changes_, _ in OPERATIONS.values() for source, target in changes_.items()}
    assert all(can_move(source, target) for source, target in made)
    assert {(s, t) for s, targets in TRANSITIONS.items() for t in targets} == made


def test_terminal_statuses_are_never_left():
    assert set(TRANSITIONS) == set(JobStatus)
    for status in JobStatus:
        assert status.is_terminal() == (not TRANSITIONS[status]) == (status in TERMINAL_STATUSES)


def test_claimed_is_internal_and_users_see_pending():
    assert {s.value for s in VISIBLE_STATUSES} == {"pending", "running", "finished", "failed", "canceled"}
    assert {s.visible() for s in JobStatus} == VISIBLE_STATUSES
    assert CL.visible() is P and all(s.visible() is s for s in VISIBLE_STATUSES)


def test_a_guard_for_a_change_the_machine_does_not_allow_is_refused_at_import():
    with pytest.raises(ValueError, match="finished"):
        jobs.Move((FI,), R)
    with pytest.raises(ValueError):
        jobs.Move((P,), R)  # a job is claimed before it runs
    with pytest.raises(ValueError):
        jobs.Move((P,), jobs.JobStatus.FAILED)  # a pending job fails only once claimed
    with pytest.raises(ValueError):
        jobs.Move((), R)
    assert jobs.Move((P, R), C).where("j") == "j.status IN ('pending', 'running')"
    assert outcomes.FINISH.set == "status = 'finished'" and outcomes.FINISH.where() == "status = 'running'"
    assert jobs.CLAIM.set == "status = 'claimed'" and jobs.START.where() == "status = 'claimed'"


async def _row(aconn, job_id) -> dict[str, Any]:
    cur = await aconn.execute(
        "SELECT status, attempts, start_time, node_id, claimed_at FROM jobs WHERE id = %s", (job_id,)
    )
    return await cur.fetchone()


async def _new_job(aconn) -> uuid.UUID:
    """A pending job of its own owner (named by its id)."""
    job_id = uuid.uuid4()
    spec = JobSpec(backend="aer", result_types=(ResultType.COUNTS,), metadata={}, qasm=BELL)
    await store.insert_job(aconn, job_id=job_id, spec=spec, owner=str(job_id))
    return job_id


def test_claimed_reads_as_pending_until_its_worker_starts_it(dsn):
    """Claim: pending to its user, no start_time, waiting for an executor; start: running with
    start_time and node_id; the attempt is counted once, at the claim."""

    async def run() -> None:
        aconn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row)
        sconn = store.connect_sync(dsn)
        try:
            job_id = await _new_job(aconn)
            job = await store.get_job_raw(aconn, job_id=job_id, inline_bytes=1000)
            assert job["status"] == "pending" and job["waiting_for"] == WAITING_IN_QUEUE
            [claimed] = await store.claim_jobs(aconn, job_ids=[job_id])
            assert claimed.attempts == 1 and await store.claim_jobs(aconn, job_ids=[job_id]) == []
            row = await _row(aconn, job_id)
            assert row["status"] == "claimed" and row["start_time"] is None and row["claimed_at"] is not None
            for job in (
                *(await store.list_jobs_page(aconn, listing=store.Listing(), owner=str(job_id), inline_bytes=1000))[0],
                *(
                    await store.list_jobs_page(
                        aconn,
                        listing=store.Listing(statuses=frozenset({"pending"})),
                        owner=str(job_id),
                        fields=store.JOB_FIELDS,
                        inline_bytes=1000,
                    )
                )[0],
                await store.get_job_raw(aconn, job_id=job_id, inline_bytes=1000),
            ):
                assert job["id"] == job_id and job["status"] == "pending"
                assert job["start_time"] is None and job["node_id"] is None
                assert job["waiting_for"] == WAITING_FOR_EXECUTOR
            assert (await store.get_results(aconn, job_id=job_id, inline_bytes=1000))["status"] == "pending"
            assert [j.id for j in await store.running_jobs(aconn, job_ids=[job_id])] == [job_id]
            assert job_id in await store.running_job_ids(aconn)
            assert job_id not in await store.stale_pending_jobs(aconn, older_than_s=0)

            assert store.mark_started_sync(sconn, job_id=job_id, node_id="node-1")
            assert not store.mark_started_sync(sconn, job_id=job_id, node_id="node-2")  # once only
            job = await store.get_job_raw(aconn, job_id=job_id, inline_bytes=1000)
            assert job["status"] == "running" and job["start_time"] is not None
            assert job["node_id"] == "node-1" and job["waiting_for"] is None and job["attempts"] == 1

            assert store.hand_back_sync(sconn, job_id=job_id)  # needs more memory: placed again
            row = await _row(aconn, job_id)
            assert (row["status"], row["start_time"], row["node_id"], row["attempts"]) == ("claimed", None, None, 1)
        finally:
            await aconn.close()
            sconn.close()

    asyncio.run(run())


def test_a_claim_that_never_started_is_not_an_attempt(dsn):
    """Requeued or recovered while claimed: the claim is not counted; after a start it is."""

    async def run() -> None:
        aconn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row)
        sconn = store.connect_sync(dsn)
        try:
            job_id = await _new_job(aconn)
            await store.claim_jobs(aconn, job_ids=[job_id])
            assert await store.requeue_job(aconn, job_id=job_id)
            assert (await _row(aconn, job_id))["attempts"] == 0
            await store.claim_jobs(aconn, job_ids=[job_id])
            assert await store.recover_orphans(aconn, job_ids=[job_id], max_attempts=1) == {
                "requeued": [job_id],
                "failed": [],
            }
            row = await _row(aconn, job_id)
            assert (row["status"], row["attempts"], row["claimed_at"]) == ("pending", 0, None)
            await store.claim_jobs(aconn, job_ids=[job_id])
            store.mark_started_sync(sconn, job_id=job_id, node_id="n")
            assert await store.requeue_job(aconn, job_id=job_id)
            row = await _row(aconn, job_id)
            assert (row["status"], row["attempts"], row["start_time"]) == ("pending", 1, None)
        finally:
            await aconn.close()
            sconn.close()

    asyncio.run(run())


def test_a_claimed_job_can_be_deleted_and_its_start_is_refused(dsn):
    async def run() -> None:
        aconn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row)
        sconn = store.connect_sync(dsn)
        try:
            job_id = await _new_job(aconn)
            await store.claim_jobs(aconn, job_ids=[job_id])
            await store.delete_job(aconn, job_id=job_id)
            assert not store.mark_started_sync(sconn, job_id=job_id, node_id="n")
            canceled = await _new_job(aconn)
            await store.claim_jobs(aconn, job_ids=[canceled])
            assert (await store.cancel_job(aconn, job_id=canceled))["start_time"] is None
            assert not store.mark_started_sync(sconn, job_id=canceled, node_id="n")
            cur = await aconn.execute("SELECT status, start_time, attempts FROM history WHERE job_id = %s", (canceled,))
            assert [tuple(h.values()) for h in await cur.fetchall()] == [("canceled", None, 1)]
        finally:
            await aconn.close()
            sconn.close()

    asyncio.run(run())
