"""Authentication on, through the whole stack and nginx: `qserver submit --api-key`, REST with
and without keys, one user's job hidden from another. A stack of its own (ports, database,
queue, Ray head, state dir), with QSERVER_AUTH=on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from core.settings import Settings
from tests.circuits import BELL

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
    done = submit(settings, "--api-key", keys["alice"], "--json")
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["id"]
    counts = json.loads(done.stdout)["results"]["counts"]
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
    assert done.returncode == 5  # refused
    assert "UNAUTHENTICATED" in done.stderr


def qserver(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    """``qserver ARGS`` (the user's command) against the auth stack, its address from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QSERVER_")} | {
        "QSERVER_URL": f"http://127.0.0.1:{settings.nginx_http_port}",
        "QSERVER_GRPC": f"127.0.0.1:{settings.nginx_grpc_port}",
        "COLUMNS": "250",
    }
    return subprocess.run(
        [sys.executable, "-m", "qserver_client.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_job_commands_with_keys(auth_stack):
    """Each user's @latest is their own newest job; a wrong key, another user's job and an admin's
    command are refused (exit 5)."""
    settings, keys = auth_stack
    alices = json.loads(submit(settings, "--api-key", keys["alice"], "--json").stdout)["id"]
    bobs = qserver(settings, "submit", "examples/bell.qasm", "-q", "--api-key", keys["bob"]).stdout.strip()
    assert qserver(settings, "job", "@latest", "-q", "--api-key", keys["alice"]).stdout == f"{alices}\n"
    assert qserver(settings, "job", "@latest", "-q", "--api-key", keys["bob"]).stdout == f"{bobs}\n"
    assert bobs not in qserver(settings, "jobs", "-q", "--all", "--api-key", keys["alice"]).stdout
    wrong = qserver(settings, "jobs", "--api-key", "qsk_000000000000_nope")
    assert wrong.returncode == 5 and "(HTTP 401)" in wrong.stderr
    nobody = qserver(settings, "history")
    assert nobody.returncode == 5 and "(HTTP 401)" in nobody.stderr
    theirs = qserver(settings, "cancel", alices, "--api-key", keys["bob"])
    assert theirs.returncode == 5 and "(HTTP 404)" in theirs.stderr
    admins_only = qserver(settings, "plugins", "add", "aer-plugin", "--api-key", keys["alice"])
    assert admins_only.returncode == 5 and "(HTTP 403)" in admins_only.stderr
    wrong_submit = submit(settings, "--api-key", "qsk_000000000000_nope")
    assert wrong_submit.returncode == 5 and "UNAUTHENTICATED" in wrong_submit.stderr


def test_events_are_the_owners_through_the_stack(auth_stack):
    """/events: alice's stream carries her jobs' changes, not bob's; bob's stream of alice's job is 404."""
    import threading

    from qserver_client import Client
    from qserver_client.errors import JobNotFound

    settings, keys = auth_stack
    address = {"url": f"http://127.0.0.1:{settings.nginx_http_port}", "grpc": f"127.0.0.1:{settings.nginx_grpc_port}"}
    with Client(**address, api_key=keys["alice"]) as alice, Client(**address, api_key=keys["bob"]) as bob:
        seen: list[dict] = []
        mine: list[str] = []
        done = threading.Event()

        def read() -> None:
            stream = alice.all_events()
            for event in stream:
                seen.append(event)
                if mine and event["id"] == mine[0] and event["status"] == "finished":
                    done.set()
                    stream.close()
                    return

        threading.Thread(target=read, daemon=True).start()
        time.sleep(1)  # the stream reaches the api
        bobs = bob.submit(BELL)
        assert bob.wait(bobs)["status"] == "finished"
        mine.append(alice.submit(BELL))
        assert done.wait(60), seen
        assert {event["owner"] for event in seen} == {"alice"} and bobs not in {event["id"] for event in seen}
        with pytest.raises(JobNotFound):
            next(bob.events(mine[0]))
        assert [event["event"] for event in alice.events(mine[0])] == ["status", "end"]
