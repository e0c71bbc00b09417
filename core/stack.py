"""Start, stop and inspect the local stack: Ray head, ingest, api, dispatcher and nginx.

``up(settings)`` brings everything up and waits until each part answers; ``down(settings)``
stops what ``up`` started (never Postgres or RabbitMQ, which may serve others); ``status``
says what runs. Nothing is hard-coded: ports, paths and names come from ``Settings``, so a
test session can run its own stack next to a developer's. Every file lives under
``settings.state_dir``: ``logs/<component>.log``, ``run/<component>.pid``, ``nginx/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import string
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from core import schema, services
from core.services import NotReady, connect_host, grpc_health, host_port, http_health, pid_alive
from core.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NGINX_TEMPLATE = PROJECT_ROOT / "nginx" / "nginx.conf.template"
MIB = 1024 * 1024
SERVICES = ("ingest", "api", "dispatcher")
# Seconds each part may take to answer. The dispatcher joins Ray and warms one executor per CPU
# (a Qiskit import each): about a minute on a small machine.
TIMEOUTS = {"ray": 120.0, "ingest": 60.0, "api": 60.0, "dispatcher": 240.0, "nginx": 30.0}
# Unix socket paths are limited to ~107 bytes and Ray puts
# "<temp>/session_<date>_<time>_<pid>/sockets/plasma_store" under its temp dir.
_RAY_TEMP_MAX = 40


@dataclass(frozen=True)
class ComponentStatus:
    """One part of the stack: whether it runs, its pid, where it listens."""

    name: str
    running: bool
    pid: int | None
    address: str
    detail: str = ""

    @property
    def state(self) -> str:
        """``running`` or ``stopped``."""
        return "running" if self.running else "stopped"


class ComponentFailed(RuntimeError):
    """A component did not come up; carries its name, why, and the tail of its log."""

    def __init__(self, component: str, reason: str, log_path: Path | None = None, tail: str = ""):
        self.component = component
        self.reason = reason
        self.log_path = log_path
        self.log_tail = tail
        message = f"{component} did not start: {reason}"
        if log_path is not None:
            message += f"\n--- last lines of {log_path} ---\n{tail or '(empty)'}"
        super().__init__(message)


# --- paths and environment ---------------------------------------------------------------------


@dataclass(frozen=True)
class Paths:
    """Where ``up`` keeps its files for one state dir."""

    root: Path
    logs: Path
    run: Path
    nginx: Path
    nginx_conf: Path
    nginx_pid: Path
    dispatcher_ready: Path
    ray_token: Path
    ray_session: Path
    ray_temp: Path

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def pid(self, name: str) -> Path:
        return self.run / f"{name}.pid"


def paths(settings: Settings) -> Paths:
    """The file layout under ``settings.state_dir``."""
    root = Path(settings.state_dir).expanduser().resolve()
    ray_temp = root / "ray"
    if len(str(ray_temp)) > _RAY_TEMP_MAX:
        ray_temp = Path("/tmp") / f"qserver-ray-{hashlib.sha1(str(root).encode()).hexdigest()[:10]}"
    return Paths(
        root=root,
        logs=root / "logs",
        run=root / "run",
        nginx=root / "nginx",
        nginx_conf=root / "nginx" / "nginx.conf",
        nginx_pid=root / "nginx" / "nginx.pid",
        dispatcher_ready=root / "dispatcher.ready",
        ray_token=root / "ray_auth_token",
        ray_session=root / "run" / "ray.sid",
        ray_temp=ray_temp,
    )


def ray_address(settings: Settings) -> str:
    """The GCS address of the head ``up`` starts (what the dispatcher joins)."""
    return f"127.0.0.1:{settings.ray_head_port}"


def ray_env(settings: Settings) -> dict[str, str]:
    """Ray's token authentication, explicitly on, with the token file under the state dir.

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
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as QSERVER_* variables, the way every service reads them."""
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        env[f"QSERVER_{name.upper()}"] = text
    env["QSERVER_STATE_DIR"] = str(paths(settings).root)
    env["QSERVER_RAY_ADDRESS"] = ray_address(settings)
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


def _open_log(p: Paths, name: str):
    p.logs.mkdir(parents=True, exist_ok=True)
    log = p.log(name)
    if log.exists() and log.stat().st_size:
        log.replace(log.with_suffix(".log.1"))  # keep the previous run's log once
    return log.open("ab")


def _wait(settings: Settings, name: str, pid: int | None, probe) -> None:
    """Poll ``probe`` until it passes; fail fast when ``pid`` dies, or at the timeout."""
    log = paths(settings).log(name)

    def check() -> None:
        if pid is not None and not pid_alive(pid):
            raise ComponentFailed(name, _exit_note(pid), log, services.log_tail(log))
        probe()

    try:
        services.wait_until(check, timeout=TIMEOUTS.get(name, 60.0))
    except TimeoutError as error:
        raise ComponentFailed(name, str(error), log, services.log_tail(log)) from None


def _service_pid(settings: Settings, name: str) -> int | None:
    """The pid of our running ``python -m <name>``, or None."""
    pid = services.read_pid(paths(settings).pid(name))
    if pid is None:
        return None
    argv = services.cmdline(pid)
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
    if address and services.is_listening(*address):
        raise ComponentFailed(
            name, f"port {host_port(*address)} is already in use by a process `up` did not start"
        )
    if name == "dispatcher":
        p.dispatcher_ready.unlink(missing_ok=True)
    p.run.mkdir(parents=True, exist_ok=True)
    with _open_log(p, name) as log:
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
    return child.pid


def _probe(settings: Settings, name: str):
    if name == "ingest":
        return lambda: grpc_health(settings.ingest_host, settings.ingest_port)
    if name == "api":
        return lambda: http_health(settings.api_host, settings.api_port)

    def dispatcher_ready() -> None:
        if not paths(settings).dispatcher_ready.exists():
            raise NotReady("no dispatcher.ready yet (joining Ray, warming executors)")

    return dispatcher_ready


def _stop_service(settings: Settings, name: str) -> None:
    pid = _service_pid(settings, name)
    if pid is not None:
        services.terminate([pid], timeout=30.0 if name == "dispatcher" else 15.0)
    paths(settings).pid(name).unlink(missing_ok=True)


# --- Ray head ----------------------------------------------------------------------------------


def _ray_program() -> str:
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else (services.find_program("ray") or "ray")


def _ray_gcs_pid(settings: Settings) -> int | None:
    """The pid of our head's GCS (port and temp dir both ours), or None."""
    temp = str(paths(settings).ray_temp)
    port_flag = f"--gcs_server_port={settings.ray_head_port}"
    for pid in services.all_pids():
        argv = services.cmdline(pid)
        if argv and argv[0].endswith("gcs_server") and port_flag in argv:
            if any(temp + "/" in arg for arg in argv) and pid_alive(pid):
                return pid
    return None


def _ray_pids(settings: Settings) -> list[int]:
    """Every process of our head: the session `ray start` made, plus anything under its temp dir."""
    found: set[int] = set()
    try:
        sid = int(paths(settings).ray_session.read_text())
    except (OSError, ValueError):
        sid = None
    if sid is not None:
        found.update(
            pid for pid in services.pids_in_session(sid) if "ray" in " ".join(services.cmdline(pid))
        )
    temp = str(paths(settings).ray_temp) + "/"
    for pid in services.all_pids():
        if any(temp in arg for arg in services.cmdline(pid)) and pid_alive(pid):
            found.add(pid)
    found.discard(os.getpid())
    return sorted(found)


def _launch_ray_head(settings: Settings, env: dict[str, str]) -> subprocess.Popen | None:
    """Run `ray start --head` in the background; None when our head already runs."""
    if _ray_gcs_pid(settings) is not None:
        return None
    if services.is_listening("127.0.0.1", settings.ray_head_port):
        raise ComponentFailed(
            "ray", f"port {settings.ray_head_port} is in use by a process that is not our Ray head"
        )
    _stop_ray_head(settings)  # leftovers of a head that died
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
        f"--ray-client-server-port={services.free_port()}",
        f"--dashboard-agent-listen-port={services.free_port()}",
        "--disable-usage-stats",
        "--log-style=record",
        "--log-color=false",
    ]
    with _open_log(p, "ray") as log:
        child = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    p.ray_session.write_text(str(child.pid))  # its session id: every head process inherits it
    return child


def _finish_ray_head(settings: Settings, child: subprocess.Popen | None) -> None:
    if child is None:
        return
    log = paths(settings).log("ray")
    try:
        code = child.wait(timeout=TIMEOUTS["ray"])
    except subprocess.TimeoutExpired:
        raise ComponentFailed(
            "ray", "`ray start --head` did not return", log, services.log_tail(log)
        ) from None
    if code != 0 or _ray_gcs_pid(settings) is None:
        raise ComponentFailed(
            "ray", f"`ray start --head` exited with {code}", log, services.log_tail(log)
        )


def _stop_ray_head(settings: Settings) -> None:
    """Stop our head only (`ray stop` would stop every Ray on the machine)."""
    pids = _ray_pids(settings)
    gcs = _ray_gcs_pid(settings)
    # Workers and raylet first, the GCS last, as `ray stop` does.
    services.terminate([pid for pid in pids if pid != gcs], timeout=10.0)
    if gcs is not None:
        services.terminate([gcs], timeout=10.0)
    paths(settings).ray_session.unlink(missing_ok=True)


# --- nginx ---------------------------------------------------------------------------------------


def render_nginx_conf(settings: Settings) -> str:
    """nginx.conf for our own instance, from nginx/nginx.conf.template and ``settings``."""
    prefix = paths(settings).nginx
    if os.geteuid() == 0:
        # Workers run as the user that runs `qserver up`: the state dir (under $HOME or a
        # pytest tmp dir) is not reachable to nginx's default `nobody`.
        user = "user root root;"
    else:
        user = "# user: workers run as the user that starts nginx"
    return string.Template(NGINX_TEMPLATE.read_text()).substitute(
        prefix=str(prefix),
        user_directive=user,
        client_max_body_size=str(settings.max_qasm_bytes + MIB),
        api_upstream=host_port(connect_host(settings.api_host), settings.api_port),
        ingest_upstream=host_port(connect_host(settings.ingest_host), settings.ingest_port),
        http_listen=host_port(settings.nginx_bind, settings.nginx_http_port),
        grpc_listen=host_port(settings.nginx_bind, settings.nginx_grpc_port),
    )


def write_nginx_conf(settings: Settings) -> Path:
    """Render the config into ``<state_dir>/nginx/`` (with its logs/ and tmp/); returns its path."""
    p = paths(settings)
    for sub in ("logs", "tmp"):
        (p.nginx / sub).mkdir(parents=True, exist_ok=True)
    p.nginx_conf.write_text(render_nginx_conf(settings))
    return p.nginx_conf


def nginx_command(settings: Settings, *args: str, nginx: str = "nginx") -> list[str]:
    """``nginx -p <prefix> -c <conf> -e <error log> ARGS`` for our instance."""
    p = paths(settings)
    return [
        nginx,
        "-p",
        str(p.nginx),
        "-c",
        str(p.nginx_conf),
        "-e",
        str(p.nginx / "logs" / "error.log"),
        *args,
    ]


def _nginx_pid(settings: Settings) -> int | None:
    """Our nginx master (its title names our config), or None."""
    p = paths(settings)
    pid = services.read_pid(p.nginx_pid)
    return pid if pid is not None and str(p.nginx_conf) in " ".join(services.cmdline(pid)) else None


def _start_nginx(settings: Settings, nginx: str) -> int:
    p = paths(settings)
    write_nginx_conf(settings)
    error_log = p.nginx / "logs" / "error.log"

    def run(*args: str) -> None:
        proc = subprocess.run(
            nginx_command(settings, *args, nginx=nginx), capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip() + "\n" + services.log_tail(error_log, 10)
            raise ComponentFailed("nginx", f"`nginx {' '.join(args)}` failed", error_log, tail)

    run("-t", "-q")
    pid = _nginx_pid(settings)
    if pid is not None:
        run("-s", "reload")
        return pid
    for port in (settings.nginx_http_port, settings.nginx_grpc_port):
        if services.is_listening(settings.nginx_bind, port):
            raise ComponentFailed(
                "nginx", f"port {host_port(settings.nginx_bind, port)} is already in use"
            )
    run()  # `daemon on`: returns once the master has forked
    pid = _nginx_pid(settings)
    if pid is None:
        raise ComponentFailed(
            "nginx", "no master process after start", error_log, services.log_tail(error_log)
        )
    return pid


def _stop_nginx(settings: Settings) -> None:
    pid = _nginx_pid(settings)
    if pid is None:
        return
    nginx = services.find_program("nginx")
    if nginx and paths(settings).nginx_conf.exists():
        subprocess.run(
            nginx_command(settings, "-s", "quit", nginx=nginx), capture_output=True, check=False
        )
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    services.terminate([pid], timeout=5.0)
    paths(settings).nginx_pid.unlink(missing_ok=True)


def _nginx_probe(settings: Settings):
    def probe() -> None:
        http_health(settings.nginx_bind, settings.nginx_http_port)
        grpc_health(settings.nginx_bind, settings.nginx_grpc_port)

    return probe


# --- up / down / status ---------------------------------------------------------------------------


def up(settings: Settings, *, console: Console | None = None) -> None:
    """Start the whole stack and wait until every part answers; reuses parts already running.

    Raises:
        ComponentFailed: a part did not come up (its name, the reason, its log tail).
        services.SetupError: Postgres, RabbitMQ or nginx could not be installed or started.
    """
    console = console or Console(stderr=True)
    started = time.monotonic()
    p = paths(settings)
    for directory in (p.root, p.logs, p.run):
        directory.mkdir(parents=True, exist_ok=True)

    def done(name: str, where: str) -> None:
        console.print(f"[green]✓[/] {name:<10} {where}  [dim]{time.monotonic() - started:.1f} s[/]")

    nginx = services.ensure_prerequisites(settings)
    done("postgres", _pg_where(settings))
    done("rabbitmq", _amqp_where(settings))

    env = child_env(settings)
    ray_child = _launch_ray_head(settings, env)  # ~5 s: runs while the schema and services start
    try:
        schema.upgrade(settings.database_dsn)
    except Exception as error:
        raise ComponentFailed("schema", f"`qserver db upgrade` failed: {error}") from error
    done("schema", f"{_pg_where(settings)} at head")
    running = {name for name in SERVICES if _service_pid(settings, name) is not None}
    if ray_child is None:
        running.add("ray")
    if _nginx_pid(settings) is not None:
        running.add("nginx")

    def ready(name: str, where: str) -> None:
        done(name, where + (" [dim](already running)[/]" if name in running else ""))

    pids = {name: _start_service(settings, name, env) for name in ("ingest", "api")}
    _finish_ray_head(settings, ray_child)
    ready("ray", f"{ray_address(settings)} (temp dir {p.ray_temp})")
    pids["dispatcher"] = _start_service(settings, "dispatcher", env)
    for name in ("ingest", "api"):
        _wait(settings, name, pids[name], _probe(settings, name))
        ready(name, host_port(*_service_address(settings, name)))
    nginx_pid = _start_nginx(settings, nginx)
    _wait(settings, "nginx", nginx_pid, _nginx_probe(settings))
    ready("nginx", f"REST :{settings.nginx_http_port}, gRPC :{settings.nginx_grpc_port}")
    with console.status("dispatcher: joining Ray and warming the executors"):
        _wait(settings, "dispatcher", pids["dispatcher"], _probe(settings, "dispatcher"))
    ready("dispatcher", "consuming " + settings.queue_name)
    _print_where(settings, console, time.monotonic() - started)


def down(settings: Settings) -> None:
    """Stop nginx, dispatcher, api, ingest and our Ray head; remove pid files. Idempotent."""
    _stop_nginx(settings)
    for name in ("dispatcher", "api", "ingest"):
        _stop_service(settings, name)
    paths(settings).dispatcher_ready.unlink(missing_ok=True)
    _stop_ray_head(settings)


def status(settings: Settings) -> list[ComponentStatus]:
    """Each component: running or not, its pid, its address."""
    pg_host, pg_port = services.pg_address(settings)
    amqp_host, amqp_port = services.amqp_address(settings)
    result = [
        ComponentStatus(
            "postgres", services.is_listening(pg_host, pg_port), None, _pg_where(settings)
        ),
        ComponentStatus(
            "rabbitmq",
            services.is_listening(amqp_host, amqp_port),
            None,
            _amqp_where(settings),
            settings.queue_name,
        ),
    ]
    gcs = _ray_gcs_pid(settings)
    result.append(
        ComponentStatus(
            "ray",
            gcs is not None,
            gcs,
            ray_address(settings),
            "dashboard http://"
            + host_port(settings.ray_dashboard_host, settings.ray_dashboard_port),
        )
    )
    for name in SERVICES:
        pid = _service_pid(settings, name)
        address = _service_address(settings, name)
        detail = ""
        if name == "dispatcher" and pid is not None:
            detail = "ready" if paths(settings).dispatcher_ready.exists() else "warming up"
        result.append(
            ComponentStatus(
                name,
                pid is not None,
                pid,
                host_port(*address) if address else ray_address(settings),
                detail,
            )
        )
    pid = _nginx_pid(settings)
    result.append(
        ComponentStatus(
            "nginx",
            pid is not None,
            pid,
            f"{host_port(settings.nginx_bind, settings.nginx_http_port)} (REST), "
            f"{host_port(settings.nginx_bind, settings.nginx_grpc_port)} (gRPC)",
        )
    )
    return result


def _pg_where(settings: Settings) -> str:
    return (
        host_port(*services.pg_address(settings))
        + "/"
        + (settings.database_url.path or "/").lstrip("/")
    )


def _amqp_where(settings: Settings) -> str:
    return host_port(*services.amqp_address(settings))


def _print_where(settings: Settings, console: Console, seconds: float) -> None:
    p = paths(settings)
    host = connect_host(settings.nginx_bind)
    table = Table(title=f"QServer is up ({seconds:.0f} s)", show_header=True)
    table.add_column("what")
    table.add_column("where")
    table.add_row(
        "REST", f"http://{host_port(host, settings.nginx_http_port)}/api/v1  (docs: /docs)"
    )
    table.add_row("gRPC", host_port(host, settings.nginx_grpc_port))
    table.add_row("Ray", f"{ray_address(settings)}  (token: {p.ray_token})")
    table.add_row(
        "Ray dashboard",
        f"http://{host_port(settings.ray_dashboard_host, settings.ray_dashboard_port)}",
    )
    table.add_row("logs", f"{p.logs}/{{ray,ingest,api,dispatcher}}.log, {p.nginx}/logs/")
    console.print(table)
