"""`qserver submit` against the test stack: JSON, tables, -q, its job options, usage errors (2),
refusals (5), a wait that times out (4), Ctrl-C (130, and the command that cancels the job)."""

from __future__ import annotations

import json
import re
import shlex
import uuid

import pytest

from core.settings import Settings
from ops.endpoints import client_address
from tests.cli.runs import (
    ROTATION,
    SLOW,
    SLOW_OPTIONS,
    flat,
    interrupt,
    qserver,
)

# --- submit ----------------------------------------------------------------------------------


def test_submit_json_is_one_document_on_stdout_and_the_id_on_stderr(stack):
    done = qserver("submit", "examples/bell.qasm", "--json", "--shots", "300", "--quasi-dist")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert job["status"] == "finished" and job["target_simulator"] == "aer"
    assert f"job {job['id']}" in done.stderr
    assert set(job["results"]["quasi_dist"]) <= {"0", "3"}
    assert job["results"]["counts"] is None  # --quasi-dist alone: no counts asked for
    assert job == stack.job(job["id"])


def test_submit_prints_the_counts_as_a_table_for_people(stack):
    done = qserver("submit", "examples/bell.qasm", "--shots", "400", "--seed", "3")
    assert done.returncode == 0, done.stderr
    job_id = re.search(r"job ([0-9a-f-]{36})", done.stderr).group(1)
    counts = stack.job(job_id)["results"]["counts"]
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["OUTCOME", "COUNT", "SHARE"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:] if line.strip()}
    assert {outcome: int(count) for outcome, (count, _) in rows.items()} == counts
    for count, share in rows.values():
        assert float(share) == pytest.approx(int(count) / 400, abs=1e-4)
    assert re.search(rf"job {job_id}: (pending|running|finished)", done.stderr)  # its progress


def test_submit_options_reach_the_job(stack, program):
    path = program(ROTATION)
    done = qserver(
        "submit", path, "-o", "json", "--param", "theta=3.141592653589793", "--shots", "64", "--seed", "7",
        "--method", "statevector", "--timeout", "30", "--metadata", '{"shots": 5, "note": "kept"}',
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["metadata"] == {
        "shots": 64,  # the option wins over --metadata
        "note": "kept",
        "seed": 7,
        "method": "statevector",
        "timeout_s": 30.0,
        "parameters": {"theta": 3.141592653589793},
    }
    assert job["results"]["counts"] == {"1": 64}  # rx(pi) flips the qubit
    assert job["receipt"]["seed"] == 7 and job["receipt"]["method"] == "statevector"


def test_submit_tag_no_node_offers_is_refused(stack, program):
    done = qserver("submit", program(ROTATION), "--no-wait", "-q", "--param", "theta=0", "--tag", "nowhere-tag")
    assert done.returncode == 5  # no node ever offered the tag: refused at submission
    assert "FAILED_PRECONDITION" in done.stderr and "nowhere-tag" in flat(done.stderr)
    assert done.stdout == ""


def test_submit_obs_implies_expval(stack):
    done = qserver("submit", "examples/bell.qasm", "--obs", '[[["ZZ", 1.0]], [["XX", 0.5]]]', "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["result_types"] == {"counts": False, "quasi_dist": False, "expval": True}
    assert job["results"]["expval"] == [1.0, 0.5]
    table = qserver("result", job["id"])
    assert table.returncode == 0, table.stderr
    assert [line.split() for line in table.stdout.splitlines() if line.strip()][-2:] == [["0", "1"], ["1", "0.5"]]


def test_submit_quiet_prints_the_id_alone(stack):
    done = qserver("submit", "examples/bell.qasm", "-q", "--no-wait")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert str(uuid.UUID(job_id)) == job_id and done.stdout == f"{job_id}\n"
    assert stack.wait(job_id)["status"] == "finished"
    waited = qserver("submit", "examples/bell.qasm", "-q")
    assert waited.returncode == 0 and str(uuid.UUID(waited.stdout.strip())) == waited.stdout.strip()
    assert stack.job(waited.stdout.strip())["status"] == "finished"


def test_submit_no_wait_json_is_the_job_as_stored(stack):
    done = qserver("submit", "examples/bell.qasm", "--no-wait", "-o", "json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["id"] in done.stderr and job["status"] in ("pending", "running", "finished")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "theta"], "give NAME=NUMBER"),
        (["--param", "theta=abc"], "give NAME=NUMBER"),
        (["--expval"], "--expval needs --obs"),
        (["--obs", "[[["], "not JSON"),
        (["--metadata", "[1]"], "must be a JSON object"),
        (["--timeout", "0"], "give a number of seconds above 0"),
        (["--shots", "0"], "--shots"),
        (["-o", "yaml"], "yaml"),
    ],
)
def test_submit_usage_errors_exit_2(stack, args, message):
    done = qserver("submit", "examples/bell.qasm", "--no-wait", *args)
    assert done.returncode == 2, done.stderr
    assert message in flat(done.stderr)
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "nope"], "NOT_FOUND"),
        (["--metadata", '{"shots": "many"}'], "INVALID_ARGUMENT"),
        (["--method", "no_such_method"], "metadata 'method' must be one of"),
    ],
)
def test_submit_refused_exits_5(stack, args, message):
    done = qserver("submit", "examples/bell.qasm", *args)
    assert done.returncode == 5, done.stderr
    assert message in flat(done.stderr)


def test_submit_empty_program_is_refused(stack, program):
    done = qserver("submit", program(""))
    assert done.returncode == 5 and "INVALID_ARGUMENT" in done.stderr


def test_submit_wait_timeout_exits_4_and_the_job_goes_on(stack, program, slow):
    done = qserver("submit", program(SLOW), *SLOW_OPTIONS, "--wait-timeout", "1")
    assert done.returncode == 4, done.stderr
    job_id = re.search(r"job ([0-9a-f-]{36})", done.stderr).group(1)
    assert "after 1 s" in done.stderr
    assert stack.job(job_id)["status"] in ("pending", "running")
    assert qserver("cancel", job_id, "-q").stdout == f"{job_id}\n"


def test_ctrl_c_during_submit_wait_says_how_to_cancel(stack, program):
    job_id, stderr, code = interrupt(stack, ["submit", program(SLOW), *SLOW_OPTIONS], r"job ([0-9a-f-]{36})")
    assert code == 130
    local = client_address(Settings())
    command = f"qserver cancel {job_id} --url {local['url']}"
    assert f"job {job_id} goes on without you" in flat(stderr)
    assert command in stderr.splitlines()[-1]
    assert stack.job(job_id)["status"] == "running"  # still there to cancel
    canceled = qserver(*shlex.split(command)[1:])  # the very command it printed
    assert canceled.returncode == 0, canceled.stderr
    assert stack.job(job_id)["status"] == "canceled"
