"""Our nginx in front of api and ingest: config from the template; start, reload, stop, probe."""

from __future__ import annotations

import os
import string
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from core import procs, services
from core.services import connect_host, grpc_health, host_port, http_health
from core.settings import MIB, Settings
from core.statedir import ComponentFailed, paths

NGINX_TEMPLATE = Path(__file__).resolve().parents[1] / "nginx" / "nginx.conf.template"


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


def nginx_pid(settings: Settings) -> int | None:
    """Our nginx master (its title names our config), or None."""
    p = paths(settings)
    pid = procs.read_pid(p.nginx_pid)
    return pid if pid is not None and str(p.nginx_conf) in " ".join(procs.cmdline(pid)) else None


def start(settings: Settings, nginx: str) -> int:
    """Write the config, test it, then reload our running nginx or start one; returns its pid.

    Raises:
        ComponentFailed: the config test or start failed, or a port is held by something else.
    """
    p = paths(settings)
    write_nginx_conf(settings)
    error_log = p.nginx / "logs" / "error.log"

    def run(*args: str) -> None:
        proc = subprocess.run(
            nginx_command(settings, *args, nginx=nginx), capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip() + "\n" + procs.log_tail(error_log, 10)
            raise ComponentFailed("nginx", f"`nginx {' '.join(args)}` failed", error_log, tail)

    run("-t", "-q")
    pid = nginx_pid(settings)
    if pid is not None:
        run("-s", "reload")
        return pid
    for port in (settings.nginx_http_port, settings.nginx_grpc_port):
        if services.is_listening(settings.nginx_bind, port):
            raise ComponentFailed(
                "nginx", f"port {host_port(settings.nginx_bind, port)} is already in use"
            )
    run()  # `daemon on`: returns once the master has forked
    pid = nginx_pid(settings)
    if pid is None:
        raise ComponentFailed(
            "nginx", "no master process after start", error_log, procs.log_tail(error_log)
        )
    return pid


def stop(settings: Settings) -> None:
    """`nginx -s quit` our instance, then terminate its master if it lingers. Idempotent."""
    pid = nginx_pid(settings)
    if pid is None:
        return
    nginx = services.find_program("nginx")
    if nginx and paths(settings).nginx_conf.exists():
        subprocess.run(
            nginx_command(settings, "-s", "quit", nginx=nginx), capture_output=True, check=False
        )
    deadline = time.monotonic() + 10
    while procs.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    procs.terminate([pid], timeout=5.0)
    paths(settings).nginx_pid.unlink(missing_ok=True)


def probe(settings: Settings) -> Callable[[], None]:
    """A readiness check: REST and gRPC health both answer through nginx (else NotReady)."""

    def check() -> None:
        http_health(settings.nginx_bind, settings.nginx_http_port)
        grpc_health(settings.nginx_bind, settings.nginx_grpc_port)

    return check
