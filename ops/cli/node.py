"""`qserver node start|join|status|leave|drain|forget`: this machine as a node of the homelab Ray
cluster, and the lifecycle of every node: drained, then forgotten once offline."""

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
            f"[red]our Ray head already runs[/] (pid {rayhead.gcs_pid(settings)}, port "
            f"{settings.ray_head_port}, state dir {p.root}): nothing was started, and the head keeps "
            "the tags, resources and ports it was started with. To start it with these: "
            "`qserver down` (it stops the stack too; running jobs run again afterwards), then "
            "`qserver node start --head ...`, then `qserver up`.",
            highlight=False,
        )
        raise typer.Exit(1)
    ip = rayhead.node_ip(p.log("ray")) or endpoints.connect_host("0.0.0.0")
    address = endpoints.host_port(ip, settings.ray_head_port)
    labels = nodes.node_labels(spec, nodes.local_versions(), nodes.node_key(settings, "head"))
    out.print(f"Ray head:   {address}  (temp dir {p.ray_temp}, log {p.log('ray')})", highlight=False)
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


def _state(row) -> str:
    if not row["alive"]:
        return "[red]offline[/]"
    if row.get("draining_since") is not None:
        return "[yellow]draining[/]"
    return "[green]alive[/]" + (" (head)" if row.get("head") else "")


@app.command("status")
def node_status() -> None:
    """The cluster's nodes as the dispatcher recorded them in Postgres, offline ones too."""
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
    offline = sum(1 for row in rows if not row["alive"])
    caption = "CPU, GPU, memory (GiB): free/total"
    if offline:
        caption += (
            f"; {offline} offline: their tags still count as known (jobs asking for them wait), "
            "until `qserver node forget ID`"
        )
    table = Table(box=None, pad_edge=False, collapse_padding=True, caption=caption, caption_justify="left")
    for column in ("node", "address", "host", "tags", "state", "CPU", "GPU", "GiB", "jobs", "seen"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["node_id"][:8],
            row["address"],
            row["hostname"] or "",
            ",".join(row["tags"]) or "-",
            _state(row),
            f"{row['cpus_free']:g}/{row['cpus_total']:g}",
            f"{row['gpus_free']:g}/{row['gpus_total']:g}",
            f"{row['memory_free'] / 2**30:.1f}/{row['memory_total'] / 2**30:.1f}",
            str(row["jobs_running"]),
            nodes.ago(row["last_seen"], now),
        )
    out.print(table)


def _show_running(running: int, job_ids: list[str], where: str) -> None:
    more = f" (and {running - len(job_ids)} more)" if running > len(job_ids) else ""
    err.print(f"{running} job(s) running on {where}: {', '.join(job_ids)}{more}", highlight=False)


@app.command("leave")
def node_leave(
    force: Annotated[
        bool, typer.Option("--force", help="Leave even while jobs run here (they run again elsewhere).")
    ] = False,
) -> None:
    """Stop the Ray node that `qserver node join` started here (only its processes); refused
    while jobs run on it, unless --force (`qserver node drain` lets them finish first)."""
    from ops import lifecycle, nodes, rayhead

    settings = common.settings_or_exit()
    if rayhead.node_raylet_pid(settings) is not None:
        try:
            row = lifecycle.this_machines_node(settings, settings.database_dsn)
            running, job_ids = (0, []) if row is None else lifecycle.running_on(settings.database_dsn, row["node_id"])
        except nodes.CheckUnavailable as error:
            err.print(f"[yellow]![/] could not check for jobs running here: {error}", highlight=False)
        else:
            if row is None:
                err.print(
                    "[yellow]![/] the dispatcher has not recorded this node: could not check for jobs running here"
                )
            elif running:
                _show_running(running, job_ids, f"this node ({row['node_id'][:12]})")
                if not force:
                    err.print(
                        "[red]not leaving:[/] `qserver node drain` lets them finish, then stops the node; "
                        "`qserver node leave --force` stops it now (its jobs run again on another node, "
                        "an attempt counted, as when a node is lost).",
                        highlight=False,
                    )
                    raise typer.Exit(1)
                err.print("[yellow]![/] --force: leaving; these jobs run again on another node", highlight=False)
    stopped = rayhead.leave_node(settings)
    if not stopped:
        err.print(
            "no node started by `qserver node join` runs here "
            f"(state dir {settings.state_dir}); the head stops with `qserver down`."
        )
        return
    err.print(f"left the cluster: stopped {len(stopped)} Ray processes ({', '.join(map(str, stopped))})")


@app.command("drain")
def node_drain(
    node_id: Annotated[
        str | None,
        typer.Argument(help="The node (4 or more leading hex digits of its id) \\[default: this machine's]."),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the node has left.")] = True,
    timeout: Annotated[float, typer.Option("--timeout", min=0, help="Seconds to wait; 0: until it has left.")] = 0.0,
) -> None:
    """No new jobs go to the node; the running ones finish; then the dispatcher stops it."""
    from ops import lifecycle, nodes, rayhead

    settings = common.settings_or_exit()
    dsn = settings.database_dsn
    try:
        if node_id is None:
            row = lifecycle.this_machines_node(settings, dsn)
            if row is None or not row["alive"] or rayhead.node_raylet_pid(settings) is None:
                err.print(
                    "[red]no node that `qserver node join` started here is in the cluster;[/] name "
                    "one: `qserver node drain NODE_ID` (`qserver node status` lists them)",
                    highlight=False,
                )
                raise typer.Exit(2)
        else:
            row = lifecycle.find_node(dsn, node_id)
        lifecycle.request_drain(dsn, row)
        short = row["node_id"][:12]
        err.print(
            f"draining node {short} ({row['address']}, tags {','.join(row['tags']) or '-'}): no new "
            "job goes there; the dispatcher stops it once its running jobs have ended",
            highlight=False,
        )
        if not wait:
            err.print(
                f"`qserver node status` shows it draining until it leaves (then offline: "
                f"`qserver node forget {short}`)",
                highlight=False,
            )
            return

        def report(progress) -> None:
            if progress.alive and progress.running:
                _show_running(progress.running, progress.job_ids, f"node {short}")
            elif progress.alive and progress.draining:
                err.print(f"no job runs on node {short}: waiting for the dispatcher to stop it", highlight=False)

        last = lifecycle.wait_drained(dsn, row["node_id"], timeout_s=timeout, report=report)
    except nodes.NodeError as error:
        err.print(f"[red]{error}[/]", highlight=False)
        raise typer.Exit(2 if isinstance(error, lifecycle.BadNodeId) else 1) from None
    except nodes.CheckUnavailable as error:
        err.print(f"[red]cannot reach the nodes:[/] {error}", highlight=False)
        raise typer.Exit(1) from None
    if last.cancelled:
        err.print(
            f"[red]the dispatcher cancelled the drain of node {short}:[/] its own Ray connection, or the "
            "runner that owns every running job's task, lives there (its log says which); `qserver down` "
            "stops the stack instead",
            highlight=False,
        )
        raise typer.Exit(1)
    if last.alive:
        err.print(
            f"[yellow]node {short} still draining after {timeout:g} s[/] ({last.running} job(s) running); "
            "the dispatcher goes on with it (`qserver node status`)",
            highlight=False,
        )
        raise typer.Exit(1)
    if rayhead.node_raylet_pid(settings) is not None and row.get("node_key") == nodes.node_key(settings, "node"):
        rayhead.leave_node(settings)  # what the stopped raylet left of its session here
    out.print(
        f"node {short} drained and left the cluster; `qserver node forget {short}` removes its row", highlight=False
    )


@app.command("forget")
def node_forget(
    node_ids: Annotated[
        list[str] | None, typer.Argument(help="Offline nodes (4 or more leading hex digits of their ids).")
    ] = None,
    all_offline: Annotated[bool, typer.Option("--all-offline", help="Forget every offline node.")] = False,
) -> None:
    """Remove offline nodes from the record: their tags, GPUs and memory stop counting as known."""
    from ops import lifecycle, nodes

    settings = common.settings_or_exit()
    dsn = settings.database_dsn
    if not node_ids and not all_offline:
        err.print("name the nodes to forget (`qserver node status` lists them), or --all-offline")
        raise typer.Exit(2)
    try:
        rows = lifecycle.offline_nodes(dsn) if all_offline else [lifecycle.find_node(dsn, i) for i in node_ids or []]
        gone: set[str] = set()
        for row in rows:
            lost = lifecycle.forget(dsn, row)
            gone.update(lost)
            out.print(
                f"forgot node {row['node_id'][:12]} ({row['address']}, tags {','.join(row['tags']) or '-'})",
                highlight=False,
            )
    except nodes.NodeError as error:
        err.print(f"[red]{error}[/]", highlight=False)
        raise typer.Exit(2 if isinstance(error, lifecycle.BadNodeId) else 1) from None
    except nodes.CheckUnavailable as error:
        err.print(f"[red]cannot reach the nodes:[/] {error}", highlight=False)
        raise typer.Exit(1) from None
    if not rows:
        out.print("no offline node on record")
    if gone:
        shown = ", ".join(sorted(gone))
        err.print(
            f"no node on record offers tag(s) {shown} any more: new jobs asking for them are refused, "
            "and waiting ones fail saying so (the dispatcher decides them again within seconds)",
            highlight=False,
        )
