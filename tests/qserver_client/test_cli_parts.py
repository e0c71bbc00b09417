"""The pieces of the user's commands that need no server: the exit code of each client error,
--tls, --since, --status, --param, the progress line, durations, the cancel command after Ctrl-C."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import certifi
import grpc
import pytest
import typer

from qserver_client.cli.common import Connection, Exit, cancel_command, exit_code
from qserver_client.cli.follow import progress_line
from qserver_client.cli.jobs import field_names, since_time, statuses
from qserver_client.cli.render import seconds
from qserver_client.cli.submit import _parameters
from qserver_client.client import Client
from qserver_client.errors import (
    ApiUnreachable,
    JobFailed,
    SubmitError,
    WaitTimeout,
    api_error,
)


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("QSERVER_URL", "QSERVER_GRPC", "QSERVER_API_KEY", "QSERVER_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (SubmitError(grpc.StatusCode.UNAVAILABLE, "down"), Exit.UNREACHABLE),
        (SubmitError(grpc.StatusCode.DEADLINE_EXCEEDED, "slow"), Exit.UNREACHABLE),
        (SubmitError(grpc.StatusCode.INTERNAL, "bug"), Exit.UNREACHABLE),
        (SubmitError(grpc.StatusCode.INVALID_ARGUMENT, "bad"), Exit.REFUSED),
        (SubmitError(grpc.StatusCode.UNAUTHENTICATED, "key"), Exit.REFUSED),
        (SubmitError(grpc.StatusCode.NOT_FOUND, "backend"), Exit.REFUSED),
        (SubmitError(grpc.StatusCode.FAILED_PRECONDITION, "tag"), Exit.REFUSED),
        (SubmitError(grpc.StatusCode.RESOURCE_EXHAUSTED, "cap"), Exit.REFUSED),
        (api_error("GET", "/x", 400, "bad id"), Exit.REFUSED),
        (api_error("GET", "/x", 401, "key"), Exit.REFUSED),
        (api_error("GET", "/x", 403, "admins"), Exit.REFUSED),
        (api_error("GET", "/x", 404, "no job"), Exit.REFUSED),
        (api_error("PUT", "/x", 409, "ended"), Exit.REFUSED),
        (api_error("GET", "/x", 429, "later"), Exit.REFUSED),
        (api_error("GET", "/x", 500, "bug"), Exit.UNREACHABLE),
        (api_error("GET", "/x", 503, "no db"), Exit.UNREACHABLE),
        (ApiUnreachable("refused"), Exit.UNREACHABLE),
        (WaitTimeout({"id": "j", "status": "running"}, 1.0), Exit.TIMED_OUT),
        (JobFailed({"id": "j", "status": "failed"}), Exit.FAILED),
    ],
)
def test_each_client_error_has_its_exit_code(error, code):
    assert exit_code(error) is code


def test_exit_codes_are_stable():
    assert [int(code) for code in Exit] == [0, 1, 2, 3, 4, 5, 130]


def test_tls_makes_the_address_tls(clean_env):
    assert Connection("http://lab:8080", "lab:50051").address() == ("http://lab:8080", "lab:50051")
    assert Connection(tls=True).address() == ("https://127.0.0.1", None)
    assert Connection("http://lab:8080/q", tls=True).address() == ("https://lab/q", None)
    assert Connection("https://lab:8443", tls=True).address() == ("https://lab:8443", None)
    assert Connection("http://[::1]:8080", "grpc://[::1]:9000", tls=True).address() == (
        "https://[::1]",
        "grpcs://[::1]:9000",
    )
    clean_env.setenv("QSERVER_URL", "http://lab:8080")
    clean_env.setenv("QSERVER_GRPC", "lab:50051")  # nginx's plain-text port: not for TLS
    assert Connection(tls=True).address() == ("https://lab", None)
    clean_env.setenv("QSERVER_GRPC", "grpcs://lab:9443")
    assert Connection(tls=True).address() == ("https://lab", "grpcs://lab:9443")
    with Client(url=Connection(tls=True).address()[0], grpc=None) as client:
        assert (client.url, client.grpc_target) == ("https://lab", "lab:443")


def test_cancel_command_names_the_server_and_never_the_key(clean_env):
    with Client() as client:
        assert cancel_command(Connection(), client, "J") == "qserver cancel J"
    with Client(url="http://lab:8080") as client:
        given = Connection(url="http://lab:8080", api_key="qsk_secret", ca_file=None)
        assert cancel_command(given, client, "J") == "qserver cancel J --url http://lab:8080 --api-key KEY"
    clean_env.setenv("QSERVER_CA_FILE", certifi.where())
    with Client(url="https://lab") as client:
        assert (
            cancel_command(Connection(), client, "J")
            == f"qserver cancel J --url https://lab --ca-file {certifi.where()}"
        )


def test_since_takes_an_age_or_a_time():
    two_hours = datetime.fromisoformat(since_time("2h"))
    assert abs(datetime.now(UTC) - timedelta(hours=2) - two_hours) < timedelta(seconds=5)
    assert datetime.fromisoformat(since_time("1.5d")) < datetime.now(UTC) - timedelta(hours=35)
    assert since_time("2024-05-01T12:00:00Z") == "2024-05-01T12:00:00+00:00"
    assert datetime.fromisoformat(since_time("2024-05-01T12:00")).tzinfo is not None  # local time
    assert since_time(None) is None
    with pytest.raises(typer.BadParameter, match="an age"):
        since_time("yesterday")


def test_statuses_and_fields():
    assert statuses(["pending,running", "failed"]) == ["pending", "running", "failed"]
    assert statuses(None) is None and statuses([]) is None
    with pytest.raises(typer.BadParameter, match="done, ok: give pending"):
        statuses(["done,ok", "finished"])
    assert field_names("all") is None
    assert field_names("status, qasm") == ["status", "qasm"]
    assert "qasm" not in field_names(None) and "status" in field_names(None)


def test_params():
    assert _parameters(["theta=0.5", "n=3", "big=1e3", " phi = -2"]) == {"theta": 0.5, "n": 3, "big": 1000.0, "phi": -2}
    assert isinstance(_parameters(["n=3"])["n"], int) and isinstance(_parameters(["x=3.0"])["x"], float)
    for bad in ("theta", "=1", "theta=", "theta=abc", "theta=nan", "theta=inf"):
        with pytest.raises(typer.BadParameter, match="give NAME=NUMBER"):
            _parameters([bad])


def test_progress_line():
    now = datetime.now(UTC)
    assert progress_line("J", {}) == "job J: submitted"
    waiting = {
        "status": "pending",
        "waiting_for": "a node with tag 'gpu'",
        "submission_date": (now - timedelta(seconds=3)).isoformat(),
    }
    assert progress_line("J", waiting).startswith("job J: pending · a node with tag 'gpu' · 3.")
    running = {
        "status": "running",
        "node_id": "abcdef0123456789" * 4,
        "attempts": 2,
        "start_time": (now - timedelta(seconds=75)).isoformat().replace("+00:00", "Z"),
    }
    assert progress_line("J", running) == "job J: running · node abcdef012345 · attempt 2 · 1m15s"
    assert progress_line("J", {"status": "finished", "attempts": 1}) == "job J: finished · attempt 1"


def test_durations():
    assert [seconds(s) for s in (None, 0.25, 12.34, 245, 7380)] == ["-", "250ms", "12.3s", "4m05s", "2h03m"]
