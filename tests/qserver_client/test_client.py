"""qserver_client: its wire format and stubs without a stack, its calls against the real stack."""

from __future__ import annotations

import itertools
import json
import socket
import socketserver
import subprocess
import sys
import threading
import uuid
from datetime import datetime
from pathlib import Path

import grpc
import pytest
from grpc_tools import protoc

from ops import endpoints
from qserver_client import (
    ApiUnreachable,
    BackendNotFound,
    BadRequest,
    Client,
    Conflict,
    JobFailed,
    JobNotFound,
    NoResults,
    NotFound,
    QServerClientError,
    SubmitError,
    WaitTimeout,
    wire,
)
from qserver_client._generated import jobs_pb2
from tests.circuits import BELL

ROOT = Path(__file__).resolve().parents[2]
SLOW = (  # extended stabilizer, 2000 shots: seconds
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[3];\nh q;\nt q;\nh q;\nt q;\nh q;\nmeasure q -> c;\n'
)
SERVER_PACKAGES = (
    "core",
    "ops",
    "ingest",
    "dispatcher",
    "cluster",
    "plugins",
    "api",
    "protos",
    "ray",
    "qiskit",
    "qiskit_aer",
    "psycopg",
    "fastapi",
)


# --- no stack ------------------------------------------------------------------------------


def test_vendored_messages_are_what_generate_sh_makes(tmp_path):
    """client/generate.sh's output is committed; a changed proto or grpcio-tools shows here."""
    include = f"-Iprotos/generated={ROOT / 'protos'}"
    args = ["protoc", include, f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", str(ROOT / "protos" / "jobs.proto")]
    assert protoc.main(args) == 0
    for name in ("jobs_pb2.py", "jobs_pb2.pyi"):
        fresh = (tmp_path / "protos" / "generated" / name).read_bytes()
        assert fresh == (ROOT / "client" / "qserver_client" / "_generated" / name).read_bytes(), name


def test_messages_share_the_servers_descriptor():
    """One descriptor (name and bytes) for the client's and the server's copy, so both load
    into one process (the tests, the operator's tools) and talk the same wire format."""
    from protos.generated import jobs_pb2 as server_pb2

    assert jobs_pb2.DESCRIPTOR.serialized_pb == server_pb2.DESCRIPTOR.serialized_pb
    assert jobs_pb2.JobData is server_pb2.JobData


def test_method_paths_are_the_servers():
    generated = (ROOT / "protos" / "generated" / "jobs_pb2_grpc.py").read_text()
    assert f"'{wire.ADD_JOB}'" in generated and f"'{wire.HEALTH_CHECK}'" in generated


def test_chunks_are_16_ki_characters_and_join_to_the_program():
    program = "x" * (2 * wire.CHUNK_CHARS + 5)
    pieces = [message.qasmChunk for message in wire.chunks(program)]
    assert [len(piece) for piece in pieces] == [wire.CHUNK_CHARS, wire.CHUNK_CHARS, 5]
    assert "".join(pieces) == program
    assert list(wire.chunks("")) == []


def test_properties_carry_the_metadata_as_json_text():
    first = wire.properties(backend="aer", counts=True, expval=True, metadata={"shots": 7})
    assert first.WhichOneof("DataStream") == "properties"
    props = first.properties
    assert (props.resultTypeCounts, props.resultTypeQuasiDist, props.resultTypeExpVal) == (True, False, True)
    assert props.targetSimulator == "aer" and json.loads(props.metadata) == {"shots": 7}
    assert wire.properties(metadata="not json").properties.metadata == "not json"
    assert wire.properties().properties.metadata == "{}"


def test_errors_are_one_tree_and_submit_errors_are_rpc_errors():
    error = SubmitError(grpc.StatusCode.NOT_FOUND, "no such backend")
    assert isinstance(error, QServerClientError) and isinstance(error, grpc.RpcError)
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "no such backend")


def test_imports_no_server_package():
    """The client alone: importing it loads none of the server's packages."""
    code = (
        "import sys\n"
        "import qserver_client, qserver_client.client, qserver_client.wire\n"
        f"loaded = sorted({{m.split('.')[0] for m in sys.modules}} & set({SERVER_PACKAGES!r}))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


def test_unreachable_server_raises_client_errors():
    with Client(url="http://127.0.0.1:1", grpc="127.0.0.1:1", timeout=2) as client:
        with pytest.raises(SubmitError) as refused:
            client.submit(BELL, timeout=2)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(ConnectionError):
            client.job(str(uuid.uuid4()))


# --- against the stack ----------------------------------------------------------------------


@pytest.fixture
def client(stack, settings):
    """A plain qserver_client.Client (not the tests' subclass) on the test stack."""
    with Client(**endpoints.client_address(settings)) as plain:
        yield plain


def test_run_returns_the_finished_job(client):
    job = client.run(BELL, quasi_dist=True, metadata={"shots": 300, "seed": 1}, timeout=60)
    assert job["status"] == "finished", job["error"]
    assert set(job["results"]["counts"]) <= {"00", "11"} and sum(job["results"]["counts"].values()) == 300
    assert job["results"]["quasi_dist"] is not None and job["metadata"]["shots"] == 300


def test_submit_then_wait_result_returns_only_the_results(client):
    job_id = client.submit(BELL, counts=False, expval=True, metadata={"obs": [[["ZZ", 1.0]]]})
    assert str(uuid.UUID(job_id)) == job_id
    results = client.wait_result(job_id, timeout=60)
    assert results["expval"] == [1.0] and results["counts"] is None
    assert client.health() == "OK"


def test_refusals_are_submit_errors_with_the_servers_code(client):
    with pytest.raises(SubmitError) as unknown:
        client.submit(BELL, backend="nope")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert "backend 'nope' does not exist" in unknown.value.details()
    with pytest.raises(SubmitError) as untagged:
        client.submit(BELL, tags=["attic"])
    assert untagged.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "'attic'" in untagged.value.details()


def test_unknown_job_is_not_found(client):
    with pytest.raises(JobNotFound) as missing:
        client.job(str(uuid.uuid4()))
    assert missing.value.status == 404
    with pytest.raises(JobNotFound):
        client.wait(str(uuid.uuid4()), timeout=1)


def test_wait_times_out_then_a_failed_job_is_returned_or_raised(client):
    job_id = client.submit(SLOW, metadata={"method": "extended_stabilizer", "shots": 2000, "timeout_s": 2})
    with pytest.raises(WaitTimeout) as late:
        client.wait(job_id, timeout=0.2)
    assert isinstance(late.value, TimeoutError) and late.value.job["status"] in ("pending", "running")
    seen: list[str] = []
    job = client.wait(job_id, timeout=60, on_status=seen.append)
    assert job["status"] == "failed" and job["error"] == "timed out after 2 s"
    assert seen and seen[-1] == "failed"
    with pytest.raises(JobFailed) as failed:
        client.wait_result(job_id, timeout=10)
    assert failed.value.job["error"] == "timed out after 2 s"


def test_result_of_a_job_in_progress_then_cancel_then_delete(client):
    job_id = client.submit(SLOW, metadata={"method": "extended_stabilizer", "shots": 2000})
    with pytest.raises(NoResults) as early:
        client.result(job_id)
    assert early.value.status == 404 and "no results" in early.value.detail
    canceled = client.cancel(job_id)
    assert canceled["id"] == job_id and canceled["status"] == "canceled"
    with pytest.raises(Conflict) as again:
        client.cancel(job_id)
    assert again.value.status == 409 and again.value.detail
    with pytest.raises(JobFailed) as failed:
        client.result(job_id)
    assert failed.value.job["status"] == "canceled"
    assert client.wait(job_id, timeout=10)["status"] == "canceled"
    client.delete(job_id)
    with pytest.raises(JobNotFound):
        client.job(job_id)
    with pytest.raises(JobNotFound):
        client.cancel(job_id)
    with pytest.raises(JobNotFound):
        client.delete(job_id)


def test_result_of_a_finished_job_waits_on_the_server(client):
    job_id = client.submit(BELL, metadata={"shots": 100, "seed": 3})
    results = client.result(job_id, wait_s=30)
    assert sum(results["counts"].values()) == 100 and results["quasi_dist"] is None
    assert client.result(job_id) == results


def test_a_malformed_id_is_a_bad_request(client):
    with pytest.raises(BadRequest) as bad:
        client.job("not-a-uuid")
    assert bad.value.status == 400 and bad.value.detail
    with pytest.raises(JobNotFound):  # a path segment of its own, never another route
        client.job(f"{uuid.uuid4()}/../../backends")


def test_iter_jobs_follows_every_page_in_submission_order(client):
    first = client.submit(BELL, metadata={"shots": 10})
    ids = [first] + [client.submit(BELL, metadata={"shots": 10}) for _ in range(24)]
    for job_id in ids:  # ended first: the two reads compared below see the same rows
        client.wait(job_id, timeout=60)
    cursor = client.job(first)["pointer"] - 1
    listed = list(client.iter_jobs(cursor=cursor))
    assert len(listed) >= 25  # more than one page of 20
    assert [job["id"] for job in listed if job["id"] in ids] == ids
    pointers = [job["pointer"] for job in listed]
    assert pointers == sorted(set(pointers)) and pointers[0] == cursor + 1
    assert list(client.iter_jobs(cursor=pointers[-1])) == []
    assert client.jobs(cursor=cursor) == listed[:20]  # one page, the server's 20


def test_jobs_and_history_filtered_newest_first_and_lean(client):
    """Real jobs through the stack (nginx passes X-Next-Cursor): filters, desc, lean rows."""
    ids = [client.submit(BELL, metadata={"shots": 10, "seed": i}) for i in range(12)]
    since = client.job(ids[0])["submission_date"]
    newest = list(itertools.islice(client.iter_jobs(order="desc", limit=5, fields=["status"]), 12))
    assert [job["id"] for job in newest] == ids[::-1]
    assert all(set(job) == {"id", "pointer", "status"} for job in newest)
    for job_id in ids:
        client.wait(job_id, timeout=60)
    finished = client.jobs(
        status=["finished", "failed"],
        backend="aer",
        order="desc",
        limit=100,
        since=_when(since),
        fields="status,submission_date",
    )
    assert [job["id"] for job in finished] == ids[::-1]
    assert {job["status"] for job in finished} == {"finished"}
    assert all(_when(job["submission_date"]) >= _when(since) for job in finished)
    assert client.jobs(status="pending", since=since) == []
    history = list(client.iter_history(since=since, limit=5, fields=["job_id", "status"]))
    assert sorted(row["job_id"] for row in history) == sorted(ids)  # in the order they ended
    assert [row["pointer"] for row in history] == sorted(row["pointer"] for row in history)
    last = client.history(order="desc", limit=3, since=since)
    assert [row["job_id"] for row in last] == [row["job_id"] for row in history[::-1][:3]]
    with pytest.raises(BadRequest) as bad:
        client.jobs(status="done")
    assert bad.value.status == 400 and bad.value.detail.startswith("status: unknown status 'done'")
    with pytest.raises(BadRequest) as bad:
        client.history(limit=5000)
    assert bad.value.detail.startswith("limit: ")


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_plugins_and_backend_capabilities(client):
    plugins = client.plugins()
    aer = plugins[0]
    assert aer["name"] == "aer-plugin" and aer["builtin"] and aer["enabled"] and aer["version"]
    assert aer["backends"] == ["aer", "aer_gpu"]
    capabilities = client.backend("aer").capabilities
    assert capabilities["plugin_version"] == aer["version"] and capabilities["needs_gpu"] is False
    assert {"statevector", "stabilizer", "matrix_product_state"} <= set(capabilities["methods"])
    assert 20 <= capabilities["max_qubits"]["statevector"] <= 34  # the node's memory bounds it
    assert capabilities["result_types"] == ["counts", "quasi_dist", "expval"]


def test_backends_and_backend(client):
    backends = client.backends()
    names = [backend["backend_name"] for backend in backends]
    assert "aer" in names and len(names) == len(set(names))
    aer = client.backend("aer")
    assert aer.name == "aer" and aer.info == next(b for b in backends if b["backend_name"] == "aer")
    with pytest.raises(BackendNotFound) as missing:
        client.backend("nope")
    assert isinstance(missing.value, NotFound) and missing.value.status == 404 and "nope" in missing.value.detail


def test_tls_on_one_port_with_a_ca_file(stack, settings, monkeypatch):
    """https://host:443 alone: gRPC over TLS on the same port, both checked against the CA."""
    monkeypatch.setenv("QSERVER_CA_FILE", str(settings.tls_path / "ca.crt"))
    with Client(url=f"https://127.0.0.1:{settings.nginx_tls_port}") as tls:
        assert tls.grpc_target == f"127.0.0.1:{settings.nginx_tls_port}"
        assert tls.health() == "OK"
        job = tls.run(BELL, metadata={"shots": 50}, timeout=60)
        assert job["status"] == "finished" and sum(job["results"]["counts"].values()) == 50
    monkeypatch.delenv("QSERVER_CA_FILE")
    with Client(url=f"https://127.0.0.1:{settings.nginx_tls_port}") as untrusted:
        with pytest.raises(ApiUnreachable):  # the system's CAs do not know the test CA
            untrusted.backends()
        with pytest.raises(SubmitError) as refused:
            untrusted.submit(BELL, timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


class _Forward(socketserver.ThreadingTCPServer):
    """[::1]:port -> 127.0.0.1:target, one pair of threads per connection: an IPv6 way in to
    the test stack, whose nginx listens on 127.0.0.1 only."""

    address_family = socket.AF_INET6
    daemon_threads = True

    def __init__(self, target: int):
        super().__init__(("::1", 0), _Pipe)
        self.target = target


class _Pipe(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        with socket.create_connection(("127.0.0.1", self.server.target)) as upstream:
            back = threading.Thread(target=_pump, args=(upstream, self.request), daemon=True)
            back.start()
            _pump(self.request, upstream)
            back.join()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


@pytest.fixture
def ipv6_forwards(stack, settings):
    """(REST port, gRPC port) on [::1] that reach the stack's nginx."""
    try:
        rest, rpc = _Forward(settings.nginx_http_port), _Forward(settings.nginx_grpc_port)
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    for server in (rest, rpc):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield rest.server_address[1], rpc.server_address[1]
    for server in (rest, rpc):
        server.shutdown()
        server.server_close()


def test_ipv6_literal_addresses(ipv6_forwards):
    rest, rpc = ipv6_forwards
    with Client(url=f"http://[::1]:{rest}", grpc=f"[::1]:{rpc}") as client:
        assert client.grpc_target == f"[::1]:{rpc}"
        job = client.run(BELL, metadata={"shots": 20}, timeout=60)
        assert job["status"] == "finished" and sum(job["results"]["counts"].values()) == 20
