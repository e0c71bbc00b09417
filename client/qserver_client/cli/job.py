"""One job, or a few, by id: `qserver job ID`, `qserver result ID`, `qserver cancel ID...`,
`qserver delete ID...` (``@latest``: the newest job)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.markup import escape

from qserver_client.cli.common import (
    ApiKeyOpt,
    CaFileOpt,
    Connection,
    Exit,
    Format,
    GrpcOpt,
    OutputOpt,
    QuietOpt,
    TlsOpt,
    UrlOpt,
    connect,
    describe,
    err,
    exit_code,
    fail,
    out,
    resolve_id,
    resolve_ids,
)
from qserver_client.cli.render import job_table, print_ids, print_json, print_results, status_text, table
from qserver_client.client import Client
from qserver_client.errors import ApiError, ApiUnreachable, NoResults

app = typer.Typer()

IdArg = Annotated[str, typer.Argument(metavar="ID", help="A job id, or @latest: your newest job.")]
IdsArg = Annotated[list[str], typer.Argument(metavar="ID...", help="Job ids; @latest: your newest job.")]


@app.command("job")
def show_job(
    job_id: IdArg,
    output: OutputOpt = Format.table,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
    grpc: GrpcOpt = None,
    api_key: ApiKeyOpt = None,
    ca_file: CaFileOpt = None,
    tls: TlsOpt = False,
) -> None:
    """Show a job: status, backend, times, node, attempts, what it waits for, its error.

    -o json: everything the api gives, the program and results too. Exit 0 whatever its status.
    """
    with connect(Connection(url, grpc, api_key, ca_file, tls)) as client:
        job = client.job(resolve_id(client, job_id))
    if quiet:
        print_ids([job["id"]])
    elif output is Format.json:
        print_json(job)
    else:
        out.print(job_table(job))


@app.command()
def result(
    job_id: IdArg,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the job to end first.")] = False,
    wait_timeout: Annotated[float, typer.Option(min=0, help="Seconds to wait, with --wait.")] = 600.0,
    output: OutputOpt = Format.table,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
    grpc: GrpcOpt = None,
    api_key: ApiKeyOpt = None,
    ca_file: CaFileOpt = None,
    tls: TlsOpt = False,
) -> None:
    """Print a finished job's results: counts, quasi-distribution, expectation values.

    A sweep: its summary (its items are at the route it names). -o json: the api's answer. Exit 1
    when the job failed or was canceled, 4 when it has not ended (yet).
    """
    with connect(Connection(url, grpc, api_key, ca_file, tls)) as client:
        found = resolve_id(client, job_id)
        try:
            results = client.wait_result(found, wait_timeout) if wait else client.result(found)
        except NoResults as error:
            fail(Exit.TIMED_OUT, f"{error.detail} (qserver result --wait waits for it)")
    if quiet:
        print_ids([found])
    elif output is Format.json:
        print_json(results)
    else:
        print_results(results)


def _each(
    client: Client, job_ids: list[str], act: Callable[[str], dict[str, Any]]
) -> tuple[list[dict[str, Any]], Exit]:
    """``act`` on each job, going on past a refusal (reported on stderr; stopping at an
    unreachable server); what was done, and the exit code (the first failure's, else 0)."""
    done: list[dict[str, Any]] = []
    code = Exit.OK
    for job_id in job_ids:
        try:
            done.append(act(job_id))
        except (ApiError, ApiUnreachable) as error:
            err.print(f"[red]qserver:[/] job {escape(job_id)}: {escape(describe(error))}", highlight=False)
            code = code or exit_code(error)
            if exit_code(error) is Exit.UNREACHABLE:
                break
    return done, code


def _print_changed(rows: list[dict[str, Any]], column: str, output: Format, quiet: bool) -> None:
    if quiet:
        print_ids([row["id"] for row in rows])
    elif output is Format.json:
        print_json(rows)
    elif rows:
        shown = table("ID", column.upper())
        for row in rows:
            shown.add_row(str(row["id"]), status_text(row["status"]) if column == "status" else str(row[column]))
        out.print(shown)


@app.command()
def cancel(
    job_ids: IdsArg,
    output: OutputOpt = Format.table,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
    grpc: GrpcOpt = None,
    api_key: ApiKeyOpt = None,
    ca_file: CaFileOpt = None,
    tls: TlsOpt = False,
) -> None:
    """Cancel pending or running jobs (a running one's work is stopped).

    Prints each canceled job (-o json: their JSON; -q: their ids). Exit 5 when one has already
    ended or is not found (the others are still canceled).
    """
    with connect(Connection(url, grpc, api_key, ca_file, tls)) as client:
        canceled, code = _each(client, resolve_ids(client, job_ids), client.cancel)
    _print_changed(canceled, "status", output, quiet)
    raise typer.Exit(code)


@app.command()
def delete(
    job_ids: IdsArg,
    output: OutputOpt = Format.table,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
    grpc: GrpcOpt = None,
    api_key: ApiKeyOpt = None,
    ca_file: CaFileOpt = None,
    tls: TlsOpt = False,
) -> None:
    """Delete jobs with their results (their history rows stay).

    Exit 5 when one is running (cancel it first) or is not found (the others are still deleted).
    """

    def delete_one(job_id: str) -> dict[str, Any]:
        client.delete(job_id)
        return {"id": job_id, "deleted": True}

    with connect(Connection(url, grpc, api_key, ca_file, tls)) as client:
        deleted, code = _each(client, resolve_ids(client, job_ids), delete_one)
    _print_changed(deleted, "deleted", output, quiet)
    raise typer.Exit(code)
