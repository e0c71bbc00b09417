"""Changing a running nginx safely, without the stack: our nginx for real on free ports in a
temp state dir (nothing behind it: these tests only look at what it listens on), the settings
records `qserver up` compares, and the checks `up` makes before it changes anything.

What `qserver up` does with a whole running stack is tests/ops/test_safe_up.py.
"""

from __future__ import annotations

import json
import socket
import stat

import psutil
import pytest

from core.settings import Settings
from ops import changes, endpoints, prereqs, proxy, rayhead, stack, statedir
from ops.statedir import ComponentFailed

NGINX = prereqs.find_program("nginx")
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")


@pytest.fixture
def settings(tmp_path):
    return Settings(
        state_dir=tmp_path / "state",
        nginx_http_port=endpoints.free_port(),
        nginx_grpc_port=endpoints.free_port(),
        nginx_tls_port=endpoints.free_port(),
        api_port=endpoints.free_port(),
        ingest_port=endpoints.free_port(),
    )


@pytest.fixture
def nginx(settings):
    """Our nginx, started on ``settings``; stopped afterwards (whatever config it ends with)."""
    pid = proxy.start(settings, NGINX)
    yield pid
    proxy.stop(settings)


def _listening(pids: set[int]) -> set[str]:
    """host:port of the TCP sockets those processes listen on."""
    return {
        endpoints.host_port(c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    }


def _ours(settings) -> set[int]:
    pid = proxy.nginx_pid(settings)
    return {pid, *(child.pid for child in psutil.Process(pid).children())}


@needs_nginx
def test_a_moved_bind_restarts_nginx_and_the_file_says_what_runs(settings, nginx):
    conf = statedir.paths(settings).nginx_conf
    http = settings.nginx_http_port
    assert _listening(_ours(settings)) >= {f"127.0.0.1:{http}"}
    assert proxy.check(settings, NGINX) == "reload"
    wide = settings.model_copy(update={"nginx_bind": "0.0.0.0"})
    assert proxy.check(wide, NGINX) == "restart"
    assert "listen 127.0.0.1:" in conf.read_text()  # a check changes nothing
    pid = proxy.start(wide, NGINX)
    assert pid != nginx
    assert f"listen 0.0.0.0:{http};" in conf.read_text() and "listen 127.0.0.1" not in conf.read_text()
    assert f"0.0.0.0:{http}" in _listening(_ours(settings))
    assert not (conf.parent / "nginx.conf.next").exists()
    back = proxy.start(settings, NGINX)  # and back: the same way
    assert f"listen 127.0.0.1:{http};" in conf.read_text() and _listening(_ours(settings)) >= {f"127.0.0.1:{http}"}
    assert f"0.0.0.0:{http}" not in _listening({back, *(c.pid for c in psutil.Process(back).children())})


@needs_nginx
def test_a_reload_keeps_the_master_and_starts_new_workers(settings, nginx):
    before = _ours(settings) - {nginx}
    assert proxy.start(settings, NGINX) == nginx
    assert (_ours(settings) - {nginx}) - before  # new workers: the reload took


@needs_nginx
def test_an_address_held_by_another_process_changes_nothing(settings, nginx):
    conf = statedir.paths(settings).nginx_conf
    before = conf.read_bytes()
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        port = stranger.getsockname()[1]
        moved = settings.model_copy(update={"nginx_grpc_port": port})
        with pytest.raises(ComponentFailed, match=rf"already in use: 127.0.0.1:{port} \(held at 127.0.0.1:{port}"):
            proxy.start(moved, NGINX)
        # a wildcard bind clashes with it too, and with nothing else
        wide = settings.model_copy(update={"nginx_bind": "0.0.0.0", "nginx_grpc_port": port})
        with pytest.raises(ComponentFailed, match="nothing was changed"):
            proxy.check(wide, NGINX)
    assert conf.read_bytes() == before and not (conf.parent / "nginx.conf.next").exists()
    assert proxy.nginx_pid(settings) == nginx and _listening(_ours(settings)) >= {
        f"127.0.0.1:{settings.nginx_grpc_port}"
    }


@needs_nginx
def test_a_config_nginx_rejects_changes_nothing(settings, nginx):
    conf = statedir.paths(settings).nginx_conf
    before = conf.read_bytes()
    tls = settings.tls_path
    tls.mkdir(parents=True)
    (tls / "server.crt").write_text("not a certificate")
    (tls / "server.key").write_text("not a key")
    with pytest.raises(ComponentFailed, match=r"`nginx -t -q` failed") as failed:
        proxy.start(settings, NGINX)
    assert "server.crt" in failed.value.log_tail
    assert conf.read_bytes() == before and proxy.nginx_pid(settings) == nginx


def test_listen_addresses_of_a_config():
    text = (
        "server {\n    listen 127.0.0.1:8080;\n}\nserver {\n  listen [::]:50051 http2;\n listen 0.0.0.0:443 ssl http2;"
    )
    assert proxy.listens(text) == {"127.0.0.1:8080", "[::]:50051", "0.0.0.0:443"}
    assert proxy.listens("# listen 1.2.3.4:5;\n") == set()


# --- the settings records ---------------------------------------------------------------------


def test_records_keep_secrets_as_digests_and_name_what_changed(tmp_path):
    settings = Settings(state_dir=tmp_path, auth_secret="s" * 40, nginx_bind="127.0.0.1")
    changes.record(settings, "api")
    path = statedir.paths(settings).run / "api.settings.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "s" * 40 not in path.read_text()
    kept = changes.recorded(settings, "api")
    assert kept["QSERVER_AUTH_SECRET"].startswith("sha256:") and kept["QSERVER_RAY_NODE_IP"] == ""
    assert changes.differences(kept, changes.fingerprint(settings)) == []
    other = settings.model_copy(update={"auth_secret": "t" * 40, "nginx_bind": "0.0.0.0"})
    found = [str(change) for change in changes.differences(kept, changes.fingerprint(other))]
    assert found == ["QSERVER_AUTH_SECRET (changed)", "QSERVER_NGINX_BIND 127.0.0.1 -> 0.0.0.0"]
    assert changes.fingerprint(settings, changes.HEAD_FIELDS) == {
        "QSERVER_RAY_HEAD_PORT": str(settings.ray_head_port),
        "QSERVER_RAY_DASHBOARD_HOST": "127.0.0.1",
        "QSERVER_RAY_DASHBOARD_PORT": str(settings.ray_dashboard_port),
        "QSERVER_RAY_NODE_IP": "",
    }
    path.write_text("not json")
    assert changes.recorded(settings, "api") is None and changes.recorded(settings, "ingest") is None


def test_the_head_records_what_it_was_started_with(tmp_path, monkeypatch):
    """`ray start` is not run (the live heads are tests/ops/test_nodes.py's): its command line is."""
    started = []

    class FakePopen:
        pid = 999_999_999

        def __init__(self, cmd, **kwargs):
            started.append(cmd)

    monkeypatch.setattr(rayhead.subprocess, "Popen", FakePopen)
    settings = Settings(state_dir=tmp_path / "s", ray_head_port=endpoints.free_port(), ray_node_ip="192.0.2.7")
    rayhead.launch(settings, {})
    (cmd,) = started
    assert "--node-ip-address=192.0.2.7" in cmd
    assert json.loads((statedir.paths(settings).run / "ray.settings.json").read_text()) == changes.fingerprint(
        settings, changes.HEAD_FIELDS
    )


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.1.1", "localhost", "::1", "0.0.0.0", "::"])
def test_ray_cannot_be_bound_to_loopback_and_the_setting_says_so(address):
    with pytest.raises(ValueError, match="Ray 2.60 announces the machine's own address instead of a loopback one"):
        Settings(ray_node_ip=address)
    assert Settings(ray_node_ip=" ").ray_node_ip is None
    assert Settings(ray_node_ip="192.168.1.10").ray_node_ip == "192.168.1.10"


def test_settings_the_services_would_refuse_are_refused_before_anything(settings):
    exposed = settings.model_copy(update={"nginx_bind": "0.0.0.0"})  # authentication on, no secret
    with pytest.raises(stack.UnsafeChange, match="ingest and the api would refuse to start: .*QSERVER_AUTH_SECRET"):
        stack.preflight(exposed, NGINX or "nginx")
    assert not statedir.paths(settings).nginx_conf.exists() and not statedir.paths(settings).run.exists()
