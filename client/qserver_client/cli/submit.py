"""`qserver submit FILE`: stream a circuit over gRPC through nginx, wait, print its results
(with ``Client``, the same client users and the tests use)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from qserver_client.cli.common import err, out
from qserver_client.client import Client
from qserver_client.errors import ApiError, ApiUnreachable, SubmitError, WaitTimeout

app = typer.Typer()


def _json_option(text: str | None, name: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        raise typer.BadParameter(f"not JSON: {error}", param_hint=name) from None


def _wait_for(client: Client, job_id: str, timeout: float) -> dict:
    """The job's JSON once it has ended; exits 3 (api error or unreachable) or 4 (timeout)."""
    with err.status(f"job {job_id}: submitted") as spinner:
        try:
            return client.wait(job_id, timeout, on_status=lambda status: spinner.update(f"job {job_id}: {status}"))
        except ApiError as error:
            err.print(f"[red]{error}[/]", highlight=False)
        except ApiUnreachable as error:
            err.print(f"[red]REST api unreachable:[/] {error}", highlight=False)
        except WaitTimeout as error:
            err.print(f"[red]{error}[/]", highlight=False)
            raise typer.Exit(4) from None
    raise typer.Exit(3)


@app.command()
def submit(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="An OpenQASM 2 or 3 program."),
    ],
    backend: Annotated[str, typer.Option(help="The backend that runs it.")] = "aer",
    counts: Annotated[bool, typer.Option("--counts", help="Ask for counts (the default).")] = False,
    quasi_dist: Annotated[bool, typer.Option("--quasi-dist", help="Ask for quasi_dist.")] = False,
    expval: Annotated[bool, typer.Option("--expval", help="Ask for expval (needs --obs).")] = False,
    obs: Annotated[
        str | None,
        typer.Option(help="Observables, JSON: a list of PUBs, e.g. '[[[\"ZZ\", 1.0]]]'."),
    ] = None,
    shots: Annotated[int | None, typer.Option(min=1)] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    metadata: Annotated[
        str | None,
        typer.Option(help="More metadata, a JSON object (--shots/--seed/--obs win over it)."),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait and print the results.")] = True,
    url: Annotated[
        str | None,
        typer.Option(
            help="The REST base, http://HOST:PORT or https://HOST (TLS) \\[default: QSERVER_URL, else "
            "http://127.0.0.1:8080, the local stack's].",
        ),
    ] = None,
    grpc: Annotated[
        str | None,
        typer.Option(
            help="The gRPC address, HOST:PORT, grpc://HOST:PORT or grpcs://HOST:PORT (TLS) \\[default: with --url, "
            "that server; else QSERVER_GRPC, else the url's host on port 50051 (https: the url's port)].",
        ),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            help="CA certificate (PEM) that checks a TLS server's \\[default: QSERVER_CA_FILE, else the system's]."
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the job.")] = 600.0,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="QSERVER_API_KEY",
            help="Your API key (`qserver keys create`), when authentication is on.",
        ),
    ] = None,
) -> None:
    """Stream FILE over gRPC through nginx, print the job id, wait, print the results."""
    meta = _json_option(metadata, "--metadata") or {}
    if not isinstance(meta, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--metadata")
    for key, value in (("shots", shots), ("seed", seed), ("obs", _json_option(obs, "--obs"))):
        if value is not None:
            meta[key] = value
    if expval and "obs" not in meta:
        raise typer.BadParameter("--expval needs --obs (or obs in --metadata)", param_hint="--obs")
    if not (counts or quasi_dist or expval):
        counts = True
    try:
        qasm = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        err.print(f"[red]{file} is not a UTF-8 text file: send an OpenQASM program[/]")
        raise typer.Exit(2) from None
    try:
        client = Client(url=url, grpc=grpc, api_key=api_key, ca_file=ca_file, timeout=10)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--url/--grpc") from None
    with client:
        try:
            job_id = client.submit(
                qasm,
                backend=backend,
                counts=counts,
                quasi_dist=quasi_dist,
                expval=expval,
                metadata=meta,
                timeout=300,
            )
        except SubmitError as error:
            err.print(f"[red]gRPC {error.code().name}:[/] {error.details()}", highlight=False)
            raise typer.Exit(2) from None
        out.print(job_id, highlight=False)
        if not wait:
            return
        job = _wait_for(client, job_id, timeout)
    if job["status"] != "finished":
        err.print(
            f"[red]job {job['status']}:[/] {job.get('error') or '(no reason given)'}",
            highlight=False,
        )
        raise typer.Exit(1) from None
    wanted = [name for name, on in (("counts", counts), ("quasi_dist", quasi_dist), ("expval", expval)) if on]
    results = job.get("results") or {}
    out.print_json(data={name: results.get(name) for name in wanted})
