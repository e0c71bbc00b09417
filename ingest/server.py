"""The upstream-compatible ``Jobs`` gRPC service on grpc.aio.

A submission is accepted only after Postgres has committed the job and RabbitMQ
has confirmed its message; nothing is stored before the whole stream has been
read, so a broken or cancelled stream leaves nothing behind. This module is the
only place protobuf messages meet domain types. No Qiskit, no Ray.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import psycopg
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from google.protobuf.message import DecodeError
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from core import auth, cache, idempotency, queue, schema, store
from core.domain import BUILTIN_PLUGIN, JobSpec, Limits, check_program, check_properties
from core.errors import (
    BackendCannotSweep,
    BackendDisabled,
    BackendNotFound,
    ClusterCannotRun,
    HeadersTooLarge,
    IdempotencyConflict,
    InvalidJob,
    QServerError,
    QueueUnavailable,
    StreamCutShort,
    TooManyPending,
    Unauthenticated,
)
from core.settings import GRPC_HEADER_TRANSPORT_BYTES, Settings
from core.sweeps import check_parameters, read_bindings
from ingest.monitor import DATABASE_UNAVAILABLE, REFUSALS, SUBMISSIONS, monitor, reason
from protos.generated import jobs_pb2, jobs_pb2_grpc

log = logging.getLogger(__name__)
SERVER_VERSION = importlib.metadata.version("qserver")  # the built-in plugin's (it pins Qiskit and Aer)

_STATUS = {
    InvalidJob: grpc.StatusCode.INVALID_ARGUMENT,
    BackendNotFound: grpc.StatusCode.NOT_FOUND,
    BackendDisabled: grpc.StatusCode.FAILED_PRECONDITION,
    BackendCannotSweep: grpc.StatusCode.FAILED_PRECONDITION,
    ClusterCannotRun: grpc.StatusCode.FAILED_PRECONDITION,
    QueueUnavailable: grpc.StatusCode.UNAVAILABLE,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    TooManyPending: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HeadersTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    IdempotencyConflict: grpc.StatusCode.ALREADY_EXISTS,
    StreamCutShort: grpc.StatusCode.UNAVAILABLE,
}
for _refused in [*_STATUS, None]:  # every reason is exported from the start, at 0
    REFUSALS.labels(DATABASE_UNAVAILABLE if _refused is None else reason(_refused))
# HTTP/2's accounting of a header list (RFC 9113, 6.5.2: SETTINGS_MAX_HEADER_LIST_SIZE): each
# field counts its name's and value's octets plus 32.
_HEADER_OVERHEAD = 32


def check_header_size(metadata, limit: int) -> None:
    """Refuse request metadata (pairs of name, str or bytes value) over ``limit`` bytes.

    Raises:
        HeadersTooLarge: naming the size and the limit.
    """
    size = sum(len(name) + len(value) + _HEADER_OVERHEAD for name, value in metadata or ())
    if size > limit:
        raise HeadersTooLarge(
            f"the request's gRPC metadata is {size} bytes; at most {limit} (QSERVER_GRPC_MAX_HEADER_BYTES)"
        )


def idempotency_key(metadata) -> str | None:
    """The request's idempotency key (metadata ``idempotency-key``), or None when it has none.

    Raises:
        InvalidJob: the key is sent twice, empty, longer than 200 characters or not printable ASCII.
    """
    return idempotency.check_key([value for name, value in metadata or () if name == idempotency.METADATA_NAME])


STREAM_MESSAGES = "stream-messages"  # gRPC metadata: how many JobData messages the client sends


def declared_messages(metadata) -> int | None:
    """The number of ``JobData`` messages the client says its stream holds (metadata
    ``stream-messages``, sent by qserver_client; the upstream client sends none): None when absent
    or not a count, so that it can only turn a stream cut short in transit into a retry."""
    for name, value in metadata or ():
        if name == STREAM_MESSAGES:
            text = value if isinstance(value, str) else value.decode(errors="replace")
            return int(text) if text.isdigit() and len(text) < 10 else None
    return None


def limits_from(settings: Settings) -> Limits:
    """The submission limits configured in ``settings``."""
    return Limits(
        max_shots=settings.max_shots,
        max_observables=settings.max_observables,
        max_metadata_bytes=settings.max_metadata_bytes,
        max_timeout_s=settings.max_timeout_s,
        max_bindings=settings.max_bindings,
        max_bindings_bytes=settings.max_bindings_bytes,
    )


class JobsService(jobs_pb2_grpc.JobsServicer):
    """``Jobs``: AddJob (stream JobData -> PendingJob) and HealthCheck.

    Errors a client can cause end as gRPC statuses: INVALID_ARGUMENT (malformed
    properties, metadata or program), NOT_FOUND (unknown backend),
    FAILED_PRECONDITION (backend disabled), UNAVAILABLE (queue did not confirm),
    UNAUTHENTICATED (authentication on: no, a wrong or a revoked key; checked before
    anything is read), RESOURCE_EXHAUSTED (the user's cap on pending jobs; metadata over
    QSERVER_GRPC_MAX_HEADER_BYTES, checked first of all), ALREADY_EXISTS (the request's
    ``idempotency-key`` was used before for a different request). The same request sent again
    under its key is answered with the job stored the first time, which is not queued again.
    """

    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool,
        channel: AbstractChannel,
        keys: auth.KeyVerifier | None = None,
    ):
        self._settings = settings
        self._limits = limits_from(settings)
        self._pool = pool
        self._channel = channel
        self._keys = keys

    async def HealthCheck(self, request, context):  # noqa: N802 (gRPC method name)
        return jobs_pb2.Health(status="OK")

    async def AddJob(self, request_iterator, context):  # noqa: N802
        started = time.perf_counter()
        try:
            check_header_size(context.invocation_metadata(), self._settings.grpc_max_header_bytes)
            caller = await self._caller(context)
            key = idempotency_key(context.invocation_metadata())
            spec = await self._read_submission(request_iterator, declared_messages(context.invocation_metadata()))
            job_id = uuid.uuid4()
            async with self._pool.connection() as conn:
                answer = None
                if cache.cacheable(spec):
                    answer = cache.digest(spec, await self._plugin_version(conn, spec.backend))
                source = answer and await store.cached_source(conn, digest=answer, spec=spec, owner=caller.name)
                stored = await store.insert_job_once(
                    conn,
                    key=key,
                    digest=idempotency.request_digest(spec, spec.bindings) if key is not None else None,
                    job_id=job_id,
                    spec=spec,
                    owner=caller.name,
                    max_pending=self._settings.max_pending_per_user,
                    answer_digest=answer,
                )
                if stored == job_id and source:  # never queued: finished with the source's results
                    await store.finish_from_cache(conn, job_id=job_id, source=source)
                    log.info("job_id=%s answered from the cache (job %s)", job_id, source)
                    SUBMISSIONS.labels(spec.backend, "cached").inc()
                    return jobs_pb2.PendingJob(id=str(job_id))
            if stored != job_id:  # sent again under its key: the job stored (and queued) the first time
                log.info("job_id=%s answered again for its idempotency key owner=%s", stored, caller.name or "-")
                SUBMISSIONS.labels(spec.backend, "repeated").inc()
                return jobs_pb2.PendingJob(id=str(stored))
            try:
                await queue.publish_job(self._channel, self._settings.queue_name, job_id)
            except QueueUnavailable:
                async with self._pool.connection() as conn:
                    await store.delete_pending_job(conn, job_id=job_id)
                raise
        except QServerError as error:
            code = _STATUS.get(type(error), grpc.StatusCode.INVALID_ARGUMENT)
            log.info("refused submission: %s: %s", code.name, str(error)[:300])
            REFUSALS.labels(reason(type(error))).inc()
            # nginx refuses gRPC trailers over ~4 KiB (a 502 the client would retry)
            await context.abort(code, str(error)[:1000])
        except (psycopg.OperationalError, PoolTimeout) as error:
            # Postgres is down or restarting: nothing was stored (or a stored job is found by
            # the dispatcher's sweeper); the client may try again.
            log.warning("refused submission: UNAVAILABLE: the database is unavailable: %s", error)
            REFUSALS.labels(DATABASE_UNAVAILABLE).inc()
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the database is unavailable, try again later")
        SUBMISSIONS.labels(spec.backend, "queued").inc()
        log.info(
            "job_id=%s accepted owner=%s backend=%s qasm_bytes=%d in %.1f ms",
            job_id,
            caller.name or "-",
            spec.backend,
            len(spec.qasm),
            (time.perf_counter() - started) * 1e3,
        )
        return jobs_pb2.PendingJob(id=str(job_id))

    async def _plugin_version(self, conn, backend: str) -> str | None:
        """The version of the plugin that runs ``backend``: this server's for the built-in one."""
        row = await store.get_backend(conn, name=backend)
        if row is None or row["plugin"] == BUILTIN_PLUGIN:
            return SERVER_VERSION
        plugin = await store.get_plugin(conn, name=row["plugin"])
        return plugin["version"] if plugin else None

    async def _caller(self, context: grpc.aio.ServicerContext) -> auth.Caller:
        """Who submits: from metadata ``authorization: Bearer <key>`` or ``x-api-key``.

        Raises:
            Unauthenticated: authentication is on and the key is missing, wrong or revoked.
        """
        if self._keys is None:
            return auth.ANONYMOUS
        metadata = {}
        for key, value in context.invocation_metadata() or ():
            if key in ("authorization", "x-api-key") and key not in metadata:
                metadata[key] = value if isinstance(value, str) else value.decode(errors="replace")
        key = auth.key_from_headers(metadata.get("authorization"), metadata.get("x-api-key"))
        return await self._keys.verify(self._pool, key)

    async def _read_submission(self, messages: AsyncIterator[jobs_pb2.JobData], declared: int | None) -> JobSpec:
        """Read properties, then QASM chunks and (a sweep) bindings chunks; check them all.

        ``declared``: the number of messages the client says it sends (None: not said).

        Raises:
            StreamCutShort: the stream ended before ``declared`` messages came (checked before
                the program, so a cut stream is never refused as an empty or broken program).
            InvalidJob and backend errors.
        """
        spec: JobSpec | None = None
        chunks: list[str] = []
        bindings = bytearray()
        size = received = 0
        try:
            async for message in messages:
                received += 1
                if message.WhichOneof("DataStream") == "bindingsChunk":
                    take_bindings(message.bindingsChunk, spec, bindings, self._limits)
                    continue
                spec, size = await self._take(message, spec, chunks, size)
        except DecodeError as error:
            raise InvalidJob(f"a JobData message is not valid protobuf: {error}") from None
        if declared is not None and received < declared:
            raise StreamCutShort(
                f"the submission stream ended after {received} of the {declared} messages its sender declared"
                " (cut short in transit): nothing was stored; send it again"
            )
        if spec is None:
            raise InvalidJob("no properties: the stream must start with the job's properties")
        qasm = "".join(chunks)
        check_program(qasm, self._settings.max_qasm_bytes)
        return with_sweep(
            JobSpec(backend=spec.backend, result_types=spec.result_types, metadata=spec.metadata, qasm=qasm),
            bytes(bindings) if bindings else None,
            self._limits,
        )

    async def _take(
        self, message: jobs_pb2.JobData, spec: JobSpec | None, chunks: list[str], size: int
    ) -> tuple[JobSpec | None, int]:
        """One message of the stream: properties (checked) or a QASM chunk (appended)."""
        kind = message.WhichOneof("DataStream")
        if kind == "properties":
            if spec is not None:
                raise InvalidJob("properties sent twice: send them once, before the QASM")
            return await self._check_properties(message.properties), size
        if kind == "qasmChunk":
            if spec is None:
                raise InvalidJob("QASM chunk before the properties: send properties first")
            size += len(message.qasmChunk.encode())
            if size > self._settings.max_qasm_bytes:
                raise InvalidJob(f"QASM program is larger than the limit of {self._settings.max_qasm_bytes} bytes")
            chunks.append(message.qasmChunk)
            return spec, size
        raise InvalidJob("empty JobData message: set properties, qasmChunk or bindingsChunk")

    async def _check_properties(self, props: jobs_pb2.JobProperties) -> JobSpec:
        spec = check_properties(
            counts=props.resultTypeCounts,
            quasi_dist=props.resultTypeQuasiDist,
            expval=props.resultTypeExpVal,
            backend=props.targetSimulator,
            metadata_text=props.metadata,
            limits=self._limits,
        )
        tags = set(spec.metadata.get("tags") or ())
        async with self._pool.connection() as conn:
            backend = await store.require_backend(conn, name=spec.backend)
            if "sweep" in spec.metadata and backend["plugin"] != BUILTIN_PLUGIN:
                raise BackendCannotSweep(
                    f"backend {spec.backend!r} (plugin {backend['plugin']!r}) runs one binding per job: "
                    f"only the built-in {BUILTIN_PLUGIN} backends run sweeps"
                )
            if backend["needs_gpu"] or tags:
                check_cluster(spec.backend, backend["needs_gpu"], tags, await store.cluster_capabilities(conn))
        return spec


def take_bindings(chunk: bytes, spec: JobSpec | None, bindings: bytearray, limits: Limits) -> None:
    """Append one bindings chunk (a sweep's NPY file in parts).

    Raises:
        InvalidJob: before the properties, or past ``limits.max_bindings_bytes`` in all.
    """
    if spec is None:
        raise InvalidJob("bindings chunk before the properties: send properties first")
    if len(bindings) + len(chunk) > limits.max_bindings_bytes:
        raise InvalidJob(
            f"the bindings are larger than the limit of {limits.max_bindings_bytes} bytes "
            "(QSERVER_MAX_BINDINGS_BYTES): split the sweep"
        )
    bindings += chunk


def with_sweep(spec: JobSpec, bindings: bytes | None, limits: Limits) -> JobSpec:
    """``spec`` with its sweep checked: bindings stored as sent, ``metadata.sweep.shape`` set
    from them (core/sweeps.py). A job that is not a sweep passes unchanged.

    Raises:
        InvalidJob: bindings without ``metadata.sweep`` or the reverse, or bindings that
            core.sweeps.read_bindings refuses.
    """
    declared = spec.metadata.get("sweep")
    if bindings is None and declared is None:
        return spec
    if bindings is None:
        raise InvalidJob("metadata 'sweep' names parameters but no bindings came: send them as bindingsChunk")
    if declared is None:
        raise InvalidJob("bindings came without metadata 'sweep': name the parameters they bind")
    parameters = check_parameters(declared)
    sweep, _ = read_bindings(bindings, parameters, limits.max_bindings)
    metadata = {**spec.metadata, "sweep": {"parameters": list(parameters), "shape": list(sweep.shape)}}
    return JobSpec(spec.backend, spec.result_types, metadata, spec.qasm, bindings)


def check_cluster(backend: str, needs_gpu: bool, tags: set[str], cluster: dict) -> None:
    """Refuse a job that needs a GPU or node tags no node of the cluster has ever offered.

    A node that is known but offline does not refuse the job: it waits as pending.

    Raises:
        ClusterCannotRun: saying what the job needs and what the cluster has.
    """
    lacks = []
    if needs_gpu and not cluster["gpus_known"]:
        lacks.append(f"backend {backend!r} needs a GPU")
    unknown = sorted(tags - cluster["tags_known"])
    if unknown:
        lacks.append(f"it asks for node tag(s) {', '.join(map(repr, unknown))}")
    if not lacks:
        return
    has = (
        f"{cluster['nodes_known']} node(s) known, {cluster['nodes_alive']} online; "
        f"GPU: {'yes' if cluster['gpus_known'] else 'none'}; "
        f"tags: {', '.join(sorted(cluster['tags_known'])) or 'none'}"
    )
    raise ClusterCannotRun(
        f"no node of this cluster can run the job: {' and '.join(lacks)}, which no node has ever "
        f"offered (the cluster has {has}; see GET /api/v1/cluster)"
    )


def build_server(
    settings: Settings, pool: AsyncConnectionPool, channel: AbstractChannel, *, port: int | None = None
) -> tuple[grpc.aio.Server, str]:
    """A grpc.aio server with the Jobs service, bound (not started) to ingest_host:port.

    ``port`` defaults to settings.ingest_port; 0 picks a free one. Returns the server
    and the address it is bound to.

    Raises:
        UnsafeSettings: as ``core.auth.auth_mode``.
    """
    keys = auth.KeyVerifier.from_settings(settings)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
            # headers up to this reach AddJob, which refuses those over grpc_max_header_bytes
            ("grpc.max_metadata_size", GRPC_HEADER_TRANSPORT_BYTES),
            ("grpc.absolute_max_metadata_size", GRPC_HEADER_TRANSPORT_BYTES),
        ],
    )
    jobs_pb2_grpc.add_JobsServicer_to_server(JobsService(settings, pool, channel, keys), server)
    bound = server.add_insecure_port(f"{settings.ingest_host}:{settings.ingest_port if port is None else port}")
    return server, f"{settings.ingest_host}:{bound}"


async def serve(settings: Settings) -> None:
    """Run the gRPC server until cancelled; connects to Postgres and RabbitMQ first.

    Raises:
        SchemaOutOfDate: the database needs `qserver db upgrade`.
        psycopg_pool.PoolTimeout, aio_pika.exceptions.AMQPConnectionError: a service is down.
        UnsafeSettings: authentication off on a public bind, or on without a secret.
    """
    mode = auth.auth_mode(settings)
    if mode.on:
        log.info("authentication is on (%s): API keys required", mode.reason)
    else:
        log.warning("%s", mode.warning)
    await asyncio.to_thread(schema.check, settings.database_dsn)
    pool = await store.open_pool(settings.database_dsn, max_size=settings.db_pool_size)
    connection: AbstractRobustConnection = await queue.connect(str(settings.amqp_url))
    channel = await queue.publisher_channel(connection)
    await queue.declare(channel, settings.queue_name)
    server, address = build_server(settings, pool, channel)
    await server.start()
    log.info("ingest listening on %s (queue %s)", address, settings.queue_name)
    health = monitor(settings, pool, connection)
    try:
        await health.start()
        await server.wait_for_termination()
    finally:
        await health.stop()
        await server.stop(grace=5)
        await connection.close()
        await pool.close()
