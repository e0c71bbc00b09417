"""The client's transport choices, without a server: which submissions go compressed, and the
TLS context that every Client of a process shares."""

from __future__ import annotations

import grpc

from qserver_client import Client, wire
from qserver_client.client import COMPRESS_FROM_BYTES, _compression

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'


def test_a_small_submission_goes_uncompressed_a_large_one_gzip():
    small = [wire.properties(counts=True), *wire.chunks(BELL)]
    large = [wire.properties(counts=True), *wire.chunks("x" * COMPRESS_FROM_BYTES)]
    assert _compression(small) is grpc.Compression.NoCompression
    assert _compression(tuple(small)) is grpc.Compression.NoCompression
    assert _compression(large) is grpc.Compression.Gzip
    assert _compression(iter(small)) is grpc.Compression.Gzip  # size unknown: compressed


def test_clients_share_one_tls_context():
    with Client(url="http://127.0.0.1:9", grpc="127.0.0.1:9") as first, Client(url="http://127.0.0.1:9") as second:
        assert first.http._transport._pool._ssl_context is second.http._transport._pool._ssl_context
