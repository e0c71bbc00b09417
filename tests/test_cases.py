"""Every QASM input of ../shared/cases/README.md, through the whole stack, with the answer given there."""

from __future__ import annotations

import pytest

from tests.circuits import case


def test_lowercase_u_from_exporter(stack):
    job = stack.run(case("lowercase_u_from_exporter.qasm"), counts=True, quasi_dist=True)
    assert job["status"] == "finished", job["error"]
    assert job["results"]["counts"] == {"1": 1000}
    assert job["results"]["quasi_dist"] == {"1": 1.0}


def test_duplicate_gate_definition_fails_and_next_job_runs(stack):
    job = stack.run(case("duplicate_gate_definition.qasm"), counts=True)
    assert job["status"] == "failed"
    assert "gate_QFT" in job["error"] and "already" in job["error"]
    result = stack.result_response(job["id"])
    assert result.status_code == 404 and "failed" in result.json()["detail"]
    assert stack.run(case("header_after_comment.qasm"), counts=True)["status"] == "finished"


def test_qasm3_power_operator(stack):
    job = stack.run(case("qasm3_power_operator.qasm"), counts=True)
    if job["status"] == "finished":
        assert job["results"]["counts"] == {"1": 1000}
    else:
        assert job["status"] == "failed" and "**" in job["error"]


def test_custom_gate_bell(stack):
    job = stack.run(case("custom_gate_bell.qasm"), counts=True, quasi_dist=True)
    assert job["status"] == "finished", job["error"]
    counts = job["results"]["counts"]
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 1000
    assert all(400 <= n <= 600 for n in counts.values())
    assert set(job["results"]["quasi_dist"]) == {"0", "3"}


def test_qasm3_unbound_input_fails_naming_it(stack):
    job = stack.run(case("qasm3_unbound_input.qasm"), counts=True)
    assert job["status"] == "failed"
    assert "theta" in job["error"]
    assert job["results"]["counts"] is None


def test_qasm3_unbound_input_bound_by_metadata(stack):
    import math

    job = stack.run(case("qasm3_unbound_input.qasm"), counts=True, metadata={"parameters": {"theta": math.pi}})
    assert job["status"] == "finished", job["error"]
    assert job["results"]["counts"] == {"1": 1000}


def test_qasm3_for_loop(stack):
    job = stack.run(case("qasm3_for_loop.qasm"), counts=True)
    if job["status"] == "finished":
        assert job["results"]["counts"] == {"1111": 1000}
    else:
        assert job["status"] == "failed" and job["error"]


@pytest.mark.parametrize("name", ["header_openqasm_3_short.qasm", "header_after_comment.qasm"])
def test_headers(stack, name):
    job = stack.run(case(name), counts=True)
    assert job["status"] == "finished", job["error"]
    assert job["results"]["counts"] == {"1": 1000}


def test_two_classical_registers(stack):
    job = stack.run(case("two_classical_registers.qasm"), counts=True, quasi_dist=True)
    assert job["status"] == "finished", job["error"]
    assert job["results"]["counts"] == {"11 0": 1000}
    assert job["results"]["quasi_dist"] == {"6": 1.0}
    assert stack.result_response(job["id"]).json()["counts"] == {"11 0": 1000}


def test_bit_order_x_on_q0(stack):
    job = stack.run(
        case("bit_order_x_on_q0.qasm"),
        counts=True,
        expval=True,
        metadata={"obs": [[["ZI", 1]], [["IZ", 1]]]},
    )
    assert job["status"] == "finished", job["error"]
    assert job["results"]["counts"] == {"01": 1000}
    assert job["results"]["expval"] == pytest.approx([1.0, -1.0])


def test_too_big_40q_nonclifford_fails_with_memory_message(stack):
    job = stack.run(case("too_big_40q_nonclifford.qasm"), counts=True)
    assert job["status"] == "failed"
    assert "memory" in job["error"].lower()
    assert job["attempts"] == 1


def test_too_big_40q_with_matrix_product_state_finishes(stack):
    job = stack.run(case("too_big_40q_nonclifford.qasm"), counts=True, metadata={"method": "matrix_product_state"})
    assert job["status"] == "finished", job["error"]
    counts = job["results"]["counts"]
    assert sum(counts.values()) == 1000 and all(len(key) == 40 for key in counts)


def test_wide_register_one_active_qubit(stack):
    job = stack.run(case("wide_register_one_active_qubit.qasm"), counts=True)
    assert job["status"] == "finished", job["error"]
    assert job["results"]["counts"] == {"1": 1000}


def test_clifford_40q(stack):
    job = stack.run(case("clifford_40q.qasm"), counts=True)
    assert job["status"] == "finished", job["error"]
    counts = job["results"]["counts"]
    assert sum(counts.values()) == 1000
    assert all(len(key) == 40 for key in counts)
    assert len(counts) > 990


# --- added after the first release ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, counts",
    [
        ("shadow_swap_qasm2.qasm", {"11": 1000}),
        ("shadow_cswap_two_qubits_qasm2.qasm", {"11": 1000}),
        ("shadow_rx_qasm3.qasm", {"1": 1000}),
    ],
)
def test_programs_own_gate_definitions_are_authoritative(stack, name, counts):
    job = stack.run(case(name), counts=True)
    assert job["status"] == "finished", job["error"]
    assert job["results"]["counts"] == counts


def test_deeply_nested_expression_fails_naming_the_depth_and_the_next_job_runs(stack):
    job = stack.run(case("deeply_nested_expression.qasm"), counts=True)
    assert job["status"] == "failed"
    assert "nested 10001 deep; at most 100" in job["error"]
    assert job["attempts"] == 1
    assert stack.run(case("header_after_comment.qasm"), counts=True)["status"] == "finished"


def test_gate_definitions_that_expand_enormously_fail_naming_the_limit(stack):
    levels = "".join(f"gate g{i} a {{ g{i - 1} a; g{i - 1} a; }}\n" for i in range(1, 17))
    qasm = (
        f'OPENQASM 2.0;\ninclude "qelib1.inc";\ngate g0 a {{ x a; }}\n{levels}'
        "qreg q[1];\ncreg c[1];\ng16 q[0];\nmeasure q -> c;\n"
    )
    job = stack.run(qasm, counts=True)
    assert job["status"] == "failed"
    assert "expand to more than 50000 gates" in job["error"] and "QSERVER_MAX_EXPANDED_GATES" in job["error"]
    assert job["attempts"] == 1


_Q2 = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n'
_Q3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'


# Issue 10, point 3: valid programs Aer (or Qiskit after loading) refuses, one per kind.
@pytest.mark.parametrize(
    "qasm, counts",
    [
        # the only measurement in a branch: Aer's truncation broke its jumps (qiskit-aer#1600's kind)
        (
            _Q3 + "qubit[1] q;\nbit[1] c;\nbit[1] o;\nif (c[0] == false) { x q[0]; o[0] = measure q[0]; }\n",
            {"1 0": 1000},
        ),
        # a box: Aer has none (Qiskit/qiskit#13772)
        (_Q3 + "qubit[1] q;\nbit[1] c;\nbox {\n  x q[0];\n}\nc[0] = measure q[0];\n", {"1": 1000}),
        # a gate named `store`: IndexError in Qiskit (Qiskit/qiskit#16938)
        (_Q2 + "gate store a { x a; }\nqreg q[1];\ncreg c[1];\nstore q[0];\nmeasure q -> c;\n", {"1": 1000}),
        # a gate named like an Aer instruction (Qiskit/qiskit-aer#1612's kind)
        (_Q2 + "gate kraus a { x a; }\nqreg q[1];\ncreg c[1];\nkraus q[0];\nmeasure q -> c;\n", {"1": 1000}),
        # Qiskit's qasm2 exporter's second Delay, an opaque `delay_<id>`
        (
            _Q2 + "opaque delay(param0) q0;\nopaque delay_140(param0) q0;\nqreg q[1];\ncreg c[1];\n"
            "x q[0];\ndelay(100.0) q[0];\ndelay_140(20.0) q[0];\nmeasure q -> c;\n",
            {"1": 1000},
        ),
    ],
    ids=["measure-only-in-branch", "box", "gate-named-store", "gate-named-kraus", "opaque-delay-id"],
)
def test_valid_programs_aer_refuses_as_loaded_run(stack, qasm, counts):
    job = stack.run(qasm, counts=True)
    assert job["status"] == "finished", job["error"]
    assert job["results"]["counts"] == counts


@pytest.mark.parametrize(
    "qasm, words",
    [
        (
            _Q2 + "gate state_preparation(p0,p1) q0 { ry(1.287) q0; }\nqreg q[1];\ncreg c[1];\n"
            "state_preparation(0.6,0.8j) q[0];\nmeasure q -> c;\n",
            ["complex-number literal, 0.8j"],
        ),
        (
            _Q3 + "qubit[1] q;\nbit[2] c;\nint[4] k = 3;\nswitch (k) { case 3 { x q[0]; } default { } }\n"
            "c[0] = measure q[0];\n",
            ["type 'int' are not supported", "`int[4] k = 3;`"],
        ),
    ],
    ids=["complex-literal", "int-and-switch"],
)
def test_constructs_no_loader_reads_fail_naming_them(stack, qasm, words):
    job = stack.run(qasm, counts=True)
    assert job["status"] == "failed"
    assert job["attempts"] == 1
    for word in words:
        assert word in job["error"]
