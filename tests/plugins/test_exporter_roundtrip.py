"""What Qiskit's own exporters write, run by the aer backend: the original circuit's distribution.

For every circuit of tests/roundtrip/ and each of `qiskit.qasm2.dumps` and
`qiskit.qasm3.dumps`: the exporter's text through `plugins.aer.run` (SHOTS shots, fixed seed)
must give counts within `tvd_bound` of the ORIGINAL circuit's exact distribution, or (only where
Qiskit's own loaders refuse that text too) a CircuitError/SimulationError naming the construct.
Circuits the exporter itself cannot write are skipped with the exporter's message. Any other
exception from `run` fails the test as it is.
"""

from __future__ import annotations

import pytest

from plugins.aer import CircuitError, SimulationError, run
from tests.roundtrip.check import (
    CASES,
    METADATA,
    SHOTS,
    check_outcome,
    exported_or_skip,
)

# Qiskit warns on each use of its Rust OpenQASM 3 parser; plugins.aer filters that at import,
# but pytest resets warning filters around every test.
pytestmark = pytest.mark.filterwarnings("ignore::qiskit.exceptions.ExperimentalWarning")


@pytest.mark.parametrize(("name", "exporter"), CASES, ids=[f"{name}-{exporter}" for name, exporter in CASES])
def test_exported_text_runs_as_the_original_circuit(name, exporter):
    text = exported_or_skip(name, exporter)
    try:
        counts = run(text, METADATA, ["counts"])["counts"]
    except (CircuitError, SimulationError) as error:
        check_outcome(name, exporter, text, SHOTS, error=f"{type(error).__name__}: {error}")
    else:
        check_outcome(name, exporter, text, SHOTS, counts=counts)
