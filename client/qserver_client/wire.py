"""The gRPC side of a submission: the ``AddJob`` message stream and the two methods' paths.

A submission is one ``JobData`` holding the ``JobProperties``, then the program in chunks of
16 Ki characters, as the upstream client sends it (protos/jobs.proto is the contract). A sweep
adds its parameter values: one NPY file in ``bindingsChunk`` messages of at most 1 MiB.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
import numpy as np

from qserver_client._generated import jobs_pb2

CHUNK_CHARS = 16 * 1024  # the upstream client's chunk size
BINDINGS_CHUNK_BYTES = 1024 * 1024  # the sweep contract's largest bindingsChunk
ADD_JOB = "/Jobs/AddJob"  # the proto has no package: the service's full name is "Jobs"
HEALTH_CHECK = "/Jobs/HealthCheck"
# gRPC metadata: the number of JobData messages of the stream; a server that gets fewer answers
# UNAVAILABLE (the stream was cut short in transit), which Client.submit_messages sends again
STREAM_MESSAGES = "stream-messages"


def properties(
    *,
    backend: str = "aer",
    counts: bool = False,
    quasi_dist: bool = False,
    expval: bool = False,
    metadata: Mapping[str, Any] | str | None = None,
) -> jobs_pb2.JobData:
    """The first message of a submission.

    ``metadata`` is a JSON object (shots, seed, obs, method, tags, timeout_s, ...), or its text
    as is (to send something a dict cannot hold); None sends ``{}``. Raises TypeError for a
    mapping ``json.dumps`` cannot encode.
    """
    text = metadata if isinstance(metadata, str) else json.dumps(dict(metadata or {}))
    return jobs_pb2.JobData(
        properties=jobs_pb2.JobProperties(
            resultTypeCounts=counts,
            resultTypeQuasiDist=quasi_dist,
            resultTypeExpVal=expval,
            targetSimulator=backend,
            metadata=text,
        )
    )


def chunks(qasm: str) -> Iterator[jobs_pb2.JobData]:
    """The program in ``CHUNK_CHARS``-character chunks (none for an empty program)."""
    for start in range(0, len(qasm), CHUNK_CHARS):
        yield jobs_pb2.JobData(qasmChunk=qasm[start : start + CHUNK_CHARS])


def bindings_chunks(values: Any) -> Iterator[jobs_pb2.JobData]:
    """A sweep's parameter values as ``bindingsChunk`` messages of ``BINDINGS_CHUNK_BYTES`` at most.

    ``values``: an array of shape ``(*shape, P)`` with ``P >= 1`` parameters along the last
    axis (shape may be ``()``: one binding), sent as one NPY file of little-endian float64 in C
    order, as the sweep contract reads it. Raises ValueError for an array with no parameter axis,
    no parameters, no bindings, or a value that is not finite (the server refuses them too), at
    the call.
    """
    array = np.asarray(values, dtype="<f8", order="C")
    if array.ndim < 1 or array.shape[-1] < 1:
        raise ValueError(f"bindings need shape (*shape, P) with P >= 1 parameters, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"bindings of shape {array.shape} hold no binding")
    if not np.isfinite(array).all():
        raise ValueError("bindings must all be finite (no NaN or infinity)")
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    data = buffer.getbuffer()
    # checked and encoded above, at the call: a generator would raise inside gRPC's sending thread
    return (
        jobs_pb2.JobData(bindingsChunk=bytes(data[start : start + BINDINGS_CHUNK_BYTES]))
        for start in range(0, len(data), BINDINGS_CHUNK_BYTES)
    )


def add_job(channel: grpc.Channel) -> grpc.StreamUnaryMultiCallable:
    """``Jobs/AddJob`` on ``channel``: called with an iterator of ``JobData``, answers a
    ``PendingJob`` (its ``id``, a UUID as text) or raises ``grpc.RpcError``."""
    return channel.stream_unary(
        ADD_JOB,
        request_serializer=jobs_pb2.JobData.SerializeToString,
        response_deserializer=jobs_pb2.PendingJob.FromString,
    )


def health_check(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable:
    """``Jobs/HealthCheck`` on ``channel``: called with a ``HealthCheckInput``, answers a
    ``Health`` (``status`` "OK") or raises ``grpc.RpcError``."""
    return channel.unary_unary(
        HEALTH_CHECK,
        request_serializer=jobs_pb2.HealthCheckInput.SerializeToString,
        response_deserializer=jobs_pb2.Health.FromString,
    )
