"""`qserver job`, `result`, `cancel`, `delete`, `backends`, `history` and `jobs` against the test
stack: tables, JSON, -q, @latest, not found and conflicts (5)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from tests.circuits import BELL
from tests.cli.runs import (
    SLOW,
    UNKNOWN,
    flat,
    qserver,
    wait_for_status,
)

# --- job, result, cancel, delete -------------------------------------------------------------


def test_job_as_a_table_json_and_quiet(stack):
    job_id = stack.run(BELL, counts=True, metadata={"shots": 100, "seed": 1})["id"]
    shown = qserver("job", job_id)
    assert shown.returncode == 0, shown.stderr
    fields = {line.split(None, 1)[0]: line.split(None, 1)[1].strip() for line in shown.stdout.splitlines() if line}
    assert fields["id"] == job_id and fields["status"] == "finished" and fields["backend"] == "aer"
    assert fields["attempts"] == "1" and fields["node"] == stack.job(job_id)["node_id"]
    assert json.loads(fields["metadata"]) == {"shots": 100, "seed": 1}
    as_json = qserver("job", job_id, "-o", "json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == stack.job(job_id)
    assert qserver("job", job_id, "-q").stdout == f"{job_id}\n"


def test_job_of_a_failed_job_exits_0_and_shows_its_error(stack, program):
    failed = stack.run('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\nnot_a_gate q[0];\n', counts=True)
    assert failed["status"] == "failed"
    shown = qserver("job", failed["id"])
    assert shown.returncode == 0 and "failed" in shown.stdout
    assert failed["error"].splitlines()[0] in flat(shown.stdout)
    listed = qserver("jobs", "--status", "failed", "--limit", "1").stdout.splitlines()
    assert listed[0].split() == ["ID", "STATUS", "BACKEND", "SUBMITTED", "RAN", "NOTE"]
    assert listed[2].startswith(f"{failed['id']}   failed ") and failed["error"].splitlines()[0][:30] in listed[2]
    result = qserver("result", failed["id"])
    assert result.returncode == 1
    assert f"job {failed['id']} failed" in flat(result.stderr) and result.stdout == ""


def test_result_table_json_and_not_ended_yet(stack, slow):
    job_id = stack.run(BELL, counts=True, quasi_dist=True, metadata={"shots": 200})["id"]
    as_json = qserver("result", job_id, "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    results = json.loads(as_json.stdout)
    assert results["job_id"] == job_id and sum(results["counts"].values()) == 200
    table = qserver("result", job_id)
    assert table.returncode == 0
    assert "OUTCOME" in table.stdout and "QUASI-PROBABILITY" in table.stdout
    running = slow()
    not_yet = qserver("result", running)
    assert not_yet.returncode == 4, not_yet.stderr
    assert "has no results" in flat(not_yet.stderr) and "--wait" in not_yet.stderr
    waited = qserver("result", running, "--wait", "--wait-timeout", "1")
    assert waited.returncode == 4


def test_cancel_and_delete_several_jobs(stack, slow):
    first, second = slow(), slow()
    done = qserver("cancel", first, second, UNKNOWN)
    assert done.returncode == 5  # one of them is not found; the others are canceled
    assert f"job {UNKNOWN}:" in done.stderr and "(HTTP 404)" in done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[2:] if line.strip()]
    assert rows == [[first, "canceled"], [second, "canceled"]]
    assert {stack.job(first)["status"], stack.job(second)["status"]} == {"canceled"}
    again = qserver("cancel", first, "-o", "json")
    assert again.returncode == 5 and json.loads(again.stdout) == []  # already ended: 409
    assert "(HTTP 409)" in again.stderr
    deleted = qserver("delete", first, second, "-o", "json")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout) == [{"id": first, "deleted": True}, {"id": second, "deleted": True}]
    gone = qserver("job", first)
    assert gone.returncode == 5 and "(HTTP 404)" in gone.stderr


def test_delete_a_running_job_is_refused(stack, slow):
    running = slow()
    wait_for_status(stack, running, "running")
    done = qserver("delete", running)
    assert done.returncode == 5 and "(HTTP 409)" in done.stderr
    assert stack.job(running)["status"] == "running"


@pytest.mark.parametrize("command", ["job", "result", "cancel", "delete", "watch"])
def test_unknown_and_malformed_ids_are_refused(stack, command):
    unknown = qserver(command, UNKNOWN)
    assert unknown.returncode == 5, unknown.stderr
    assert "(HTTP 404)" in unknown.stderr
    malformed = qserver(command, "not-a-uuid")
    assert malformed.returncode == 5, malformed.stderr
    assert "(HTTP 400)" in malformed.stderr or "(HTTP 404)" in malformed.stderr


# --- lists -----------------------------------------------------------------------------------


def test_backends(stack):
    table = qserver("backends")
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line for line in table.stdout.splitlines()[2:] if line.strip()}
    as_json = json.loads(qserver("backends", "-o", "json").stdout)
    assert as_json == stack.backends()
    aer = next(row for row in as_json if row["backend_name"] == "aer")
    capabilities = aer["capabilities"]
    assert rows["aer"].split()[:4] == ["aer", "aer-plugin", capabilities["plugin_version"], "no"]
    assert ", ".join(capabilities["result_types"]) in rows["aer"]
    assert f"statevector:{capabilities['max_qubits']['statevector']}" in rows["aer"]
    names = qserver("backends", "-q").stdout.split()
    assert names == [row["backend_name"] for row in as_json] and "aer" in names


def test_history(stack):
    job_id = stack.run(BELL, counts=True)["id"]
    rows = json.loads(qserver("history", "-o", "json", "--limit", "5").stdout)
    assert job_id in [row["job_id"] for row in rows]
    assert "results" not in rows[0] and rows[0]["status"] == "finished"  # lean rows
    full = json.loads(qserver("history", "-o", "json", "--limit", "1", "--fields", "all").stdout)
    assert full[0]["job_id"] == job_id and full[0]["results"]["counts"] == stack.job(job_id)["results"]["counts"]
    assert qserver("history", "-q", "--limit", "1").stdout == f"{job_id}\n"  # newest first
    table = qserver("history", "--limit", "1", "--status", "finished")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["JOB", "ID", "STATUS"]
    assert table.stdout.splitlines()[2].split()[:3] == [job_id, "finished", "aer"]


def test_jobs_filters_orders_and_latest(stack, slow):
    finished = stack.run(BELL, counts=True)["id"]
    running = slow()
    newest = qserver("jobs", "-q", "--limit", "2")
    assert newest.returncode == 0, newest.stderr
    assert newest.stdout.split() == [running, finished]  # newest first
    only_finished = json.loads(qserver("jobs", "-o", "json", "--status", "finished", "--limit", "3").stdout)
    assert only_finished[0]["id"] == finished and {row["status"] for row in only_finished} == {"finished"}
    assert "qasm" not in only_finished[0] and "results" not in only_finished[0]  # lean rows
    full = json.loads(qserver("jobs", "-o", "json", "--limit", "1", "--fields", "all").stdout)
    assert full[0]["qasm"] == SLOW
    oldest = qserver("jobs", "-q", "--order", "asc", "--limit", "1").stdout.split()
    assert oldest and oldest != [running]
    table = qserver("jobs", "--limit", "2", "--status", "finished")
    assert table.stdout.splitlines()[0].split() == ["ID", "STATUS", "BACKEND", "SUBMITTED", "RAN"]  # no notes
    submitted = datetime.fromisoformat(stack.job(finished)["submission_date"].replace("Z", "+00:00"))
    assert table.stdout.splitlines()[2].split()[:5] == [
        finished,
        "finished",
        "aer",
        *submitted.astimezone().strftime("%m-%d %H:%M:%S").split(),
    ]
    pending_or_running = qserver("jobs", "--limit", "1", "--status", "pending,running").stdout.splitlines()
    assert pending_or_running[2].split()[0] == running
    assert qserver("job", "@latest", "-q").stdout == f"{running}\n"
    assert json.loads(qserver("job", "@latest", "-o", "json").stdout)["id"] == running
    every = qserver("jobs", "--all", "-q", "--status", "finished").stdout.split()
    assert finished in every and len(every) == len(set(every))
    bad = qserver("jobs", "--status", "done")
    assert bad.returncode == 2 and "done" in bad.stderr
