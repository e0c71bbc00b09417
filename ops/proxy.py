"""Our nginx in front of api and ingest: config from the template; start, reload, stop, probe.

With ``server.crt`` and ``server.key`` in ``settings.tls_path`` the config gets one more
server: REST and gRPC over TLS on ``settings.nginx_tls_port`` (ALPN picks the protocol).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import socket
import ssl
import string
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil

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


# --- applying a config: test it first, never leave one on disk that differs from what runs ------

_LISTEN = re.compile(r"^\s*listen\s+([^\s;]+)", re.MULTILINE)
_WILDCARDS = frozenset({"0.0.0.0", "::", "*", ""})


def listens(conf: str) -> set[str]:
    """The ``listen`` addresses (``host:port``) of an nginx config's text."""
    return set(_LISTEN.findall(conf))


def _host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def _overlap(a: str, b: str) -> bool:
    """Whether sockets bound to hosts ``a`` and ``b`` on one port would clash."""
    a, b = a.removeprefix("::ffff:"), b.removeprefix("::ffff:")
    if a in _WILDCARDS or b in _WILDCARDS or a == b:
        return True
    try:
        ipaddress.ip_address(a)
        ipaddress.ip_address(b)
    except ValueError:
        return True  # a host name: it may be either
    return False


def _our_pids(settings: Settings) -> set[int]:
    pid = nginx_pid(settings)
    if pid is None:
        return set()
    try:
        return {pid, *(child.pid for child in psutil.Process(pid).children())}
    except psutil.Error:
        return {pid}


def held_by_others(settings: Settings, addresses: set[str]) -> list[str]:
    """Those of ``addresses`` (``host:port``) that a listening socket of another process than our
    nginx would clash with, each with who holds it."""
    ours = _our_pids(settings)
    wanted = [_host_port(address) for address in sorted(addresses)]
    try:
        sockets = [c for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
    except psutil.Error:  # not allowed to list sockets here: a connect test (it sees ours too)
        return [f"{host_port(h, p)}" for h, p in wanted if endpoints.is_listening(h, p)]
    found = []
    for host, port in wanted:
        for sock in sockets:
            if sock.laddr.port == port and _overlap(host, sock.laddr.ip) and sock.pid not in ours:
                who = f"pid {sock.pid}" if sock.pid else "another user's process"
                found.append(f"{host_port(host, port)} (held at {host_port(sock.laddr.ip, port)} by {who})")
                break
    return found


def _conf_command(settings: Settings, conf: Path, nginx: str, *args: str) -> list[str]:
    p = paths(settings)
    return [nginx, "-p", str(p.nginx), "-c", str(conf), "-e", str(p.nginx / "logs" / "error.log"), *args]


def _nginx_run(settings: Settings, conf: Path, nginx: str, *args: str) -> None:
    """Run nginx on ``conf`` with ``args``.

    Raises:
        ComponentFailed: it exited non-zero (its output and the error log's tail).
    """
    error_log = paths(settings).nginx / "logs" / "error.log"
    proc = subprocess.run(_conf_command(settings, conf, nginx, *args), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip() + "\n" + procs.log_tail(error_log, 10)
        raise ComponentFailed("nginx", f"`nginx {' '.join(args)}` failed{_privileged_hint(settings)}", error_log, tail)


def stage(settings: Settings, nginx: str) -> tuple[Path, str]:
    """Render the config to ``nginx.conf.next`` beside nginx.conf and test it (`nginx -t`);
    returns (its path, the action applying it takes): "start" (our nginx does not run),
    "reload" (it runs and listens where it did) or "restart" (it runs and its listen
    addresses change: a reload cannot move a socket). nginx.conf itself is not touched.

    Raises:
        ComponentFailed: the test failed, or another process holds an address the config
            adds (the staged file is removed then).
    """
    p = paths(settings)
    for sub in ("logs", "tmp"):
        (p.nginx / sub).mkdir(parents=True, exist_ok=True)
    staged = p.nginx / "nginx.conf.next"
    text = render_nginx_conf(settings)
    staged.write_text(text)
    try:
        _nginx_run(settings, staged, nginx, "-t", "-q")
        running = nginx_pid(settings) is not None
        current = listens(_read(p.nginx_conf)) if running else set()
        added = listens(text) - current
        taken = held_by_others(settings, added)
        if taken:
            raise ComponentFailed(
                "nginx", f"already in use: {', '.join(taken)}{_privileged_hint(settings)}; nothing was changed"
            )
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    if not running:
        return staged, "start"
    return staged, ("reload" if listens(text) == current else "restart")


def check(settings: Settings, nginx: str) -> str:
    """What applying the settings' nginx config would take ("start", "reload" or "restart"),
    without applying it: the config is tested and its new addresses checked.

    Raises:
        ComponentFailed: as :func:`stage`.
    """
    staged, action = stage(settings, nginx)
    staged.unlink(missing_ok=True)
    return action


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _reload_took(pid: int, before: set[int], error_log: Path, offset: int, timeout: float = 15.0) -> str | None:
    """None once the master ``pid`` runs a worker not in ``before`` (the reload took), else
    what the error log says went wrong (or that nothing happened within ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = {child.pid for child in psutil.Process(pid).children()}
        except psutil.Error:
            return "the nginx master exited"
        if children - before:
            return None
        try:
            with error_log.open("rb") as handle:
                handle.seek(offset)
                new = handle.read().decode(errors="replace")
        except OSError:
            new = ""
        emerg = [line for line in new.splitlines() if "[emerg]" in line or "[alert]" in line]
        if emerg:
            return "\n".join(emerg[-5:])
        time.sleep(0.1)
    return f"nginx started no new worker within {timeout:.0f} s"


def start(settings: Settings, nginx: str) -> int:
    """Apply the settings' config to our nginx: start it, reload it, or (its listen addresses
    changed) stop and start it; returns its master's pid.

    The config is tested before it replaces nginx.conf, and nginx.conf always holds what nginx
    runs: a reload that did not take, or a start that failed, puts the previous config back
    (and starts nginx on it again when it was running).

    Raises:
        ComponentFailed: the config test or start failed, the reload did not take, or an
            address is held by another process.
    """
    p = paths(settings)
    error_log = p.nginx / "logs" / "error.log"
    staged, action = stage(settings, nginx)
    previous = _read(p.nginx_conf)
    try:
        if action == "reload":
            pid = nginx_pid(settings)
            assert pid is not None
            before = _our_pids(settings) - {pid}
            offset = error_log.stat().st_size if error_log.exists() else 0
            os.replace(staged, p.nginx_conf)
            try:
                _nginx_run(settings, p.nginx_conf, nginx, "-s", "reload")
                failed = _reload_took(pid, before, error_log, offset)
            except ComponentFailed as error:
                failed = f"{error.reason}\n{error.log_tail}"
            if failed is not None:
                p.nginx_conf.write_text(previous)  # nginx still runs it
                raise ComponentFailed(
                    "nginx", "the reload did not take; nginx keeps its previous config", error_log, failed
                )
            return pid
        if action == "restart":
            stop(settings)
        os.replace(staged, p.nginx_conf)
        try:
            _nginx_run(settings, p.nginx_conf, nginx)  # `daemon on`: returns once the master has forked
            pid = nginx_pid(settings)
            if pid is None:
                raise ComponentFailed("nginx", "no master process after start", error_log, procs.log_tail(error_log))
        except ComponentFailed:
            if previous:
                p.nginx_conf.write_text(previous)
                if action == "restart":  # back to what ran before
                    subprocess.run(nginx_command(settings, nginx=nginx), capture_output=True, check=False)
            raise
        return pid
    finally:
        staged.unlink(missing_ok=True)


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
