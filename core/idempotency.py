"""Idempotent submission: the client's key (gRPC metadata ``idempotency-key``) and the digest
of a request, which together let a client send a submission again when its answer was lost.

The same key with the same request is answered with the job stored the first time; the same
key with another request is refused (core.errors.IdempotencyConflict). Storage is in
core.store.idempotency. Plain functions, no I/O.
"""

from __future__ import annotations

import hashlib
import json

from core.domain import JobSpec, show
from core.errors import InvalidJob

METADATA_NAME = "idempotency-key"  # the gRPC metadata (HTTP/2 header) that carries the key
MAX_KEY_CHARS = 200
_DIGEST_VERSION = b"qserver-submission-v1"


def check_key(values: list[str | bytes]) -> str | None:
    """The idempotency key of a request, from the values its metadata gives ``idempotency-key``
    (none: the request has no key).

    A key is 1 to 200 printable ASCII characters (space to '~'), sent once.

    Raises:
        InvalidJob: naming the problem.
    """
    if not values:
        return None
    if len(values) > 1:
        raise InvalidJob(f"{METADATA_NAME} sent {len(values)} times: send one key per submission")
    value = values[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidJob(f"{METADATA_NAME} {show(value)} is not ASCII: use printable ASCII characters") from None
    if not value:
        raise InvalidJob(f"{METADATA_NAME} is empty: send 1 to {MAX_KEY_CHARS} printable ASCII characters")
    if len(value) > MAX_KEY_CHARS:
        raise InvalidJob(f"{METADATA_NAME} is {len(value)} characters long: a key has at most {MAX_KEY_CHARS}")
    bad = next((c for c in value if not " " <= c <= "~"), None)
    if bad is not None:
        raise InvalidJob(
            f"{METADATA_NAME} {show(value)} holds {bad!r}: a key is printable ASCII characters (space to '~'),"
            " e.g. a UUID"
        )
    return value


def request_digest(spec: JobSpec, bindings: bytes | None = None) -> bytes:
    """SHA-256 of everything a submission asks for: backend, result types, metadata, program
    and the sweep's bindings (the NPY bytes as sent; None for a job that is no sweep).

    The metadata counts as its parsed JSON object: key order and white space do not change the
    digest, values do (``1`` and ``1.0`` differ). Each part is length-prefixed, so no two
    different requests run together into the same bytes.
    """
    metadata = json.dumps(spec.metadata, sort_keys=True, separators=(",", ":"))
    parts = [
        spec.backend.encode(),
        ",".join(rt.value for rt in spec.result_types).encode(),
        metadata.encode(),
        spec.qasm.encode(),
        b"" if bindings is None else b"\x01" + bytes(bindings),
    ]
    digest = hashlib.sha256(_DIGEST_VERSION)
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()
