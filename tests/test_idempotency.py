"""Idempotent submission through the whole stack: gRPC metadata ``idempotency-key`` through nginx
to ingest, one job per key and request, run once; the client sending a submission again, under
its key, when the answer is lost for real on the way back.
"""

from __future__ import annotations

import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from ops.endpoints import client_address
from protos.generated import jobs_pb2_grpc
from qserver_client import Client, SubmitError
from tests.circuits import BELL
from tests.client import chunks, properties
from tests.conftest import count_jobs

HEADERS = 0x1  # the HTTP/2 frame type that starts an answer (RFC 9113, 6.2)


def bell(metadata: dict | str | None = None, qasm: str = BELL) -> list:
    return [properties(counts=True, metadata={"shots": 100} if metadata is None else metadata), *chunks(qasm)]


def add_job(stack, key: str, messages: list | None = None) -> str:
    """One raw AddJob call (no resend) under ``key``; the job id or grpc.RpcError."""
    return stack.stub.AddJob(iter(messages or bell()), timeout=30, metadata=[("idempotency-key", key)]).id


def new_key() -> str:
    return f"test-{uuid.uuid4()}"


def key_row(db, key: str):
    return db.execute("SELECT owner, job_id, length(digest) FROM idempotency_keys WHERE key = %s", (key,)).fetchone()


def test_the_same_request_under_one_key_is_one_job_run_once(stack, db):
    key = new_key()
    before = count_jobs(db)
    first = add_job(stack, key)
    assert add_job(stack, key) == first
    job = stack.wait(first)
    assert add_job(stack, key) == first  # after it finished too
    assert count_jobs(db) == before + 1
    assert job["status"] == "finished" and job["attempts"] == 1, job
    assert sum(job["results"]["counts"].values()) == 100
    assert db.execute("SELECT count(*) FROM history WHERE job_id = %s", (first,)).fetchone()[0] == 1
    assert key_row(db, key) == ("", uuid.UUID(first), 32)  # authentication off: no owner


def test_the_metadata_counts_as_json_not_as_text(stack, db):
    key = new_key()
    first = add_job(stack, key, bell('{"shots": 100, "seed": 3}'))
    assert add_job(stack, key, bell('{"seed":3,\n "shots":100}')) == first


def test_another_request_under_a_used_key_is_already_exists(stack, db):
    key = new_key()
    first = add_job(stack, key)
    before = count_jobs(db)
    for changed in (bell({"shots": 101}), bell(qasm=BELL.replace("h q[0]", "x q[0]"))):
        with pytest.raises(grpc.RpcError) as refused:
            add_job(stack, key, changed)
        assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert refused.value.details() == (
            f"idempotency key '{key}' was already used for a different request (job {first}):"
            " use a new key for a new job"
        )
    assert count_jobs(db) == before


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        ([("idempotency-key", "")], "idempotency-key is empty"),
        ([("idempotency-key", "k" * 201)], "is 201 characters long: a key has at most 200"),
        ([("idempotency-key", "a"), ("idempotency-key", "b")], "idempotency-key sent 2 times"),
    ],
)
def test_bad_keys_are_invalid_argument(stack, db, metadata, words):
    before = count_jobs(db)
    with pytest.raises(grpc.RpcError) as refused:
        stack.stub.AddJob(iter(bell()), timeout=30, metadata=metadata)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in refused.value.details()
    assert count_jobs(db) == before


def test_concurrent_submissions_under_one_key_store_one_job(stack, db):
    key = new_key()
    before = count_jobs(db)
    start = threading.Barrier(8)

    def submit(_: int) -> str:
        start.wait(10)
        return add_job(stack, key)

    with ThreadPoolExecutor(8) as threads:
        ids = list(threads.map(submit, range(8)))
    assert len(set(ids)) == 1
    assert count_jobs(db) == before + 1
    job = stack.wait(ids[0])
    assert job["status"] == "finished" and job["attempts"] == 1, job


def test_the_client_sends_a_key_of_its_own_or_the_one_given(stack, settings, db):
    with Client(**client_address(settings)) as client:
        before = count_jobs(db)
        assert client.submit(BELL) != client.submit(BELL)  # a new key each time: two jobs
        assert count_jobs(db) == before + 2
        key = new_key()
        first = client.submit(BELL, idempotency_key=key)
        assert client.submit(BELL, idempotency_key=key) == first
        assert count_jobs(db) == before + 3
        with pytest.raises(SubmitError) as refused:
            client.submit(BELL, idempotency_key=key, metadata={"shots": 5})
        assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS  # a refusal: not sent again
        assert f"(job {first})" in refused.value.details()


def test_a_deleted_job_frees_its_key(stack, db):
    key = new_key()
    first = add_job(stack, key)
    assert stack.wait(first)["status"] == "finished"
    assert stack.http.delete(f"/api/v1/job/{first}").status_code == 200
    assert key_row(db, key) is None
    second = add_job(stack, key)
    assert second != first
    assert stack.wait(second)["status"] == "finished"


# --- a lost answer ---------------------------------------------------------------------------


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


class DropFirstAnswer:
    """A TCP proxy in front of nginx's gRPC port that loses the first answer for real.

    Its first connection is forwarded both ways, the server's side HTTP/2 frame by frame, until
    the server's answer starts (a HEADERS frame on a stream: ingest has stored and queued the
    job by then); instead of passing that frame on, it closes both connections, so the client's
    call ends UNAVAILABLE with no answer. Later connections are forwarded as they are.
    """

    def __init__(self, upstream_port: int):
        self._upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self.dropped = 0
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> DropFirstAnswer:
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        _close(self._listener, *self._open)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self._upstream)
            self._open += [client, upstream]
            self.connections += 1
            answers = self._drop_answer if self.connections == 1 else self._forward
            threading.Thread(target=self._forward, args=(client, upstream), daemon=True).start()
            threading.Thread(target=answers, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _forward(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            _close(source, target)

    def _drop_answer(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while True:
                header = _read(upstream, 9)  # length (3), type, flags, stream id (4)
                payload = _read(upstream, int.from_bytes(header[:3], "big"))
                if header[3] == HEADERS and int.from_bytes(header[5:9], "big") & 0x7FFFFFFF:
                    self.dropped += 1
                    return
                client.sendall(header + payload)
        except OSError:
            pass
        finally:
            _close(upstream, client)


def test_a_lost_answer_leaves_a_job_the_client_never_heard_of_without_a_key(stack, settings, db):
    """The proxy really loses an answer after the job was stored: sent without a key, a
    resend would be a second job. (The control for the test below.)"""
    with DropFirstAnswer(settings.nginx_grpc_port) as proxy, grpc.insecure_channel(f"127.0.0.1:{proxy.port}") as ch:
        before = count_jobs(db)
        with pytest.raises(grpc.RpcError) as lost:
            jobs_pb2_grpc.JobsStub(ch).AddJob(iter(bell()), timeout=30)
        assert lost.value.code() == grpc.StatusCode.UNAVAILABLE, lost.value.details()
        assert proxy.dropped == 1
        assert count_jobs(db) == before + 1  # stored, queued, and its id lost


def test_the_client_sends_a_submission_whose_answer_was_lost_again_and_one_job_runs(stack, settings, db):
    """A real lost answer (the proxy closes the connection where ingest's answer would pass),
    then the client's own resend under the same key: the server answers the stored job."""
    with (
        DropFirstAnswer(settings.nginx_grpc_port) as proxy,
        Client(url=f"http://127.0.0.1:{settings.nginx_http_port}", grpc=f"127.0.0.1:{proxy.port}") as client,
    ):
        before = count_jobs(db)
        job_id = client.submit(BELL, metadata={"shots": 100, "seed": 5})
        assert (proxy.dropped, proxy.connections) == (1, 2)
        assert count_jobs(db) == before + 1
        job = client.wait(job_id, timeout=120)
        assert job["status"] == "finished" and job["attempts"] == 1, job
        owner, stored, _ = db.execute(
            "SELECT owner, job_id, digest FROM idempotency_keys WHERE job_id = %s", (job_id,)
        ).fetchone()
        assert (owner, str(stored)) == ("", job_id)
