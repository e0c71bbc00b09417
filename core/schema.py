"""Create, upgrade and check the database schema (alembic, under a Postgres advisory lock)."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import create_engine, text

from core.errors import SchemaOutOfDate

log = logging.getLogger(__name__)
_MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_KEY = 0x51_53_45_52  # "QSER": two services migrating at once wait for each other


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def _sqlalchemy_url(dsn: str) -> str:
    return "postgresql+psycopg://" + dsn.split("://", 1)[1]


def head_revision() -> str:
    """The newest revision in core/migrations/versions."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def create_database(dsn: str) -> bool:
    """Create the database named in ``dsn`` if it does not exist.

    Connects to the server's ``postgres`` database to do it. Returns True when created.

    Raises:
        psycopg.OperationalError: the server is not reachable.
    """
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    name = info.get("dbname") or "postgres"
    admin = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        log.info("created database %s", name)
        return True


def upgrade(dsn: str) -> str:
    """Create the database if needed and migrate it to the head revision.

    Safe to run from several processes at once (advisory lock). Returns the revision.
    """
    create_database(dsn)
    engine = create_engine(_sqlalchemy_url(dsn))
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            config = _config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    finally:
        engine.dispose()
    revision = head_revision()
    log.info("database schema at revision %s", revision)
    return revision


def current_revision(dsn: str) -> str | None:
    """The revision the database is at, or None for an empty database."""
    engine = create_engine(_sqlalchemy_url(dsn))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def check(dsn: str) -> None:
    """Refuse to start a service on a database whose schema is not at head.

    Raises:
        SchemaOutOfDate: with the revision found and the command that fixes it.
        psycopg.OperationalError: the database does not exist or is unreachable.
    """
    with psycopg.connect(dsn) as conn:
        row = None
        has_table = conn.execute("SELECT to_regclass('alembic_version')").fetchone()
        if has_table and has_table[0]:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    found = row[0] if row else None
    expected = head_revision()
    if found != expected:
        raise SchemaOutOfDate(
            f"database schema is at revision {found or 'none'}, this QServer needs {expected}: run `qserver db upgrade`"
        )
