"""`qserver watch ID`: follow a job live, from its events stream, to its end."""

from __future__ import annotations

import math
from typing import Annotated

import typer

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
    interrupted,
    resolve_id,
)
from qserver_client.cli.follow import finish, follow
from qserver_client.cli.render import print_ids, print_json_line

app = typer.Typer()


@app.command()
def watch(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="A job id, or @latest: your newest job.")],
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Seconds to watch at most \\[default: until it ends].")
    ] = None,
    output: OutputOpt = Format.table,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
    grpc: GrpcOpt = None,
    api_key: ApiKeyOpt = None,
    ca_file: CaFileOpt = None,
    tls: TlsOpt = False,
) -> None:
    """Follow a job live until it ends, then print its results or its error.

    Its status, what it waits for, its node and attempt are shown on stderr as they change.

    -o json: each event as one line of JSON on stdout (JSON Lines; the last is the `end`, with
    the results or the error). -q: no progress, the id once it ended. Exit 0 finished, 1 failed or
    canceled, 4 --timeout passed first. Ctrl-C stops watching (the job goes on) and prints the
    command that cancels it.
    """
    connection = Connection(url, grpc, api_key, ca_file, tls)
    with connect(connection) as client:
        found = resolve_id(client, job_id)
        try:
            end = follow(
                client,
                found,
                math.inf if timeout is None else timeout,
                show=not quiet,
                on_event=print_json_line if output is Format.json and not quiet else None,
            )
        except KeyboardInterrupt:
            interrupted(connection, client, found)
        if quiet:
            print_ids([found])
        finish(client, end, show_results=output is Format.table and not quiet)
