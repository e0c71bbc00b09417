"""The rendered nginx config: real `nginx -t` accepts it, and it says what Settings say."""

from __future__ import annotations

import re
import subprocess

import pytest

from core.settings import MIB, Settings
from ops import prereqs, proxy, statedir

NGINX = prereqs.find_program("nginx")
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/install.sh installs it)")


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        nginx_bind="127.0.0.1",
        nginx_http_port=18080,
        nginx_grpc_port=15051,
        api_host="127.0.0.1",
        api_port=18000,
        ingest_host="0.0.0.0",
        ingest_port=15052,
        max_qasm_bytes=3 * MIB,
    )


def _nginx_t(settings: Settings) -> subprocess.CompletedProcess:
    proxy.write_nginx_conf(settings)
    return subprocess.run(
        proxy.nginx_command(settings, "-t", nginx=NGINX),
        capture_output=True,
        text=True,
        check=False,
    )


def test_nginx_accepts_the_rendered_config(settings):
    proc = _nginx_t(settings)
    assert proc.returncode == 0, proc.stderr
    assert "syntax is ok" in proc.stderr


def test_config_listens_where_settings_say(settings):
    conf = proxy.render_nginx_conf(settings)
    assert re.search(r"listen 127\.0\.0\.1:18080;", conf)
    assert re.search(r"listen 127\.0\.0\.1:15051 http2;", conf)
    assert "server 127.0.0.1:18000;" in conf  # the api upstream
    assert "server 127.0.0.1:15052;" in conf  # ingest bound to 0.0.0.0 is dialled on loopback
    assert f'include "{proxy.LOCATIONS}/grpc.conf";' in conf
    assert f'include "{proxy.LOCATIONS}/rest.conf";' in conf


def test_every_server_shares_the_location_bodies():
    assert "grpc_pass grpc://qserver_ingest;" in (proxy.LOCATIONS / "grpc.conf").read_text()
    assert "proxy_pass http://qserver_api;" in (proxy.LOCATIONS / "rest.conf").read_text()
    templates = [
        proxy.NGINX_TEMPLATE,
        proxy.TLS_TEMPLATE,
        proxy.NGINX_TEMPLATE.parent / "compose" / "qserver.conf.template",
    ]
    for template in templates:
        text = template.read_text()
        assert "grpc_pass" not in text and "proxy_pass" not in text, template
        assert "/rest.conf" in text and "/grpc.conf" in text, template


def test_body_limit_is_the_qasm_and_bindings_limits_plus_one_mib(settings):
    conf = proxy.render_nginx_conf(settings)
    sizes = re.findall(r"client_max_body_size (\d+);", conf)
    # one http-level value, inherited by both servers
    assert sizes == [str(settings.max_qasm_bytes + settings.max_bindings_bytes + MIB)] == [str(68 * MIB)]


def test_every_path_is_inside_the_state_dir(settings):
    conf = proxy.render_nginx_conf(settings)
    prefix = str(statedir.paths(settings).nginx)
    for directive in ("pid", "error_log", "access_log", "client_body_temp_path", "proxy_temp_path"):
        match = re.search(rf"^\s*{directive} (\S+)", conf, re.MULTILINE)
        assert match, directive
        assert match.group(1).startswith(prefix + "/"), (directive, match.group(1))
    assert "daemon on;" in conf


def test_ray_dashboard_is_not_proxied(settings):
    conf = proxy.render_nginx_conf(settings)
    assert str(settings.ray_dashboard_port) not in conf


def test_ipv6_bind_is_bracketed(settings):
    v6 = settings.model_copy(update={"nginx_bind": "::1"})
    conf = proxy.render_nginx_conf(v6)
    assert "listen [::1]:18080;" in conf
    assert "listen [::1]:15051 http2;" in conf


# --- TLS -------------------------------------------------------------------------------------


@pytest.fixture
def tls_settings(settings) -> Settings:
    from ops import certs

    tls = settings.model_copy(update={"nginx_tls_port": 18443})
    certs.make_dev_certs(tls.tls_path, ["localhost", "127.0.0.1"])
    return tls


def test_no_tls_server_without_certificates(settings):
    conf = proxy.render_nginx_conf(settings)
    assert proxy.tls(settings) is None
    assert "ssl" not in conf.replace("TLS", "")
    assert str(settings.nginx_tls_port) not in conf
    assert "qserver certs" in conf  # the config says how to turn it on
    assert proxy.ports(settings) == [18080, 15051]


def test_nginx_accepts_the_rendered_config_with_tls(tls_settings):
    proc = _nginx_t(tls_settings)
    assert proc.returncode == 0, proc.stderr
    assert "syntax is ok" in proc.stderr


def test_one_tls_server_serves_grpc_and_rest(tls_settings):
    conf = proxy.render_nginx_conf(tls_settings)
    tls_dir = tls_settings.tls_path
    assert re.findall(r"listen (\S+) ssl http2;", conf) == ["127.0.0.1:18443"]
    assert f'ssl_certificate     "{tls_dir}/server.crt";' in conf
    assert f'ssl_certificate_key "{tls_dir}/server.key";' in conf
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    tls_server = conf[conf.index("ssl http2;") :]
    assert re.search(r'location /Jobs/ \{\s*include "[^"]*/grpc\.conf";', tls_server)
    assert re.search(r'location / \{\s*include "[^"]*/rest\.conf";', tls_server)
    assert "$tls_" not in conf and "$$" not in conf
    assert proxy.ports(tls_settings) == [18080, 15051, 18443]


def test_tls_shares_the_body_limit(tls_settings):
    conf = proxy.render_nginx_conf(tls_settings)
    assert re.findall(r"client_max_body_size (\d+);", conf) == [str(68 * MIB)]


def test_tls_on_an_ipv6_bind_is_bracketed(tls_settings):
    conf = proxy.render_nginx_conf(tls_settings.model_copy(update={"nginx_bind": "::1"}))
    assert "listen [::1]:18443 ssl http2;" in conf


def test_probe_names_the_certificate_host(tmp_path):
    """The name a probe verifies: localhost on loopback, else the address, else the cert's name."""
    from ops import certs

    dev = certs.make_dev_certs(tmp_path / "dev", ["localhost", "127.0.0.1", "10.0.0.5"])
    assert proxy.tls_server_name(dev.server_cert, "127.0.0.1") == "localhost"
    assert proxy.tls_server_name(dev.server_cert, "10.0.0.5") == "10.0.0.5"
    real = certs.make_dev_certs(tmp_path / "real", ["qserver.example.org"])
    assert proxy.tls_server_name(real.server_cert, "127.0.0.1") == "qserver.example.org"


def test_nginx_passes_the_headers_ingest_refuses_itself(settings):
    from core.settings import GRPC_HEADER_TRANSPORT_BYTES

    size = f"{GRPC_HEADER_TRANSPORT_BYTES // 1024}k"
    assert f"large_client_header_buffers 2 {size};" in proxy.render_nginx_conf(settings)
    compose = (proxy.NGINX_TEMPLATE.parent / "compose" / "qserver.conf.template").read_text()
    assert f"large_client_header_buffers 2 {size};" in compose
    assert settings.grpc_max_header_bytes <= GRPC_HEADER_TRANSPORT_BYTES // 2
