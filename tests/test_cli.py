"""`qserver submit` and `qserver janitor` against the running test stack, as a user and an
operator run them (real subprocesses): `submit` through the client's command
(`python -m qserver_client.cli`, what the `qserver` script runs), `janitor` through the server's
(`python -m ops.cli`: the same app with the operator's commands registered)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core.settings import Settings
from ops.endpoints import client_address

ROOT = Path(__file__).resolve().parents[1]
USER = [sys.executable, "-m", "qserver_client.cli"]
OPERATOR = [sys.executable, "-m", "ops.cli"]


def qserver(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``qserver ARGS``: the user's commands as the client runs them, the operator's as the
    server's app does; the client finds the test stack through QSERVER_URL and QSERVER_GRPC."""
    local = client_address(Settings())
    env = os.environ | {"QSERVER_URL": local["url"], "QSERVER_GRPC": local["grpc"]}
    return subprocess.run(
        [*(USER if args[0] == "submit" else OPERATOR), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_submit_bell_prints_counts(stack):
    done = qserver("submit", "examples/bell.qasm", "--counts", "--quasi-dist", "--shots", "500", "--json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)["results"]
    assert set(printed["counts"]) <= {"00", "11"} and sum(printed["counts"].values()) == 500
    assert set(printed["quasi_dist"]) <= {"0", "3"}


def test_submit_expval(stack):
    done = qserver("submit", "examples/bell.qasm", "--expval", "--obs", '[[["ZZ", 1.0]], [["XX", 0.5]]]', "--json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)["results"]
    assert printed["expval"] == [1.0, 0.5]


def test_submit_failed_job_prints_its_error(stack, tmp_path):
    bad = tmp_path / "dup.qasm"
    bad.write_text(
        'OPENQASM 2.0;\ninclude "qelib1.inc";\ngate g a { h a; }\ngate g a { h a; }\n'
        "qreg q[1];\ncreg c[1];\ng q[0];\nmeasure q -> c;\n"
    )
    done = qserver("submit", str(bad))
    assert done.returncode == 1
    assert "'g' is already defined" in done.stdout + done.stderr


def test_submit_refused_prints_status_and_message(stack):
    done = qserver("submit", "examples/bell.qasm", "--backend", "nope")
    assert done.returncode == 5  # refused by the server
    out = done.stdout + done.stderr
    assert "NOT_FOUND" in out and "backend 'nope' does not exist" in out


def test_submit_binary_file_is_refused_by_the_cli(stack, tmp_path):
    binary = tmp_path / "bin.qasm"
    binary.write_bytes(bytes(range(256)) * 4)
    done = qserver("submit", str(binary))
    assert done.returncode == 2
    assert "is not a UTF-8 text file" in done.stderr


def test_janitor_deletes_old_terminal_jobs_and_keeps_history(stack, db):
    from tests.circuits import BELL

    old, recent = (stack.run(BELL, counts=True)["id"] for _ in range(2))
    pending = stack.submit(BELL, counts=True)
    stack.wait(pending)
    # 10 days: older than --days 5, younger than the stack's own 30-day retention
    db.execute("UPDATE jobs SET finish_time = now() - interval '10 days' WHERE id = ANY(%s)", ([old, pending],))
    db.execute("UPDATE jobs SET status = 'pending' WHERE id = %s", (pending,))  # never a terminal job
    done = qserver("janitor", "--days", "5")
    assert done.returncode == 0, done.stderr
    assert "deleted 1 jobs finished more than 5 days ago" in done.stdout
    remaining = {
        row[0] for row in db.execute("SELECT id::text FROM jobs WHERE id = ANY(%s)", ([old, recent, pending],))
    }
    assert remaining == {recent, pending}
    assert db.execute("SELECT count(*) FROM history WHERE job_id = %s", (old,)).fetchone()[0] == 1
    db.execute("UPDATE jobs SET status = 'canceled' WHERE id = %s", (pending,))
