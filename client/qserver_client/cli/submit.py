"""`qserver submit FILE`: stream a circuit over gRPC through nginx, follow it to its end on its
events stream, print its results (with ``Client``, the same client users and the tests use)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

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
    err,
    fail,
    interrupted,
)
from qserver_client.cli.follow import finish, follow
from qserver_client.cli.render import print_ids, print_json

app = typer.Typer()

_JOB = "The job"


def _json_option(text: str | None, name: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        raise typer.BadParameter(f"not JSON: {error}", param_hint=name) from None


def _parameters(pairs: list[str]) -> dict[str, float]:
    """``--param NAME=VALUE`` options as metadata ``parameters`` ({name: number})."""
    parameters: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not name.strip() or not math.isfinite(number):
            raise typer.BadParameter(f"{pair!r}: give NAME=NUMBER, e.g. theta=0.5", param_hint="--param")
        parameters[name.strip()] = int(number) if number.is_integer() and "." not in value else number
    return parameters


def _metadata(
    metadata: str | None,
    *,
    shots: int | None,
    seed: int | None,
    obs: str | None,
    method: str | None,
    job_timeout: float | None,
    tags: list[str],
    params: list[str],
) -> dict[str, Any]:
    """The job's metadata: ``--metadata``, with each option given set over it."""
    if job_timeout is not None and not job_timeout > 0:
        raise typer.BadParameter(f"{job_timeout:g}: give a number of seconds above 0", param_hint="--timeout")
    meta = _json_option(metadata, "--metadata") or {}
    if not isinstance(meta, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--metadata")
    options = {
        "shots": shots,
        "seed": seed,
        "obs": _json_option(obs, "--obs"),
        "method": method,
        "timeout_s": job_timeout,
        "tags": tags or None,
        "parameters": _parameters(params) or None,
    }
    meta.update({key: value for key, value in options.items() if value is not None})
    return meta


@app.command(epilog="With --wait: exit 0 finished, 1 failed or canceled, 4 still running at --wait-timeout.")
def submit(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="An OpenQASM 2 or 3 program."),
    ],
    backend: Annotated[str, typer.Option(help="The backend that runs it.", rich_help_panel=_JOB)] = "aer",
    counts: Annotated[
        bool, typer.Option("--counts", help="Ask for counts (the default).", rich_help_panel=_JOB)
    ] = False,
    quasi_dist: Annotated[bool, typer.Option("--quasi-dist", help="Ask for quasi_dist.", rich_help_panel=_JOB)] = False,
    expval: Annotated[
        bool, typer.Option("--expval", help="Ask for expval (needs --obs).", rich_help_panel=_JOB)
    ] = False,
    obs: Annotated[
        str | None,
        typer.Option(
            help="Observables, JSON: a list of PUBs, e.g. '[[[\"ZZ\", 1.0]]]'; implies --expval.",
            rich_help_panel=_JOB,
        ),
    ] = None,
    shots: Annotated[int | None, typer.Option(min=1, rich_help_panel=_JOB)] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Seed of the simulation.", rich_help_panel=_JOB)] = None,
    method: Annotated[
        str | None,
        typer.Option(help="Aer's method, e.g. matrix_product_state \\[default: automatic].", rich_help_panel=_JOB),
    ] = None,
    job_timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Seconds the job may run (more than 0); it fails after.", rich_help_panel=_JOB),
    ] = None,
    tags: Annotated[
        list[str] | None,
        typer.Option("--tag", help="A node tag the job must run on (repeat for more).", rich_help_panel=_JOB),
    ] = None,
    params: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            metavar="NAME=VALUE",
            help="A value of the program's OpenQASM 3 input parameter (repeat for more).",
            rich_help_panel=_JOB,
        ),
    ] = None,
    metadata: Annotated[
        str | None,
        typer.Option(help="More metadata, a JSON object (the options above win over it).", rich_help_panel=_JOB),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait and print the results.")] = True,
    wait_timeout: Annotated[float, typer.Option(min=0, help="Seconds to wait for the job.")] = 600.0,
    output: OutputOpt = Format.table,
    as_json: Annotated[
        bool, typer.Option("--json", help="Same as -o json: the job's JSON on stdout, its id on stderr.")
    ] = False,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
    grpc: GrpcOpt = None,
    api_key: ApiKeyOpt = None,
    ca_file: CaFileOpt = None,
    tls: TlsOpt = False,
) -> None:
    """Stream FILE over gRPC, then (unless --no-wait) follow the job to its end and print its results.

    Table output: the job id on stderr, the results as tables on stdout (--no-wait: the id on
    stdout). JSON output (-o json, --json): one JSON document on stdout, the job as
    `qserver job ID -o json` prints it; the id on stderr. -q: the id alone on stdout. Ctrl-C while
    waiting leaves the job running and prints the command that cancels it.
    """
    meta = _metadata(
        metadata,
        shots=shots,
        seed=seed,
        obs=obs,
        method=method,
        job_timeout=job_timeout,
        tags=tags or [],
        params=params or [],
    )
    if obs is not None:
        expval = True  # observables given: their expectation values are asked for
    if expval and "obs" not in meta:
        raise typer.BadParameter("--expval needs --obs (or obs in --metadata)", param_hint="--obs")
    if not (counts or quasi_dist or expval):
        counts = True
    fmt = Format.json if as_json else output
    try:
        qasm = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(Exit.USAGE, f"{file} is not a UTF-8 text file: send an OpenQASM program")
    connection = Connection(url, grpc, api_key, ca_file, tls)
    with connect(connection, timeout=10) as client:
        try:
            job_id = client.submit(
                qasm, backend=backend, counts=counts, quasi_dist=quasi_dist, expval=expval, metadata=meta, timeout=300
            )
        except KeyboardInterrupt:
            err.print(
                "\n[yellow]interrupted[/] before the server answered: the job may have been stored "
                "(`qserver jobs --limit 1` lists your newest).",
                highlight=False,
            )
            raise typer.Exit(Exit.INTERRUPTED) from None
        if quiet:
            print_ids([job_id])
        elif fmt is Format.json or wait:
            err.print(f"job {job_id}", highlight=False)
        else:
            print_ids([job_id])
        if not wait:
            if fmt is Format.json and not quiet:
                print_json(client.job(job_id))
            return
        try:
            end = follow(client, job_id, wait_timeout, show=not quiet)
        except KeyboardInterrupt:
            interrupted(connection, client, job_id)
        if fmt is Format.json and not quiet:
            print_json(client.job(job_id))
        finish(client, end, show_results=fmt is Format.table and not quiet)
