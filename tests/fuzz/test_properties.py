"""Property-based tests of submission validation: hostile input is refused with a message, never a crash.

``check_properties`` and ``check_program`` either accept (and then what they accept is what
the contract allows, and Postgres stores it) or raise ``InvalidJob`` with a short,
non-empty, sendable message; no other exception escapes. What is accepted goes into a
scratch table of the scratch database (jsonb and text), and must come back equal.
"""

from __future__ import annotations

import json
import math
import os
import re
import unicodedata

import psycopg
import pytest
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from core.domain import (
    AER_METHODS,
    MAX_METADATA_DEPTH,
    JobSpec,
    Limits,
    ResultType,
    check_program,
    check_properties,
)
from core.errors import InvalidJob
from tests.fuzz.strategies import backend_names, limits, metadata_text, qasm_text

MAX_MESSAGE = 1000
# QSERVER_FUZZ_EXAMPLES=20000 for a deeper run by hand (every test in tests/fuzz reads it)
RUNS = hsettings(
    max_examples=int(os.environ.get("QSERVER_FUZZ_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def scratch(fuzz_db: psycopg.Connection) -> psycopg.Connection:
    """A scratch table in the scratch database, for what validation accepted."""
    fuzz_db.execute("CREATE TABLE IF NOT EXISTS fuzz_scratch (backend text, metadata jsonb, qasm text)")
    return fuzz_db


def _refusal(error: InvalidJob) -> None:
    message = str(error)
    event(f"refused: {re.split(r'[:({0-9]', message)[0][:40]}")  # --hypothesis-show-statistics
    assert message.strip(), "an InvalidJob without a message"
    assert len(message) <= MAX_MESSAGE, f"message of {len(message)} chars: {message[:200]}..."
    message.encode("utf-8")  # sendable as gRPC details / JSON: no lone surrogates


def _finite_float(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max((max(_depth(k), _depth(v)) for k, v in value.items()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _check_contract(md: dict, limits: Limits, result_types: tuple[ResultType, ...]) -> None:
    """What the contract's metadata table allows, checked independently of core.domain."""
    assert _depth(md) <= MAX_METADATA_DEPTH + 1
    if "shots" in md:
        assert type(md["shots"]) is int and 1 <= md["shots"] <= limits.max_shots
    if "method" in md:
        assert md["method"] in AER_METHODS
    if "seed" in md:
        assert type(md["seed"]) is int and 0 <= md["seed"] < 2**63
    if "parameters" in md:
        assert isinstance(md["parameters"], dict)
        assert all(_finite_float(v) for v in md["parameters"].values()), md["parameters"]
    if "tags" in md:
        assert isinstance(md["tags"], list)
        tag = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")  # core.domain.TAG_RULE
        assert all(isinstance(t, str) and tag.fullmatch(t) for t in md["tags"]), md["tags"]
    if "timeout_s" in md:
        assert _finite_float(md["timeout_s"]) and 0 < md["timeout_s"] <= limits.max_timeout_s
    if ResultType.EXPVAL in result_types:
        assert "obs" in md
    if "obs" in md:
        obs = md["obs"]
        assert isinstance(obs, list) and 0 < len(obs) <= limits.max_observables
        for pub in obs:
            assert isinstance(pub, list) and 0 < len(pub) <= limits.max_observables
            assert len({len(term[0]) for term in pub}) == 1
            for term in pub:
                assert isinstance(term, list) and len(term) == 2
                assert isinstance(term[0], str) and re.fullmatch(r"[IXYZ]+", term[0]), term
                assert _finite_float(term[1]), term


def _same_json(a, b) -> bool:
    """Equal as JSON values. jsonb keeps numbers as decimals: the float 3.687636144535051e16
    comes back as the integer 36876361445350510, which is the same float, not the same int."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, float) or isinstance(b, float):
        return _finite_float(a) and _finite_float(b) and float(a) == float(b)
    return type(a) is type(b) and a == b


def _stored(db: psycopg.Connection, *, backend: str = "", metadata: dict | None = None, qasm: str = ""):
    """Insert into the scratch table and read back: Postgres takes it, and it comes back equal."""
    with db.transaction():
        row = db.execute(
            "INSERT INTO fuzz_scratch (backend, metadata, qasm) VALUES (%s, %s, %s) RETURNING backend, metadata, qasm",
            (backend, Jsonb(metadata or {}), qasm),
        ).fetchone()
        db.execute("DELETE FROM fuzz_scratch")
    return row


@RUNS
@given(
    # mostly good flags and backend, so the metadata is what decides
    flags=st.one_of(st.just((True, False, False)), st.just((True, True, False)), st.tuples(*[st.booleans()] * 3)),
    backend=st.one_of(st.just("aer"), st.just("aer"), backend_names),
    metadata=metadata_text,
    limits=limits,
)
# Each example below was a bug these tests found, fixed in core/domain.py: NUL and lone
# surrogates in backend names and texts, integers past float range, "Z\n" and "gpu\n" passing
# ^...$ patterns, and a refusal message of 4930 characters.
@example(flags=(True, False, False), backend="aer", metadata='{"shots": 10}', limits=Limits())
@example(flags=(True, False, False), backend="aer\x00", metadata="{}", limits=Limits())
@example(flags=(True, False, False), backend="\ud800", metadata="{}", limits=Limits())
@example(flags=(True, False, False), backend="aer", metadata='{"a": "\ud800"}', limits=Limits())
@example(
    flags=(True, False, False), backend="aer", metadata='{"parameters": {"t": 1' + "0" * 400 + "}}", limits=Limits()
)
@example(flags=(True, False, False), backend="aer", metadata='{"timeout_s": 1' + "0" * 400 + "}", limits=Limits())
@example(flags=(True, False, True), backend="aer", metadata='{"obs": [[["Z\\n", 1.0]]]}', limits=Limits())
@example(flags=(True, False, True), backend="aer", metadata='{"obs": [[["Z", 1' + "0" * 400 + "]]]}", limits=Limits())
@example(flags=(True, False, False), backend="aer", metadata='{"tags": ["gpu\\n"]}', limits=Limits())
@example(
    flags=(False, False, True),
    backend="aer",
    metadata=json.dumps({"obs": [[["Z" * n, 1] for n in range(1, 1001)]]}),
    limits=Limits(),
)
def test_check_properties_accepts_or_refuses_with_a_message(scratch, flags, backend, metadata, limits):
    counts, quasi_dist, expval = flags
    try:
        spec = check_properties(
            counts=counts,
            quasi_dist=quasi_dist,
            expval=expval,
            backend=backend,
            metadata_text=metadata,
            limits=limits,
        )
    except InvalidJob as error:
        _refusal(error)
        return
    assert isinstance(spec, JobSpec)
    event("accepted")
    assert spec.result_types and spec.backend == backend and spec.qasm == ""
    assert backend.strip() and len(backend) <= 100
    assert not any(unicodedata.category(c) in ("Cc", "Cs") for c in backend), repr(backend)
    assert len(metadata.encode("utf-8")) <= limits.max_metadata_bytes
    _check_contract(spec.metadata, limits, spec.result_types)
    text = json.dumps(spec.metadata, allow_nan=False)
    assert _same_json(json.loads(text), spec.metadata)
    row = _stored(scratch, backend=backend, metadata=spec.metadata)
    assert row["backend"] == backend
    assert _same_json(row["metadata"], spec.metadata), (row["metadata"], spec.metadata)


@RUNS
@given(qasm=qasm_text, max_bytes=st.sampled_from([1, 64, 1024, 32 * 1024 * 1024]))
@example(qasm="OPENQASM 2.0;\ud800", max_bytes=1024)
@example(qasm="\x00", max_bytes=1024)
@example(qasm=" \n\t", max_bytes=1024)
def test_check_program_accepts_or_refuses_with_a_message(scratch, qasm, max_bytes):
    try:
        check_program(qasm, max_bytes)
    except InvalidJob as error:
        _refusal(error)
        return
    event("accepted")
    assert qasm.strip() and "\x00" not in qasm
    assert len(qasm.encode("utf-8")) <= max_bytes
    assert _stored(scratch, backend="aer", qasm=qasm)["qasm"] == qasm
