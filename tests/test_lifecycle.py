"""Job lifecycle through the whole stack: cancel stops running Ray work, a plugin whose
runtime_env cannot be built fails its job in one attempt with the package name."""

from __future__ import annotations

import time

from tests.circuits import BELL

# Non-Clifford, so Aer's extended_stabilizer method takes minutes for 2000 shots.
SLOW = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[3];\nh q;\nt q;\nh q;\nt q;\nh q;\nmeasure q -> c;\n'


def wait_for_status(stack, job_id: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (job := stack.job(job_id))["status"] != status:
        assert time.monotonic() < deadline, f"job {job_id} is {job['status']}, not {status}"
        time.sleep(0.1)
    return job


def dispatcher_log(settings) -> str:
    return (settings.state_dir / "logs" / "dispatcher.log").read_text()


def test_cancel_running_job_stops_its_ray_work(stack, settings, db):
    job_id = stack.submit(SLOW, counts=True, metadata={"method": "extended_stabilizer", "shots": 2000})
    wait_for_status(stack, job_id, "running")
    time.sleep(1)  # the simulation is under way
    response = stack.http.put(f"/api/v1/job/cancel/{job_id}")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "canceled"
    deadline = time.monotonic() + 30
    while f"job_id={job_id} canceled; its Ray work was stopped" not in dispatcher_log(settings):
        assert time.monotonic() < deadline, "the dispatcher did not stop the job's Ray task"
        time.sleep(0.2)
    job = stack.job(job_id)
    assert job["status"] == "canceled" and job["results"]["counts"] is None
    history = db.execute("SELECT status FROM history WHERE job_id = %s", (job_id,)).fetchall()
    assert history == [("canceled",)]
    # the executors are warm again and the next job runs
    assert stack.run(BELL, counts=True)["status"] == "finished"


def test_plugin_whose_environment_cannot_be_built_fails_once(stack, db):
    # fake-plugin at a version the index does not have: its runtime_env cannot be built
    db.execute(
        "INSERT INTO plugins (name, version) VALUES ('fake-plugin', '99.0.0')"
        " ON CONFLICT (name) DO UPDATE SET version = '99.0.0'"
    )
    db.execute(
        "INSERT INTO backends (backend_name, plugin) VALUES ('brokenfake', 'fake-plugin') ON CONFLICT DO NOTHING"
    )
    try:
        job = stack.wait(stack.submit(BELL, counts=True, backend="brokenfake"), timeout=300)
        assert job["status"] == "failed"
        assert "fake-plugin==99.0.0" in job["error"]
        assert job["attempts"] == 1
        assert stack.run(BELL, counts=True)["status"] == "finished"
    finally:
        db.execute("DELETE FROM backends WHERE backend_name = 'brokenfake'")
        db.execute("DELETE FROM plugins WHERE name = 'fake-plugin' AND version = '99.0.0'")


def test_job_survives_a_killed_dispatcher_and_its_result_lands_once(stack, settings, db):
    """The dispatcher dies mid-job (SIGKILL). The job's Ray task belongs to the runner (a
    detached actor), so it goes on; the next dispatcher adopts it; the result lands, once."""
    import os
    import signal

    from ops import procs
    from ops import stack as stack_ops
    from ops.statedir import paths

    job_id = stack.submit(SLOW, counts=True, metadata={"method": "extended_stabilizer", "shots": 80})
    wait_for_status(stack, job_id, "running")
    pid = procs.read_pid(paths(settings).pid("dispatcher"))
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while procs.pid_alive(pid):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    stack_ops.up(settings)
    job = stack.wait(job_id, timeout=180)
    assert job["status"] == "finished", job["error"]
    assert job["attempts"] == 1
    assert sum(job["results"]["counts"].values()) == 80
    assert db.execute("SELECT count(*) FROM history WHERE job_id = %s", (job_id,)).fetchone()[0] == 1
    assert "adopted 1 jobs still running from a previous dispatcher" in dispatcher_log(settings)


def test_the_stack_runs_the_janitor_periodically(stack, settings, db):
    """Retention 30 days, the dispatcher's janitor every 3 s (test settings)."""
    old = stack.run(BELL, counts=True)["id"]
    recent = stack.run(BELL, counts=True)["id"]
    db.execute("UPDATE jobs SET finish_time = now() - interval '31 days' WHERE id = %s", (old,))
    deadline = time.monotonic() + 30
    while stack.http.get(f"/api/v1/job/{old}").status_code != 404:
        assert time.monotonic() < deadline, "the janitor did not delete the expired job"
        time.sleep(0.5)
    assert stack.http.get(f"/api/v1/job/{recent}").status_code == 200
    assert db.execute("SELECT status FROM history WHERE job_id = %s", (old,)).fetchall() == [("finished",)]


def test_admitted_plugin_environment_is_built_before_the_first_job(stack, settings):
    response = stack.http.post("/api/v1/plugin/fake-plugin")
    assert response.status_code == 201, response.text
    try:
        assert response.json()["version"] == "0.0.1"
        deadline = time.monotonic() + 240
        while "plugin fake-plugin==0.0.1 ready on node" not in dispatcher_log(settings):
            assert time.monotonic() < deadline, "the dispatcher did not build fake-plugin's runtime_env"
            time.sleep(0.5)
        job = stack.run(BELL, quasi_dist=True, backend="fake7")
        assert job["status"] == "finished", job["error"]
        assert job["results"]["quasi_dist"] == {"0": 0.5, "3": 0.5}  # fake-plugin's fixed data
    finally:
        assert stack.http.delete("/api/v1/plugin/fake-plugin").status_code == 200


def test_job_over_its_timeout_is_stopped_and_fails(stack, settings):
    job_id = stack.submit(SLOW, counts=True, metadata={"method": "extended_stabilizer", "shots": 2000, "timeout_s": 2})
    job = stack.wait(job_id, timeout=60)
    assert job["status"] == "failed"
    assert job["error"] == "timed out after 2 s"
    assert f"job_id={job_id} timed out after 2 s; its Ray task was stopped" in dispatcher_log(settings)
    assert stack.run(BELL, counts=True)["status"] == "finished"


def test_pending_job_whose_message_was_lost_is_swept_and_runs(stack, settings, db):
    """A crash between ingest's commit and its publish leaves a pending job without a message."""
    import asyncio

    from tests.test_dispatcher import _insert

    job_id = asyncio.run(_insert(settings))
    job = stack.wait(str(job_id), timeout=60)
    assert job["status"] == "finished" and job["attempts"] == 1
    assert set(job["results"]["counts"]) <= {"00", "11"}


def test_job_whose_worker_is_killed_runs_again(stack, settings):
    """The worker process dies mid-job (kill -9): the job is queued again and finishes (attempt 2)."""
    import os
    import signal
    import subprocess

    job_id = stack.submit(SLOW, counts=True, metadata={"method": "extended_stabilizer", "shots": 40})
    wait_for_status(stack, job_id, "running")
    deadline = time.monotonic() + 30
    while not (
        pids := subprocess.run(["pgrep", "-f", f"ray::job-{job_id}"], capture_output=True, text=True).stdout.split()
    ):
        assert time.monotonic() < deadline, "no Ray worker runs the job"
        time.sleep(0.1)
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)
    job = stack.wait(job_id, timeout=120)
    assert job["status"] == "finished", job["error"]
    assert job["attempts"] == 2
    assert f"job_id={job_id} lost on attempt 1" in dispatcher_log(settings)
