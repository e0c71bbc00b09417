"""Where ``Client`` talks to: its arguments, the environment, the local default stack (no stack)."""

from __future__ import annotations

import pytest

from qserver_client import Client
from qserver_client.address import resolve

ENV = ("QSERVER_URL", "QSERVER_GRPC", "QSERVER_API_KEY", "QSERVER_CA_FILE")


@pytest.fixture
def clean_env(monkeypatch):
    """No QSERVER_URL, QSERVER_GRPC, QSERVER_API_KEY or QSERVER_CA_FILE in the environment."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("url", "grpc", "expected"),
    [
        (None, None, ("http://127.0.0.1:8080", "127.0.0.1:50051", False)),
        ("http://qserver.lan:8080", None, ("http://qserver.lan:8080", "qserver.lan:50051", False)),
        ("http://qserver.lan", None, ("http://qserver.lan", "qserver.lan:50051", False)),
        ("https://qserver.lan", None, ("https://qserver.lan", "qserver.lan:443", True)),
        ("https://qserver.lan:8443/", None, ("https://qserver.lan:8443", "qserver.lan:8443", True)),
        ("https://qserver.lan", "qserver.lan:443", ("https://qserver.lan", "qserver.lan:443", True)),
        ("https://qserver.lan", "grpc://qserver.lan:50051", ("https://qserver.lan", "qserver.lan:50051", False)),
        ("http://qserver.lan:8080", "grpcs://rpc.lan", ("http://qserver.lan:8080", "rpc.lan:443", True)),
        ("http://qserver.lan:8080", "rpc.lan", ("http://qserver.lan:8080", "rpc.lan:50051", False)),
        ("http://h:1/qserver", "h:2/", ("http://h:1/qserver", "h:2", False)),
        ("http://[::1]:8080", None, ("http://[::1]:8080", "[::1]:50051", False)),
        ("https://[fd00::5]", None, ("https://[fd00::5]", "[fd00::5]:443", True)),
        ("http://[::1]:8080", "[::1]:15051", ("http://[::1]:8080", "[::1]:15051", False)),
        ("http://[::1]:8080", "grpcs://[fe80::1]", ("http://[::1]:8080", "[fe80::1]:443", True)),
    ],
)
def test_addresses(url, grpc, expected):
    address = resolve(url, grpc, env={})
    assert (address.url, address.grpc_target, address.grpc_tls) == expected
    assert address.tls == expected[0].startswith("https")


@pytest.mark.parametrize(
    ("url", "grpc", "says"),
    [
        ("127.0.0.1:8080", None, "http://host"),
        ("ftp://qserver.lan", None, "http://host"),
        ("http://qserver.lan:8080?x=1", None, "no query"),
        ("http://user@qserver.lan", None, "no query"),
        ("http://qserver.lan:http", None, "Port"),
        ("http://:8080", None, "no host"),
        ("http://qserver.lan", "https://qserver.lan", "grpcs://"),
        ("http://qserver.lan", "::1:50051", "brackets"),
        ("http://qserver.lan", "qserver.lan:99999", "out of range"),
        ("http://qserver.lan", "qserver.lan:1/path", r"host\[:port\]"),
    ],
)
def test_addresses_that_do_not_parse(url, grpc, says):
    with pytest.raises(ValueError, match=says):
        resolve(url, grpc, env={})


def test_environment_gives_both_addresses_or_the_url_gives_grpc():
    env = {"QSERVER_URL": "https://qserver.lan", "QSERVER_GRPC": "grpc://rpc.lan:1234"}
    assert resolve(None, None, env).grpc_target == "rpc.lan:1234"
    assert resolve(None, None, {"QSERVER_URL": "https://qserver.lan"}).grpc_target == "qserver.lan:443"
    assert resolve(None, None, {"QSERVER_GRPC": "[::1]:7"}) == resolve("http://127.0.0.1:8080", "[::1]:7", {})
    assert resolve(None, "x:1", env).grpc_target == "x:1"  # an argument wins
    # a url given as an argument is another server: QSERVER_GRPC (of the environment's) is not used
    assert resolve("http://other.lan:8080", None, env).grpc_target == "other.lan:50051"


def test_client_with_no_arguments_uses_the_local_stack(clean_env):
    with Client() as client:
        assert (client.url, client.grpc_target) == ("http://127.0.0.1:8080", "127.0.0.1:50051")
        assert "Authorization" not in client.http.headers


def test_client_with_no_arguments_uses_the_environment(clean_env):
    clean_env.setenv("QSERVER_URL", "http://[::1]:18080/")
    clean_env.setenv("QSERVER_GRPC", "[::1]:15051")
    clean_env.setenv("QSERVER_API_KEY", "qsk_from_env")
    with Client() as client:
        assert (client.url, client.grpc_target) == ("http://[::1]:18080", "[::1]:15051")
        assert (client.http.base_url.host, client.http.base_url.port) == ("::1", 18080)
        assert client.http.headers["Authorization"] == "Bearer qsk_from_env"
    with Client(url="http://other.lan:8080", api_key="qsk_given") as client:
        assert client.grpc_target == "other.lan:50051"
        assert client.http.headers["Authorization"] == "Bearer qsk_given"


def test_ca_file_from_the_environment_is_read_for_tls(clean_env, tmp_path):
    clean_env.setenv("QSERVER_CA_FILE", str(tmp_path / "missing.crt"))
    with Client(url="http://qserver.lan:8080"):
        pass  # plain text: no certificate to check
    with pytest.raises(FileNotFoundError):
        Client(url="https://qserver.lan")


def test_the_old_positional_form_is_refused():
    with pytest.raises(TypeError):
        Client("127.0.0.1", 50051, 8080)  # type: ignore[misc]
