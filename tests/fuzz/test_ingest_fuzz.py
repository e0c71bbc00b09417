"""Hostile streams into a real ingest: every call ends OK or with a client-fault status and a message.

An in-process ingest server (on the test session's event loop) over the scratch database and
a real RabbitMQ with a scratch queue (deleted afterwards) takes hypothesis-made streams of
JobData: properties and QASM chunks in any order and number, with any content, and raw
bytes that are not a JobData at all or carry invalid UTF-8 in a string field (sent through
an identity serializer). Each call ends OK or with one of the statuses a client can cause,
never UNKNOWN or INTERNAL, with a non-empty details string; a refused call leaves no job
row; HealthCheck still answers after every call. A second server has authentication on.

A message protobuf cannot decode (it once ended UNKNOWN) is INVALID_ARGUMENT:
test_undecodable_message_is_invalid_argument.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import grpc
import psycopg
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core import auth, queue, store
from core.settings import Settings
from ingest.server import build_server
from protos.generated import jobs_pb2
from tests.fuzz.strategies import backend_names, metadata_text, qasm_text

ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED,
}
MAX_QASM = 4096  # small, so the limit is reached; gRPC's message limit is this + 1 MiB
SECRET = "fuzz-secret-" + "x" * 40
RUNS = hsettings(
    max_examples=int(os.environ.get("QSERVER_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'


# --- an in-process ingest server ------------------------------------------------------------------


class Ingest:
    """An ingest server on the test session's event loop, and a client channel to it.

    On the session's loop, not a thread of its own: grpc.aio shares one completion-queue
    poller between loops (a second loop reads EAGAIN, logged with a traceback), and on
    Python 3.11.7 a traceback formatted in one thread while pytest formats a failure in
    another can crash the run ("AST constructor recursion depth mismatch", CPython gh-106905).
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._parts: dict = {}

    async def start(self) -> Ingest:
        s = self.settings
        self._parts["pool"] = await store.open_pool(s.database_dsn, max_size=2)
        self._parts["connection"] = connection = await queue.connect(str(s.amqp_url))
        self._parts["channel"] = channel = await queue.publisher_channel(connection)
        await queue.declare(channel, s.queue_name)
        server, address = build_server(s, self._parts["pool"], channel, port=0)
        await server.start()
        self._parts["server"] = server
        # A sync client, called from a worker thread: the aio client can report a status the
        # server sent before the client finished streaming as INTERNAL "Internal error from
        # Core" (grpc/grpc#36066), the sync one reports the server's. Raw bytes in: the
        # identity serializer sends what protobuf would refuse to write.
        self._parts["client"] = client = grpc.insecure_channel(address)
        self._add_job = client.stream_unary(
            "/Jobs/AddJob",
            request_serializer=bytes,  # exact bytes: _Huge is a subclass
            response_deserializer=jobs_pb2.PendingJob.FromString,
        )
        self._health = client.unary_unary(
            "/Jobs/HealthCheck",
            request_serializer=jobs_pb2.HealthCheckInput.SerializeToString,
            response_deserializer=jobs_pb2.Health.FromString,
        )
        return self

    async def stop(self) -> None:
        parts = self._parts
        if "client" in parts:
            parts["client"].close()
        if "server" in parts:
            await parts["server"].stop(None)
        if "channel" in parts:
            for name in (self.settings.queue_name, f"{self.settings.queue_name}.dead"):
                await parts["channel"].queue_delete(name)
        if "connection" in parts:
            await parts["connection"].close()
        if "pool" in parts:
            await parts["pool"].close()

    async def add_job(self, messages: list[bytes], metadata=()) -> tuple[grpc.StatusCode, str, str]:
        """AddJob with ``messages`` sent as raw bytes: (code, details, job id or "")."""

        def call() -> tuple[grpc.StatusCode, str, str]:
            try:
                reply = self._add_job(iter(messages), timeout=30, metadata=metadata)
            except grpc.RpcError as error:
                return error.code(), error.details() or "", ""
            return grpc.StatusCode.OK, "", reply.id

        return await asyncio.to_thread(call)

    async def health(self) -> str:
        reply = await asyncio.to_thread(self._health, jobs_pb2.HealthCheckInput(), timeout=10)
        return reply.status


def _settings(dsn: str, **changes) -> Settings:
    return Settings(
        database_url=dsn,
        queue_name=f"qserver.fuzz.{uuid.uuid4().hex[:12]}",
        ingest_host="127.0.0.1",
        api_host="127.0.0.1",
        nginx_bind="127.0.0.1",
        max_qasm_bytes=MAX_QASM,
        max_shots=1000,
        max_observables=5,
        max_metadata_bytes=2048,
        **changes,
    )


@pytest.fixture(scope="module")
async def ingest(fuzz_dsn: str) -> AsyncIterator[Ingest]:
    """Ingest with authentication off (loopback binds, as `qserver up` runs it by default)."""
    server = Ingest(_settings(fuzz_dsn, auth="off"))
    try:
        yield await server.start()
    finally:
        await server.stop()


@pytest.fixture(scope="module")
def user_key(fuzz_db: psycopg.Connection) -> str:
    """A user's API key in the scratch database."""
    return auth.create_key_sync(fuzz_db, secret=SECRET, owner="fuzzer", role="user")[1]


@pytest.fixture(scope="module")
async def ingest_auth(fuzz_dsn: str, user_key: str) -> AsyncIterator[Ingest]:
    """Ingest with authentication on, and a cap of 3 pending jobs per user."""
    server = Ingest(_settings(fuzz_dsn, auth="on", auth_secret=SECRET, max_pending_per_user=3, auth_cache_ttl_s=0))
    try:
        yield await server.start()
    finally:
        await server.stop()


# --- the streams ----------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    """Protobuf's base-128 varint."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2): strings, bytes, messages."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _properties(counts: bool, quasi: bool, expval: bool, backend: bytes, metadata: bytes) -> bytes:
    props = b"".join(_varint(number << 3) + b"\x01" for number, on in ((1, counts), (2, quasi), (3, expval)) if on)
    return _field(1, props + _field(4, backend) + _field(5, metadata))


def _text(value: str) -> bytes:
    """UTF-8; a lone surrogate (which UTF-8 cannot hold) becomes '?': protobuf would refuse
    the message, and `undecodable` below sends such bytes on purpose."""
    return value.encode("utf-8", "replace")


good_properties = st.builds(
    lambda md: _properties(True, False, False, b"aer", json.dumps(md).encode()),
    st.fixed_dictionaries({}, optional={"shots": st.integers(1, 1000), "seed": st.integers(0, 99)}),
)
any_properties = st.builds(
    _properties,
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.one_of(st.just("aer"), backend_names).map(_text),
    metadata_text.map(_text),
)


class _Huge(bytes):
    """A message too large to print in a failing example."""

    def __repr__(self) -> str:
        return f"<a message of {len(self)} bytes>"


def _decodes(raw: bytes) -> bool:
    try:
        jobs_pb2.JobData.FromString(raw)
    except DecodeError:
        return False
    return True


invalid_utf8 = st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"abc\x80"])
qasm_chunk = st.one_of(
    st.just(BELL),
    qasm_text,
    st.integers(MAX_QASM - 10, MAX_QASM + 10).map(lambda n: "x" * n),
).map(lambda text: _field(2, _text(text)))
raw_messages = st.one_of(
    st.just(b""),  # a JobData with neither field set
    # unknown fields, a oneof set twice, ...; what protobuf cannot decode goes to `undecodable`
    st.binary(max_size=40).map(lambda raw: raw if _decodes(raw) else b""),
    st.builds(lambda: _Huge(_field(2, b"x" * (MAX_QASM + 1024 * 1024 + 1)))),  # over gRPC's message limit
    st.just(_field(3, b"unknown field")),
)
# Messages protobuf cannot decode: invalid UTF-8 in a string field, or no protobuf at all.
undecodable = st.one_of(
    st.builds(lambda bad: _field(2, b"OPENQASM 2.0;" + bad), invalid_utf8),
    st.builds(lambda bad: _properties(True, False, False, b"aer", b'{"a": "' + bad + b'"}'), invalid_utf8),
    st.builds(lambda bad: _properties(True, False, False, b"aer" + bad, b"{}"), invalid_utf8),
    st.binary(min_size=1, max_size=40).map(lambda raw: raw if not _decodes(raw) else b"\xff" + raw),
)
message = st.one_of(good_properties, any_properties, qasm_chunk, raw_messages)
streams = st.one_of(
    # well-formed order, any content
    st.tuples(st.one_of(good_properties, any_properties), st.lists(qasm_chunk, max_size=3)).map(
        lambda t: [t[0], *t[1]]
    ),
    # anything in any order
    st.lists(message, max_size=6),
)
# A stream with one undecodable message somewhere.
broken_streams = st.builds(
    lambda before, bad, after: [*before, bad, *after],
    st.lists(st.one_of(good_properties, qasm_chunk), max_size=2),
    undecodable,
    st.lists(qasm_chunk, max_size=2),
)


def _job_count(db: psycopg.Connection) -> int:
    return db.execute("SELECT count(*) AS n FROM jobs").fetchone()["n"]


async def _check_call(server: Ingest, db: psycopg.Connection, stream: list[bytes], metadata=()) -> None:
    assert all(map(_decodes, stream)), "an undecodable message: those are test_undecodable_*'s"
    before = _job_count(db)
    code, details, job_id = await server.add_job(stream, metadata)
    event(f"{code.name}")
    if code == grpc.StatusCode.OK:
        uuid.UUID(job_id)
        row = db.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()
        assert row is not None and row["status"] == "pending", row
        assert _job_count(db) == before + 1
    else:
        assert code in ALLOWED, f"{code.name}: {details!r}"
        assert details.strip(), f"{code.name} without details"
        assert _job_count(db) == before, f"{code.name} left a job row: {details!r}"
    assert await server.health() == "OK"


@pytest.fixture(scope="module")
def clean_jobs(fuzz_db: psycopg.Connection) -> Iterator[None]:
    """Delete the jobs the fuzzing submitted, at the end of the module."""
    yield
    fuzz_db.execute("DELETE FROM jobs")


# --- the tests ------------------------------------------------------------------------------------


@RUNS
@given(stream=streams)
@example(stream=[_properties(True, False, False, b"aer", b"{}"), _field(2, BELL.encode())])
@example(stream=[_properties(True, False, False, b"aer\x00", b"{}"), _field(2, BELL.encode())])
@example(stream=[])
async def test_any_stream_ends_ok_or_refused_with_a_message(ingest, fuzz_db, clean_jobs, stream):
    await _check_call(ingest, fuzz_db, stream)


keys = st.one_of(
    st.none(),
    st.just("valid"),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80),
    st.builds(lambda s: f"qsk_{'0' * 12}_{s}", st.from_regex(r"[A-Za-z0-9_-]{20,40}", fullmatch=True)),
)


@RUNS
@given(
    stream=st.one_of(streams, st.just([_properties(True, False, False, b"aer", b"{}"), _field(2, BELL.encode())])),
    key=keys,
    header=st.sampled_from(["authorization", "x-api-key"]),
    scheme=st.sampled_from(["Bearer ", "bearer ", "Basic ", "", "Bearer  "]),
)
async def test_authenticated_ingest_ends_ok_or_refused_with_a_message(
    ingest_auth, fuzz_db, clean_jobs, user_key, stream, key, header, scheme
):
    if key is None:
        metadata = ()
    else:
        value = user_key if key == "valid" else key
        metadata = ((header, scheme + value if header == "authorization" else value),)
    await _check_call(ingest_auth, fuzz_db, stream, metadata)


@RUNS
@given(stream=broken_streams)
async def test_undecodable_message_leaves_nothing_and_the_server_answers(ingest, fuzz_db, clean_jobs, stream):
    """A message protobuf cannot decode leaves nothing behind and the server answers on."""
    before = _job_count(fuzz_db)
    code, details, _ = await ingest.add_job(stream)
    assert code != grpc.StatusCode.OK
    assert details.strip()
    assert _job_count(fuzz_db) == before
    assert await ingest.health() == "OK"


UNDECODABLE = {
    "invalid UTF-8 in qasmChunk": [_properties(True, False, False, b"aer", b"{}"), _field(2, b"OPENQASM 2.0;\xff")],
    "invalid UTF-8 in metadata": [
        _properties(True, False, False, b"aer", b'{"a": "\xc3\x28"}'),
        _field(2, BELL.encode()),
    ],
    "invalid UTF-8 in targetSimulator": [_properties(True, False, False, b"aer\xed\xa0\x80", b"{}")],
    "not protobuf": [b"\xff\xff\xff"],
}


@pytest.mark.parametrize("stream", UNDECODABLE.values(), ids=UNDECODABLE.keys())
async def test_undecodable_message_is_invalid_argument(ingest, fuzz_db, stream):
    # the api fuzzing may have removed aer-plugin (DELETE /plugin/aer-plugin) in this database
    fuzz_db.execute("UPDATE backends SET enabled = true WHERE plugin = 'aer-plugin'")
    code, details, _ = await ingest.add_job(stream)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{code.name}: {details!r}"
