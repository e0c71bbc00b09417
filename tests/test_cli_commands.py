"""The user's commands of `qserver` against the running test stack, as a user runs them: real
subprocesses of the client's command (`python -m qserver_client.cli`, what the `qserver` script
runs), finding the stack through QSERVER_URL and QSERVER_GRPC. Table and JSON output, -q,
@latest, the exit code of each class of error, Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from core.settings import Settings
from ops.endpoints import client_address
from qserver_client.errors import Conflict, JobNotFound
from tests.circuits import BELL

ROOT = Path(__file__).resolve().parents[1]
USER = [sys.executable, "-m", "qserver_client.cli"]
# Non-Clifford, so Aer's extended_stabilizer method takes minutes for 2000 shots.
SLOW = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[3];\nh q;\nt q;\nh q;\nt q;\nh q;\nmeasure q -> c;\n'
SLOW_OPTIONS = ["--method", "extended_stabilizer", "--shots", "2000"]
ROTATION = """OPENQASM 3.0;
include "stdgates.inc";
input float[64] theta;
qubit[1] q;
bit[1] c;
rx(theta) q[0];
c = measure q;
"""
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def environment(**extra: str) -> dict[str, str]:
    """The test's environment, talking to the test stack, wide enough that no message wraps."""
    local = client_address(Settings())
    env = {k: v for k, v in os.environ.items() if not k.startswith("QSERVER_")}
    return env | {"QSERVER_URL": local["url"], "QSERVER_GRPC": local["grpc"], "COLUMNS": "250"} | extra


def qserver(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """``qserver ARGS`` as the client's command runs it; ``env``: more environment."""
    return subprocess.run(
        [*USER, *args], cwd=ROOT, env=environment(**env), capture_output=True, text=True, timeout=timeout
    )


def flat(text: str) -> str:
    """``text`` with its whitespace runs made one space (a message wrapped in a box or not)."""
    return " ".join(text.replace("│", " ").split())


def dead_url() -> str:
    """A URL on a local port where nothing listens."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def program(tmp_path):
    """``program(text)``: a file holding ``text``, its path as a string."""

    def write(text: str, name: str = "program.qasm") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


def wait_for_status(stack, job_id: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (job := stack.job(job_id))["status"] != status:
        assert time.monotonic() < deadline, f"job {job_id} is {job['status']}, not {status}"
        time.sleep(0.1)
    return job


@pytest.fixture
def slow(stack):
    """``slow()``: the id of a new job that runs for minutes (canceled after the test)."""
    made: list[str] = []

    def submit() -> str:
        made.append(stack.submit(SLOW, counts=True, metadata={"method": "extended_stabilizer", "shots": 2000}))
        return made[-1]

    yield submit
    for job_id in made:
        with contextlib.suppress(JobNotFound, Conflict):  # deleted, or ended
            stack.cancel(job_id)


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


def _interrupt(stack, args: list[str], ready: str) -> tuple[str, str, int]:
    """Run ``qserver ARGS``, wait until its stderr names a job and that job runs, press Ctrl-C
    (SIGINT); returns (job id, all of stderr, exit code)."""
    process = subprocess.Popen(
        [*USER, *args], cwd=ROOT, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        seen = ""
        while not (found := re.search(ready, seen)):
            line = process.stderr.readline()
            assert line, f"ended before naming its job: {seen}"
            seen += line
        job_id = found.group(1)
        wait_for_status(stack, job_id, "running")
        process.send_signal(signal.SIGINT)
        rest, more = process.communicate(timeout=30)
    finally:
        process.kill()
    return job_id, seen + more, process.returncode


def test_ctrl_c_during_submit_wait_says_how_to_cancel(stack, program):
    job_id, stderr, code = _interrupt(stack, ["submit", program(SLOW), *SLOW_OPTIONS], r"job ([0-9a-f-]{36})")
    assert code == 130
    local = client_address(Settings())
    command = f"qserver cancel {job_id} --url {local['url']}"
    assert f"job {job_id} goes on without you" in flat(stderr)
    assert command in stderr.splitlines()[-1]
    assert stack.job(job_id)["status"] == "running"  # still there to cancel
    canceled = qserver(*shlex.split(command)[1:])  # the very command it printed
    assert canceled.returncode == 0, canceled.stderr
    assert stack.job(job_id)["status"] == "canceled"


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
    table = qserver("jobs", "--limit", "2", "--status", "pending,running")
    assert table.stdout.splitlines()[0].split()[:3] == ["ID", "STATUS", "BACKEND"]
    assert table.stdout.splitlines()[2].split()[0] == running
    assert qserver("job", "@latest", "-q").stdout == f"{running}\n"
    assert json.loads(qserver("job", "@latest", "-o", "json").stdout)["id"] == running
    every = qserver("jobs", "--all", "-q", "--status", "finished").stdout.split()
    assert finished in every and len(every) == len(set(every))
    bad = qserver("jobs", "--status", "done")
    assert bad.returncode == 2 and "done" in bad.stderr


# --- watch -----------------------------------------------------------------------------------


def test_watch_follows_a_job_to_its_end(stack):
    job_id = stack.submit(BELL, counts=True, metadata={"shots": 100})
    done = qserver("watch", job_id)
    assert done.returncode == 0, done.stderr
    assert f"job {job_id}: finished" not in done.stdout
    assert f"job {job_id}:" in done.stderr  # progress on stderr
    assert "OUTCOME" in done.stdout
    lines = qserver("watch", job_id, "-o", "json").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert events[-1]["event"] == "end" and events[-1]["status"] == "finished"
    assert events[0]["event"] == "status" and events[0]["id"] == job_id


def test_watch_a_failed_job_exits_1(stack):
    failed = stack.run('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\nnot_a_gate q[0];\n', counts=True)
    done = qserver("watch", failed["id"])
    assert done.returncode == 1
    assert f"job {failed['id']} failed" in flat(done.stderr)


def test_watch_shows_progress_times_out_and_ctrl_c_says_how_to_cancel(stack, slow):
    job_id = slow()
    late = qserver("watch", job_id, "--timeout", "2")
    assert late.returncode == 4, late.stderr
    wait_for_status(stack, job_id, "running")
    _, stderr, code = _interrupt(stack, ["watch", "@latest"], rf"job ({job_id}): running")
    assert code == 130
    assert re.search(rf"job {job_id}: running · node [0-9a-f]{{12}} · attempt 1", stderr)
    assert f"qserver cancel {job_id} --url" in stderr
    assert stack.job(job_id)["status"] == "running"


# --- plugins ---------------------------------------------------------------------------------


def test_plugins_list_add_and_remove(stack):
    listed = json.loads(qserver("plugins", "-o", "json").stdout)
    assert listed == stack.plugins()
    aer = next(row for row in listed if row["name"] == "aer-plugin")
    assert aer["builtin"] is True and "aer" in aer["backends"]
    assert "aer-plugin" in qserver("plugins", "-q").stdout.split()
    table = qserver("plugins")
    assert table.returncode == 0
    row = next(line.split() for line in table.stdout.splitlines() if line.startswith("aer-plugin"))
    assert row[-2:] == ["yes", "yes"] and "aer," in row  # built in, enabled; its backends listed
    added = qserver("plugins", "add", "aer-plugin", "-o", "json")  # built in: downloads nothing
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"name": "aer-plugin", "version": None, "backends": aer["backends"]}
    shown = qserver("plugins", "add", "aer-plugin").stdout
    assert shown == f"admitted aer-plugin (built in): backends {', '.join(aer['backends'])}\n"
    missing = qserver("plugins", "remove", "no-such-plugin-here")
    assert missing.returncode == 5 and "(HTTP 404)" in missing.stderr
    bad = qserver("plugins", "add", "not a name")
    assert bad.returncode == 5 and "(HTTP 400)" in bad.stderr


# --- connection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["jobs"],
        ["history"],
        ["job", UNKNOWN],
        ["job", "@latest"],
        ["result", UNKNOWN],
        ["cancel", UNKNOWN],
        ["delete", UNKNOWN],
        ["watch", UNKNOWN],
        ["backends"],
        ["plugins"],
        ["plugins", "add", "aer-plugin"],
        ["plugins", "remove", "aer-plugin"],
    ],
)
def test_unreachable_server_exits_3(args):
    done = qserver(*args, "--url", dead_url(), timeout=60)
    assert done.returncode == 3, done.stderr
    assert "REST api unreachable" in flat(done.stderr)


def test_unreachable_submit_exits_3():
    url = dead_url()
    done = qserver("submit", "examples/bell.qasm", "--url", url, "--grpc", url.removeprefix("http://"), timeout=60)
    assert done.returncode == 3, done.stderr
    assert "UNAVAILABLE" in done.stderr


def test_connection_from_the_environment_and_flags(stack):
    """QSERVER_URL unreachable, --url right: the flag wins; a bad url is a usage error."""
    local = client_address(Settings())
    done = qserver("backends", "-q", "--url", local["url"], QSERVER_URL=dead_url())
    assert done.returncode == 0 and "aer" in done.stdout.split()
    assert qserver("backends", QSERVER_URL=dead_url()).returncode == 3
    bad = qserver("backends", "--url", "ftp://somewhere")
    assert bad.returncode == 2 and "http://host" in flat(bad.stderr)
    no_ca = qserver("backends", "--tls", "--ca-file", "/nonexistent/ca.pem")
    assert no_ca.returncode == 2, no_ca.stderr


def test_tls_with_the_stacks_ca(stack, settings):
    """--tls: REST and gRPC on nginx's TLS port (443 in the tests), checked against --ca-file."""
    ca = str(settings.tls_path / "ca.crt")
    done = qserver("submit", "examples/bell.qasm", "--tls", "--ca-file", ca, "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "finished"
    shown = qserver("job", job["id"], "-q", "--tls", QSERVER_CA_FILE=ca)
    assert shown.returncode == 0 and shown.stdout == f"{job['id']}\n"
    untrusted = qserver("job", job["id"], "--tls")  # the system's CAs do not know the dev CA
    assert untrusted.returncode == 3, untrusted.stderr


def test_help_documents_the_exit_codes():
    shown = qserver("--help")
    assert shown.returncode == 0
    text = flat(shown.stdout)
    for code in ("0 done", "1 the job failed or was canceled", "2 bad usage", "3 server unreachable",
                 "4 a wait timed out", "5 refused by the server", "130 interrupted"):  # fmt: skip
        assert code in text
    for command in ("submit", "jobs", "job", "result", "watch", "cancel", "delete", "backends", "plugins", "history"):
        assert re.search(rf"│ {command} ", shown.stdout), command
