"""What every `qserver` command shares: the two consoles, settings and the database, or exit."""

from __future__ import annotations

import typer
from rich.console import Console

from core.settings import Settings, get_settings

out = Console(soft_wrap=True)  # results: stdout, so they can be piped
err = Console(stderr=True, soft_wrap=True)  # progress, errors: never wrapped mid-message


def settings_or_exit() -> Settings:
    """The QSERVER_* settings, or exit 2 saying which one is invalid."""
    try:
        return get_settings()
    except ValueError as error:  # pydantic.ValidationError
        err.print(f"[red]invalid QSERVER_* settings:[/] {error}")
        raise typer.Exit(2) from None


def db_or_exit(settings: Settings):
    """A connection to a database at the newest schema, or exit 1 saying what is wrong."""
    import psycopg

    from core import schema, store
    from core.errors import SchemaOutOfDate

    try:
        schema.check(settings.database_dsn)
        return store.connect_sync(settings.database_dsn)
    except (psycopg.OperationalError, SchemaOutOfDate) as error:
        err.print(f"[red]cannot use the database:[/] {error}", highlight=False)
        raise typer.Exit(1) from None


def component_failed(error) -> None:
    err.print(f"[red bold]{error.component} did not start:[/] {error.reason}", highlight=False)
    if error.log_path is not None:
        err.rule(f"last lines of {error.log_path}")
        err.print(error.log_tail or "(empty)", markup=False, highlight=False)
        err.rule()
