"""Names a client or an admin gives (plugin names, node tags, job ids): accepted only when whole.

A validator that accepts a name must accept it by its whole rule; a trailing newline, which
``re.match`` with ``^...$`` lets through, is the usual way to slip past one.
"""

from __future__ import annotations

import re
import uuid

from hypothesis import example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from api.distribution import NAME_PATTERN, check_plugin_name
from api.errors import InvalidName
from core.domain import NODE_TAG, parse_job_id
from core.errors import InvalidJob
from ops.nodes import NodeError, check_tag
from tests.fuzz.strategies import ANY_CHAR

RUNS = hsettings(max_examples=300, deadline=None)
# Near-valid names: a valid one with a character put before or after it.
names = st.one_of(
    st.text(ANY_CHAR, max_size=70),
    st.tuples(
        st.sampled_from(["", " ", "\n", "\x00", "-", "."]),
        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True),
        st.sampled_from(["", " ", "\n", "\r\n", "\x00", "/", "==1.0", "\u2028"]),
    ).map("".join),
)


def _accepts(check, error, text) -> bool:
    try:
        check(text)
    except error as refused:
        assert str(refused).strip()
        return False
    return True


@RUNS
@given(text=names)
@example(text="fake-plugin\n")
def test_plugin_names_are_accepted_whole(text):
    if _accepts(check_plugin_name, InvalidName, text):
        assert re.fullmatch(NAME_PATTERN.strip("^$"), text), repr(text)


@RUNS
@given(text=names)
@example(text="gpu\n")
def test_node_tags_are_accepted_whole(text):
    if _accepts(check_tag, NodeError, text):
        assert re.fullmatch(NODE_TAG.pattern.strip("^$"), text), repr(text)


@RUNS
@given(text=st.one_of(names, st.uuids().map(str), st.uuids().map(lambda u: f" {u}\n")))
def test_job_ids_are_uuids_or_refused(text):
    if _accepts(parse_job_id, InvalidJob, text):
        assert isinstance(parse_job_id(text), uuid.UUID)
