"""What the CLI tests share: the user's `qserver` as a real subprocess (`python -m
qserver_client.cli`, what the `qserver` script runs) against the test stack, found through
QSERVER_URL and QSERVER_GRPC; programs; Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from core.settings import Settings
from ops.endpoints import client_address

ROOT = Path(__file__).resolve().parents[2]
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


def wait_for_status(stack, job_id: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (job := stack.job(job_id))["status"] != status:
        assert time.monotonic() < deadline, f"job {job_id} is {job['status']}, not {status}"
        time.sleep(0.1)
    return job


def interrupt(stack, args: list[str], ready: str) -> tuple[str, str, int]:
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
