"""`qserver node start|join|status|leave`: this machine as a node of the homelab Ray cluster."""

from __future__ import annotations

import os
from datetime import UTC
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from core.settings import Settings
from ops import endpoints
from ops.cli import common
from ops.cli.common import component_failed, err, out

app = typer.Typer(
    help="This machine as a node of the homelab Ray cluster: start a head, join one, leave.",
    no_args_is_help=True,
)


TagOpt = Annotated[
    list[str] | None,
    typer.Option("--tag", help="A node tag (repeat the option): Ray custom resource tag:NAME."),
]
GpusOpt = Annotated[int | None, typer.Option("--num-gpus", min=0, help="GPUs to offer \\[default: Ray's count].")]
CpusOpt = Annotated[int | None, typer.Option("--num-cpus", min=0, help="CPUs to offer \\[default: Ray's count].")]
MemoryOpt = Annotated[
    int | None,
    typer.Option("--memory", min=1, help="Bytes of memory for jobs \\[default: Ray's: the available memory]."),
]
PortOpt = Annotated[
    int | None, typer.Option(min=1, max=65535, help="Fixed port (for a firewall) \\[default: Ray's choice].")
]


def _node_spec(
    tags: list[str] | None,
    num_gpus: int | None,
    num_cpus: int | None,
    memory: int | None,
    ports: dict[str, int | None],
):
    from ops import nodes

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
    from ops import nodes

    parts = [f"tag {tag} (resource {nodes.tag_resource(tag)})" for tag in spec.tags]
    for name, value in (("CPUs", spec.num_cpus), ("GPUs", spec.num_gpus)):
        if value is not None:
            parts.append(f"{value} {name}")
    if spec.memory is not None:
        parts.append(f"{nodes.human_bytes(spec.memory)} memory")
    return ", ".join(parts) or "Ray's own count of CPUs, GPUs and memory, no tags"


@app.command("start")
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
    from ops import nodes, rayhead, stack
    from ops.statedir import ComponentFailed, paths

    if not head:
        err.print(
            "`qserver node start` starts the head only (--head); "
            "another machine joins with `qserver node join HEAD_ADDRESS`."
        )
        raise typer.Exit(2)
    settings = common.settings_or_exit()
    spec = _node_spec(
        tag,
        num_gpus,
        num_cpus,
        memory,
        {
            "node-manager-port": node_manager_port,
            "object-manager-port": object_manager_port,
            "min-worker-port": min_worker_port,
            "max-worker-port": max_worker_port,
        },
    )
    p = paths(settings)
    try:
        child = rayhead.launch(settings, stack.child_env(settings), spec)
        rayhead.finish(settings, child)
    except ComponentFailed as error:
        component_failed(error)
        raise typer.Exit(1) from None
    if child is None:
        err.print(
            f"[yellow]![/] our Ray head already runs (pid {rayhead.gcs_pid(settings)}): it keeps the "
            "tags and resources it was started with (`qserver down` stops it).",
            highlight=False,
        )
    ip = rayhead.node_ip(p.log("ray")) or endpoints.connect_host("0.0.0.0")
    address = endpoints.host_port(ip, settings.ray_head_port)
    labels = nodes.node_labels(spec, nodes.local_versions())
    out.print(f"Ray head:   {address}  (temp dir {p.ray_temp}, log {p.log('ray')})", highlight=False)
    if child is not None:
        out.print(f"offers:     {_offers(spec)}", highlight=False)
        out.print(f"labels:     {', '.join(f'{k}={v}' for k, v in labels.items())}", highlight=False)
    out.print(f"token:      {p.ray_token}  (mode 600; every node needs a copy)", highlight=False)
    out.print("On each other machine, copy the token, then join:", highlight=False)
    out.print(
        f"  scp {ip}:{p.ray_token} ~/.qserver/ray_auth_token && chmod 600 ~/.qserver/ray_auth_token", highlight=False
    )
    out.print(
        f"  QSERVER_DATABASE_URL=postgresql://USER:PASSWORD@{ip}:5432/qserver "
        f"qserver node join {address} --token-file ~/.qserver/ray_auth_token [--tag NAME] [--num-gpus N]",
        highlight=False,
    )


@app.command("join")
def node_join(
    head_address: Annotated[str, typer.Argument(help="The head's GCS address, HOST:PORT (e.g. 192.168.1.10:6380).")],
    tag: TagOpt = None,
    num_gpus: GpusOpt = None,
    num_cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="The head's Ray token, copied from its ~/.qserver/ray_auth_token "
            "\\[default: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, <state dir>/ray_auth_token]."
        ),
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
    from ops import nodes, rayhead
    from ops.statedir import ComponentFailed

    settings = common.settings_or_exit()
    spec = _node_spec(
        tag,
        num_gpus,
        num_cpus,
        memory,
        {
            "node-manager-port": node_manager_port,
            "object-manager-port": object_manager_port,
            "min-worker-port": min_worker_port,
            "max-worker-port": max_worker_port,
        },
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
        component_failed(error)
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
    from ops import nodes

    here = nodes.local_versions()
    try:
        head = nodes.head_versions(settings.database_dsn, head_host)
    except nodes.CheckUnavailable as error:
        why = str(error)
    else:
        why = (
            None
            if head is not None
            else "Postgres has no node versions yet (the dispatcher reports them once `qserver up` runs on the head)"
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


@app.command("status")
def node_status() -> None:
    """The cluster's nodes as the dispatcher recorded them in Postgres."""
    from datetime import datetime

    from ops import nodes, rayhead

    settings = common.settings_or_exit()
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
    now = datetime.now(UTC)
    table = Table(
        box=None,
        pad_edge=False,
        collapse_padding=True,
        caption="CPU, GPU, memory (GiB): free/total",
        caption_justify="left",
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


@app.command("leave")
def node_leave() -> None:
    """Stop the Ray node that `qserver node join` started here (only its processes)."""
    from ops import rayhead

    settings = common.settings_or_exit()
    stopped = rayhead.leave_node(settings)
    if not stopped:
        err.print(
            "no node started by `qserver node join` runs here "
            f"(state dir {settings.state_dir}); the head stops with `qserver down`."
        )
        return
    err.print(f"left the cluster: stopped {len(stopped)} Ray processes ({', '.join(map(str, stopped))})")
