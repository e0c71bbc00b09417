"""Client.submit's idempotency key and its resending of a submission whose answer was lost, against
a small in-process gRPC server that answers as told (no stack)."""

from __future__ import annotations

import re
from concurrent import futures

import grpc
import pytest

from protos.generated import jobs_pb2, jobs_pb2_grpc
from qserver_client import Client, SubmitError, wire
from tests.circuits import BELL

UNAVAILABLE, DEADLINE = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED


class Scripted(jobs_pb2_grpc.JobsServicer):
    """AddJob ends with the next of ``codes`` (an error status), then answers "job-1"; records
    each call's idempotency key and messages."""

    def __init__(self) -> None:
        self.codes: list[grpc.StatusCode] = []
        self.calls: list[tuple[str | None, list[bytes]]] = []

    def AddJob(self, request_iterator, context):  # noqa: N802 (gRPC method name)
        messages = [message.SerializeToString() for message in request_iterator]
        keys = [value for name, value in context.invocation_metadata() if name == "idempotency-key"]
        self.calls.append((keys[0] if len(keys) == 1 else None, messages))
        if self.codes:
            context.abort(self.codes.pop(0), "scripted")
        return jobs_pb2.PendingJob(id="job-1")


@pytest.fixture(scope="module")
def server():
    servicer = Scripted()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(4))
    jobs_pb2_grpc.add_JobsServicer_to_server(servicer, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    yield servicer, port
    grpc_server.stop(None)


@pytest.fixture
def scripted(server):
    """``(servicer, client)``: the servicer's script and calls cleared, a client talking to it."""
    servicer, port = server
    servicer.codes.clear()
    servicer.calls.clear()
    with Client(url="http://127.0.0.1:1", grpc=f"127.0.0.1:{port}", timeout=5) as client:
        yield servicer, client


def test_each_submission_has_a_new_key_unless_given(scripted):
    servicer, client = scripted
    assert client.submit(BELL) == client.submit(BELL) == "job-1"
    client.submit(BELL, idempotency_key="my key 1")
    keys = [key for key, _ in servicer.calls]
    assert all(re.fullmatch("[0-9a-f]{32}", key) for key in keys[:2]) and keys[0] != keys[1]
    assert keys[2] == "my key 1"


def test_a_lost_answer_is_sent_again_with_the_same_key_and_messages(scripted):
    servicer, client = scripted
    servicer.codes[:] = [UNAVAILABLE, DEADLINE]
    assert client.submit(BELL, metadata={"shots": 9}) == "job-1"
    assert len(servicer.calls) == 3
    (key, messages), *again = servicer.calls
    assert all(call == (key, messages) for call in again)
    expected = [wire.properties(counts=True, metadata={"shots": 9}), *wire.chunks(BELL)]
    assert messages == [message.SerializeToString() for message in expected]


def test_resending_stops_after_submit_attempts(scripted):
    servicer, client = scripted
    servicer.codes[:] = [UNAVAILABLE] * Client.SUBMIT_ATTEMPTS
    with pytest.raises(SubmitError) as lost:
        client.submit(BELL)
    assert lost.value.code() == UNAVAILABLE and lost.value.details() == "scripted"
    assert len(servicer.calls) == Client.SUBMIT_ATTEMPTS
    assert len({key for key, _ in servicer.calls}) == 1


@pytest.mark.parametrize("code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS])
def test_a_refusal_is_not_sent_again(scripted, code):
    servicer, client = scripted
    servicer.codes[:] = [code]
    with pytest.raises(SubmitError) as refused:
        client.submit(BELL)
    assert refused.value.code() == code
    assert len(servicer.calls) == 1


def test_a_one_shot_stream_is_sent_once(scripted):
    servicer, client = scripted
    servicer.codes[:] = [UNAVAILABLE]
    stream = iter([wire.properties(counts=True), *wire.chunks(BELL)])
    with pytest.raises(SubmitError):
        client.submit_messages(stream, idempotency_key="k")
    assert [key for key, _ in servicer.calls] == ["k"]
    assert client.submit_messages((wire.properties(counts=True), *wire.chunks(BELL)), idempotency_key="k") == "job-1"
