"""The aer backend and a user's program (issue 10): a program's own gates are authoritative,
nesting and expansion limits, valid programs Aer refuses as loaded, constructs no loader reads."""

from __future__ import annotations

import pytest

from plugins.aer import CircuitError, run
from tests.circuits import case

# --- a program's own gates, nesting and expansion limits (issue 10) ------------------------------


@pytest.mark.parametrize(
    "qasm, counts",
    [
        # the program's own swap/cswap (Qiskit's legacy qelib1 extensions know other ones)
        (case("shadow_swap_qasm2.qasm"), {"11": 100}),
        (case("shadow_cswap_two_qubits_qasm2.qasm"), {"11": 100}),
        # OpenQASM 3 rx without stdgates.inc: the program's own (the Rust parser took it for RX)
        (case("shadow_rx_qasm3.qasm"), {"1": 100}),
        # a gate named like Aer's own instruction, as Qiskit's exporter writes a UnitaryGate
        (
            'OPENQASM 2.0;\ninclude "qelib1.inc";\ngate unitary a { x a; }\nqreg q[1];\ncreg c[1];\n'
            "unitary q[0];\nmeasure q -> c;\n",
            {"1": 100},
        ),
        # OpenQASM 2 without the include: even qelib1's names are the program's own
        ("OPENQASM 2.0;\ngate h a { U(pi,0,pi) a; }\nqreg q[1];\ncreg c[1];\nh q[0];\nmeasure q -> c;\n", {"1": 100}),
    ],
)
def test_programs_own_gate_definitions_are_authoritative(qasm, counts):
    assert run(qasm, {"shots": 100}, ["counts"])["counts"] == counts


def test_redefining_an_included_library_gate_fails_naming_it():
    with pytest.raises(CircuitError, match="'h' is already defined"):
        run('OPENQASM 2.0;\ninclude "qelib1.inc";\ngate h a { x a; }\nqreg q[1];\nh q[0];\n', {}, ["counts"])


def test_deep_nesting_is_refused_before_any_parser_runs():
    with pytest.raises(CircuitError, match="nested 10001 deep; at most 100"):
        run(case("deeply_nested_expression.qasm"), {}, ["counts"])
    with pytest.raises(CircuitError, match="unary operators in a row"):
        run('OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[1] q;\nrx(' + "-" * 500 + "pi) q[0];\n", {}, ["counts"])
    nested_ok = (
        'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[1] q;\nbit[1] c;\nrx('
        + "(" * 50
        + "pi"
        + ")" * 50
        + ") q[0];\nc[0] = measure q[0];\n"
    )
    assert run(nested_ok, {"shots": 100}, ["counts"])["counts"] == {"1": 100}


def test_enormous_expansion_is_refused_by_the_configured_limit():
    levels = "".join(f"gate g{i} a {{ g{i - 1} a; g{i - 1} a; }}\n" for i in range(1, 17))
    qasm = (
        f'OPENQASM 2.0;\ninclude "qelib1.inc";\ngate g0 a {{ x a; }}\n{levels}'
        "qreg q[1];\ncreg c[1];\ng16 q[0];\nmeasure q -> c;\n"
    )
    with pytest.raises(CircuitError, match="expand to more than 1000 gates.*at most 1000"):
        run(qasm, {}, ["counts"], max_expanded_gates=1000)


def test_opaque_delay_as_qiskits_qasm2_exporter_writes_it_runs():
    qasm = (
        'OPENQASM 2.0;\ninclude "qelib1.inc";\nopaque delay(param0) q0;\nqreg q[1];\ncreg c[1];\n'
        "x q[0];\ndelay(100.0) q[0];\nmeasure q[0] -> c[0];\n"
    )
    assert run(qasm, {"shots": 100}, ["counts"])["counts"] == {"1": 100}


# Valid programs Aer refuses after loading (issue 10, point 3). Aer's idle-qubit truncation
# breaks its jumps when every measurement sits inside a branch or loop ("Invalid jump
# destination"; the kind of Qiskit/qiskit-aer#1600); Aer has no `box` (Qiskit/qiskit#13772).
@pytest.mark.parametrize(
    "qasm, counts",
    [
        (
            'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\ncreg o[1];\nx q[0];\n'
            "if(c==1) measure q[0] -> o[0];\n",
            {"0 0": 100},
        ),
        (
            'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[1] q;\nbit[1] c;\nh q[0];\n'
            "while (c[0] == false) {\n  h q[0];\n  c[0] = measure q[0];\n}\n",
            {"1": 100},
        ),
        (
            'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[1] q;\nbit[1] c;\nbit[1] o;\n'
            "if (c[0] == false) { x q[0]; o[0] = measure q[0]; }\n",
            {"1 0": 100},
        ),
        # 50 declared qubits, one used inside the branch: idle ones are still dropped
        (
            'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[50] q;\nbit[1] c;\nbit[1] o;\n'
            "if (c[0] == false) { x q[7]; o[0] = measure q[7]; }\n",
            {"1 0": 100},
        ),
        (
            'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[1] q;\nbit[1] c;\nbox {\n  x q[0];\n}\n'
            "c[0] = measure q[0];\n",
            {"1": 100},
        ),
    ],
)
def test_valid_control_flow_aer_refuses_as_loaded_runs(qasm, counts):
    assert run(qasm, {"shots": 100}, ["counts"])["counts"] == counts


# Text Qiskit's exporters write that its loaders refuse, and valid constructs its loaders do not
# read: a CircuitError that names the construct (issue 10, points 2 and 3).
_Q2 = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n'
_Q3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'


@pytest.mark.parametrize(
    "qasm, words",
    [
        # qasm2.dumps of a StatePreparation: complex amplitudes as arguments
        (
            _Q2 + "gate state_preparation(p0,p1) q0 { ry(1.287) q0; }\nqreg q[1];\ncreg c[1];\n"
            "state_preparation(0.6,0.8j) q[0];\nmeasure q -> c;\n",
            ["complex-number literal, 0.8j", "`state_preparation(0.6,0.8j) q[0];`", "line 6"],
        ),
        # qasm3.dumps of a circuit with a global phase gate: a gate on no qubits
        (
            'OPENQASM 3.0;\ninclude "stdgates.inc";\ngate global_phase(p0) {\n}\nqubit[1] q;\nbit[1] c;\n'
            "global_phase(0.5) ;\nc[0] = measure q[0];\n",
            ["gate global_phase (line 3) is defined on no qubits"],
        ),
        # qasm3.dumps of a PauliGate: a label as its argument
        (
            _Q3 + "gate pauli(p) a, b { x a; y b; }\nqubit[2] q;\nbit[2] c;\npauli(XY) q[0], q[1];\nc = measure q;\n",
            ["Undefined symbol 'XY'", "line 6 is `pauli(XY) q[0], q[1];`"],
        ),
        # integer variables and switch (Qiskit/qiskit#14522), shifts and bool variables
        # (Qiskit/qiskit-aer#2180): valid OpenQASM 3 that Qiskit's importers do not read
        (
            _Q3 + "qubit[1] q;\nbit[2] c;\nint[4] k = 3;\nswitch (k) { case 3 { x q[0]; } default { } }\n"
            "c[0] = measure q[0];\n",
            ["declarations of type 'int' are not supported", "`int[4] k = 3;`"],
        ),
        (
            _Q3
            + "qubit[1] q;\nbit[2] c;\nc[0] = measure q[0];\nif ((c << 1) == 2) { x q[0]; }\nc[1] = measure q[0];\n",
            ["unsupported binary operation '<<'", "`if ((c << 1) == 2) { x q[0]; }`"],
        ),
        (
            _Q3 + "qubit[1] q;\nbit[1] c;\nbool b = true;\nif (b) { x q[0]; }\nc[0] = measure q[0];\n",
            ["declarations of type 'bool' are not supported"],
        ),
    ],
)
def test_refused_constructs_are_named(qasm, words):
    with pytest.raises(CircuitError) as refused:
        run(qasm, {"shots": 10}, ["counts"])
    for word in words:
        assert word in str(refused.value)


def test_long_line_is_quoted_cut_short():
    qasm = _Q2 + "qreg q[1];\ncreg c[1];\n" + "x q[0]; " * 100 + "foo q[0];\nmeasure q -> c;\n"
    with pytest.raises(CircuitError, match=r"line 5 is `x q\[0\]; x q\[0\];.*\.\.\.`") as refused:
        run(qasm, {"shots": 10}, ["counts"])
    assert len(str(refused.value)) < 400


def test_second_opaque_delay_as_qiskits_qasm2_exporter_writes_it_runs():
    # qasm2.dumps names each Delay after the first `delay_<id>`, declared opaque
    qasm = (
        _Q2 + "opaque delay(param0) q0;\nopaque delay_140(param0) q0;\nqreg q[2];\ncreg c[2];\n"
        "x q[0];\ndelay(100.0) q[0];\ndelay_140(20.0) q[1];\nx q[1];\nmeasure q -> c;\n"
    )
    assert run(qasm, {"shots": 100}, ["counts"])["counts"] == {"11": 100}


def test_other_opaque_gate_named_like_a_delay_with_two_qubits_is_refused():
    qasm = _Q2 + "opaque delay_7(t) a, b;\nqreg q[2];\ncreg c[2];\ndelay_7(1) q[0], q[1];\nmeasure q -> c;\n"
    with pytest.raises(CircuitError, match="cannot run 'delay_7' on Aer: it has no definition"):
        run(qasm, {"shots": 10}, ["counts"])


@pytest.mark.parametrize(
    "qasm",
    [
        _Q2 + "gate store a { x a; }\nqreg q[1];\ncreg c[1];\nstore q[0];\nmeasure q -> c;\n",
        _Q3 + "gate store a { x a; }\nqubit[1] q;\nbit[1] c;\nstore q[0];\nc = measure q;\n",
        # the fresh name must not be one the program already has
        _Q2 + "gate store_gate a { x a; }\ngate store a { store_gate a; }\nqreg q[1];\ncreg c[1];\n"
        "store q[0];\nmeasure q -> c;\n",
    ],
)
def test_gate_named_store_runs_as_defined(qasm):
    # Qiskit takes any instruction named `store` for its classical store (IndexError,
    # Qiskit/qiskit#16938)
    assert run(qasm, {"shots": 100}, ["counts"])["counts"] == {"1": 100}
