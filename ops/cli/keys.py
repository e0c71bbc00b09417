"""`qserver keys create|list|revoke`: API keys."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ops.cli import common
from ops.cli.common import db_or_exit, err, out

app = typer.Typer(
    help="API keys (authentication): make one (needs QSERVER_AUTH_SECRET), list them, revoke one.",
    no_args_is_help=True,
)


@app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="The user the key belongs to (their jobs are theirs).")],
    role: Annotated[
        str, typer.Option("--role", help="user: their own jobs; admin: every job, plugins, the cluster.")
    ] = "user",
) -> None:
    """Make an API key for NAME and print it, once: only its keyed hash is stored."""
    from core import auth
    from core.errors import UnsafeSettings

    settings = common.settings_or_exit()
    try:
        auth.check_owner(name)
        auth.check_role(role)
        secret = auth.check_secret(settings.auth_secret)
    except (ValueError, UnsafeSettings) as error:
        err.print(f"[red]{error}[/]", highlight=False)
        raise typer.Exit(2) from None
    with db_or_exit(settings) as conn:
        key_id, key = auth.create_key_sync(conn, secret=secret, owner=name, role=role)
    out.print(key, highlight=False)
    err.print(
        f"key {key_id} for {name} ({role}). This is the only time the key is shown: store it now. "
        "Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
        highlight=False,
    )


@app.command("list")
def keys_list() -> None:
    """Every key: id, owner, role, created, revoked, last used (never the key or its hash)."""
    from core import store

    settings = common.settings_or_exit()
    with db_or_exit(settings) as conn:
        rows = store.list_api_keys_sync(conn)
    if not rows:
        err.print("no API keys yet: `qserver keys create NAME [--role admin]` makes one")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("key id", "owner", "role", "created", "revoked", "last used"):
        table.add_column(column, no_wrap=True)

    def when(value) -> str:
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"

    for row in rows:
        table.add_row(
            row["key_id"],
            row["owner"],
            row["role"],
            when(row["created_at"]),
            when(row["revoked_at"]),
            when(row["last_used_at"]),
        )
    # one line per key, piped too (a console's own width is 80 columns when not a terminal)
    Console(width=max(out.width, 200), highlight=False).print(table)


@app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id `qserver keys list` shows.")],
) -> None:
    """Revoke a key: refused from then on (within QSERVER_AUTH_CACHE_TTL_S in running services)."""
    from core import store

    settings = common.settings_or_exit()
    with db_or_exit(settings) as conn:
        row = store.revoke_api_key_sync(conn, key_id=key_id)
    if row is None:
        err.print(f"[red]no API key has id {key_id!r}[/] (`qserver keys list` shows them)", highlight=False)
        raise typer.Exit(1)
    when = row["revoked_at"].astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if row["newly"]:
        out.print(f"revoked key {row['key_id']} of {row['owner']} at {when}", highlight=False)
    else:
        out.print(f"key {row['key_id']} of {row['owner']} was already revoked at {when}", highlight=False)
