"""RabbitMQ and Postgres restarted under a running stack (issue 5, items 1, 2 and 6).

Every restart hits the lab's private instances (tests/faults/conftest.py); our services are
never restarted, and their pids are checked to prove it. Deadlines are liveness bounds, not
speed assertions.
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from tests.circuits import BELL

# Non-Clifford: Aer's extended_stabilizer takes seconds to minutes (see tests/test_lifecycle.py).
SLOW = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[3];\nh q;\nt q;\nh q;\nt q;\nh q;\nmeasure q -> c;\n'
SERVICES = ("ingest", "api", "dispatcher")


def our_pids(lab) -> dict[str, int | None]:
    return {name: lab.service_pid(name) for name in SERVICES}


def submit_retrying(client, deadline: float, qasm: str = BELL, **props) -> tuple[str, int]:
    """Submit until accepted; only UNAVAILABLE (the queue did not confirm) is retried.
    Returns (job id, refusals)."""
    props = props or {"counts": True}
    refusals = 0
    while True:
        try:
            return client.submit(qasm, **props), refusals
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE, (error.code(), error.details())
            refusals += 1
            assert time.monotonic() < deadline, f"still refused: {error.details()}"
            time.sleep(0.5)


def wait_status(client, job_id: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (job := client.job(job_id))["status"] != status:
        assert time.monotonic() < deadline, f"job {job_id} is {job['status']}, not {status}"
        time.sleep(0.1)
    return job


def wait_consumers(lab, deadline: float) -> int:
    while (count := lab.rabbit.consumers(lab.settings.queue_name)) != 1:
        assert time.monotonic() < deadline, f"{lab.settings.queue_name} has {count} consumers"
        time.sleep(1)
    return count


def job_rows(lab) -> int:
    with lab.db() as conn:
        return conn.execute("SELECT count(*) FROM jobs").fetchone()[0]


def wait_nothing_pending(lab, timeout: float = 60) -> None:
    """No job stays pending (a pending row whose message is lost would, without the sweeper)."""
    deadline = time.monotonic() + timeout
    while True:
        with lab.db() as conn:
            pending = conn.execute("SELECT id FROM jobs WHERE status = 'pending'").fetchall()
        if not pending:
            return
        assert time.monotonic() < deadline, f"still pending: {pending}"
        time.sleep(0.5)


def test_rabbitmq_restart_while_idle(faults):
    """The next job finishes within a minute, without restarting our services, and the queue
    has its consumer again."""
    client = faults.client
    assert client.run(BELL, counts=True)["status"] == "finished"
    pids = our_pids(faults)
    assert faults.rabbit.consumers(faults.settings.queue_name) == 1
    faults.rabbit.restart()
    restarted = time.monotonic()
    deadline = restarted + 60
    job_id, refusals = submit_retrying(client, deadline)
    job = client.wait(job_id, timeout=max(deadline - time.monotonic(), 1))
    assert job["status"] == "finished", job["error"]
    assert job["attempts"] == 1
    assert set(job["results"]["counts"]) <= {"00", "11"}
    wait_consumers(faults, deadline)
    assert our_pids(faults) == pids
    print(
        f"\nafter the RabbitMQ restart: {refusals} refused submissions, job finished "
        f"{time.monotonic() - restarted:.1f} s after the broker was back"
    )


def test_submission_while_rabbitmq_is_down(faults):
    """UNAVAILABLE and no row; a job accepted after all must run. Never a pending row left
    without a message."""
    client = faults.client
    before = job_rows(faults)
    faults.rabbit.stop()
    accepted, refused = [], []
    try:
        for _ in range(3):
            try:
                accepted.append(client.submit(BELL, counts=True, metadata={"shots": 10}))
            except grpc.RpcError as error:
                refused.append((error.code(), error.details()))
        rows_while_down = job_rows(faults)
    finally:
        faults.rabbit.start()
    assert all(code == grpc.StatusCode.UNAVAILABLE for code, _ in refused), refused
    assert all("job queue did not accept the job" in details for _, details in refused), refused
    assert rows_while_down == before + len(accepted)
    for job_id in accepted:  # stored: it must run once the broker is back
        job = client.wait(job_id, timeout=60)
        assert job["status"] == "finished", job["error"]
    wait_nothing_pending(faults)
    # and the stack takes jobs again
    job_id, _ = submit_retrying(client, time.monotonic() + 60)
    assert client.wait(job_id, timeout=60)["status"] == "finished"
    print(f"\nwhile RabbitMQ was down: {len(refused)} refused (UNAVAILABLE), {len(accepted)} accepted")


def test_submission_while_postgres_is_down_is_unavailable(faults):
    """With Postgres stopped, a submission is refused UNAVAILABLE, saying the database is
    unavailable (the client may retry), not an internal error; once it is back, it is accepted."""
    client = faults.client
    faults.pg.stop()
    try:
        with pytest.raises(grpc.RpcError) as refused:
            client.submit(BELL, counts=True)
    finally:
        faults.pg.start()
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert refused.value.details() == "the database is unavailable, try again later"
    job_id, _ = submit_retrying(client, time.monotonic() + 60)
    assert client.wait(job_id, timeout=60)["status"] == "finished"


def test_postgres_restart(faults):
    """The next jobs finish within a minute: pooled connections recover in ingest, api, the
    dispatcher and every warm Ray executor; the dispatcher's LISTEN connection is back."""
    client = faults.client
    assert client.run(BELL, counts=True)["status"] == "finished"
    pids = our_pids(faults)
    faults.pg.restart()
    restarted = time.monotonic()
    deadline = restarted + 60
    job_id, _ = submit_retrying(client, deadline)
    job = client.wait(job_id, timeout=max(deadline - time.monotonic(), 1))
    assert job["status"] == "finished", job["error"]
    # as many jobs at once as there are warm executors, twice: each executor's connection
    cpus = faults.settings.executor_warm_workers
    ids = [client.submit(BELL, counts=True) for _ in range(2 * cpus)]
    jobs = [client.wait(i, timeout=max(deadline - time.monotonic(), 1)) for i in ids]
    assert [j["status"] for j in jobs] == ["finished"] * len(ids), [j["error"] for j in jobs]
    # a cancel reaches the running job through Postgres NOTIFY: the LISTEN loop reconnected
    slow = client.submit(SLOW, counts=True, metadata={"method": "extended_stabilizer", "shots": 2000})
    wait_status(client, slow, "running")
    assert client.http.put(f"/api/v1/job/cancel/{slow}").status_code == 200
    stop_deadline = time.monotonic() + 30
    while f"job_id={slow} canceled; its Ray work was stopped" not in faults.log("dispatcher"):
        assert time.monotonic() < stop_deadline, "the cancel did not reach the dispatcher"
        time.sleep(0.2)
    assert our_pids(faults) == pids


def test_job_running_across_a_postgres_restart_finishes_once(faults):
    """A job whose executor writes its outcome while Postgres restarts still ends once."""
    client = faults.client
    job_id = client.submit(SLOW, counts=True, metadata={"method": "extended_stabilizer", "shots": 60})
    wait_status(client, job_id, "running")
    faults.pg.restart()
    job = client.wait(job_id, timeout=120)
    assert job["status"] == "finished", job["error"]
    with faults.db() as conn:
        history = conn.execute("SELECT status FROM history WHERE job_id = %s", (job_id,)).fetchall()
    assert history == [("finished",)]


def test_no_job_lost_or_run_twice_across_a_rabbitmq_restart(faults):
    """~30 jobs submitted while RabbitMQ restarts once: each accepted one ends finished exactly
    once (attempts 1, one history row); each refused one left no row."""
    client = faults.client
    wanted = 30
    with faults.db() as conn:
        start = conn.execute("SELECT now()").fetchone()[0]
    accepted: list[str] = []
    refused: list[grpc.StatusCode] = []
    errors: list[BaseException] = []

    def submitter() -> None:
        deadline = time.monotonic() + 120
        try:
            while len(accepted) < wanted:
                assert time.monotonic() < deadline, "submissions still refused after 120 s"
                try:
                    accepted.append(client.submit(BELL, counts=True, metadata={"shots": 50}))
                except grpc.RpcError as error:
                    refused.append(error.code())
                    time.sleep(0.2)
                time.sleep(0.1)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    thread = threading.Thread(target=submitter)
    thread.start()
    deadline = time.monotonic() + 30
    while len(accepted) < 10 and thread.is_alive():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    faults.rabbit.restart()
    thread.join(timeout=180)
    assert not errors, errors
    assert not thread.is_alive()
    assert set(refused) <= {grpc.StatusCode.UNAVAILABLE}, refused
    jobs = [client.wait(job_id, timeout=120) for job_id in accepted]
    assert [j["status"] for j in jobs] == ["finished"] * wanted, [j["error"] for j in jobs]
    assert [j["attempts"] for j in jobs] == [1] * wanted
    with faults.db() as conn:
        rows = conn.execute(
            "SELECT j.id::text, count(h.id) FROM jobs j LEFT JOIN history h ON h.job_id = j.id"
            " WHERE j.submission_date >= %s GROUP BY j.id",
            (start,),
        ).fetchall()
    history = dict(rows)
    assert set(history) == set(accepted), "a refused submission left a row"
    assert set(history.values()) == {1}, history
    wait_consumers(faults, time.monotonic() + 60)
    print(f"\n{wanted} accepted, {len(refused)} refused (UNAVAILABLE) during the restart")


def test_restart_while_deliveries_wait_for_a_slot(faults):
    """RabbitMQ restarts while the dispatcher's slots are full and more deliveries wait for
    one (unacked). Those deliveries' channel is gone: the broker redelivers them, and each
    job still ends finished exactly once, none left running without a Ray task."""
    client = faults.client
    slow = {"method": "extended_stabilizer", "shots": 20}  # a few seconds each
    ids = [client.submit(SLOW, counts=True, metadata=slow) for _ in range(2 * faults.settings.dispatcher_prefetch)]
    deadline = time.monotonic() + 30
    while True:  # the slots are full and the next deliveries wait for them
        out = faults.rabbit.ctl("list_queues", "name", "messages_unacknowledged", "--no-table-headers", "--quiet")
        unacked = dict(line.split() for line in out.splitlines() if line.strip()).get(faults.settings.queue_name)
        with faults.db() as conn:
            running = conn.execute("SELECT count(*) FROM jobs WHERE status = 'running'").fetchone()[0]
        if running == faults.settings.dispatcher_prefetch and int(unacked or 0) > 0:
            break
        assert time.monotonic() < deadline, (running, unacked)
        time.sleep(0.1)
    faults.rabbit.restart()
    jobs = [client.wait(job_id, timeout=120) for job_id in ids]
    assert [j["status"] for j in jobs] == ["finished"] * len(ids), [(j["status"], j["error"]) for j in jobs]
    with faults.db() as conn:
        history = conn.execute("SELECT count(*) FROM history WHERE job_id = ANY(%s::uuid[])", (ids,)).fetchone()[0]
    assert history == len(ids)


# The job must outlast RabbitMQ's minute-scale timeout check; its run time varies (2-5 min here).
@pytest.mark.timeout(900)
def test_job_longer_than_the_consumer_timeout_runs_once(faults):
    """RabbitMQ's delivery-acknowledgement timeout (consumer_timeout; checked about once a
    minute) set to 10 s: a job of over a minute causes no redelivery and no second run,
    since the dispatcher acks each delivery as soon as it has claimed the job."""
    lab, client = faults, faults.client
    lab.rabbit.extra_conf = "consumer_timeout = 10000\n"
    try:
        lab.rabbit.restart()
        deadline = time.monotonic() + 120
        job_id, _ = submit_retrying(
            client, deadline, SLOW, counts=True, metadata={"method": "extended_stabilizer", "shots": 600}
        )
        started = time.monotonic()
        job = client.wait(job_id, timeout=600)
        took = time.monotonic() - started
        assert job["status"] == "finished", job["error"]
        assert job["attempts"] == 1
        assert took > 70, f"the job took only {took:.0f} s: too short to meet the consumer timeout"
        assert lab.rabbit.consumers(lab.settings.queue_name) == 1
    finally:
        lab.rabbit.extra_conf = ""
        lab.rabbit.restart()
