"""core.idempotency: the key's rules and the request digest (pure functions, no services)."""

from __future__ import annotations

import pytest

from core.domain import JobSpec, ResultType, check_properties
from core.errors import InvalidJob
from core.idempotency import MAX_KEY_CHARS, check_key, request_digest

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'


def spec(metadata_text: str = '{"shots": 100, "seed": 7}', qasm: str = BELL, **flags: bool) -> JobSpec:
    checked = check_properties(
        counts=flags.get("counts", True),
        quasi_dist=flags.get("quasi_dist", False),
        expval=False,
        backend="aer",
        metadata_text=metadata_text,
    )
    return JobSpec(backend=checked.backend, result_types=checked.result_types, metadata=checked.metadata, qasm=qasm)


def test_the_digest_reads_the_metadata_as_json_not_as_text():
    same = request_digest(spec('{"shots": 100, "seed": 7}'))
    assert request_digest(spec('{"seed":7,   "shots":100}')) == same
    assert request_digest(spec('{\n  "seed": 7,\n  "shots": 100\n}')) == same
    assert request_digest(spec('{"shots": 101, "seed": 7}')) != same
    assert request_digest(spec('{"shots": 100, "seed": 7, "x": 1}')) != same
    assert request_digest(spec('{"shots": 100, "seed": 7, "x": 1.0}')) != request_digest(
        spec('{"shots": 100, "seed": 7, "x": 1}')
    )


def test_every_part_of_the_request_changes_the_digest():
    base = spec()
    digests = {
        request_digest(base),
        request_digest(spec(qasm=BELL.replace("h q[0]", "x q[0]"))),
        request_digest(spec(qasm=BELL + " ")),
        request_digest(spec(quasi_dist=True)),
        request_digest(JobSpec(backend="aer_gpu", result_types=base.result_types, metadata=base.metadata, qasm=BELL)),
        request_digest(base, b"\x93NUMPY"),
        request_digest(base, b"\x93NUMPY\x00"),
        request_digest(base, b""),
    }
    assert len(digests) == 8
    assert all(len(d) == 32 for d in digests)  # SHA-256
    assert request_digest(base, b"\x93NUMPY") == request_digest(spec(), bytearray(b"\x93NUMPY"))


def test_parts_do_not_run_together():
    """Moving text from the end of one part to the start of the next changes the digest."""
    a = JobSpec(backend="aer", result_types=(ResultType.COUNTS,), metadata={}, qasm="x")
    b = JobSpec(backend="ae", result_types=(ResultType.COUNTS,), metadata={}, qasm="rx")
    assert request_digest(a) != request_digest(b)


def test_a_key_is_one_to_200_printable_ascii_characters():
    assert check_key([]) is None
    assert check_key(["0f8c2d1e-uuid"]) == "0f8c2d1e-uuid"
    assert check_key([b"bytes-key"]) == "bytes-key"
    assert check_key(["k" * MAX_KEY_CHARS]) == "k" * MAX_KEY_CHARS
    assert check_key([" ~ all printable!"]) == " ~ all printable!"


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ([""], "idempotency-key is empty"),
        (["k" * (MAX_KEY_CHARS + 1)], "is 201 characters long: a key has at most 200"),
        (["a", "b"], "idempotency-key sent 2 times"),
        (["tab\there"], "holds '\\t'"),
        (["caf\u00e9"], "holds 'é'"),
        (["nul\x00"], "holds '\\x00'"),
        ([b"\xff\xfe"], "is not ASCII"),
    ],
)
def test_bad_keys_are_refused_naming_the_problem(values, words):
    with pytest.raises(InvalidJob) as refused:
        check_key(values)
    assert words in str(refused.value)
