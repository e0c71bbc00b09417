"""Our Ray processes, run through the `ray` CLI: the head (start, find, stop, how drivers join
it) and the node `qserver node join` adds to a head elsewhere (join, find, leave)."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

from core.settings import Settings
from ops import changes, endpoints, nodes, prereqs, procs
from ops.nodes import NodeSpec
from ops.statedir import ComponentFailed, open_log, paths

# core never imports ray (import-linter contract): everything here goes through the `ray` CLI
# and psutil, so a `qserver` process stays light and free of Ray's version constraints.

START_TIMEOUT = 120.0  # seconds `ray start --head` may take


# `ray start` options every Ray process of ours gets: no usage report, plain log lines.
_QUIET = ("--disable-usage-stats", "--log-style=record", "--log-color=false")


def _spawn(cmd: list[str], env: dict[str, str], p, log_name: str) -> subprocess.Popen:
    """Start ``cmd`` in a session of its own, its output in the ``log_name`` log."""
    with open_log(p, log_name) as log:
        return subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def ray_address(settings: Settings) -> str:
    """The GCS address of the head ``up`` starts (what the dispatcher joins)."""
    return f"127.0.0.1:{settings.ray_head_port}"


def ray_env(settings: Settings) -> dict[str, str]:
    """Environment for Ray processes: token authentication explicitly on, one runtime_env try.

    Ray 2.60 switches token auth on by itself when ``~/.ray/auth_token`` exists (any earlier
    ``ray.init()`` writes it), and a driver given an explicit address then fails to connect
    unless it too runs with ``RAY_AUTH_MODE=token``. So the head, the dispatcher and anything
    else that joins get these variables and never depend on the home directory's state.
    """
    token = paths(settings).ray_token
    if not token.exists():
        token.parent.mkdir(parents=True, exist_ok=True)
        token.touch(mode=0o600)
        token.write_text(secrets.token_hex(32))
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        # A plugin's runtime_env is built once, not three times (Ray's default): a build
        # that fails fails its job in one attempt, within plugin_env_setup_timeout_s.
        "RUNTIME_ENV_RETRY_TIMES": "1",
        # Ray retries tasks it killed for memory forever by default; QServer decides instead:
        # such a job fails with that reason (dispatcher.service.failure_reason).
        "RAY_task_oom_retries": "0",
    }


def _ray_program() -> str:
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else (prereqs.find_program("ray") or "ray")


def gcs_pid(settings: Settings) -> int | None:
    """The pid of our head's GCS (port and temp dir both ours), or None."""
    temp = str(paths(settings).ray_temp)
    port_flag = f"--gcs_server_port={settings.ray_head_port}"
    for pid in procs.all_pids():
        argv = procs.cmdline(pid)
        if argv and argv[0].endswith("gcs_server") and port_flag in argv:
            if any(temp + "/" in arg for arg in argv) and procs.pid_alive(pid):
                return pid
    return None


def _head_pids(settings: Settings) -> list[int]:
    """Every process of our head: the session `ray start` made, plus anything under its temp dir."""
    found: set[int] = set()
    try:
        sid = int(paths(settings).ray_session.read_text())
    except (OSError, ValueError):
        sid = None
    if sid is not None:
        found.update(pid for pid in procs.pids_in_session(sid) if "ray" in " ".join(procs.cmdline(pid)))
    temp = str(paths(settings).ray_temp) + "/"
    for pid in procs.all_pids():
        if any(temp in arg for arg in procs.cmdline(pid)) and procs.pid_alive(pid):
            found.add(pid)
    found.discard(os.getpid())
    return sorted(found)


def node_env(env: dict[str, str], spec: NodeSpec) -> dict[str, str]:
    """``env`` for `ray start` on a node, with OMP_NUM_THREADS set to the node's CPUs
    (``spec.num_cpus``, else the machine's) unless ``env`` sets it.

    Ray sets OMP_NUM_THREADS to a task's num_cpus in each worker it starts, unless the node's
    environment sets it, and a worker reused for a task that asks more CPUs keeps the first
    task's value: a large job granted all the node's CPUs would get one Aer thread. With the
    node's count here, every worker can run on all of them, and the executor gives Aer the
    thread count its task was granted (placement.job_cpus: one for all but large jobs).
    """
    if "OMP_NUM_THREADS" in env:
        return env
    return {**env, "OMP_NUM_THREADS": str(max(spec.num_cpus or os.cpu_count() or 1, 1))}


def node_ip_args(settings: Settings) -> list[str]:
    """``--node-ip-address`` when ``settings.ray_node_ip`` names the address Ray announces for
    this machine (else Ray picks the address of the default route's interface)."""
    return [f"--node-ip-address={settings.ray_node_ip}"] if settings.ray_node_ip else []


def launch(settings: Settings, env: dict[str, str], spec: NodeSpec | None = None) -> subprocess.Popen | None:
    """Run `ray start --head` in the background; None when our head already runs.

    ``spec`` adds tags, CPUs/GPUs/memory and fixed ports (`qserver node start --head`); every
    head carries the version labels (ops/nodes.py) that `qserver node join` compares with.

    Raises:
        ComponentFailed: the head port is held by something else.
    """
    if gcs_pid(settings) is not None:
        return None
    if endpoints.is_listening("127.0.0.1", settings.ray_head_port):
        raise ComponentFailed("ray", f"port {settings.ray_head_port} is in use by a process that is not our Ray head")
    stop(settings)  # leftovers of a head that died
    p = paths(settings)
    p.ray_temp.mkdir(parents=True, exist_ok=True)
    p.run.mkdir(parents=True, exist_ok=True)
    cmd = [
        _ray_program(),
        "start",
        "--head",
        f"--port={settings.ray_head_port}",
        f"--dashboard-host={settings.ray_dashboard_host}",
        f"--dashboard-port={settings.ray_dashboard_port}",
        f"--temp-dir={p.ray_temp}",
        # Ray's fixed defaults (10001, 52365) would clash with a second stack on this machine.
        f"--ray-client-server-port={endpoints.free_port()}",
        f"--dashboard-agent-listen-port={endpoints.free_port()}",
        *_QUIET,
        *node_ip_args(settings),
        *nodes.ray_start_args(spec or NodeSpec(), key=nodes.node_key(settings, "head")),
    ]
    child = _spawn(cmd, node_env(env, spec or NodeSpec()), p, "ray")
    p.ray_session.write_text(str(child.pid))  # its session id: every head process inherits it
    changes.record(settings, "ray", changes.HEAD_FIELDS)  # what `qserver up` compares with
    return child


def finish(settings: Settings, child: subprocess.Popen | None) -> None:
    """Wait for the `ray start --head` that ``launch`` ran (nothing to do for None).

    Raises:
        ComponentFailed: it did not return in time, failed, or left no GCS running.
    """
    if child is None:
        return
    log = paths(settings).log("ray")
    try:
        code = child.wait(timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ComponentFailed("ray", "`ray start --head` did not return", log, procs.log_tail(log)) from None
    if code != 0 or gcs_pid(settings) is None:
        raise ComponentFailed("ray", f"`ray start --head` exited with {code}", log, procs.log_tail(log))


def stop(settings: Settings) -> None:
    """Stop our head only (`ray stop` would stop every Ray on the machine)."""
    pids = _head_pids(settings)
    gcs = gcs_pid(settings)
    # Workers and raylet first, the GCS last, as `ray stop` does.
    procs.terminate([pid for pid in pids if pid != gcs], timeout=10.0)
    if gcs is not None:
        procs.terminate([gcs], timeout=10.0)
    paths(settings).ray_session.unlink(missing_ok=True)


_NODE_IP = re.compile(r"Local node IP: (\S+)")


def node_ip(log: Path) -> str | None:
    """The node IP `ray start` reported in its log ("Local node IP: ..."), or None."""
    found = _NODE_IP.findall(procs.log_tail(log, lines=200))
    return found[-1] if found else None


# --- a node of a head elsewhere: `qserver node join` / `qserver node leave` ----------------------


def node_pids(settings: Settings) -> list[int]:
    """Every process of the node `join_node` started: its session, and its temp dir's users."""
    found: set[int] = set()
    try:
        sid = int(nodes.node_session_file(settings).read_text())
    except (OSError, ValueError):
        sid = None
    if sid is not None:
        found.update(pid for pid in procs.pids_in_session(sid) if "ray" in " ".join(procs.cmdline(pid)))
    temp = str(nodes.node_temp(settings)) + "/"
    for pid in procs.all_pids():
        if any(temp in arg for arg in procs.cmdline(pid)) and procs.pid_alive(pid):
            found.add(pid)
    found.discard(os.getpid())
    return sorted(found)


def node_raylet_pid(settings: Settings) -> int | None:
    """The raylet of the node `join_node` started, or None when it does not run."""
    temp = str(nodes.node_temp(settings)) + "/"
    for pid in node_pids(settings):
        argv = procs.cmdline(pid)
        if argv and argv[0].endswith("raylet") and any(temp in arg for arg in argv):
            return pid
    return None


def join_node(settings: Settings, head_address: str, spec: NodeSpec, env: dict[str, str]) -> str | None:
    """`ray start --address=HEAD` for this machine, detached in its own session; waits for it.

    ``env`` carries the token (ops/nodes.py join_env). Returns the node IP Ray chose.

    Raises:
        ComponentFailed: `ray start` failed, did not return in time, or left no raylet.
    """
    p = paths(settings)
    temp = nodes.node_temp(settings)
    temp.mkdir(parents=True, exist_ok=True)
    p.run.mkdir(parents=True, exist_ok=True)
    cmd = [
        _ray_program(),
        "start",
        f"--address={head_address}",
        f"--temp-dir={temp}",
        # Ray's fixed default (52365) would clash with another node on this machine.
        f"--dashboard-agent-listen-port={endpoints.free_port()}",
        *_QUIET,
        *node_ip_args(settings),
        *nodes.ray_start_args(spec, key=nodes.node_key(settings, "node")),
    ]
    child = _spawn(cmd, node_env(env, spec), p, "node")
    nodes.node_session_file(settings).write_text(str(child.pid))
    nodes.node_info_file(settings).write_text(
        json.dumps({"head": head_address, "tags": list(spec.tags), "started": time.time()})
    )
    log_path = p.log("node")
    try:
        code = child.wait(timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        leave_node(settings)
        raise ComponentFailed(
            "ray node", "`ray start --address` did not return", log_path, procs.log_tail(log_path)
        ) from None
    if code != 0 or node_raylet_pid(settings) is None:
        leave_node(settings)
        raise ComponentFailed(
            "ray node",
            f"`ray start --address={head_address}` exited with {code}",
            log_path,
            procs.log_tail(log_path),
        )
    return node_ip(log_path)


def leave_node(settings: Settings) -> list[int]:
    """Stop the node `join_node` started, and only it; returns the pids that were stopped."""
    pids = node_pids(settings)
    raylet = node_raylet_pid(settings)
    # The raylet first: on SIGTERM it tells the head it is leaving and ends its workers.
    if raylet is not None:
        procs.terminate([raylet], timeout=10.0)
    procs.terminate([pid for pid in pids if pid != raylet], timeout=10.0)
    nodes.node_session_file(settings).unlink(missing_ok=True)
    nodes.node_info_file(settings).unlink(missing_ok=True)
    return pids
