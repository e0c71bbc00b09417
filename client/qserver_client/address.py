"""Where a QServer is: its REST base URL and its gRPC target, from the arguments, the
environment (``QSERVER_URL``, ``QSERVER_GRPC``) or the local default stack.

The rules (``Client``'s docstring repeats them for users):

- ``url``: ``http://host[:port][/prefix]`` or ``https://...`` (TLS). Default: ``QSERVER_URL``,
  else ``http://127.0.0.1:8080``.
- ``grpc``: ``host[:port]``, or with a scheme that says whether it is TLS: ``grpc://`` (plain
  text) or ``grpcs://`` (TLS). Without a scheme it is TLS exactly when ``url`` is ``https``.
  Without a port: 443 with TLS, else 50051 (nginx's ports). Default: ``QSERVER_GRPC`` when the
  url came from the environment or the default too (one server, never half of each), else the
  url's server: with ``https`` its host and port (nginx serves gRPC on the TLS port), with
  ``http`` its host on 50051.
- An IPv6 address goes in brackets, as in a URL: ``http://[::1]:8080``, ``[::1]:50051``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:8080"
GRPC_PORT = 50051  # nginx's plain-text gRPC port
TLS_PORT = 443  # nginx's TLS port: REST and gRPC


@dataclass(frozen=True)
class Address:
    """A QServer's REST base URL (no trailing slash) and gRPC target (``host:port``)."""

    url: str
    grpc_target: str
    grpc_tls: bool

    @property
    def tls(self) -> bool:
        """Whether REST goes over HTTPS."""
        return self.url.startswith("https://")


def host_port(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resolve(url: str | None, grpc: str | None, env: Mapping[str, str] | None = None) -> Address:
    """The address for ``Client(url, grpc)``: arguments first, then ``env`` (default
    ``os.environ``), then the local stack. Raises ValueError naming what does not parse."""
    env = os.environ if env is None else env
    if url is None:
        url = env.get("QSERVER_URL") or DEFAULT_URL
        grpc = grpc or env.get("QSERVER_GRPC") or None
    url = url.rstrip("/")
    host, port, tls = _parse_url(url)
    if grpc is None:
        return Address(url, host_port(host, port if tls else GRPC_PORT), tls)
    target, grpc_tls = _parse_grpc(grpc, tls)
    return Address(url, target, grpc_tls)


def _parse_url(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of a REST base URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"url {url!r}: give http://host[:port] or https://host[:port]")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"url {url!r}: a base URL has no query, fragment or user")
    host, port = _host_and_port(parts.netloc, url)
    tls = parts.scheme == "https"
    return host, port or (TLS_PORT if tls else 80), tls


def _parse_grpc(grpc: str, url_tls: bool) -> tuple[str, bool]:
    """(target, tls) of a gRPC address; ``url_tls`` decides when it names no scheme."""
    scheme, sep, rest = grpc.partition("://")
    if not sep:
        scheme, rest, tls = "", grpc, url_tls
    elif scheme in ("grpc", "grpcs"):
        tls = scheme == "grpcs"
    else:
        raise ValueError(f"grpc {grpc!r}: give host[:port], grpc://host[:port] or grpcs://host[:port]")
    host, port = _host_and_port(rest.rstrip("/"), grpc)
    return host_port(host, port or (TLS_PORT if tls else GRPC_PORT)), tls


def _host_and_port(netloc: str, given: str) -> tuple[str, int | None]:
    """(host, port or None) of ``host[:port]``; an IPv6 host in brackets."""
    if "/" in netloc or "@" in netloc:
        raise ValueError(f"{given!r}: expected host[:port], got {netloc!r}")
    if netloc.count(":") > 1 and not netloc.startswith("["):
        raise ValueError(f"{given!r}: put an IPv6 address in brackets, e.g. [::1]:50051")
    parts = urlsplit(f"//{netloc}")
    try:
        port = parts.port
    except ValueError as error:
        raise ValueError(f"{given!r}: {error}") from None
    if not parts.hostname:
        raise ValueError(f"{given!r}: no host")
    return parts.hostname, port
