"""ops/certs.py and `qserver certs`: a development CA, a server certificate it signs, real TLS."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from core.settings import Settings
from ops import certs, cli

ROOT = Path(__file__).resolve().parents[2]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _ext(cert: x509.Certificate, kind):
    return cert.extensions.get_extension_for_class(kind).value


def test_cryptography_is_a_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(dep.replace(" ", "").startswith("cryptography>=") for dep in project["dependencies"])


def test_makes_a_ca_and_a_server_certificate_it_signs(tmp_path):
    made = certs.make_dev_certs(tmp_path / "tls", ["localhost", "127.0.0.1", "::1", "nas.lan"])
    assert made.directory == tmp_path / "tls"
    for path in (made.ca_cert, made.ca_key, made.server_cert, made.server_key):
        assert path.is_file(), path
    assert _mode(made.ca_key) == 0o600 and _mode(made.server_key) == 0o600
    assert _mode(made.directory) == 0o700

    ca = certs.load_cert(made.ca_cert)
    assert _ext(ca, x509.BasicConstraints).ca is True
    assert _ext(ca, x509.KeyUsage).key_cert_sign
    ca.verify_directly_issued_by(ca)  # self-signed

    server = certs.load_cert(made.server_cert)
    server.verify_directly_issued_by(ca)
    assert _ext(server, x509.BasicConstraints).ca is False
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in _ext(server, x509.ExtendedKeyUsage)
    dns, ips = certs.san_hosts(server)
    assert dns == ["localhost", "nas.lan"]
    assert ips == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]


def test_default_hosts_are_loopback_and_this_machine():
    hosts = certs.default_hosts()
    assert hosts[:3] == ["localhost", "127.0.0.1", "::1"]
    assert socket.gethostname() in hosts


def test_default_certificate_covers_the_default_hosts(tmp_path):
    made = certs.make_dev_certs(tmp_path)
    dns, ips = certs.san_hosts(certs.load_cert(made.server_cert))
    assert {"localhost", socket.gethostname()} <= set(dns)
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")} <= set(ips)


def test_idempotent_unless_forced(tmp_path):
    made = certs.make_dev_certs(tmp_path, ["localhost"])
    before = {p: p.read_bytes() for p in (made.ca_cert, made.ca_key, made.server_cert)}
    certs.make_dev_certs(tmp_path, ["localhost"])
    certs.make_dev_certs(tmp_path)  # no hosts: a good certificate is kept as it is
    assert {p: p.read_bytes() for p in before} == before
    certs.make_dev_certs(tmp_path, ["localhost"], force=True)
    assert made.ca_cert.read_bytes() != before[made.ca_cert]
    assert made.server_cert.read_bytes() != before[made.server_cert]


def test_a_new_host_reissues_the_server_certificate_with_the_same_ca(tmp_path):
    made = certs.make_dev_certs(tmp_path, ["localhost"])
    ca_before = made.ca_cert.read_bytes()
    certs.make_dev_certs(tmp_path, ["localhost", "qserver.lan"])
    assert made.ca_cert.read_bytes() == ca_before  # clients that trust the CA keep working
    server = certs.load_cert(made.server_cert)
    server.verify_directly_issued_by(certs.load_cert(made.ca_cert))
    assert certs.san_hosts(server)[0] == ["localhost", "qserver.lan"]


def test_a_real_certificate_is_not_replaced_without_force(tmp_path):
    """server.crt without our ca.key beside it (certbot's) stays unless --force."""
    real = tmp_path / "letsencrypt"
    real.mkdir()
    (real / "fullchain.pem").write_text("real chain")
    (real / "privkey.pem").write_text("real key")
    tls = tmp_path / "tls"
    tls.mkdir()
    (tls / "server.crt").symlink_to(real / "fullchain.pem")
    (tls / "server.key").symlink_to(real / "privkey.pem")
    with pytest.raises(certs.CertError, match="--force"):
        certs.make_dev_certs(tls, ["localhost"])
    certs.make_dev_certs(tls, ["localhost"], force=True)
    # the links were replaced, the files they pointed at were not written through
    assert not (tls / "server.crt").is_symlink()
    assert (real / "fullchain.pem").read_text() == "real chain"
    assert (real / "privkey.pem").read_text() == "real key"


@pytest.mark.parametrize("host", ["", "bad host", "a..b", "-x/../y", "http://x"])
def test_malformed_hosts_are_refused(tmp_path, host):
    with pytest.raises(certs.CertError):
        certs.make_dev_certs(tmp_path, [host])


def _handshake(made: certs.CertPaths, server_name: str) -> str:
    """A TLS handshake over a socket pair: our server certificate, a client trusting ca.crt."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(made.server_cert, made.server_key)
    client_ctx = ssl.create_default_context(cafile=str(made.ca_cert))
    left, right = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(right, server_side=True) as conn:
                conn.sendall(b"ok")
        except BaseException as error:  # reported by the client side's assertion
            errors.append(error)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(left, server_hostname=server_name) as conn:
            data = conn.recv(2)
            version = conn.version()
    finally:
        thread.join(timeout=10)
    assert data == b"ok", errors
    return version


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "::1"])
def test_a_client_that_trusts_the_ca_accepts_the_server(tmp_path, name):
    made = certs.make_dev_certs(tmp_path, ["localhost", "127.0.0.1", "::1"])
    assert _handshake(made, name) in ("TLSv1.2", "TLSv1.3")


def test_a_name_the_certificate_lacks_is_refused(tmp_path):
    made = certs.make_dev_certs(tmp_path, ["localhost"])
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(made, "elsewhere.example")


def test_cli_certs_writes_into_the_tls_dir_and_says_how_to_trust_it(tmp_path, monkeypatch):
    settings = Settings(state_dir=tmp_path / "state")
    monkeypatch.setattr(cli.common, "settings_or_exit", lambda: settings)
    result = CliRunner().invoke(cli.app, ["certs", "--host", "localhost", "--host", "10.1.2.3"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    ca = settings.tls_path / "ca.crt"
    assert (settings.tls_path / "server.crt").is_file() and ca.is_file()
    assert f"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH={ca} REQUESTS_CA_BUNDLE={ca}" in result.stdout
    assert "localhost, 10.1.2.3" in result.stdout


def test_cli_certs_refuses_to_replace_a_real_certificate(tmp_path, monkeypatch):
    settings = Settings(state_dir=tmp_path / "state", tls_dir=tmp_path / "real")
    settings.tls_path.mkdir()
    (settings.tls_path / "server.crt").write_text("real")
    monkeypatch.setattr(cli.common, "settings_or_exit", lambda: settings)
    result = CliRunner().invoke(cli.app, ["certs"], catch_exceptions=False)
    assert result.exit_code == 2
    assert "--force" in result.stderr
    assert (settings.tls_path / "server.crt").read_text() == "real"
