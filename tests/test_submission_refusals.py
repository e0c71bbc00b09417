"""Every refusal of a submission: its gRPC status, its message, and that nothing was stored."""

from __future__ import annotations

import threading

import grpc
import pytest

from tests.circuits import BELL
from tests.client import chunks, properties
from tests.conftest import count_jobs


def refused(stack, messages) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        stack.add_job_stream(messages)
    return info.value


@pytest.mark.parametrize(
    ("props", "code", "words"),
    [
        (dict(), grpc.StatusCode.INVALID_ARGUMENT, "no result type selected"),
        (dict(counts=True, backend=""), grpc.StatusCode.INVALID_ARGUMENT, "targetSimulator is empty"),
        (dict(counts=True, backend="nope"), grpc.StatusCode.NOT_FOUND, "backend 'nope' does not exist"),
        (dict(counts=True, metadata="{not json"), grpc.StatusCode.INVALID_ARGUMENT, "metadata is not valid JSON"),
        (dict(counts=True, metadata=""), grpc.StatusCode.INVALID_ARGUMENT, "metadata is empty"),
        (dict(counts=True, metadata="[1, 2]"), grpc.StatusCode.INVALID_ARGUMENT, "metadata must be a JSON object"),
        (dict(counts=True, metadata={"shots": 0}), grpc.StatusCode.INVALID_ARGUMENT, "'shots' must be an integer"),
        (dict(counts=True, metadata={"shots": "100"}), grpc.StatusCode.INVALID_ARGUMENT, "'shots' must be an integer"),
        (
            dict(counts=True, metadata={"shots": 10**9}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "'shots' must be an integer from 1 to",
        ),
        (dict(counts=True, metadata={"seed": -1}), grpc.StatusCode.INVALID_ARGUMENT, "'seed' must be an integer"),
        (dict(counts=True, metadata={"method": "magic"}), grpc.StatusCode.INVALID_ARGUMENT, "'method' must be one of"),
        (dict(counts=True, metadata={"parameters": {"theta": "pi"}}), grpc.StatusCode.INVALID_ARGUMENT, "'parameters'"),
        (dict(counts=True, metadata={"tags": "gpu"}), grpc.StatusCode.INVALID_ARGUMENT, "'tags' must be a list"),
        # the one tag rule (core.domain.TAG_RULE): a tag no node could offer is refused as malformed
        (dict(counts=True, metadata={"tags": ["a" * 64]}), grpc.StatusCode.INVALID_ARGUMENT, "1-63 letters"),
        (dict(counts=True, metadata={"tags": [".lab"]}), grpc.StatusCode.INVALID_ARGUMENT, "beginning and ending"),
        (dict(counts=True, metadata={"timeout_s": -5}), grpc.StatusCode.INVALID_ARGUMENT, "'timeout_s'"),
        (dict(expval=True), grpc.StatusCode.INVALID_ARGUMENT, "expval needs observables"),
        (dict(expval=True, metadata={"obs": []}), grpc.StatusCode.INVALID_ARGUMENT, "'obs' must be a non-empty list"),
        (dict(expval=True, metadata={"obs": [[["ZQ", 1]]]}), grpc.StatusCode.INVALID_ARGUMENT, "obs[0][0]"),
        (
            dict(expval=True, metadata={"obs": [[["ZZ", 1], ["Z", 1]]]}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "mixes Pauli labels",
        ),
        (
            dict(expval=True, metadata={"obs": [["ZZ", 1]]}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "wrap your terms in one more list",
        ),
        (dict(counts=True, metadata='{"a": NaN}'), grpc.StatusCode.INVALID_ARGUMENT, "NaN is not a JSON number"),
        (dict(counts=True, metadata='{"a": 1e400}'), grpc.StatusCode.INVALID_ARGUMENT, "too large for a float"),
        (dict(counts=True, metadata='{"a": "x\\u0000y"}'), grpc.StatusCode.INVALID_ARGUMENT, "NUL character"),
        (dict(counts=True, metadata='{"a": "\\ud800"}'), grpc.StatusCode.INVALID_ARGUMENT, "not valid Unicode"),
        (
            dict(counts=True, metadata='{"a": ' + "9" * 5000 + "}"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "metadata is not valid JSON",
        ),
        (
            dict(counts=True, metadata='{"a": ' + "[" * 300 + "]" * 300 + "}"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "nested more than 32 levels",
        ),
        (
            dict(counts=True, metadata={"method": "x" * 6000}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "'method' must be one of",
        ),
        (dict(counts=True, backend="a" * 100_000), grpc.StatusCode.INVALID_ARGUMENT, "at most 100"),
        # the test cluster is one node without a GPU and without tags
        (
            dict(counts=True, backend="aer_gpu"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "backend 'aer_gpu' needs a GPU, which no node has ever offered "
            "(the cluster has 1 node(s) known, 1 online; GPU: none; tags: none",
        ),
        (
            dict(counts=True, metadata={"tags": ["gpu-box", "lab"]}),
            grpc.StatusCode.FAILED_PRECONDITION,
            "it asks for node tag(s) 'gpu-box', 'lab', which no node has ever offered",
        ),
    ],
)
def test_bad_properties_are_refused_and_nothing_is_stored(stack, db, props, code, words):
    before = count_jobs(db)
    error = refused(stack, [properties(**props), *chunks(BELL)])
    assert error.code() == code
    assert words in error.details()
    assert count_jobs(db) == before


def test_empty_program_is_refused(stack, db):
    before = count_jobs(db)
    error = refused(stack, [properties(counts=True)])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no QASM" in error.details()
    error = refused(stack, [properties(counts=True), *chunks("  \n\t\n")])
    assert "no QASM" in error.details()
    assert count_jobs(db) == before


def test_program_with_a_nul_character_is_refused(stack, db):
    before = count_jobs(db)
    error = refused(stack, [properties(counts=True), *chunks("OPENQASM 2.0;\x00qreg q[1];")])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "NUL character" in error.details()
    assert count_jobs(db) == before


def test_stream_without_properties_is_refused(stack, db):
    before = count_jobs(db)
    error = refused(stack, [])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no properties" in error.details()
    error = refused(stack, [*chunks(BELL), properties(counts=True)])
    assert "QASM chunk before the properties" in error.details()
    assert count_jobs(db) == before


def test_properties_twice_is_refused(stack, db):
    before = count_jobs(db)
    error = refused(stack, [properties(counts=True), properties(counts=True), *chunks(BELL)])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "properties sent twice" in error.details()
    assert count_jobs(db) == before


def test_program_over_the_size_limit_is_refused(stack, settings, db):
    before = count_jobs(db)
    big = BELL + "// " + "x" * settings.max_qasm_bytes + "\n"
    error = refused(stack, [properties(counts=True), *chunks(big)])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"limit of {settings.max_qasm_bytes} bytes" in error.details()
    assert count_jobs(db) == before


def test_client_iterator_that_raises_leaves_nothing(stack, db):
    before = count_jobs(db)

    def broken():
        yield properties(counts=True)
        yield from chunks(BELL[:20])
        raise RuntimeError("client-side failure while reading the file")

    with pytest.raises(grpc.RpcError) as info:
        stack.add_job_stream(broken())
    assert info.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN)
    assert count_jobs(db) == before


def test_cancelled_call_after_properties_leaves_nothing(stack, db):
    before = count_jobs(db)
    gate = threading.Event()

    def stalled():
        yield properties(counts=True)
        gate.wait(10)  # the call is cancelled while the stream is open

    future = stack.stub.AddJob.future(stalled(), timeout=30)
    threading.Timer(0.5, future.cancel).start()
    with pytest.raises(grpc.FutureCancelledError):
        future.result()
    gate.set()
    assert count_jobs(db) == before


def test_stream_with_deadline_exceeded_leaves_nothing(stack, db):
    before = count_jobs(db)

    def slow():
        yield properties(counts=True)
        threading.Event().wait(2)
        yield from chunks(BELL)

    with pytest.raises(grpc.RpcError) as info:
        stack.stub.AddJob(slow(), timeout=0.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert count_jobs(db) == before


def test_health_check(stack):
    from protos.generated import jobs_pb2

    assert stack.stub.HealthCheck(jobs_pb2.HealthCheckInput(), timeout=10).status == "OK"


def test_disabled_backend_is_refused(stack, db):
    db.execute("INSERT INTO backends (backend_name, plugin, enabled) VALUES ('off1', 'off-plugin', false)")
    try:
        before = count_jobs(db)
        error = refused(stack, [properties(counts=True, backend="off1"), *chunks(BELL)])
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error.details() == "backend 'off1' is disabled: its plugin 'off-plugin' was removed"
        assert count_jobs(db) == before
    finally:
        db.execute("DELETE FROM backends WHERE backend_name = 'off1'")


# Issue 12, point 8: metadata over QSERVER_GRPC_MAX_HEADER_BYTES (16 KiB) is refused by ingest
# naming the limit, through nginx too; nginx's 8 KiB default used to reset the stream
# (UNAVAILABLE, which clients retry).
@pytest.mark.parametrize("kib", [17, 32, 64])
def test_oversized_metadata_is_resource_exhausted_naming_the_limit(stack, db, kib):
    before = count_jobs(db)
    with pytest.raises(grpc.RpcError) as info:
        stack.stub.AddJob(
            iter([properties(counts=True), *chunks(BELL)]),
            timeout=30,
            metadata=[("x-padding", "p" * (kib * 1024))],
        )
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
    assert "QSERVER_GRPC_MAX_HEADER_BYTES" in info.value.details()
    assert "at most 16384" in info.value.details()
    assert count_jobs(db) == before


def test_metadata_under_the_limit_is_accepted(stack):
    job_id = stack.stub.AddJob(
        iter([properties(counts=True), *chunks(BELL)]),
        timeout=30,
        metadata=[("x-padding", "p" * 8192)],
    ).id
    assert stack.wait(job_id)["status"] == "finished"
