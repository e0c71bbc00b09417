"""Hypothesis strategies for hostile submissions: metadata text, backend names, QASM text.

Everything a client can put in a ``JobProperties`` or a ``qasmChunk``: invalid JSON, deep
nesting, NaN/Infinity literals, integers past float range and past Python's 4300-digit
limit, NUL and lone surrogates (escaped and literal), and every known metadata key with
values of every type, next to values that are almost right (a trailing newline, a bound +1).
"""

from __future__ import annotations

import json

from hypothesis import strategies as st

from core.domain import AER_METHODS, Limits

# Every code point, NUL and lone surrogates included (hypothesis leaves surrogates out by default).
ANY_CHAR = st.characters(exclude_categories=())
any_text = st.text(ANY_CHAR, max_size=30)
# Characters that sit next to a valid value and should still make it invalid.
_NEAR = st.sampled_from(["\n", "\r\n", " ", "\x00", "\t", "\u2028", "\ud800", ""])

KNOWN_KEYS = ("shots", "obs", "method", "seed", "parameters", "tags", "timeout_s")
SMALL = Limits(max_shots=10, max_observables=3, max_metadata_bytes=256, max_timeout_s=5.0)
limits = st.sampled_from([Limits(), Limits(), SMALL])

# +-(2 or 10)**e +-1: past float precision (2**53), int64 (2**63), float range (10**309), up to
# the most digits Python parses (4300); built, so the strategy's repr stays short
big_ints = st.builds(
    lambda base, exp, sign, delta: sign * (base**exp + delta),
    st.sampled_from([2, 10]),
    st.sampled_from([53, 63, 64, 308, 309, 400, 4299]),
    st.sampled_from([1, -1]),
    st.sampled_from([-1, 0, 1]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    big_ints,
    st.floats(),  # NaN, +-Infinity and -0.0 included; json.dumps writes NaN / Infinity literals
    any_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


def nested(value, depth: int, as_object: bool):
    """``value`` wrapped in ``depth`` lists or objects."""
    for _ in range(depth):
        value = {"k": value} if as_object else [value]
    return value


deep_values = st.builds(nested, json_values, st.integers(25, 40), st.booleans())

# Values that are right, or one step from right, for each known key (besides any JSON value).
numbers = st.one_of(st.integers(-3, 10**7), st.floats(), big_ints)
pauli = st.one_of(
    st.text("IXYZ", min_size=1, max_size=4),
    st.tuples(st.text("IXYZ", min_size=1, max_size=4), _NEAR).map("".join),
    st.text("IXYZixyzAB ", max_size=4),
)
pubs = st.lists(
    st.lists(
        st.one_of(st.tuples(pauli, numbers).map(list), json_values),
        min_size=0,
        max_size=4,
    ),
    min_size=0,
    max_size=5,
)
tag = st.one_of(
    st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True),
    st.tuples(st.from_regex(r"[A-Za-z0-9_.-]{1,8}", fullmatch=True), _NEAR).map("".join),
    st.text(ANY_CHAR, max_size=70),
)
near_values = {
    "shots": st.one_of(st.integers(-2, 2_000_001), st.floats(), big_ints, st.just(True)),
    "obs": st.one_of(pubs, pubs.map(lambda p: p[0] if p else p)),  # the second: a PUB unwrapped
    "method": st.one_of(
        st.sampled_from(sorted(AER_METHODS)),
        st.tuples(st.sampled_from(sorted(AER_METHODS)), _NEAR).map("".join),
        any_text,
    ),
    "seed": st.one_of(st.integers(-2, 2**64), st.floats(), big_ints),
    "parameters": st.dictionaries(any_text, st.one_of(numbers, json_values), max_size=4),
    "tags": st.lists(tag, max_size=4),
    "timeout_s": st.one_of(numbers, st.floats(-1, 100_000)),
}
metadata_objects = st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries({}, optional={k: st.one_of(near_values[k], json_values, deep_values) for k in KNOWN_KEYS}),
    st.dictionaries(any_text, json_values, max_size=3),
)

# Metadata the contract allows (for SMALL's limits too), so acceptance is reached often.
_label = st.integers(1, 4).flatmap(lambda n: st.text("IXYZ", min_size=n, max_size=n))
good_values = {
    "shots": st.integers(1, 10),
    "obs": _label.map(len).flatmap(
        lambda n: st.lists(
            st.lists(
                st.tuples(st.text("IXYZ", min_size=n, max_size=n), st.floats(-1e300, 1e300) | st.integers(-5, 5)).map(
                    list
                ),
                min_size=1,
                max_size=3,
            ),
            min_size=1,
            max_size=3,
        )
    ),
    "method": st.sampled_from(sorted(AER_METHODS)),
    "seed": st.integers(0, 2**63 - 1),
    "parameters": st.dictionaries(any_text, st.floats(allow_nan=False, allow_infinity=False), max_size=3),
    "tags": st.lists(st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?", fullmatch=True), max_size=3),
    "timeout_s": st.floats(0.001, 5.0),
}
_finite_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
good_metadata = st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries({}, optional=good_values),
    st.dictionaries(any_text, _finite_json, max_size=2),
)


def _dump(value, ensure_ascii: bool) -> str:
    # allow_nan (the default) writes NaN and Infinity literals; ensure_ascii=False writes
    # NUL and lone surrogates as raw characters instead of escapes
    return json.dumps(value, ensure_ascii=ensure_ascii)


dumped = st.builds(_dump, st.one_of(metadata_objects, json_values, deep_values), st.booleans())
good_text = st.builds(_dump, good_metadata, st.booleans())

# Literal fragments json.dumps cannot write: JSON's own limits and non-JSON.
raw_literals = st.sampled_from(
    [
        "NaN",
        "-NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "-1e400",
        "1e-400",
        "-0",
        "1E+2",
        "0x10",
        "01",
        "+1",
        ".5",
        "1.",
        "'a'",
        "undefined",
        "None",
        '"\\u0000"',
        '"\\ud800"',
        '"\\udfff\\ud800"',
        '"\\uDC00x"',
        '"\\x41"',
        '"\t"',
        "\ufeff{}",
        "{}\x00",
        "{} {}",
        "[",
        "{",
        '{"a"}',
        '{"a":}',
        "{,}",
        "[1,]",
        "//c\n{}",
    ]
)
# Integers of 4300 digits (the most Python's json parses) and more, built so reprs stay short.
long_digits = st.sampled_from([4299, 4300, 4301, 5000]).map(lambda n: "9" * n)
raw_literals = raw_literals | long_digits
raw_objects = st.builds(
    lambda key, literal: "{" + json.dumps(key) + ": " + literal + "}",
    st.sampled_from(KNOWN_KEYS) | any_text,
    raw_literals,
)
deep_text = st.builds(
    lambda n, obj, close: ('{"a":' if obj else "[") * n + "1" + (("}" if obj else "]") * n if close else ""),
    st.integers(0, 200_000),
    st.booleans(),
    st.booleans(),
)


@st.composite
def mutated(draw, text_strategy):
    """A valid-looking text with one slice cut out or one character put in."""
    text = draw(text_strategy)
    if not text:
        return text
    i = draw(st.integers(0, len(text) - 1))
    j = draw(st.integers(i, len(text)))
    return text[:i] + draw(st.one_of(st.just(""), ANY_CHAR)) + text[j:]


metadata_text = st.one_of(
    good_text,
    mutated(good_text),
    dumped,
    dumped.map(lambda t: t * 2),  # two documents
    raw_literals,
    raw_objects,
    deep_text,
    mutated(dumped),
    st.text(ANY_CHAR, max_size=200),
    st.just(" " * 300),  # blank and over SMALL's size limit
)

backend_names = st.one_of(
    st.sampled_from(["aer", "aer_gpu", "no-such-backend", "", "  ", "a" * 100, "a" * 101, "aer\x00", "\ud800"]),
    st.tuples(st.just("aer"), _NEAR).map("".join),
    st.text(ANY_CHAR, max_size=110),
)

_BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
qasm_text = st.one_of(
    st.just(_BELL),
    mutated(st.just(_BELL)),
    st.text(ANY_CHAR, max_size=300),
    st.text(st.sampled_from(" \t\r\n\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2028\u3000"), max_size=20),
    st.builds(lambda a, b: a + "\x00" + b, st.text(max_size=20), st.text(max_size=20)),
)
