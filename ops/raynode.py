"""A Ray node in a container (compose.yml): `ray start` as `qserver node` builds it, and its health.

    python -m ops.raynode start head|worker|driver   # head, worker: `ray start --block`, exec'd
    python -m ops.raynode health                     # this container's raylet (and GCS) answer

`start` builds the options the way `qserver node start/join` does (ops/nodes.py: tags as Ray
resources and labels, the version labels; ops/rayhead.py: OMP_NUM_THREADS set to the node's
CPUs), from the environment: QSERVER_NODE_TAGS (comma- or space-separated), QSERVER_NODE_CPUS,
QSERVER_NODE_GPUS, QSERVER_NODE_MEMORY (bytes for tasks; default: computed from the container's
memory limit, so Ray never hands out more than the container has), QSERVER_NODE_MANAGER_PORT
(the raylet's port, default NODE_MANAGER_PORT), and the QSERVER_* settings
(QSERVER_RAY_HEAD_PORT, QSERVER_RAY_ADDRESS, QSERVER_RAY_DASHBOARD_HOST/PORT). A `driver` node
(the dispatcher's container) offers no CPUs or GPUs and returns once it has joined.

`health` is cheap (no Ray import; `ray health-check` took 3-13 s on a busy 2-core host): the
raylet of this container runs and accepts a connection on its node manager port, and where a
GCS runs here (the head) it accepts one on its port.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import psutil
import typer

from ops import procs

if TYPE_CHECKING:
    from core.settings import Settings

GIB = 1024**3
MIB = 1024**2
# Of a container's memory limit: the object store takes at most this share (Ray's default)...
OBJECT_STORE_SHARE = 0.3
# ...and at most this share of /dev/shm, where it lives (shm_size in compose.yml).
SHM_SHARE = 0.9
# ...and the raylet, idle workers and Ray's agents keep this much (at least RESERVE_MIN).
RESERVE_SHARE = 0.1
RESERVE_MIN = 256 * MIB
OBJECT_STORE_MIN = 80 * MIB  # Ray refuses a smaller object store (75 MiB)
# The raylet's port in a container (its own network namespace): fixed, so `health` knows it.
NODE_MANAGER_PORT = 6381
CGROUP_V2 = Path("/sys/fs/cgroup/memory.max")
CGROUP_V1 = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")

app = typer.Typer(help="A Ray node in a container: start it, check it.", no_args_is_help=True)


class NodeConfigError(ValueError):
    """A QSERVER_NODE_* value that cannot work; the message says which and why."""


def parse_tags(text: str) -> tuple[str, ...]:
    """QSERVER_NODE_TAGS ("gpu, big" or "gpu big") -> ("gpu", "big"), each checked, no repeats.

    Raises:
        NodeConfigError: a tag is not valid (core/domain.py TAG_RULE).
    """
    from ops import nodes

    tags = tuple(dict.fromkeys(word for word in re.split(r"[\s,]+", text) if word))
    try:
        return tuple(nodes.check_tag(tag) for tag in tags)
    except nodes.NodeError as error:
        raise NodeConfigError(f"QSERVER_NODE_TAGS: {error}") from None


def memory_limit(v2: Path = CGROUP_V2, v1: Path = CGROUP_V1) -> int | None:
    """The container's memory limit in bytes (cgroup v2 ``memory.max``, else v1
    ``memory.limit_in_bytes``), or None when there is none (``max``, or no less than the
    machine's memory)."""
    for path in (v2, v1):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        limit = int(text)
        return None if limit >= psutil.virtual_memory().total else limit
    return None


def shm_bytes(path: str = "/dev/shm") -> int:
    """Size of the shared-memory file system (Ray's object store lives there)."""
    stat = os.statvfs(path)
    return stat.f_blocks * stat.f_frsize


def split_memory(limit: int, shm: int) -> tuple[int, int]:
    """(bytes for tasks, bytes of object store) for a node whose container has ``limit`` bytes
    and ``shm`` bytes of /dev/shm: the object store takes OBJECT_STORE_SHARE of the limit (at
    most SHM_SHARE of /dev/shm), RESERVE_SHARE (at least RESERVE_MIN) stays for Ray's own
    processes, tasks get the rest.

    Raises:
        NodeConfigError: the limit leaves less than RESERVE_MIN for tasks.
    """
    store = max(OBJECT_STORE_MIN, min(int(limit * OBJECT_STORE_SHARE), int(shm * SHM_SHARE)))
    tasks = limit - store - max(RESERVE_MIN, int(limit * RESERVE_SHARE))
    if tasks < RESERVE_MIN:
        raise NodeConfigError(
            f"the container's memory limit ({limit / GIB:.2f} GiB) leaves {max(tasks, 0) / MIB:.0f} MiB for "
            f"jobs after Ray's object store and processes: raise it (mem_limit / deploy.resources.limits.memory)"
        )
    return tasks, store


def _count(name: str, value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        count = int(value)
    except ValueError:
        raise NodeConfigError(f"{name} must be a whole number, got {value!r}") from None
    if count < 0:
        raise NodeConfigError(f"{name} must be 0 or more, got {count}")
    return count


def start_command(
    role: str, env: dict[str, str], settings: Settings, limit: int | None, shm: int = 0
) -> tuple[list[str], dict[str, str]]:
    """The `ray start` argv and its environment for ``role`` (head, worker, driver) in a
    container whose environment is ``env``, memory limit ``limit`` bytes (None: none) and
    /dev/shm ``shm`` bytes.

    Raises:
        NodeConfigError: a QSERVER_NODE_* variable or the memory limit cannot work.
    """
    from ops import nodes, rayhead

    cpus = _count("QSERVER_NODE_CPUS", env.get("QSERVER_NODE_CPUS"))
    gpus = _count("QSERVER_NODE_GPUS", env.get("QSERVER_NODE_GPUS"))
    if role == "driver":
        cpus, gpus = 0, 0  # the dispatcher's node: a Ray driver must run on a node; no task runs there
    memory = _count("QSERVER_NODE_MEMORY", env.get("QSERVER_NODE_MEMORY"))
    port = _count("QSERVER_NODE_MANAGER_PORT", env.get("QSERVER_NODE_MANAGER_PORT")) or NODE_MANAGER_PORT
    extra = []
    if memory is None and limit is not None:
        memory, store = split_memory(limit, shm)
        extra.append(f"--object-store-memory={store}")
    try:
        spec = nodes.NodeSpec(
            tags=parse_tags(env.get("QSERVER_NODE_TAGS", "")),
            num_cpus=cpus,
            num_gpus=gpus,
            memory=memory or None,
            ports={"node-manager-port": port},
        )
    except nodes.NodeError as error:
        raise NodeConfigError(str(error)) from None
    cmd = [rayhead._ray_program(), "start"]
    if role == "head":
        cmd += [
            "--head",
            f"--port={settings.ray_head_port}",
            f"--dashboard-host={settings.ray_dashboard_host}",
            f"--dashboard-port={settings.ray_dashboard_port}",
        ]
    else:
        cmd.append(f"--address={settings.ray_address}")
    if role != "driver":
        cmd.append("--block")
    cmd += [*rayhead._QUIET, *nodes.ray_start_args(spec), *extra]
    run_env = rayhead.node_env({**env, **nodes.node_env_defaults(), "RAY_task_oom_retries": "0"}, spec)
    return cmd, run_env


@app.command("start")
def start(
    role: Annotated[str, typer.Argument(help="head, worker (both block) or driver (joins, then returns).")],
) -> None:
    """Start this container's Ray node: `ray start` with `qserver node`'s options."""
    if role not in ("head", "worker", "driver"):
        print(f"role must be head, worker or driver, got {role!r}", file=sys.stderr)
        raise typer.Exit(2)
    from pydantic import ValidationError

    from core.settings import Settings

    try:
        cmd, env = start_command(role, dict(os.environ), Settings(), memory_limit(), shm_bytes())
    except (NodeConfigError, ValidationError) as error:
        print(f"ray node: {error}", file=sys.stderr)
        raise typer.Exit(2) from None
    print("ray node:", " ".join(cmd), f"(OMP_NUM_THREADS={env['OMP_NUM_THREADS']})", file=sys.stderr, flush=True)
    if role == "driver":
        raise typer.Exit(subprocess.run(cmd, env=env, check=False).returncode)
    os.execvpe(cmd[0], cmd, env)  # the container's main process becomes `ray start --block`


def _flag(argv: list[str], name: str) -> str | None:
    """The value of ``--name=value`` in ``argv``."""
    prefix = f"--{name}="
    return next((arg[len(prefix) :] for arg in argv if arg.startswith(prefix)), None)


def _answers(what: str, host: str, port: str | None) -> None:
    if port is None:
        raise RuntimeError(f"{what}: no port on its command line")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as error:
        raise RuntimeError(f"{what} at {host}:{port} does not accept connections: {error}") from None


def check_health(argvs: list[list[str]] | None = None) -> str:
    """What answered: this machine's raylet, and its GCS where one runs (``argvs``: the command
    lines of the processes to look at; default: every process here).

    Raises:
        RuntimeError: no raylet runs here, or it (or the GCS) does not accept connections.
    """
    if argvs is None:
        argvs = [procs.cmdline(pid) for pid in procs.all_pids() if procs.pid_alive(pid)]
    raylet = next((argv for argv in argvs if argv and argv[0].endswith("/raylet")), None)
    gcs = next((argv for argv in argvs if argv and argv[0].endswith("/gcs_server")), None)
    if raylet is None:
        raise RuntimeError("no raylet runs in this container")
    host = _flag(raylet, "node_ip_address") or "127.0.0.1"
    _answers("the raylet", host, _flag(raylet, "node_manager_port"))
    seen = f"raylet {host}:{_flag(raylet, 'node_manager_port')}"
    if gcs is not None:
        _answers("the GCS", host, _flag(gcs, "gcs_server_port"))
        seen += f", GCS {host}:{_flag(gcs, 'gcs_server_port')}"
    return seen


@app.command("health")
def health() -> None:
    """Exit 0 when this container's raylet (and GCS, on the head) accept connections."""
    try:
        print(check_health())
    except RuntimeError as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()
