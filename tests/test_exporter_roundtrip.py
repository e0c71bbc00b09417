"""What Qiskit's own exporters write, through the whole stack: the original circuit's distribution.

The same cases and the same check as tests/plugins/test_exporter_roundtrip.py (all of it in
tests/roundtrip/), with each exporter's text submitted over gRPC as a counts job
(metadata shots SHOTS, seed SEED) and read back over REST: a finished job's counts must be
within `tvd_bound` of the ORIGINAL circuit's exact distribution; a failed job is right only
where Qiskit's own loaders refuse the text too and its error names the construct. All jobs are
submitted before the first one is awaited, so the cluster runs them side by side.
"""

from __future__ import annotations

import pytest

from tests.roundtrip.check import (
    CASES,
    METADATA,
    check_job,
    exportable,
    exported_or_skip,
)

pytestmark = pytest.mark.filterwarnings("ignore::qiskit.exceptions.ExperimentalWarning")

# Jobs queue behind one another; each wait starts when the test before it has finished.
WAIT_S = 300


@pytest.fixture(scope="module")
def job_ids(stack) -> dict[tuple[str, str], str]:
    """Every exportable case submitted once, before any is awaited: {(name, exporter): job id}."""
    return {
        (name, exporter): stack.submit(text, counts=True, metadata=METADATA) for name, exporter, text in exportable()
    }


@pytest.mark.parametrize(("name", "exporter"), CASES, ids=[f"{name}-{exporter}" for name, exporter in CASES])
def test_exported_text_runs_as_the_original_circuit_through_the_stack(stack, job_ids, name, exporter):
    text = exported_or_skip(name, exporter)
    check_job(name, exporter, text, stack.wait(job_ids[(name, exporter)], timeout=WAIT_S))
