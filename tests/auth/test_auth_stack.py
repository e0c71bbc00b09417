"""Authentication on, through the whole stack and nginx: `qserver submit --api-key`, REST with
and without keys, one user's job hidden from another. A stack of its own (ports, database,
queue, Ray head, state dir), with QSERVER_AUTH=on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-secret-" + "x" * 40


@pytest.fixture(scope="module")
def auth_stack():
    from core import auth
    from ops import stack as stack_ops
    from tests.conftest import _drop_database

    settings = Settings(
        database_url="postgresql://postgres@127.0.0.1:5432/qserver_test_authstack",
        queue_name="qserver.test.authstack",
        ingest_port=51082,
        api_port=18031,
        ingest_monitor_port=18032,
        dispatcher_monitor_port=18033,
        nginx_http_port=18110,
        nginx_grpc_port=15081,
        nginx_tls_port=18483,
        ray_head_port=6383,
        ray_dashboard_port=8268,
        state_dir=Path("/tmp/qserver-authstack"),
        auth="on",
        auth_secret=SECRET,
        executor_warm_workers=1,
    )
    stack_ops.down(settings)
    _drop_database(settings.database_dsn)
    try:
        stack_ops.up(settings)
        with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
            keys = {
                name: auth.create_key_sync(conn, secret=SECRET, owner=name, role="user")[1] for name in ("alice", "bob")
            }
        yield settings, keys
    finally:
        stack_ops.down(settings)


def submit(settings: Settings, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QSERVER_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "qserver_client.cli",  # the user's command, as the `qserver` script runs it
            "submit",
            "examples/bell.qasm",
            "--counts",
            "--url",
            f"http://127.0.0.1:{settings.nginx_http_port}",
            "--grpc",
            f"127.0.0.1:{settings.nginx_grpc_port}",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_submit_with_a_key_runs_and_only_its_owner_sees_it(auth_stack):
    settings, keys = auth_stack
    done = submit(settings, "--api-key", keys["alice"])
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.split()[0]
    counts = json.loads(done.stdout[done.stdout.index("{") :])["counts"]
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 1000
    with httpx.Client(base_url=f"http://127.0.0.1:{settings.nginx_http_port}") as http:
        mine = http.get(f"/api/v1/job/{job_id}", headers={"Authorization": f"Bearer {keys['alice']}"})
        assert mine.status_code == 200 and mine.json()["owner"] == "alice"
        theirs = http.get(f"/api/v1/job/{job_id}", headers={"X-API-Key": keys["bob"]})
        assert theirs.status_code == 404
        anonymous = http.get(f"/api/v1/job/{job_id}")
        assert anonymous.status_code == 401 and "detail" in anonymous.json()
        wrong = http.get(f"/api/v1/job/{job_id}", headers={"Authorization": "Bearer qsk_000000000000_nope"})
        assert wrong.status_code == 401


def test_submit_without_a_key_is_unauthenticated(auth_stack):
    settings, _ = auth_stack
    done = submit(settings)
    assert done.returncode == 2
    assert "UNAUTHENTICATED" in done.stderr
