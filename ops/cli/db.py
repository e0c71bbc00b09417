"""`qserver db upgrade`: the Postgres schema."""

from __future__ import annotations

import typer

from ops.cli import common
from ops.cli.common import err

app = typer.Typer(help="The Postgres schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade() -> None:
    """Create the database if missing and migrate it to the newest schema."""
    from core import schema

    settings = common.settings_or_exit()
    revision = schema.upgrade(settings.database_dsn)
    err.print(f"database schema at revision {revision}")
