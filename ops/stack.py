"""Start, stop and inspect the local stack: Ray head, ingest, api, dispatcher and nginx.

``up(settings)`` brings everything up and waits until each part answers; ``down(settings)``
stops what ``up`` started (never Postgres or RabbitMQ, which may serve others); ``status``
says what runs. Nothing is hard-coded: ports, paths and names come from ``Settings``, so a
test session can run its own stack next to a developer's. Every file lives under
``settings.state_dir`` (ops/statedir.py); the Ray head is ops/rayhead.py, nginx ops/proxy.py,
and the python services (ingest, api, dispatcher) are started here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from core import auth, schema
from core.errors import UnsafeSettings
from core.settings import Settings
from ops import changes, endpoints, prereqs, procs, proxy, rayhead
from ops.endpoints import NotReady, checks_health, connect_host, grpc_health, host_port, monitor_url
from ops.rayhead import ray_address, ray_env
from ops.statedir import ComponentFailed, open_log, paths
from qserver_client import address as client_address

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("ingest", "api", "dispatcher")
# Seconds each part may take to answer (the Ray head: rayhead.START_TIMEOUT). The dispatcher joins
# Ray and warms one executor per CPU (a Qiskit import each): about a minute on a small machine.
TIMEOUTS = {"ingest": 60.0, "api": 60.0, "dispatcher": 240.0, "nginx": 30.0}


@dataclass(frozen=True)
class ComponentStatus:
    """One part of the stack: whether it runs, its pid, where it listens, whether its health
    check passes (None: it has none, or it is stopped)."""

    name: str
    running: bool
    pid: int | None
    address: str
    detail: str = ""
    healthy: bool | None = None

    @property
    def state(self) -> str:
        """``running``, ``unhealthy`` (running, its health check fails) or ``stopped``."""
        if not self.running:
            return "stopped"
        return "unhealthy" if self.healthy is False else "running"


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as QSERVER_* variables, the way every service reads them."""
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        env[f"QSERVER_{name.upper()}"] = text
    env["QSERVER_STATE_DIR"] = str(paths(settings).root)
    env["QSERVER_RAY_ADDRESS"] = dispatcher_ray_address(settings)
    return env


def child_env(settings: Settings) -> dict[str, str]:
    """The environment of every process ``up`` starts."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_TOKEN", "RAY_ADDRESS")}
    env.update(settings_env(settings))
    env.update(ray_env(settings))
    env["PYTHONUNBUFFERED"] = "1"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


# --- processes we start ---------------------------------------------------------------------

_children: dict[int, subprocess.Popen] = {}  # kept so that exit codes can be reported


def _exit_note(pid: int) -> str:
    child = _children.get(pid)
    code = child.poll() if child else None
    return f"exited with code {code}" if code is not None else "exited"


def _wait(settings: Settings, name: str, pid: int | None, probe) -> None:
    """Poll ``probe`` until it passes; fail fast when ``pid`` dies, or at the timeout."""
    log = paths(settings).log(name)

    def check() -> None:
        if pid is not None and not procs.pid_alive(pid):
            raise ComponentFailed(name, _exit_note(pid), log, procs.log_tail(log))
        probe()

    try:
        endpoints.wait_until(check, timeout=TIMEOUTS.get(name, 60.0))
    except TimeoutError as error:
        raise ComponentFailed(name, str(error), log, procs.log_tail(log)) from None


def _service_pid(settings: Settings, name: str) -> int | None:
    """The pid of our running ``python -m <name>``, or None."""
    pid = procs.read_pid(paths(settings).pid(name))
    if pid is None:
        return None
    argv = procs.cmdline(pid)
    return pid if "-m" in argv and name in argv else None


def _service_address(settings: Settings, name: str) -> tuple[str, int] | None:
    if name == "ingest":
        return settings.ingest_host, settings.ingest_port
    if name == "api":
        return settings.api_host, settings.api_port
    return None


def _start_service(settings: Settings, name: str, env: dict[str, str]) -> int:
    """Start ``python -m <name>`` detached (or find it running); returns its pid."""
    p = paths(settings)
    pid = _service_pid(settings, name)
    if pid is not None:
        return pid
    address = _service_address(settings, name)
    if address and endpoints.is_listening(*address):
        raise ComponentFailed(name, f"port {host_port(*address)} is already in use by a process `up` did not start")
    p.run.mkdir(parents=True, exist_ok=True)
    with open_log(p, name) as log:
        child = subprocess.Popen(
            [sys.executable, "-m", name],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[child.pid] = child
    p.pid(name).write_text(str(child.pid))
    changes.record(settings, name)
    return child.pid


def health_url(settings: Settings, name: str) -> str:
    """Where service ``name`` answers its health check: the api's readiness, ingest's and the
    dispatcher's monitors (core/monitor.py)."""
    if name == "api":
        return f"http://{host_port(connect_host(settings.api_host), settings.api_port)}/api/v1/health/ready"
    port = settings.ingest_monitor_port if name == "ingest" else settings.dispatcher_monitor_port
    return monitor_url(settings.monitor_host, port)


def metrics_url(settings: Settings, name: str) -> str:
    """Where service ``name`` exports its Prometheus metrics (``/metrics``)."""
    if name == "api":
        return f"http://{host_port(connect_host(settings.api_host), settings.api_port)}/metrics"
    port = settings.ingest_monitor_port if name == "ingest" else settings.dispatcher_monitor_port
    return monitor_url(settings.monitor_host, port, "/metrics")


def _probe(settings: Settings, name: str):
    url = health_url(settings, name)
    if name == "ingest":

        def ingest_ready() -> None:
            grpc_health(settings.ingest_host, settings.ingest_port)
            checks_health(url)

        return ingest_ready
    return lambda: checks_health(url)


def _stop_service(settings: Settings, name: str) -> None:
    pid = _service_pid(settings, name)
    if pid is not None:
        procs.terminate([pid], timeout=30.0 if name == "dispatcher" else 15.0)
    paths(settings).pid(name).unlink(missing_ok=True)


# --- a stack that already runs: what `up` may change ----------------------------------------------


class UnsafeChange(Exception):
    """`qserver up` cannot apply these settings to the stack that runs; nothing was changed."""


@dataclass(frozen=True)
class Plan:
    """What `up` does to parts that run: the services it restarts, and why (their changed
    settings; None: started without a record of them), and what nginx's config takes."""

    restart: dict[str, list[changes.Change] | None]
    nginx: str  # "start", "reload" or "restart" (proxy.stage)


def preflight(settings: Settings, nginx: str) -> Plan:
    """Check that `up` can apply ``settings`` before it starts, stops or writes anything.

    The services would accept them (core.auth.auth_mode); the Ray head that runs was started
    with the same head settings (changes.HEAD_FIELDS: restarting it would end every running
    job); a restarted service's new address is free; nginx's new config passes `nginx -t` and
    its new addresses are free (proxy.stage; only the staged copy is written, then removed).

    Raises:
        UnsafeChange: the settings cannot be applied; the message says why and what to do.
        ComponentFailed: nginx's config test failed or an address it needs is taken.
    """
    try:
        auth.auth_mode(settings)
    except UnsafeSettings as error:
        raise UnsafeChange(f"ingest and the api would refuse to start: {error}") from None
    if settings.ray_start_head and rayhead.gcs_pid(settings) is not None:
        old = changes.recorded(settings, "ray")
        diff = changes.differences(old, changes.fingerprint(settings, changes.HEAD_FIELDS)) if old else []
        if diff:
            raise UnsafeChange(
                f"the Ray head runs with other settings ({'; '.join(map(str, diff))}): restarting it "
                "would end every running job. Run `qserver down` first, then `qserver up`"
            )
    now = changes.fingerprint(settings)
    restart: dict[str, list[changes.Change] | None] = {}
    for name in SERVICES:
        if _service_pid(settings, name) is None:
            continue
        old = changes.recorded(settings, name)
        diff = None if old is None else changes.differences(old, now)
        if diff is None or diff:
            restart[name] = diff
        address = _service_address(settings, name)
        moved = {f"QSERVER_{name.upper()}_HOST", f"QSERVER_{name.upper()}_PORT"} & {c.name for c in diff or []}
        if address and moved and endpoints.is_listening(*address):
            raise UnsafeChange(f"{name} would move to {host_port(*address)}, which another process holds")
    return Plan(restart, proxy.check(settings, nginx))


def _apply(settings: Settings, plan: Plan, console: Console) -> None:
    """Stop the services ``plan`` restarts (the normal start-up starts them again)."""
    if not plan.restart:
        return
    names = ", ".join(plan.restart)
    why = sorted({str(c) for diff in plan.restart.values() for c in diff or []})
    if any(diff is None for diff in plan.restart.values()):
        why.append("started without a record of their settings")
    console.print(f"[yellow]↻[/] restarting {names}: settings changed since they started ({'; '.join(why)})")
    for name in ("dispatcher", "api", "ingest"):
        if name in plan.restart:
            _stop_service(settings, name)


# --- up / down / status ---------------------------------------------------------------------------


def up(settings: Settings, *, console: Console | None = None) -> None:
    """Start the whole stack and wait until every part answers; reuses parts already running.

    On a stack that runs, settings that changed since a service started restart it (nginx is
    reloaded, or restarted when its addresses change); settings the running Ray head was not
    started with are refused. Both are checked (:func:`preflight`) before anything is started,
    stopped or written.

    Raises:
        UnsafeChange: the settings cannot be applied to what runs; nothing was changed.
        ComponentFailed: a part did not come up (its name, the reason, its log tail).
        prereqs.SetupError: Postgres, RabbitMQ or nginx could not be installed or started.
    """
    console = console or Console(stderr=True)
    started = time.monotonic()
    p = paths(settings)
    for directory in (p.root, p.logs, p.run):
        directory.mkdir(parents=True, exist_ok=True)

    def done(name: str, where: str) -> None:
        console.print(f"[green]✓[/] {name:<10} {where}  [dim]{time.monotonic() - started:.1f} s[/]")

    nginx = prereqs.ensure_prerequisites(settings)
    done("postgres", _pg_where(settings))
    done("rabbitmq", _amqp_where(settings))
    _apply(settings, preflight(settings, nginx), console)

    env = child_env(settings)
    # ~5 s: runs while the schema and services start
    ray_child = rayhead.launch(settings, env) if settings.ray_start_head else None
    try:
        schema.upgrade(settings.database_dsn)
    except Exception as error:
        raise ComponentFailed("schema", f"`qserver db upgrade` failed: {error}") from error
    done("schema", f"{_pg_where(settings)} at head")
    running = {name for name in SERVICES if _service_pid(settings, name) is not None}
    if ray_child is None:
        running.add("ray")
    if proxy.nginx_pid(settings) is not None:
        running.add("nginx")

    def ready(name: str, where: str) -> None:
        done(name, where + (" [dim](already running)[/]" if name in running else ""))

    pids = {name: _start_service(settings, name, env) for name in ("ingest", "api")}
    if settings.ray_start_head:
        rayhead.finish(settings, ray_child)
        ready("ray", f"{ray_address(settings)} (temp dir {p.ray_temp})")
    else:
        ready("ray", f"{settings.ray_address} (a cluster started elsewhere)")
    pids["dispatcher"] = _start_service(settings, "dispatcher", env)
    for name in ("ingest", "api"):
        _wait(settings, name, pids[name], _probe(settings, name))
        ready(name, host_port(*_service_address(settings, name)))
    nginx_pid = proxy.start(settings, nginx)
    _wait(settings, "nginx", nginx_pid, proxy.probe(settings))
    tls_note = f", TLS :{settings.nginx_tls_port} (REST + gRPC)" if proxy.tls(settings) else ""
    ready("nginx", f"REST :{settings.nginx_http_port}, gRPC :{settings.nginx_grpc_port}{tls_note}")
    if not tls_note:
        console.print(f"[yellow]![/] {proxy.tls_off_hint(settings)}", highlight=False)
    with console.status("dispatcher: joining Ray and warming the executors"):
        _wait(settings, "dispatcher", pids["dispatcher"], _probe(settings, "dispatcher"))
    ready("dispatcher", "consuming " + settings.queue_name)
    _print_where(settings, console, time.monotonic() - started)


def dispatcher_ray_address(settings: Settings) -> str:
    """The Ray cluster the dispatcher joins: our head's, or QSERVER_RAY_ADDRESS when we start none."""
    return ray_address(settings) if settings.ray_start_head else settings.ray_address


def down(settings: Settings) -> None:
    """Stop nginx, dispatcher, api, ingest and our Ray head; remove pid files. Idempotent."""
    proxy.stop(settings)
    for name in ("dispatcher", "api", "ingest"):
        _stop_service(settings, name)
    if settings.ray_start_head:
        rayhead.stop(settings)


def status(settings: Settings) -> list[ComponentStatus]:
    """Each component: running or not, its pid, its address."""
    pg_host, pg_port = prereqs.pg_address(settings)
    amqp_host, amqp_port = prereqs.amqp_address(settings)
    result = [
        ComponentStatus("postgres", endpoints.is_listening(pg_host, pg_port), None, _pg_where(settings)),
        ComponentStatus(
            "rabbitmq",
            endpoints.is_listening(amqp_host, amqp_port),
            None,
            _amqp_where(settings),
            settings.queue_name,
        ),
    ]
    gcs = rayhead.gcs_pid(settings)
    result.append(
        ComponentStatus(
            "ray",
            gcs is not None,
            gcs,
            ray_address(settings),
            "dashboard http://" + host_port(settings.ray_dashboard_host, settings.ray_dashboard_port),
        )
    )
    for name in SERVICES:
        pid = _service_pid(settings, name)
        address = _service_address(settings, name)
        detail, healthy = "", None
        if pid is not None:
            try:
                checks_health(health_url(settings, name), timeout=2.0)
                detail, healthy = f"healthy; metrics: {metrics_url(settings, name)}", True
            except NotReady as error:
                detail, healthy = str(error), False
        result.append(
            ComponentStatus(
                name,
                pid is not None,
                pid,
                host_port(*address) if address else ray_address(settings),
                detail,
                healthy,
            )
        )
    pid = proxy.nginx_pid(settings)
    address = (
        f"{host_port(settings.nginx_bind, settings.nginx_http_port)} (REST), "
        f"{host_port(settings.nginx_bind, settings.nginx_grpc_port)} (gRPC)"
    )
    tls = proxy.tls(settings)
    if tls is None:
        detail = "TLS off (`qserver certs` turns it on)"
    else:
        address += f", {host_port(settings.nginx_bind, settings.nginx_tls_port)} (TLS: REST + gRPC)"
        detail = f"TLS certificate {tls.cert} until {tls.expires()}"
        if pid is not None and str(tls.cert) not in _read(paths(settings).nginx_conf):
            detail += " (not served yet: `qserver up` reloads nginx)"
    result.append(ComponentStatus("nginx", pid is not None, pid, address, detail))
    return result


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _pg_where(settings: Settings) -> str:
    return host_port(*prereqs.pg_address(settings)) + "/" + (settings.database_url.path or "/").lstrip("/")


def _amqp_where(settings: Settings) -> str:
    return host_port(*prereqs.amqp_address(settings))


def _print_where(settings: Settings, console: Console, seconds: float) -> None:
    p = paths(settings)
    host = connect_host(settings.nginx_bind)
    table = Table(title=f"QServer is up ({seconds:.0f} s)", show_header=True)
    table.add_column("what")
    table.add_column("where")
    table.add_row("REST", f"http://{host_port(host, settings.nginx_http_port)}/api/v1  (docs: /docs)")
    table.add_row("gRPC", host_port(host, settings.nginx_grpc_port))
    local, default = endpoints.client_address(settings), client_address.resolve(None, None, env={})
    if (local["url"], local["grpc"]) != (default.url, default.grpc_target):
        # `qserver submit` and qserver_client.Client() know only these, not QSERVER_NGINX_*
        table.add_row("clients", f"export QSERVER_URL={local['url']} QSERVER_GRPC={local['grpc']}  (not the defaults)")
    tls = proxy.tls(settings)
    if tls is not None:
        name = proxy.tls_server_name(tls.cert, host)
        port = "" if settings.nginx_tls_port == 443 else f":{settings.nginx_tls_port}"
        trust = f"  (trust: GRPC_DEFAULT_SSL_ROOTS_FILE_PATH={tls.ca} REQUESTS_CA_BUNDLE={tls.ca})" if tls.ca else ""
        shown = f"[{name}]" if ":" in name else name
        table.add_row(
            "TLS",
            f"https://{shown}{port}/api/v1, gRPC {host_port(name, settings.nginx_tls_port)}{trust}",
        )
    table.add_row("Ray", f"{ray_address(settings)}  (token: {p.ray_token})")
    table.add_row(
        "Ray dashboard",
        f"http://{host_port(settings.ray_dashboard_host, settings.ray_dashboard_port)}",
    )
    table.add_row("logs", f"{p.logs}/{{ray,ingest,api,dispatcher}}.log, {p.nginx}/logs/")
    console.print(table)
