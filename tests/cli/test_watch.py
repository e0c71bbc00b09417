"""`qserver watch` and `plugins` against the test stack; the connection: an unreachable server (3),
flags over the environment, TLS; the exit codes in --help."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from core.settings import Settings
from ops.endpoints import client_address
from tests.circuits import BELL
from tests.cli.runs import (
    ROOT,
    UNKNOWN,
    USER,
    dead_url,
    environment,
    flat,
    interrupt,
    qserver,
    wait_for_status,
)

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
    _, stderr, code = interrupt(stack, ["watch", "@latest"], rf"job ({job_id}): running")
    assert code == 130
    assert re.search(rf"job {job_id}: running · node [0-9a-f]{{12}} · attempt 1", stderr)
    assert f"qserver cancel {job_id} --url" in stderr
    assert stack.job(job_id)["status"] == "running"


def test_watch_a_job_deleted_while_pending_exits_1(stack, slow):
    """The test Ray head has 2 CPUs: the fourth slow job waits; deleted, its watch ends."""
    jobs = [slow() for _ in range(4)]
    waiting = jobs[-1]
    assert stack.job(waiting)["status"] == "pending"
    process = subprocess.Popen(
        [*USER, "watch", waiting],
        cwd=ROOT,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert f"job {waiting}: pending" in process.stderr.readline()
        stack.delete(waiting)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 1, err
    assert f"job {waiting} was deleted while pending" in flat(err) and out == ""


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
