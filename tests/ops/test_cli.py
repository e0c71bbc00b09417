"""`qserver submit` and `qserver status` against the session's stack (through nginx)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ops import cli

BELL = Path(__file__).resolve().parents[2] / "examples" / "bell.qasm"
runner = CliRunner()


@pytest.fixture
def qserver(stack, settings, monkeypatch):
    """Run `qserver ARGS` against the test stack; returns click's Result."""
    monkeypatch.setattr(cli.common, "settings_or_exit", lambda: settings)

    def invoke(*args: str):
        return runner.invoke(cli.app, list(args), catch_exceptions=False)

    return invoke


def _results(stdout: str) -> tuple[str, dict]:
    job_id, _, rest = stdout.partition("\n")
    return job_id.strip(), json.loads(rest)


def test_submit_bell_prints_the_job_id_and_counts(qserver):
    result = qserver("submit", str(BELL), "--shots", "500", "--seed", "11")
    assert result.exit_code == 0, result.output
    job_id, results = _results(result.stdout)
    assert len(job_id) == 36
    assert set(results) == {"counts"}  # --counts is the default
    assert set(results["counts"]) <= {"00", "11"}
    assert sum(results["counts"].values()) == 500


def test_submit_several_result_types(qserver):
    result = qserver("submit", str(BELL), "--counts", "--quasi-dist", "--expval", "--obs", '[[["ZZ", 1.0]]]')
    assert result.exit_code == 0, result.output
    _, results = _results(result.stdout)
    assert set(results) == {"counts", "quasi_dist", "expval"}
    assert results["expval"] == pytest.approx([1.0])
    assert set(results["quasi_dist"]) <= {"0", "3"}


def test_submit_no_wait_prints_only_the_id(qserver):
    result = qserver("submit", str(BELL), "--no-wait")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip()) == 36


def test_refusal_exits_2_with_the_grpc_status(qserver):
    result = qserver("submit", str(BELL), "--backend", "no-such-backend")
    assert result.exit_code == 2
    assert "NOT_FOUND" in result.stderr


def test_failed_job_exits_1_with_its_error(qserver):
    result = qserver("submit", str(BELL), "--expval", "--obs", '[[["ZZZ", 1.0]]]')
    assert result.exit_code == 1
    assert "job failed" in result.stderr


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
    result = qserver("submit", str(big), "--shots", "10")
    assert result.exit_code == 0, result.output
    assert sum(_results(result.stdout)[1]["counts"].values()) == 10
