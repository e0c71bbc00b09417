"""nginx's TLS server for real, without the stack: stand-in api and ingest behind our own nginx.

A tiny HTTP server answers the api's health route and a gRPC server answers Jobs/HealthCheck;
ops/proxy.py starts our nginx in front of them on free ports with a development certificate,
and its TLS probes (what `qserver up` waits for) must pass: REST over HTTP/1.1 and gRPC over
HTTP/2 on the one TLS port, both verified against our CA.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest

from core.settings import Settings
from ops import certs, endpoints, prereqs, proxy
from protos.generated import jobs_pb2, jobs_pb2_grpc

NGINX = prereqs.find_program("nginx")
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")


class _Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.dumps({"status": "OK", "path": self.path, "proto": self.headers.get("X-Forwarded-Proto")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class _Ingest(jobs_pb2_grpc.JobsServicer):
    def HealthCheck(self, request, context):  # noqa: N802 (the proto's naming)
        return jobs_pb2.Health(status="OK")


@pytest.fixture
def upstreams():
    api = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    ingest = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    jobs_pb2_grpc.add_JobsServicer_to_server(_Ingest(), ingest)
    ingest_port = ingest.add_insecure_port("127.0.0.1:0")
    ingest.start()
    yield api.server_address[1], ingest_port
    ingest.stop(grace=None)
    api.shutdown()
    api.server_close()


@pytest.fixture
def settings(tmp_path, upstreams) -> Settings:
    api_port, ingest_port = upstreams
    http_port, grpc_port, tls_port = (endpoints.free_port() for _ in range(3))
    return Settings(
        state_dir=tmp_path / "state",
        nginx_bind="127.0.0.1",
        nginx_http_port=http_port,
        nginx_grpc_port=grpc_port,
        nginx_tls_port=tls_port,
        api_host="127.0.0.1",
        api_port=api_port,
        ingest_host="127.0.0.1",
        ingest_port=ingest_port,
    )


@pytest.fixture
def nginx(settings):
    """Our nginx, stopped after the test whatever happened."""
    yield lambda: proxy.start(settings, NGINX)
    proxy.stop(settings)


def _alpn(port: int, offered: list[str], ca) -> str | None:
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(offered)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as conn:
            return conn.selected_alpn_protocol()


def test_tls_serves_rest_and_grpc_on_one_port(settings, nginx):
    made = certs.make_dev_certs(settings.tls_path, ["localhost", "127.0.0.1"])
    nginx()
    endpoints.wait_until(proxy.probe(settings), timeout=20, interval=0.2)  # what `up` waits for
    files = proxy.tls(settings)
    assert files is not None and files.ca == made.ca_cert
    # REST over TLS: a requests-like client offers http/1.1 only and gets it
    assert proxy.https_health(files, "127.0.0.1", settings.nginx_tls_port) == "http/1.1"
    # gRPC over TLS, verified against our CA
    proxy.grpc_tls_health(files, "127.0.0.1", settings.nginx_tls_port)
    # ALPN: HTTP/2 for a client that asks for it (gRPC), HTTP/1.1 for one that doesn't
    assert _alpn(settings.nginx_tls_port, ["h2", "http/1.1"], made.ca_cert) == "h2"
    assert _alpn(settings.nginx_tls_port, ["http/1.1"], made.ca_cert) == "http/1.1"
    # the plain ports still work next to it
    endpoints.http_health("127.0.0.1", settings.nginx_http_port)
    endpoints.grpc_health("127.0.0.1", settings.nginx_grpc_port)


def test_the_api_sees_https_as_the_scheme(settings, nginx):
    made = certs.make_dev_certs(settings.tls_path, ["localhost"])
    nginx()
    endpoints.wait_until(proxy.probe(settings), timeout=20, interval=0.2)
    context = ssl.create_default_context(cafile=str(made.ca_cert))
    with socket.create_connection(("127.0.0.1", settings.nginx_tls_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as conn:
            conn.sendall(b"GET /docs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
    body = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert body == {"status": "OK", "path": "/docs", "proto": "https"}


def test_grpc_refuses_a_server_it_does_not_trust(settings, nginx, tmp_path):
    certs.make_dev_certs(settings.tls_path, ["localhost"])
    nginx()
    endpoints.wait_until(proxy.probe(settings), timeout=20, interval=0.2)
    other = certs.make_dev_certs(tmp_path / "other-ca", ["localhost"])
    stranger = proxy.Tls(other.server_cert, other.server_key, other.ca_cert)
    with pytest.raises(endpoints.NotReady, match="UNAVAILABLE"):
        proxy.grpc_tls_health(stranger, "127.0.0.1", settings.nginx_tls_port, timeout=2)
    with pytest.raises(endpoints.NotReady, match="CERTIFICATE_VERIFY_FAILED"):
        proxy.https_health(stranger, "127.0.0.1", settings.nginx_tls_port)


def test_certificates_made_while_nginx_runs_are_served_after_a_reload(settings, nginx):
    nginx()
    endpoints.wait_until(proxy.probe(settings), timeout=20, interval=0.2)
    assert not endpoints.is_listening("127.0.0.1", settings.nginx_tls_port)
    certs.make_dev_certs(settings.tls_path, ["localhost"])
    nginx()  # `qserver up` again: reload with the TLS server
    endpoints.wait_until(proxy.probe(settings), timeout=20, interval=0.2)


def test_a_tls_port_held_by_a_stranger_is_refused(settings, nginx):
    certs.make_dev_certs(settings.tls_path, ["localhost"])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", settings.nginx_tls_port))
        holder.listen()
        with pytest.raises(proxy.ComponentFailed, match=str(settings.nginx_tls_port)):
            nginx()
