"""Addresses and readiness probes of the stack's parts: host:port, free ports, waiting, gRPC and
HTTP health checks. Everything here is synchronous."""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_fixed,
)

from protos.generated import jobs_pb2, jobs_pb2_grpc

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger(__name__)


class NotReady(Exception):
    """A readiness probe did not pass yet (retried until its deadline)."""


# --- addresses -------------------------------------------------------------------------------


def connect_host(host: str) -> str:
    """The address to dial for a server bound to ``host`` (a wildcard means this machine)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def is_local(host: str) -> bool:
    """True for this machine: localhost, a loopback address, or a wildcard bind address."""
    if host in ("", "localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def host_port(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def client_address(settings: Settings) -> dict[str, str]:
    """The stack's nginx as ``qserver_client.Client`` takes it, plain text (``Client(**...)``):
    ``{"url": "http://HOST:HTTP_PORT", "grpc": "HOST:GRPC_PORT"}``."""
    host = connect_host(settings.nginx_bind)
    return {
        "url": f"http://{host_port(host, settings.nginx_http_port)}",
        "grpc": host_port(host, settings.nginx_grpc_port),
    }


def is_listening(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((connect_host(host), port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port that nothing listens on right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], None], *, timeout: float, interval: float = 0.5) -> None:
    """Call ``check`` until it stops raising NotReady; other exceptions propagate at once.

    Raises:
        TimeoutError: still not ready after ``timeout`` seconds (the last NotReady as cause).
    """
    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(interval),
        retry=retry_if_exception_type(NotReady),
        reraise=False,
    )
    try:
        retrying(check)
    except RetryError as error:
        last = error.last_attempt.exception()
        raise TimeoutError(f"not ready after {timeout:.0f} s: {last}") from last


# --- packages ----------------------------------------------------------------------------------


def grpc_health(host: str, port: int, timeout: float = 3.0) -> None:
    """Jobs/HealthCheck at host:port answers "OK", else NotReady."""
    target = host_port(connect_host(host), port)
    try:
        with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as channel:
            reply = jobs_pb2_grpc.JobsStub(channel).HealthCheck(jobs_pb2.HealthCheckInput(), timeout=timeout)
    except grpc.RpcError as error:
        raise NotReady(f"gRPC HealthCheck at {target}: {error.code().name} {error.details()}") from None
    if reply.status != "OK":
        raise NotReady(f"gRPC HealthCheck at {target} answered {reply.status!r}")


NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_health(host: str, port: int, timeout: float = 3.0) -> None:
    """GET /api/v1/health at host:port answers {"status": "OK"}, else NotReady."""
    url = f"http://{host_port(connect_host(host), port)}/api/v1/health"
    try:
        with NO_PROXY.open(url, timeout=timeout) as response:
            body = json.loads(response.read() or b"{}")
    except (OSError, ValueError) as error:  # URLError, HTTPError, timeouts, bad JSON
        raise NotReady(f"GET {url}: {error}") from None
    if body.get("status") != "OK":
        raise NotReady(f"GET {url} answered {body}")


def checks_health(url: str, timeout: float = 3.0) -> dict:
    """GET ``url``, a health answer of core.monitor's shape (the api's ``/api/v1/health/ready``,
    ingest's and the dispatcher's ``/health``): its body when the service is healthy (200).

    Raises:
        NotReady: no answer, or 503 naming the checks that fail.
    """
    try:
        with NO_PROXY.open(url, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:  # 503: the body names what fails
        try:
            checks = json.loads(error.read() or b"{}").get("checks", {})
        except ValueError:
            checks = {}
        failing = "; ".join(f"{name}: {why}" for name, why in checks.items() if why != "ok")
        raise NotReady(f"GET {url}: {error.code} {failing or error.reason}") from None
    except (OSError, ValueError) as error:  # URLError, timeouts, bad JSON
        raise NotReady(f"GET {url}: {error}") from None


def monitor_url(host: str, port: int, path: str = "/health") -> str:
    """The URL of ``path`` on a service's monitor (ingest's or the dispatcher's) at host:port."""
    return f"http://{host_port(connect_host(host), port)}{path}"
