"""`qserver plugins`: the admitted plugins; `qserver plugins add NAME` and `remove NAME` (admins:
the api's POST and DELETE /api/v1/plugin/NAME)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from qserver_client.cli.common import (
    ApiKeyOpt,
    CaFileOpt,
    Connection,
    Format,
    GrpcOpt,
    OutputOpt,
    QuietOpt,
    TlsOpt,
    UrlOpt,
    connect,
    out,
)
from qserver_client.cli.render import print_ids, print_json, table

app = typer.Typer(
    name="plugins",
    help="List the admitted plugins; add or remove one (admins).",
    invoke_without_command=True,
    no_args_is_help=False,
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The plugin's package name, e.g. qserver-fake-plugin.")]


@app.callback()
def plugins(
    ctx: typer.Context,
    output: OutputOpt = Format.table,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
    grpc: GrpcOpt = None,
    api_key: ApiKeyOpt = None,
    ca_file: CaFileOpt = None,
    tls: TlsOpt = False,
) -> None:
    """List the admitted plugins; `add NAME` and `remove NAME` (admins only).

    Each plugin's version, backends, whether it is built in and enabled. -q: their names.
    """
    if ctx.invoked_subcommand is not None:
        return
    with connect(Connection(url, grpc, api_key, ca_file, tls)) as client:
        rows = client.plugins()
    if quiet:
        print_ids([row["name"] for row in rows])
    elif output is Format.json:
        print_json(rows)
    else:
        shown = table("NAME", "VERSION", "BACKENDS", "BUILT IN", "ENABLED")
        for row in rows:
            shown.add_row(
                row["name"],
                row.get("version") or "-",
                ", ".join(row.get("backends") or []) or "-",
                "yes" if row.get("builtin") else "no",
                "yes" if row.get("enabled", True) else "no",
            )
        out.print(shown)


@app.command()
def add(
    name: NameArg,
    output: OutputOpt = Format.table,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
    grpc: GrpcOpt = None,
    api_key: ApiKeyOpt = None,
    ca_file: CaFileOpt = None,
    tls: TlsOpt = False,
) -> None:
    """Admit a plugin from the server's package index and register its backends (admins).

    Exit 5 when refused: not an admin, no such package, already admitted, not a plugin.
    """
    with connect(Connection(url, grpc, api_key, ca_file, tls)) as client:
        admitted = client.admit_plugin(name)
    if quiet:
        print_ids([admitted["name"]])
    elif output is Format.json:
        print_json(admitted)
    else:
        version = admitted.get("version") or "built in"
        backends = ", ".join(admitted.get("backends") or [])
        out.print(f"admitted {escape(admitted['name'])} ({escape(version)}): backends {escape(backends)}")


@app.command()
def remove(
    name: NameArg,
    output: OutputOpt = Format.table,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
    grpc: GrpcOpt = None,
    api_key: ApiKeyOpt = None,
    ca_file: CaFileOpt = None,
    tls: TlsOpt = False,
) -> None:
    """Remove a plugin and its backends (admins; the built-in one is disabled instead).

    Exit 5 when refused: not an admin, not admitted, jobs on its backends pending or running.
    """
    with connect(Connection(url, grpc, api_key, ca_file, tls)) as client:
        removed = client.remove_plugin(name)
    if quiet:
        print_ids([removed["name"]])
    elif output is Format.json:
        print_json(removed)
    else:
        out.print(f"removed {escape(removed['name'])}", highlight=False)
