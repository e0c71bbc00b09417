"""Gate definitions that expand: counted before they are built (plugins.aer.unroll.expanded_gates),
so that a program that explodes is refused at once and one that needs more memory than its
worker's grant is handed back before its expansion takes the worker's time (issue 12)."""

from __future__ import annotations

import time

import pytest

from plugins.aer import NeedsMemory, run
from plugins.aer.circuits import load_circuit
from plugins.aer.errors import CircuitError
from plugins.aer.simulate import _NATIVE
from plugins.aer.sizing import GATE_BYTES, WORKER_BYTES
from plugins.aer.unroll import expanded_gates, unroll


def doubling(levels: int, calls: int = 1) -> str:
    """A program whose gate g{k} calls g{k-1} twice: one call of g{levels} makes 2^levels gates
    (h, cx at the bottom) and as many intermediate calls."""
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', "gate g0 a, b { h a; cx a, b; }"]
    lines += [f"gate g{k} a, b {{ g{k - 1} a, b; g{k - 1} a, b; }}" for k in range(1, levels + 1)]
    lines += ["qreg q[2];", "creg c[2];", *[f"g{levels} q[0], q[1];"] * calls, "measure q -> c;", ""]
    return "\n".join(lines)


@pytest.mark.parametrize(("levels", "calls"), [(0, 1), (3, 1), (6, 3), (10, 2)])
def test_the_count_is_exactly_what_unrolling_makes(levels, calls):
    circuit = load_circuit(doubling(levels, calls))
    count = expanded_gates(circuit, _NATIVE)
    # g_k makes 2 calls of g_(k-1) and what they make; g0 makes 2 gates
    per_call = sum(2 ** (k + 1) for k in range(levels + 1))
    assert count == calls * per_call
    unroll(circuit, _NATIVE, count)  # exactly enough
    with pytest.raises(CircuitError, match=f"more than {count - 1} gates"):
        unroll(circuit, _NATIVE, count - 1)


def test_a_program_that_explodes_is_refused_at_once():
    started = time.perf_counter()
    with pytest.raises(CircuitError, match="expand to more than 50000 gates .*'g17'"):
        run(doubling(17), {"shots": 10}, ["counts"], max_expanded_gates=50_000)
    assert time.perf_counter() - started < 0.5  # counted, never built (building 50 000 took 1.2 s)


def test_an_expansion_past_the_grant_is_handed_back_before_it_is_built():
    program = doubling(12)  # 16 382 gates from definitions
    started = time.perf_counter()
    with pytest.raises(NeedsMemory) as raised:
        run(program, {"shots": 10}, ["counts"], memory_budget_bytes=WORKER_BYTES + 8 * 1024**2)
    assert time.perf_counter() - started < 0.5
    assert raised.value.size.memory_bytes >= WORKER_BYTES + GATE_BYTES * 16_382
    counts = run(program, {"shots": 100, "seed": 1}, ["counts"])["counts"]  # with no bound it runs
    assert sum(counts.values()) == 100
