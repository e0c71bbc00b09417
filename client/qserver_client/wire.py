"""The gRPC side of a submission: the ``AddJob`` message stream and the two methods' paths.

A submission is one ``JobData`` holding the ``JobProperties``, then the program in chunks of
16 Ki characters, as the upstream client sends it (protos/jobs.proto is the contract).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import grpc

from qserver_client._generated import jobs_pb2

CHUNK_CHARS = 16 * 1024  # the upstream client's chunk size
ADD_JOB = "/Jobs/AddJob"  # the proto has no package: the service's full name is "Jobs"
HEALTH_CHECK = "/Jobs/HealthCheck"


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
