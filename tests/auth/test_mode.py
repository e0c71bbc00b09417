"""The one decision whether authentication is on (core.auth.decide_auth), and the services using it."""

from __future__ import annotations

import logging

import psycopg
import pytest

from api.app import create_app
from core import auth
from core.errors import UnsafeSettings
from core.settings import Settings
from tests.auth.conftest import SECRET

LOOP = {"nginx": "127.0.0.1", "ingest": "127.0.0.1", "api": "127.0.0.1"}


def binds(**changed: str) -> dict[str, str]:
    return {**LOOP, **changed}


@pytest.mark.parametrize(
    ("auth_setting", "trusted_lan", "where", "secret", "on"),
    [
        # default: off only when every service binds to loopback
        (None, False, binds(), None, False),
        (None, False, binds(nginx="localhost", ingest="::1", api="127.0.0.2"), None, False),
        (None, False, binds(nginx="0.0.0.0"), SECRET, True),
        (None, False, binds(api="192.168.1.10"), SECRET, True),
        (None, False, binds(ingest="::"), SECRET, True),
        (None, False, binds(nginx="qserver.lan"), SECRET, True),  # a name is not loopback
        # declaring a trusted LAN allows off; it does not turn authentication off by itself
        (None, True, binds(nginx="0.0.0.0"), SECRET, True),
        ("off", True, binds(nginx="0.0.0.0", ingest="0.0.0.0", api="0.0.0.0"), None, False),
        ("off", False, binds(), None, False),
        ("off", True, binds(), None, False),
        # on, wherever
        ("on", False, binds(), SECRET, True),
        ("on", True, binds(nginx="0.0.0.0"), SECRET, True),
    ],
)
def test_decision_table(auth_setting, trusted_lan, where, secret, on):
    mode = auth.decide_auth(auth=auth_setting, trusted_lan=trusted_lan, binds=where, secret=secret)
    assert mode.on is on
    if on:
        assert mode.warning is None
    else:
        assert mode.warning.startswith("authentication is OFF")
        assert "can submit and read every job" in mode.warning
        for name, host in where.items():
            assert f"{name} on {host}" in mode.warning


@pytest.mark.parametrize(
    "where", [binds(nginx="0.0.0.0"), binds(ingest="10.0.0.5"), binds(api="::"), binds(api="myhost")]
)
def test_off_on_a_public_bind_is_refused_without_a_trusted_lan(where):
    with pytest.raises(UnsafeSettings) as refused:
        auth.decide_auth(auth="off", trusted_lan=False, binds=where, secret=None)
    message = str(refused.value)
    exposed = next(f"{n} on {h}" for n, h in where.items() if h != "127.0.0.1")
    assert exposed in message and "QSERVER_TRUSTED_LAN=true" in message


@pytest.mark.parametrize("secret", [None, "", "short"])
@pytest.mark.parametrize(("auth_setting", "where"), [("on", LOOP), (None, binds(nginx="0.0.0.0"))])
def test_on_needs_a_long_secret(auth_setting, where, secret):
    with pytest.raises(UnsafeSettings, match="QSERVER_AUTH_SECRET"):
        auth.decide_auth(auth=auth_setting, trusted_lan=False, binds=where, secret=secret)


def test_the_warning_says_why_it_is_off():
    lan = auth.decide_auth(auth="off", trusted_lan=True, binds=binds(nginx="0.0.0.0"), secret=None)
    assert "QSERVER_TRUSTED_LAN=true" in lan.warning and "nginx on 0.0.0.0" in lan.warning
    local = auth.decide_auth(auth=None, trusted_lan=False, binds=LOOP, secret=None)
    assert "every service binds to loopback" in local.warning


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.10", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host, loopback):
    assert auth.is_loopback(host) is loopback


def test_auth_mode_reads_the_three_binds_from_settings(monkeypatch):
    for variable in ("QSERVER_AUTH", "QSERVER_TRUSTED_LAN", "QSERVER_AUTH_SECRET"):
        monkeypatch.delenv(variable, raising=False)
    assert not auth.auth_mode(Settings()).on  # the defaults: loopback everywhere
    for field in ("nginx_bind", "ingest_host", "api_host"):
        assert auth.auth_mode(Settings(**{field: "0.0.0.0"}, auth_secret=SECRET)).on
    monkeypatch.setenv("QSERVER_AUTH", "OFF")
    monkeypatch.setenv("QSERVER_NGINX_BIND", "0.0.0.0")
    with pytest.raises(UnsafeSettings):
        auth.auth_mode(Settings())
    monkeypatch.setenv("QSERVER_TRUSTED_LAN", "true")
    assert not auth.auth_mode(Settings()).on
    monkeypatch.setenv("QSERVER_AUTH", "auto")
    monkeypatch.setenv("QSERVER_AUTH_SECRET", SECRET)
    assert Settings().auth is None and auth.auth_mode(Settings()).on


def test_the_test_stack_runs_with_authentication_off(settings):
    """The rest of the suite (tests/conftest.py's stack) binds to loopback: off, unchanged."""
    assert not auth.auth_mode(settings).on


def test_api_refuses_to_start_unsafe(auth_dsn):
    with pytest.raises(UnsafeSettings):
        create_app(Settings(database_url=auth_dsn, auth="off", api_host="0.0.0.0"))
    with pytest.raises(UnsafeSettings):
        create_app(Settings(database_url=auth_dsn, auth="on", auth_secret=None))


async def test_api_logs_loudly_at_start_when_off(auth_dsn, caplog):
    app = create_app(Settings(database_url=auth_dsn, db_pool_size=1))
    with caplog.at_level(logging.INFO, logger="api.app"):
        async with app.router.lifespan_context(app):
            pass
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "authentication is OFF" in warnings[0].getMessage()


async def test_api_logs_that_it_is_on(auth_dsn, caplog):
    app = create_app(Settings(database_url=auth_dsn, db_pool_size=1, auth="on", auth_secret=SECRET))
    with caplog.at_level(logging.INFO, logger="api.app"):
        async with app.router.lifespan_context(app):
            pass
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("authentication is on" in r.getMessage() for r in caplog.records)


async def test_ingest_logs_loudly_at_start_when_off(caplog):
    """``serve`` decides and logs before it connects to anything (here: a database that isn't)."""
    from ingest.server import serve

    nowhere = Settings(database_url="postgresql://postgres@127.0.0.1:5432/qserver_no_such_db")
    with caplog.at_level(logging.INFO, logger="ingest.server"):
        with pytest.raises(psycopg.OperationalError):
            await serve(nowhere)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "authentication is OFF" in warnings[0].getMessage()


async def test_ingest_refuses_to_start_unsafe():
    from ingest.server import serve

    unsafe = Settings(
        database_url="postgresql://postgres@127.0.0.1:5432/qserver_no_such_db",
        auth="off",
        ingest_host="0.0.0.0",
    )
    with pytest.raises(UnsafeSettings, match="ingest on 0.0.0.0"):
        await serve(unsafe)
