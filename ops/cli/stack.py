"""`qserver up`, `down`, `status`: the local stack."""

from __future__ import annotations

import typer
from rich.table import Table

from ops import prereqs
from ops.cli import common
from ops.cli.common import err, out

app = typer.Typer()


@app.command()
def up() -> None:
    """Start Postgres/RabbitMQ if needed, a Ray head, ingest, api, dispatcher and nginx; on a
    running stack, restart what changed settings affect (or refuse, changing nothing)."""
    from ops import stack  # alembic, SQLAlchemy: only for the commands that need them
    from ops.statedir import ComponentFailed

    try:
        stack.up(common.settings_or_exit(), console=err)
    except stack.UnsafeChange as error:
        err.print(f"[red bold]not changed:[/] {error}", highlight=False)
        raise typer.Exit(1) from None
    except ComponentFailed as error:
        err.print(f"[red bold]{error.component} did not start:[/] {error.reason}")
        if error.log_path is not None:
            err.rule(f"last lines of {error.log_path}")
            err.print(error.log_tail or "(empty)", markup=False, highlight=False)
            err.rule()
        err.print("Fix it and run `qserver up` again; `qserver down` stops what did start.")
        raise typer.Exit(1) from None
    except prereqs.SetupError as error:
        err.print(f"[red bold]setup failed:[/] {error}", markup=True, highlight=False)
        raise typer.Exit(1) from None


@app.command()
def down() -> None:
    """Stop nginx, dispatcher, api, ingest and the Ray head that `up` started."""
    from ops import stack

    stack.down(common.settings_or_exit())
    err.print("QServer stopped (Postgres and RabbitMQ keep running).")


@app.command()
def status() -> None:
    """Show each component: running, unhealthy or stopped, pid, address, health (exit 1 unless all run healthy)."""
    table = Table(show_header=True)
    for column in ("component", "state", "pid", "address", ""):
        table.add_column(column)
    from ops import stack

    components = stack.status(common.settings_or_exit())
    for part in components:
        colour = {"running": "green", "unhealthy": "yellow"}.get(part.state, "red")
        table.add_row(part.name, f"[{colour}]{part.state}[/]", str(part.pid or ""), part.address, part.detail)
    out.print(table)
    if not all(part.state == "running" for part in components):
        raise typer.Exit(1) from None
