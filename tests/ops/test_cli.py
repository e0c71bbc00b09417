"""`qserver submit` and `qserver status` against the session's stack (through nginx), and the
one `qserver` command: the client's, with the server's commands added by its entry point."""

from __future__ import annotations

import importlib.metadata
import json
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ops import cli, endpoints
from qserver_client.cli import make_app

ROOT = Path(__file__).resolve().parents[2]
BELL = ROOT / "examples" / "bell.qasm"
runner = CliRunner()


@pytest.fixture
def qserver(stack, settings, monkeypatch):
    """Run `qserver ARGS` (the client's app with the operator's commands) against the test stack;
    returns click's Result. `submit` finds it through QSERVER_URL and QSERVER_GRPC, as a user's
    would; `status` through the server's settings."""
    monkeypatch.setattr(cli.common, "settings_or_exit", lambda: settings)
    local = endpoints.client_address(settings)
    monkeypatch.setenv("QSERVER_URL", local["url"])
    monkeypatch.setenv("QSERVER_GRPC", local["grpc"])

    def invoke(*args: str):
        return runner.invoke(cli.app, list(args), catch_exceptions=False)

    return invoke


def _results(stdout: str) -> tuple[str, dict]:
    """(job id, results) from ``submit --json``'s one document (the job's JSON)."""
    job = json.loads(stdout)
    return job["id"], job["results"]


def test_submit_bell_prints_the_job_id_and_counts(qserver):
    result = qserver("submit", str(BELL), "--shots", "500", "--seed", "11", "--json")
    assert result.exit_code == 0, result.output
    job_id, results = _results(result.stdout)
    assert len(job_id) == 36
    assert results["quasi_dist"] is None and results["expval"] is None  # --counts is the default
    assert set(results["counts"]) <= {"00", "11"}
    assert sum(results["counts"].values()) == 500


def test_submit_several_result_types(qserver):
    result = qserver("submit", str(BELL), "--counts", "--quasi-dist", "--expval", "--obs", '[[["ZZ", 1.0]]]', "--json")
    assert result.exit_code == 0, result.output
    _, results = _results(result.stdout)
    assert set(results) == {"counts", "quasi_dist", "expval"}
    assert results["expval"] == pytest.approx([1.0])
    assert set(results["quasi_dist"]) <= {"0", "3"}


def test_submit_no_wait_prints_only_the_id(qserver):
    result = qserver("submit", str(BELL), "--no-wait")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip()) == 36


def test_refusal_exits_5_with_the_grpc_status(qserver):
    result = qserver("submit", str(BELL), "--backend", "no-such-backend")
    assert result.exit_code == 5  # refused (README: exit codes)
    assert "NOT_FOUND" in result.stderr


def test_failed_job_exits_1_with_its_error(qserver):
    result = qserver("submit", str(BELL), "--expval", "--obs", '[[["ZZZ", 1.0]]]')
    assert result.exit_code == 1
    assert ": failed · " in result.stderr
    assert "obs[0] acts on 3 qubits but the circuit has 2" in result.stderr


def test_expval_without_obs_is_a_usage_error(qserver):
    result = qserver("submit", str(BELL), "--expval")
    assert result.exit_code == 2
    assert "--obs" in result.output


def test_status_shows_every_component_running(qserver):
    result = qserver("status")
    assert result.exit_code == 0, result.output
    for name in ("postgres", "rabbitmq", "ray", "ingest", "api", "dispatcher", "nginx"):
        assert name in result.stdout
    assert "stopped" not in result.stdout


def test_a_program_just_under_the_limit_passes_nginx(qserver, settings, tmp_path):
    bell = BELL.read_text()
    padding = settings.max_qasm_bytes - len(bell.encode()) - 64
    big = tmp_path / "big.qasm"
    big.write_text(bell + "// " + "x" * padding + "\n")
    assert big.stat().st_size <= settings.max_qasm_bytes
    result = qserver("submit", str(big), "--shots", "10", "--json")
    assert result.exit_code == 0, result.output
    assert sum(_results(result.stdout)[1]["counts"].values()) == 10


# --- the one `qserver` command: the client's script, the server's commands (no stack) -----------

OPERATOR_COMMANDS = {"up", "down", "status", "certs", "db", "janitor", "keys", "node"}


def test_one_script_the_clients_and_the_servers_entry_point():
    """Only the client package installs a `qserver` script; the server declares its commands."""
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    client = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    assert "scripts" not in server and "gui-scripts" not in server
    assert client["scripts"] == {"qserver": "qserver_client.cli:main"}
    assert server["entry-points"] == {"qserver.commands": {"server": "ops.cli:register"}}
    assert EntryPoint("server", "ops.cli:register", "qserver.commands").load() is cli.register
    assert any(dep.startswith("typer") for dep in client["dependencies"])


def test_the_server_entry_point_adds_the_operators_commands(monkeypatch):
    server = EntryPoint("server", "ops.cli:register", "qserver.commands")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: importlib.metadata.EntryPoints([server]))
    app = make_app()
    users = set(typer.main.get_command(make_app(plugins=False)).commands)
    assert {"submit", "jobs", "job", "result", "watch", "cancel", "delete", "backends", "plugins", "history"} <= users
    assert set(typer.main.get_command(app).commands) == OPERATOR_COMMANDS | users
    listed = runner.invoke(app, ["--help"])
    assert listed.exit_code == 0
    for name in OPERATOR_COMMANDS | users:
        assert name in listed.stdout
    assert runner.invoke(app, ["up", "--help"]).exit_code == 0
    assert runner.invoke(app, ["node", "join", "--help"]).exit_code == 0
    # `python -m ops.cli` and the tests: the same commands, whatever entry points are installed
    assert set(typer.main.get_command(cli.app).commands) == OPERATOR_COMMANDS | users
