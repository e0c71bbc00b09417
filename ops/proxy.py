"""Our nginx in front of api and ingest: config from the template; start, reload, stop, probe.

With ``server.crt`` and ``server.key`` in ``settings.tls_path`` the config gets one more
server: REST and gRPC over TLS on ``settings.nginx_tls_port`` (ALPN picks the protocol).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import socket
import ssl
import string
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from core.settings import GRPC_HEADER_TRANSPORT_BYTES, Settings
from ops import certs, endpoints, prereqs, procs
from ops.endpoints import NotReady, connect_host, grpc_health, host_port, http_health
from ops.statedir import ComponentFailed, paths
from protos.generated import jobs_pb2, jobs_pb2_grpc

NGINX_TEMPLATE = Path(__file__).resolve().parents[1] / "nginx" / "nginx.conf.template"
TLS_TEMPLATE = Path(__file__).resolve().parents[1] / "nginx" / "tls-server.conf.template"
# The REST and gRPC location bodies every server includes (also the compose image's).
LOCATIONS = Path(__file__).resolve().parents[1] / "nginx" / "locations"


# --- TLS ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    """The TLS files nginx serves: server.crt and server.key, and ca.crt when we made them."""

    cert: Path
    key: Path
    ca: Path | None

    def expires(self) -> str:
        """The server certificate's end of validity, ``YYYY-MM-DD`` (or why it can't be read)."""
        try:
            return certs.load_cert(self.cert).not_valid_after_utc.date().isoformat()
        except (OSError, ValueError) as error:
            return f"unreadable ({error})"


def tls(settings: Settings) -> Tls | None:
    """The TLS files when ``settings.tls_path`` holds server.crt and server.key, else None (off)."""
    p = certs.cert_paths(settings.tls_path)
    if not (p.server_cert.is_file() and p.server_key.is_file()):
        return None
    return Tls(p.server_cert, p.server_key, p.ca_cert if p.ca_cert.is_file() else None)


def tls_off_hint(settings: Settings) -> str:
    """One line: TLS is off, and how to turn it on."""
    return (
        f"TLS off: no server.crt/server.key in {certs.cert_paths(settings.tls_path).directory}; "
        "`qserver certs` makes a development pair (or see README, TLS, for real certificates)"
    )


def tls_server_name(cert: Path, address: str) -> str:
    """The name to verify the server certificate against when dialling ``address``.

    ``localhost`` for a loopback address when the certificate names it, else ``address``
    itself when it is in the certificate, else the certificate's first DNS name (a certbot
    certificate for ``your.host`` served on this machine).
    """
    try:
        dns, ips = certs.san_hosts(certs.load_cert(cert))
    except (OSError, ValueError):
        return address
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    if ip is not None and ip.is_loopback and "localhost" in dns:
        return "localhost"
    if ip in ips or address in dns:
        return address
    plain = [name for name in dns if not name.startswith("*.")]
    return plain[0] if plain else address


def render_nginx_conf(settings: Settings) -> str:
    """nginx.conf for our own instance, from nginx/nginx.conf.template and ``settings``."""
    prefix = paths(settings).nginx
    if os.geteuid() == 0:
        # Workers run as the user that runs `qserver up`: the state dir (under $HOME or a
        # pytest tmp dir) is not reachable to nginx's default `nobody`.
        user = "user root root;"
    else:
        user = "# user: workers run as the user that starts nginx"
    files = tls(settings)
    if files is None:
        tls_server = "    # " + tls_off_hint(settings)
    else:
        tls_server = (
            string.Template(TLS_TEMPLATE.read_text())
            .substitute(
                tls_listen=host_port(settings.nginx_bind, settings.nginx_tls_port),
                tls_cert=str(files.cert),
                tls_key=str(files.key),
                locations=str(LOCATIONS),
            )
            .rstrip("\n")
        )
    return string.Template(NGINX_TEMPLATE.read_text()).substitute(
        prefix=str(prefix),
        locations=str(LOCATIONS),
        tls_server=tls_server,
        user_directive=user,
        client_max_body_size=str(settings.max_body_bytes),
        header_buffer_size=f"{GRPC_HEADER_TRANSPORT_BYTES // 1024}k",
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


def ports(settings: Settings) -> list[int]:
    """The ports our nginx listens on: REST, gRPC, and the TLS port when TLS is on."""
    listed = [settings.nginx_http_port, settings.nginx_grpc_port]
    return listed + [settings.nginx_tls_port] if tls(settings) else listed


def _privileged_hint(settings: Settings) -> str:
    if os.geteuid() == 0 or settings.nginx_tls_port >= 1024 or tls(settings) is None:
        return ""
    return (
        f" (port {settings.nginx_tls_port} needs root or CAP_NET_BIND_SERVICE on nginx; "
        "or set QSERVER_NGINX_TLS_PORT to a port >= 1024)"
    )


def start(settings: Settings, nginx: str) -> int:
    """Write the config, test it, then reload our running nginx or start one; returns its pid.

    Raises:
        ComponentFailed: the config test or start failed, or a port is held by something else.
    """
    p = paths(settings)
    previous = p.nginx_conf.read_text() if p.nginx_conf.exists() else ""
    write_nginx_conf(settings)
    error_log = p.nginx / "logs" / "error.log"

    def run(*args: str) -> None:
        proc = subprocess.run(nginx_command(settings, *args, nginx=nginx), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip() + "\n" + procs.log_tail(error_log, 10)
            raise ComponentFailed(
                "nginx",
                f"`nginx {' '.join(args)}` failed{_privileged_hint(settings)}",
                error_log,
                tail,
            )

    def refuse_taken(port_list: list[int]) -> None:
        for port in port_list:
            if endpoints.is_listening(settings.nginx_bind, port):
                raise ComponentFailed("nginx", f"port {host_port(settings.nginx_bind, port)} is already in use")

    run("-t", "-q")
    pid = nginx_pid(settings)
    if pid is not None:
        # A port the running config did not have (TLS just turned on) must be free: a reload
        # that cannot bind keeps the old config and says so only in the error log.
        refuse_taken(
            [
                port
                for port in ports(settings)
                if f"{host_port(settings.nginx_bind, port)} " not in previous
                and f"{host_port(settings.nginx_bind, port)};" not in previous
            ]
        )
        run("-s", "reload")
        return pid
    refuse_taken(ports(settings))
    run()  # `daemon on`: returns once the master has forked
    pid = nginx_pid(settings)
    if pid is None:
        raise ComponentFailed("nginx", "no master process after start", error_log, procs.log_tail(error_log))
    return pid


def stop(settings: Settings) -> None:
    """`nginx -s quit` our instance, then terminate its master if it lingers. Idempotent."""
    pid = nginx_pid(settings)
    if pid is None:
        return
    nginx = prereqs.find_program("nginx")
    if nginx and paths(settings).nginx_conf.exists():
        subprocess.run(nginx_command(settings, "-s", "quit", nginx=nginx), capture_output=True, check=False)
    deadline = time.monotonic() + 10
    while procs.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    procs.terminate([pid], timeout=5.0)
    paths(settings).nginx_pid.unlink(missing_ok=True)


def https_health(files: Tls, host: str, port: int, timeout: float = 3.0) -> str:
    """GET /api/v1/health over TLS at host:port answers OK; returns the ALPN protocol (else NotReady).

    Verifies the certificate against ``files.ca`` (the system's roots when None) and the name
    :func:`tls_server_name` picks, offering ``http/1.1`` as a REST client (``requests``) does.
    """
    address = connect_host(host)
    name = tls_server_name(files.cert, address)
    where = f"https://{host_port(address, port)}/api/v1/health (as {name})"
    context = ssl.create_default_context(cafile=str(files.ca) if files.ca else None)
    context.set_alpn_protocols(["http/1.1"])
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=name) as conn:
                request = f"GET /api/v1/health HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
                conn.sendall(request.encode())
                response = http.client.HTTPResponse(conn)
                response.begin()
                body = json.loads(response.read() or b"{}")
                alpn = conn.selected_alpn_protocol() or "none"
    except (OSError, ValueError, http.client.HTTPException) as error:  # ssl.SSLError is an OSError
        raise NotReady(f"GET {where}: {error}") from None
    if response.status != 200 or body.get("status") != "OK":
        raise NotReady(f"GET {where} answered {response.status} {body}")
    return alpn


def grpc_tls_health(files: Tls, host: str, port: int, timeout: float = 3.0) -> None:
    """Jobs/HealthCheck over TLS at host:port answers "OK" (certificate checked), else NotReady."""
    address = connect_host(host)
    name = tls_server_name(files.cert, address)
    target = host_port(address, port)
    roots = files.ca.read_bytes() if files.ca else None
    options = [("grpc.enable_http_proxy", 0)]
    if name != address:
        options.append(("grpc.ssl_target_name_override", name))
    try:
        with grpc.secure_channel(
            target, grpc.ssl_channel_credentials(root_certificates=roots), options=options
        ) as channel:
            reply = jobs_pb2_grpc.JobsStub(channel).HealthCheck(jobs_pb2.HealthCheckInput(), timeout=timeout)
    except grpc.RpcError as error:
        raise NotReady(
            f"gRPC HealthCheck over TLS at {target} (as {name}): {error.code().name} {error.details()}"
        ) from None
    if reply.status != "OK":
        raise NotReady(f"gRPC HealthCheck over TLS at {target} answered {reply.status!r}")


def probe(settings: Settings) -> Callable[[], None]:
    """A readiness check: REST and gRPC health answer through nginx, over TLS too when it is on."""

    def check() -> None:
        http_health(settings.nginx_bind, settings.nginx_http_port)
        grpc_health(settings.nginx_bind, settings.nginx_grpc_port)
        files = tls(settings)
        if files is not None:
            https_health(files, settings.nginx_bind, settings.nginx_tls_port)
            grpc_tls_health(files, settings.nginx_bind, settings.nginx_tls_port)

    return check
