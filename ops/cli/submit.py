"""`qserver submit FILE`: stream a circuit over gRPC through nginx, wait, print its results."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer

from ops import endpoints
from ops.cli import common
from ops.cli.common import err, out
from protos.generated import jobs_pb2, jobs_pb2_grpc

app = typer.Typer()


CHUNK_CHARS = 16 * 1024  # the upstream client's chunk size
TERMINAL = ("finished", "failed", "canceled")


def _json_option(text: str | None, name: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        raise typer.BadParameter(f"not JSON: {error}", param_hint=name) from None


def _requests(properties: jobs_pb2.JobProperties, qasm: str) -> Iterator[jobs_pb2.JobData]:
    yield jobs_pb2.JobData(properties=properties)
    for start in range(0, len(qasm), CHUNK_CHARS):
        yield jobs_pb2.JobData(qasmChunk=qasm[start : start + CHUNK_CHARS])


def _get_job(host: str, port: int, job_id: str, api_key: str | None = None) -> dict:
    request = urllib.request.Request(f"http://{endpoints.host_port(host, port)}/api/v1/job/{job_id}")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    with endpoints.NO_PROXY.open(request, timeout=10) as response:
        return json.loads(response.read())


def _wait_for(host: str, port: int, job_id: str, timeout: float, api_key: str | None = None) -> dict:
    deadline = time.monotonic() + timeout
    interval = 0.05
    with err.status(f"job {job_id}: submitted") as spinner:
        while True:
            try:
                job = _get_job(host, port, job_id, api_key)
            except urllib.error.HTTPError as error:
                err.print(
                    f"[red]GET /api/v1/job/{job_id}: HTTP {error.code}[/] "
                    f"{error.read().decode(errors='replace')}"
                )
                raise typer.Exit(3) from None
            except OSError as error:
                err.print(f"[red]REST api at {host}:{port} unreachable:[/] {error}")
                raise typer.Exit(3) from None
            spinner.update(f"job {job_id}: {job.get('status')}")
            if job.get("status") in TERMINAL:
                return job
            if time.monotonic() > deadline:
                err.print(f"[red]job {job_id} still {job.get('status')} after {timeout:.0f} s[/]")
                raise typer.Exit(4) from None
            time.sleep(interval)
            interval = min(interval * 1.5, 1.0)


@app.command()
def submit(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="An OpenQASM 2 or 3 program."
        ),
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
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait and print the results.")
    ] = True,
    host: Annotated[
        str | None, typer.Option(help="QServer's host [default: QSERVER_NGINX_BIND].")
    ] = None,
    grpc_port: Annotated[
        int | None, typer.Option(help="gRPC port [default: QSERVER_NGINX_GRPC_PORT].")
    ] = None,
    http_port: Annotated[
        int | None, typer.Option(help="REST port [default: QSERVER_NGINX_HTTP_PORT].")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the job.")] = 600.0,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="QSERVER_API_KEY", help="Your API key (`qserver keys create`), when authentication is on."),
    ] = None,
) -> None:
    """Stream FILE over gRPC through nginx, print the job id, wait, print the results."""
    settings = common.settings_or_exit()
    host = host or endpoints.connect_host(settings.nginx_bind)
    grpc_port = grpc_port or settings.nginx_grpc_port
    http_port = http_port or settings.nginx_http_port
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
    properties = jobs_pb2.JobProperties(
        resultTypeCounts=counts,
        resultTypeQuasiDist=quasi_dist,
        resultTypeExpVal=expval,
        targetSimulator=backend,
        metadata=json.dumps(meta),
    )
    try:
        qasm = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        err.print(f"[red]{file} is not a UTF-8 text file: send an OpenQASM program[/]")
        raise typer.Exit(2) from None
    target = endpoints.host_port(host, grpc_port)
    try:
        with grpc.insecure_channel(
            target, compression=grpc.Compression.Gzip, options=[("grpc.enable_http_proxy", 0)]
        ) as channel:
            pending = jobs_pb2_grpc.JobsStub(channel).AddJob(
                _requests(properties, qasm), timeout=300,
                metadata=[("authorization", f"Bearer {api_key}")] if api_key else None,
            )
    except grpc.RpcError as error:
        err.print(f"[red]gRPC {error.code().name}:[/] {error.details()}", highlight=False)
        raise typer.Exit(2) from None
    out.print(pending.id, highlight=False)
    if not wait:
        return
    job = _wait_for(host, http_port, pending.id, timeout, api_key)
    if job["status"] != "finished":
        err.print(
            f"[red]job {job['status']}:[/] {job.get('error') or '(no reason given)'}",
            highlight=False,
        )
        raise typer.Exit(1) from None
    wanted = [
        name
        for name, on in (("counts", counts), ("quasi_dist", quasi_dist), ("expval", expval))
        if on
    ]
    results = job.get("results") or {}
    out.print_json(data={name: results.get(name) for name in wanted})
