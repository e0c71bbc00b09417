"""`qserver up` on the running test stack with changed settings: what it cannot apply it refuses
before it changes anything (nginx.conf, the processes), what it can it applies by restarting
what the change affects, and the next plain `up` works either way."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from ops import cli, proxy, rayhead, statedir
from ops import stack as stack_ops
from ops.statedir import ComponentFailed
from tests.circuits import BELL

runner = CliRunner()


def _snapshot(settings) -> dict:
    """What runs and what nginx.conf says."""
    return {
        "nginx.conf": statedir.paths(settings).nginx_conf.read_bytes(),
        "nginx": proxy.nginx_pid(settings),
        "ray": rayhead.gcs_pid(settings),
        **{name: stack_ops._service_pid(settings, name) for name in stack_ops.SERVICES},
    }


def test_settings_up_cannot_apply_change_nothing(stack, settings, monkeypatch):
    before = _snapshot(settings)
    assert all(before.values()), before
    # the case: nginx on every interface turns authentication on, and there is no secret
    exposed = settings.model_copy(update={"nginx_bind": "0.0.0.0"})
    monkeypatch.setattr(cli.common, "settings_or_exit", lambda: exposed)
    result = runner.invoke(cli.app, ["up"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "not changed:" in result.output and "QSERVER_AUTH_SECRET" in result.output
    assert _snapshot(settings) == before
    # the Ray head's own settings: restarting it would end every running job
    moved = settings.model_copy(update={"ray_dashboard_port": settings.ray_dashboard_port + 1})
    with pytest.raises(stack_ops.UnsafeChange, match="QSERVER_RAY_DASHBOARD_PORT .* `qserver down` first"):
        stack_ops.up(moved)
    assert _snapshot(settings) == before
    # an address nginx would move to is held by another process
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        taken = settings.model_copy(update={"nginx_grpc_port": stranger.getsockname()[1]})
        with pytest.raises(ComponentFailed, match="already in use: .* nothing was changed"):
            stack_ops.up(taken)
    assert _snapshot(settings) == before
    # the next plain `up` finds everything running and changes nothing
    stack_ops.up(settings)
    assert _snapshot(settings) == before
    assert stack.run(BELL, counts=True)["status"] == "finished"


def test_a_changed_setting_is_applied_by_restarting_what_it_affects(stack, settings):
    before = _snapshot(settings)
    conf = statedir.paths(settings).nginx_conf
    # every interface, authentication off on a network declared trusted: nginx moves, and
    # ingest and the api (which decide authentication from the binds) restart with the dispatcher
    lan = settings.model_copy(update={"nginx_bind": "0.0.0.0", "auth": "off", "trusted_lan": True})
    try:
        stack_ops.up(lan)
        after = _snapshot(lan)
        assert f"listen 0.0.0.0:{settings.nginx_http_port};" in conf.read_text()
        assert "listen 127.0.0.1" not in conf.read_text()
        assert after["ray"] == before["ray"]  # the head keeps running, and its jobs with it
        assert all(after[name] != before[name] for name in ("nginx", *stack_ops.SERVICES)), (before, after)
        assert stack.run(BELL, counts=True)["status"] == "finished"  # through 0.0.0.0 (loopback too)
    finally:
        stack_ops.up(settings)
    back = _snapshot(settings)
    assert back["nginx.conf"] == before["nginx.conf"] and back["ray"] == before["ray"]
    assert stack.run(BELL, counts=True)["status"] == "finished"
