"""``qserver``: the one command. The user's commands are here, one typer sub-app per file
(``submit``; ``job``, ``result``, ``cancel``, ``delete``; ``jobs``, ``history``; ``watch``;
``backends``; ``plugins``); the operator's (``up``, ``down``, ``status``, ``node``, ``keys``, ...) come from
the server package where it is installed, through the ``qserver.commands`` entry points.

An entry point of that group names a function ``register(app: typer.Typer) -> None`` that adds
commands to the app, e.g. in a pyproject.toml::

    [project.entry-points."qserver.commands"]
    server = "ops.cli:register"

One that cannot be loaded, or whose ``register`` raises, is reported on stderr and skipped: the
user's commands still work.
"""

from __future__ import annotations

import importlib.metadata
import logging
from typing import Annotated

import typer
from rich.markup import escape

from qserver_client.cli import backends, job, jobs, submit, watch
from qserver_client.cli import plugins as plugin_commands
from qserver_client.cli.common import EXIT_CODES_HELP, err

ENTRY_POINTS = "qserver.commands"  # the group whose entry points add commands (the server's)
CLIENT_DIST = "qserver-client"


def _versions() -> list[str]:
    """``NAME VERSION`` of the client and of each distribution that adds commands."""
    lines = [f"{CLIENT_DIST} {importlib.metadata.version(CLIENT_DIST)}"]
    for entry in importlib.metadata.entry_points(group=ENTRY_POINTS):
        dist = entry.dist
        if dist is not None:
            line = f"{dist.metadata['Name']} {dist.version}"
            if line not in lines:
                lines.append(line)
    return lines


def _show_version(value: bool) -> None:
    if value:
        for line in _versions():
            print(line)
        raise typer.Exit()


def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print the client's version (and the server's, where it is installed) and exit.",
        ),
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def make_app(*, plugins: bool = True) -> typer.Typer:
    """The ``qserver`` app: the user's commands, then (``plugins``) those every
    ``qserver.commands`` entry point registers."""
    app = typer.Typer(
        help="QServer: run quantum circuits on a homelab Ray cluster. The user's commands talk to "
        "QSERVER_URL (QSERVER_GRPC, QSERVER_API_KEY, QSERVER_CA_FILE), or to --url (--grpc, --api-key, "
        "--ca-file, --tls) given to each; -o table|json and -q on each; ID @latest: your newest job.",
        epilog=EXIT_CODES_HELP,
        no_args_is_help=True,
        add_completion=False,
    )
    app.callback()(_main)
    for commands in (submit, jobs, job, watch, backends):
        app.add_typer(commands.app)
    app.add_typer(plugin_commands.app)
    if plugins:
        load_commands(app)
    return app


def load_commands(app: typer.Typer) -> list[str]:
    """Call ``register(app)`` of every ``qserver.commands`` entry point; returns the names of
    those that worked. One that fails is reported on stderr and skipped."""
    loaded = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINTS):
        try:
            entry.load()(app)
        except Exception as error:  # a broken plugin must not take the user's commands with it
            dist = f" ({entry.dist.metadata['Name']} {entry.dist.version})" if entry.dist is not None else ""
            err.print(
                f"[yellow]![/] qserver: skipped the commands of {escape(entry.name)} = {escape(entry.value)}"
                f"{escape(dist)}: {type(error).__name__}: {escape(str(error))}",
                highlight=False,
            )
        else:
            loaded.append(entry.name)
    return loaded


def main() -> None:
    """The ``qserver`` script: the app with every installed plugin's commands (exits)."""
    make_app()()
