"""qserver_client: its wire format and stubs without a stack, its calls against the real stack."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_tools import protoc

from qserver_client import (
    Client,
    JobFailed,
    JobNotFound,
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
    with Client("127.0.0.1", 1, 1, timeout=2) as client:
        with pytest.raises(SubmitError) as refused:
            client.submit(BELL, timeout=2)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(ConnectionError):
            client.job(str(uuid.uuid4()))


# --- against the stack ----------------------------------------------------------------------


@pytest.fixture
def client(stack, settings):
    """A plain qserver_client.Client (not the tests' subclass) on the test stack."""
    with Client("127.0.0.1", settings.nginx_grpc_port, settings.nginx_http_port) as plain:
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
