"""`qserver janitor`: delete old jobs."""

from __future__ import annotations

from typing import Annotated

import typer

from ops.cli import common
from ops.cli.common import out

app = typer.Typer()


@app.command()
def janitor(
    days: Annotated[
        float | None,
        typer.Option(
            min=0, help="Delete finished/failed/canceled jobs older than this \\[default: QSERVER_RETENTION_DAYS]."
        ),
    ] = None,
) -> None:
    """Delete jobs in a terminal status older than the retention (their history rows stay)."""
    from core import store

    settings = common.settings_or_exit()
    older_than = settings.retention_days if days is None else days
    with store.connect_sync(settings.database_dsn) as conn:
        deleted = store.delete_expired_jobs_sync(conn, older_than_days=older_than)
    out.print(f"deleted {deleted} jobs finished more than {older_than:g} days ago (history kept)")
