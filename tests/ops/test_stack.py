"""ops/stack.py and its helpers without a running stack: env, paths, failures, idempotent down."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from core.settings import Settings
from ops import endpoints, rayhead, stack, statedir


@pytest.fixture
def settings(tmp_path) -> Settings:
    ports = [endpoints.free_port() for _ in range(8)]
    return Settings(
        state_dir=tmp_path / "state",
        ingest_port=ports[0],
        api_port=ports[1],
        nginx_http_port=ports[2],
        nginx_grpc_port=ports[3],
        ray_head_port=ports[4],
        ray_dashboard_port=ports[5],
        ingest_monitor_port=ports[6],
        dispatcher_monitor_port=ports[7],
        queue_name="qserver.ops.unit",
    )


def test_children_read_the_same_settings(settings, monkeypatch):
    for key, value in stack.settings_env(settings).items():
        monkeypatch.setenv(key, value)
    again = Settings()
    assert again.model_dump(exclude={"ray_address"}) == settings.model_dump(exclude={"ray_address", "state_dir"}) | {
        "state_dir": statedir.paths(settings).root
    }
    assert again.ray_address == f"127.0.0.1:{settings.ray_head_port}"


def test_ray_temp_dir_stays_short(tmp_path):
    deep = tmp_path / ("d" * 60) / "state"
    temp = statedir.paths(Settings(state_dir=deep)).ray_temp
    assert len(str(temp)) <= 40
    assert temp == statedir.paths(Settings(state_dir=deep)).ray_temp  # down() finds it again
    short = statedir.paths(Settings(state_dir="/tmp/qs")).ray_temp
    assert str(short) == "/tmp/qs/ray"


def test_ray_token_is_explicit_and_private(settings):
    env = rayhead.ray_env(settings)
    assert env["RAY_AUTH_MODE"] == "token"
    token = statedir.paths(settings).ray_token
    assert env["RAY_AUTH_TOKEN_PATH"] == str(token)
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert len(token.read_text()) == 64
    assert rayhead.ray_env(settings) == env and len(token.read_text()) == 64  # kept across calls
    child = stack.child_env(settings)
    assert "RAY_AUTH_TOKEN" not in child and child["RAY_AUTH_MODE"] == "token"


def test_down_and_status_with_nothing_running(settings):
    stack.down(settings)
    stack.down(settings)
    parts = {part.name: part for part in stack.status(settings)}
    assert set(parts) == {"postgres", "rabbitmq", "ray", "ingest", "api", "dispatcher", "nginx"}
    for name in ("ray", "ingest", "api", "dispatcher", "nginx"):
        assert not parts[name].running and parts[name].pid is None, name
    assert parts["api"].address == f"127.0.0.1:{settings.api_port}"


def test_a_service_that_dies_is_reported_with_its_log_tail(settings):
    name = "qserver_no_such_service"
    pid = stack._start_service(settings, name, stack.child_env(settings))
    assert statedir.paths(settings).pid(name).read_text() == str(pid)
    with pytest.raises(statedir.ComponentFailed) as failed:
        stack._wait(settings, name, pid, lambda: (_ for _ in ()).throw(endpoints.NotReady("no")))
    assert failed.value.component == name
    assert "exited with code 1" in failed.value.reason
    assert f"No module named {name}" in failed.value.log_tail
    assert str(failed.value).startswith(f"{name} did not start")
    assert failed.value.log_path == statedir.paths(settings).log(name)


def test_a_port_held_by_a_stranger_is_refused(settings):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", settings.api_port))
        holder.listen()
        with pytest.raises(statedir.ComponentFailed, match="already in use"):
            stack._start_service(settings, "api", dict(os.environ))
    assert not statedir.paths(settings).pid("api").exists()


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.0.0.5", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", True),
        ("db.lan", False),
        ("10.0.0.7", False),
    ],
)
def test_only_this_machine_gets_packages_installed(host, local):
    assert endpoints.is_local(host) is local
