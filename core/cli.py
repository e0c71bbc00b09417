"""``qserver``: start/stop the local stack, homelab nodes, API keys, upgrade the schema, submit a circuit and wait for it."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from rich.console import Console
from rich.table import Table

from core import services
from core.settings import Settings, get_settings
from protos.generated import jobs_pb2, jobs_pb2_grpc

app = typer.Typer(
    help="QServer: run quantum circuits on a homelab Ray cluster.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="The Postgres schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

out = Console(soft_wrap=True)  # results: stdout, so they can be piped
err = Console(stderr=True, soft_wrap=True)  # progress, errors: never wrapped mid-message

CHUNK_CHARS = 16 * 1024  # the upstream client's chunk size
TERMINAL = ("finished", "failed", "canceled")


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _settings() -> Settings:
    try:
        return get_settings()
    except ValueError as error:  # pydantic.ValidationError
        err.print(f"[red]invalid QSERVER_* settings:[/] {error}")
        raise typer.Exit(2) from None


# --- the stack ---------------------------------------------------------------------------------


@app.command()
def up() -> None:
    """Start Postgres/RabbitMQ if needed, a Ray head, ingest, api, dispatcher and nginx."""
    from core import stack  # alembic, SQLAlchemy: only for the commands that need them
    from core.statedir import ComponentFailed

    try:
        stack.up(_settings(), console=err)
    except ComponentFailed as error:
        err.print(f"[red bold]{error.component} did not start:[/] {error.reason}")
        if error.log_path is not None:
            err.rule(f"last lines of {error.log_path}")
            err.print(error.log_tail or "(empty)", markup=False, highlight=False)
            err.rule()
        err.print("Fix it and run `qserver up` again; `qserver down` stops what did start.")
        raise typer.Exit(1) from None
    except services.SetupError as error:
        err.print(f"[red bold]setup failed:[/] {error}", markup=True, highlight=False)
        raise typer.Exit(1) from None


@app.command()
def down() -> None:
    """Stop nginx, dispatcher, api, ingest and the Ray head that `up` started."""
    from core import stack

    stack.down(_settings())
    err.print("QServer stopped (Postgres and RabbitMQ keep running).")


@app.command()
def status() -> None:
    """Show each component: running or stopped, pid, address."""
    table = Table(show_header=True)
    for column in ("component", "state", "pid", "address", ""):
        table.add_column(column)
    from core import stack

    components = stack.status(_settings())
    for part in components:
        colour = "green" if part.running else "red"
        table.add_row(
            part.name, f"[{colour}]{part.state}[/]", str(part.pid or ""), part.address, part.detail
        )
    out.print(table)
    if not all(part.running for part in components):
        raise typer.Exit(1) from None


@app.command()
def certs(
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="A DNS name or IP address the server certificate covers (repeat the option); "
            "default: localhost, 127.0.0.1, ::1 and this machine's host name.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Make a new CA and server certificate, replacing any."),
    ] = False,
) -> None:
    """Make a development CA and a server certificate for TLS on QSERVER_NGINX_TLS_PORT."""
    from core import certs as tls_certs

    settings = _settings()
    try:
        made = tls_certs.make_dev_certs(settings.tls_path, host or None, force=force)
    except (tls_certs.CertError, OSError) as error:
        err.print(f"[red]certs:[/] {error}", highlight=False)
        raise typer.Exit(2) from None
    dns, ips = tls_certs.san_hosts(tls_certs.load_cert(made.server_cert))
    expires = tls_certs.load_cert(made.server_cert).not_valid_after_utc.date().isoformat()
    for label, path in (
        ("CA certificate", made.ca_cert),
        ("CA key", made.ca_key),
        ("server certificate", made.server_cert),
        ("server key", made.server_key),
    ):
        out.print(f"{label + ':':<20} {path}", highlight=False)
    out.print(
        f"{'covers:':<20} {', '.join([*dns, *map(str, ips)])} (until {expires})", highlight=False
    )
    out.print(
        f"`qserver up` serves REST and gRPC over TLS on port {settings.nginx_tls_port} "
        "(it reloads a running nginx). A client trusts the CA with:",
        highlight=False,
    )
    out.print(
        f"  GRPC_DEFAULT_SSL_ROOTS_FILE_PATH={made.ca_cert} REQUESTS_CA_BUNDLE={made.ca_cert}",
        highlight=False,
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the database if missing and migrate it to the newest schema."""
    from core import schema

    settings = _settings()
    revision = schema.upgrade(settings.database_dsn)
    err.print(f"database schema at revision {revision}")


@app.command()
def janitor(
    days: Annotated[
        float | None,
        typer.Option(min=0, help="Delete finished/failed/canceled jobs older than this [default: QSERVER_RETENTION_DAYS]."),
    ] = None,
) -> None:
    """Delete jobs in a terminal status older than the retention (their history rows stay)."""
    from core import store

    settings = _settings()
    older_than = settings.retention_days if days is None else days
    with store.connect_sync(settings.database_dsn) as conn:
        deleted = store.delete_expired_jobs_sync(conn, older_than_days=older_than)
    out.print(f"deleted {deleted} jobs finished more than {older_than:g} days ago (history kept)")


# --- API keys ------------------------------------------------------------------------------------

keys_app = typer.Typer(
    help="API keys (authentication): make one (needs QSERVER_AUTH_SECRET), list them, revoke one.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


def _db_or_exit(settings: Settings):
    """A connection to a database at the newest schema, or exit 1 saying what is wrong."""
    import psycopg

    from core import schema, store
    from core.errors import SchemaOutOfDate

    try:
        schema.check(settings.database_dsn)
        return store.connect_sync(settings.database_dsn)
    except (psycopg.OperationalError, SchemaOutOfDate) as error:
        err.print(f"[red]cannot use the database:[/] {error}", highlight=False)
        raise typer.Exit(1) from None


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="The user the key belongs to (their jobs are theirs).")],
    role: Annotated[
        str, typer.Option("--role", help="user: their own jobs; admin: every job, plugins, the cluster.")
    ] = "user",
) -> None:
    """Make an API key for NAME and print it, once: only its keyed hash is stored."""
    from core import auth
    from core.errors import UnsafeSettings

    settings = _settings()
    try:
        auth.check_owner(name)
        auth.check_role(role)
        secret = auth.check_secret(settings.auth_secret)
    except (ValueError, UnsafeSettings) as error:
        err.print(f"[red]{error}[/]", highlight=False)
        raise typer.Exit(2) from None
    with _db_or_exit(settings) as conn:
        key_id, key = auth.create_key_sync(conn, secret=secret, owner=name, role=role)
    out.print(key, highlight=False)
    err.print(
        f"key {key_id} for {name} ({role}). This is the only time the key is shown: store it now. "
        "Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
        highlight=False,
    )


@keys_app.command("list")
def keys_list() -> None:
    """Every key: id, owner, role, created, revoked, last used (never the key or its hash)."""
    from core import store

    settings = _settings()
    with _db_or_exit(settings) as conn:
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
            row["key_id"], row["owner"], row["role"], when(row["created_at"]),
            when(row["revoked_at"]), when(row["last_used_at"]),
        )
    # one line per key, piped too (a console's own width is 80 columns when not a terminal)
    Console(width=max(out.width, 200), highlight=False).print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id `qserver keys list` shows.")],
) -> None:
    """Revoke a key: refused from then on (within QSERVER_AUTH_CACHE_TTL_S in running services)."""
    from core import store

    settings = _settings()
    with _db_or_exit(settings) as conn:
        row = store.revoke_api_key_sync(conn, key_id=key_id)
    if row is None:
        err.print(f"[red]no API key has id {key_id!r}[/] (`qserver keys list` shows them)", highlight=False)
        raise typer.Exit(1)
    when = row["revoked_at"].astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if row["newly"]:
        out.print(f"revoked key {row['key_id']} of {row['owner']} at {when}", highlight=False)
    else:
        out.print(f"key {row['key_id']} of {row['owner']} was already revoked at {when}", highlight=False)


# --- homelab nodes ---------------------------------------------------------------------------

node_app = typer.Typer(
    help="This machine as a node of the homelab Ray cluster: start a head, join one, leave.",
    no_args_is_help=True,
)
app.add_typer(node_app, name="node")

TagOpt = Annotated[
    list[str] | None,
    typer.Option("--tag", help="A node tag (repeat the option): Ray custom resource tag:NAME."),
]
GpusOpt = Annotated[int | None, typer.Option("--num-gpus", min=0, help="GPUs to offer \\[default: Ray's count].")]
CpusOpt = Annotated[int | None, typer.Option("--num-cpus", min=0, help="CPUs to offer \\[default: Ray's count].")]
MemoryOpt = Annotated[
    int | None, typer.Option("--memory", min=1, help="Bytes of memory for jobs \\[default: Ray's: the available memory].")
]
PortOpt = Annotated[int | None, typer.Option(min=1, max=65535, help="Fixed port (for a firewall) \\[default: Ray's choice].")]


def _node_spec(
    tags: list[str] | None,
    num_gpus: int | None,
    num_cpus: int | None,
    memory: int | None,
    ports: dict[str, int | None],
):
    from core import nodes

    try:
        return nodes.NodeSpec(
            tags=tuple(dict.fromkeys(tags or ())),
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            memory=memory,
            ports={name: port for name, port in ports.items() if port is not None},
        )
    except nodes.NodeError as error:
        err.print(f"[red]{error}[/]", highlight=False)
        raise typer.Exit(2) from None


def _offers(spec) -> str:
    from core import nodes

    parts = [f"tag {tag} (resource {nodes.tag_resource(tag)})" for tag in spec.tags]
    for name, value in (("CPUs", spec.num_cpus), ("GPUs", spec.num_gpus)):
        if value is not None:
            parts.append(f"{value} {name}")
    if spec.memory is not None:
        parts.append(f"{nodes.human_bytes(spec.memory)} memory")
    return ", ".join(parts) or "Ray's own count of CPUs, GPUs and memory, no tags"


def _component_failed(error) -> None:
    err.print(f"[red bold]{error.component} did not start:[/] {error.reason}", highlight=False)
    if error.log_path is not None:
        err.rule(f"last lines of {error.log_path}")
        err.print(error.log_tail or "(empty)", markup=False, highlight=False)
        err.rule()


@node_app.command("start")
def node_start(
    head: Annotated[bool, typer.Option("--head", help="Start this machine's Ray head.")] = False,
    tag: TagOpt = None,
    num_gpus: GpusOpt = None,
    num_cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    node_manager_port: PortOpt = None,
    object_manager_port: PortOpt = None,
    min_worker_port: PortOpt = None,
    max_worker_port: PortOpt = None,
) -> None:
    """Start the Ray head as `qserver up` does (token auth, version labels), with tags."""
    from core import nodes, rayhead, stack
    from core.statedir import ComponentFailed, paths

    if not head:
        err.print(
            "`qserver node start` starts the head only (--head); "
            "another machine joins with `qserver node join HEAD_ADDRESS`."
        )
        raise typer.Exit(2)
    settings = _settings()
    spec = _node_spec(
        tag, num_gpus, num_cpus, memory,
        {"node-manager-port": node_manager_port, "object-manager-port": object_manager_port,
         "min-worker-port": min_worker_port, "max-worker-port": max_worker_port},
    )
    p = paths(settings)
    try:
        child = rayhead.launch(settings, stack.child_env(settings), spec)
        rayhead.finish(settings, child)
    except ComponentFailed as error:
        _component_failed(error)
        raise typer.Exit(1) from None
    if child is None:
        err.print(
            f"[yellow]![/] our Ray head already runs (pid {rayhead.gcs_pid(settings)}): it keeps the "
            "tags and resources it was started with (`qserver down` stops it).",
            highlight=False,
        )
    ip = rayhead.node_ip(p.log("ray")) or services.connect_host("0.0.0.0")
    address = services.host_port(ip, settings.ray_head_port)
    labels = nodes.node_labels(spec, nodes.local_versions())
    out.print(f"Ray head:   {address}  (temp dir {p.ray_temp}, log {p.log('ray')})", highlight=False)
    if child is not None:
        out.print(f"offers:     {_offers(spec)}", highlight=False)
        out.print(f"labels:     {', '.join(f'{k}={v}' for k, v in labels.items())}", highlight=False)
    out.print(f"token:      {p.ray_token}  (mode 600; every node needs a copy)", highlight=False)
    out.print("On each other machine, copy the token, then join:", highlight=False)
    out.print(f"  scp {ip}:{p.ray_token} ~/.qserver/ray_auth_token && chmod 600 ~/.qserver/ray_auth_token", highlight=False)
    out.print(
        f"  QSERVER_DATABASE_URL=postgresql://USER:PASSWORD@{ip}:5432/qserver "
        f"qserver node join {address} --token-file ~/.qserver/ray_auth_token [--tag NAME] [--num-gpus N]",
        highlight=False,
    )


@node_app.command("join")
def node_join(
    head_address: Annotated[str, typer.Argument(help="The head's GCS address, HOST:PORT (e.g. 192.168.1.10:6380).")],
    tag: TagOpt = None,
    num_gpus: GpusOpt = None,
    num_cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    token_file: Annotated[
        Path | None,
        typer.Option(help="The head's Ray token, copied from its ~/.qserver/ray_auth_token "
                     "\\[default: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, <state dir>/ray_auth_token]."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Join even when versions differ or cannot be checked.")
    ] = False,
    node_manager_port: PortOpt = None,
    object_manager_port: PortOpt = None,
    min_worker_port: PortOpt = None,
    max_worker_port: PortOpt = None,
) -> None:
    """Join this machine to the head's Ray cluster after checking it runs the same versions."""
    from core import nodes, rayhead
    from core.statedir import ComponentFailed

    settings = _settings()
    spec = _node_spec(
        tag, num_gpus, num_cpus, memory,
        {"node-manager-port": node_manager_port, "object-manager-port": object_manager_port,
         "min-worker-port": min_worker_port, "max-worker-port": max_worker_port},
    )
    try:
        head_host, _ = nodes.split_address(head_address)
        token, token_from = nodes.token_env(settings, token_file, dict(os.environ))
    except nodes.NodeError as error:
        err.print(f"[red]{error}[/]", highlight=False)
        raise typer.Exit(2) from None
    warning = nodes.database_warning(dict(os.environ), head_host)
    if warning:
        err.print(f"[yellow]![/] {warning}", highlight=False)
    _check_versions(settings, head_host, force)
    running = rayhead.node_raylet_pid(settings)
    if running is not None:
        err.print(
            f"[red]this machine already runs a node that `qserver node join` started (raylet pid "
            f"{running}); `qserver node leave` first.[/]",
            highlight=False,
        )
        raise typer.Exit(1)
    env = nodes.join_env(dict(os.environ), token)
    try:
        with err.status(f"joining {head_address}"):
            ip = rayhead.join_node(settings, head_address, spec, env)
    except ComponentFailed as error:
        _component_failed(error)
        raise typer.Exit(1) from None
    out.print(
        f"joined {head_address} as node {ip or '?'} (token from {token_from}), offering {_offers(spec)}",
        highlight=False,
    )
    out.print(
        f"log {settings.state_dir}/logs/node.log; check with `qserver node status`; "
        "`qserver node leave` stops this node.",
        highlight=False,
    )


def _check_versions(settings: Settings, head_host: str, force: bool) -> None:
    """Compare this machine's versions with the head's row in Postgres; exit 1 unless --force."""
    from core import nodes

    here = nodes.local_versions()
    try:
        head = nodes.head_versions(settings.database_dsn, head_host)
    except nodes.CheckUnavailable as error:
        why = str(error)
    else:
        why = (
            None
            if head is not None
            else "Postgres has no node versions yet (the dispatcher reports them once `qserver up` "
            "runs on the head)"
        )
    if why is not None:
        err.print(f"[yellow]![/] could not check the versions against the head: {why}", highlight=False)
        if not force:
            err.print("not joining; `--force` joins without the check.")
            raise typer.Exit(1)
        err.print("[yellow]![/] --force: joining without the version check", highlight=False)
        return
    differences = nodes.compare_versions(here, head.versions)
    where = f"node {head.node_id[:12]} at {head.address}" + (
        "" if head.matched_address else f" (no node at {head_host} reported; an alive one)"
    )
    if not differences:
        err.print(
            f"[green]✓[/] same QServer {here['qserver']}, Python {here['python']}, Ray {here['ray']} "
            f"as the head ({where})",
            highlight=False,
        )
        return
    table = Table(title=f"versions that differ from the head's ({where})")
    for column in ("", "this machine", "head"):
        table.add_column(column)
    for difference in differences:
        table.add_row(difference.what, difference.here, difference.head)
    err.print(table)
    if not force:
        err.print(
            "[red]not joining:[/] every node runs the head's QServer, Python and Ray "
            "(install the same checkout with ./.ci/install.sh); `--force` joins anyway.",
            highlight=False,
        )
        raise typer.Exit(1)
    err.print("[yellow]![/] --force: joining with different versions", highlight=False)


@node_app.command("status")
def node_status() -> None:
    """The cluster's nodes as the dispatcher recorded them in Postgres."""
    from datetime import datetime, timezone

    from core import nodes, rayhead

    settings = _settings()
    try:
        rows = nodes.list_nodes(settings.database_dsn)
    except nodes.CheckUnavailable as error:
        err.print(f"[red]cannot read the nodes:[/] {error}", highlight=False)
        raise typer.Exit(1) from None
    local = rayhead.node_raylet_pid(settings)
    if local is not None:
        err.print(f"this machine runs a node started by `qserver node join` (raylet pid {local})")
    if not rows:
        out.print(
            "no nodes in Postgres yet: the dispatcher hasn't reported (it runs with `qserver up` "
            "on the head and records every Ray node it sees)."
        )
        return
    now = datetime.now(timezone.utc)
    table = Table(
        box=None, pad_edge=False, collapse_padding=True,
        caption="CPU, GPU, memory (GiB): free/total", caption_justify="left",
    )
    for column in ("node", "address", "host", "tags", "alive", "CPU", "GPU", "GiB", "jobs", "seen"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["node_id"][:8],
            row["address"],
            row["hostname"] or "",
            ",".join(row["tags"]) or "-",
            "[green]yes[/]" if row["alive"] else "[red]no[/]",
            f"{row['cpus_free']:g}/{row['cpus_total']:g}",
            f"{row['gpus_free']:g}/{row['gpus_total']:g}",
            f"{row['memory_free'] / 2**30:.1f}/{row['memory_total'] / 2**30:.1f}",
            str(row["jobs_running"]),
            nodes.ago(row["last_seen"], now),
        )
    out.print(table)


@node_app.command("leave")
def node_leave() -> None:
    """Stop the Ray node that `qserver node join` started here (only its processes)."""
    from core import rayhead

    settings = _settings()
    stopped = rayhead.leave_node(settings)
    if not stopped:
        err.print(
            "no node started by `qserver node join` runs here "
            f"(state dir {settings.state_dir}); the head stops with `qserver down`."
        )
        return
    err.print(f"left the cluster: stopped {len(stopped)} Ray processes ({', '.join(map(str, stopped))})")


# --- submit ------------------------------------------------------------------------------------


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
    request = urllib.request.Request(f"http://{services.host_port(host, port)}/api/v1/job/{job_id}")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    with services.NO_PROXY.open(request, timeout=10) as response:
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
    settings = _settings()
    host = host or services.connect_host(settings.nginx_bind)
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
    target = services.host_port(host, grpc_port)
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


if __name__ == "__main__":
    sys.exit(app())
