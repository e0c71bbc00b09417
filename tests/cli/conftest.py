"""Fixtures of the CLI tests: a program file, slow jobs (canceled afterwards)."""

from __future__ import annotations

import contextlib

import pytest

from qserver_client.errors import Conflict, JobNotFound
from tests.cli.runs import SLOW


@pytest.fixture
def program(tmp_path):
    """``program(text)``: a file holding ``text``, its path as a string."""

    def write(text: str, name: str = "program.qasm") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


@pytest.fixture
def slow(stack):
    """``slow()``: the id of a new job that runs for minutes (canceled after the test)."""
    made: list[str] = []

    def submit() -> str:
        made.append(stack.submit(SLOW, counts=True, metadata={"method": "extended_stabilizer", "shots": 2000}))
        return made[-1]

    yield submit
    for job_id in made:
        with contextlib.suppress(JobNotFound, Conflict):  # deleted, or ended
            stack.cancel(job_id)
