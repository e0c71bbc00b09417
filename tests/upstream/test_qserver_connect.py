"""The upstream client `qserver-connect` 0.0.22 from PyPI, unchanged, against the stack through nginx.

It lives in a virtualenv of its own (``.venv-client``: Python 3.11, grpcio 1.78.0,
since the client dials ``host:port/``, which grpcio 1.80+ refuses) and runs
tests/upstream/scenario.py there. fake-plugin comes from PyPI and sleeps 10 s per call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT_VENV = ROOT / ".venv-client"
CLIENT_PACKAGES = ["qserver-connect==0.0.22", "grpcio==1.78.0"]
SCENARIO = Path(__file__).with_name("scenario.py")
BELL = ROOT / "examples" / "bell.qasm"


@pytest.fixture(scope="session")
def client_python() -> Path:
    """The client virtualenv's python, created and filled from PyPI on first use."""
    python = CLIENT_VENV / "bin" / "python"
    stamp = CLIENT_VENV / ".installed"
    if not stamp.exists() or stamp.read_text() != " ".join(CLIENT_PACKAGES):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(CLIENT_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *CLIENT_PACKAGES], check=True, timeout=900)
        stamp.write_text(" ".join(CLIENT_PACKAGES))
    return python


def run_scenario(python: Path, *args: str, env: dict | None = None) -> dict:
    done = subprocess.run(
        [str(python), str(SCENARIO), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_aer(seen: dict) -> None:
    aer = seen["aer"]
    assert aer["status"] == "finished", aer["error"]
    counts = aer["counts"]
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 2000
    assert 850 <= counts["00"] <= 1150
    assert set(aer["quasi_dist"]) <= {"0", "3"}
    assert aer["quasi_dist"]["0"] == pytest.approx(counts["00"] / 2000)
    # <ZZ> = 1 and <XX + 0.5 ZI> = 1 + 0 for the Bell state
    assert aer["expval"] == pytest.approx([1.0, 1.0])


def test_upstream_client_plain_text(stack, settings, client_python):
    seen = run_scenario(
        client_python,
        "127.0.0.1",
        str(settings.nginx_http_port),
        str(settings.nginx_grpc_port),
        "plain",
        str(BELL),
        "--fake",
    )
    fake = seen["fake"]
    assert fake["status"] == "finished", fake["error"]
    assert fake["counts"] == {"00": 500, "11": 500}
    assert fake["listed"] and fake["deleted"]
    check_aer(seen)


def test_upstream_client_over_tls_on_443(stack, settings, client_python):
    ca = str(settings.tls_path / "ca.crt")
    seen = run_scenario(
        client_python,
        "localhost",
        str(settings.nginx_tls_port),
        str(settings.nginx_tls_port),
        "tls",
        str(BELL),
        env={"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": ca, "REQUESTS_CA_BUNDLE": ca},
    )
    check_aer(seen)
