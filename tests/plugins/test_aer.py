"""The built-in aer backend: every input case of shared/cases through `run`, and the contract."""

import math
import time
from pathlib import Path

import pytest

from plugins.aer import CircuitError, Plugin, SimulationError, run
from plugins.aer.circuits import bind_parameters, load_circuit, qasm_version
from tests.circuits import BELL, case

# Qiskit warns on each use of its Rust OpenQASM 3 parser; plugins.aer filters that at import,
# but pytest resets warning filters around every test.
pytestmark = pytest.mark.filterwarnings("ignore::qiskit.exceptions.ExperimentalWarning")

# --- the cases table, one test per row ---------------------------------------------------------


def test_lowercase_u_from_exporter_runs():
    result = run(case("lowercase_u_from_exporter.qasm"), {}, ["counts", "quasi_dist"])
    assert result == {"counts": {"1": 1000}, "quasi_dist": {1: 1.0}}


def test_duplicate_gate_definition_fails_naming_the_gate():
    with pytest.raises(CircuitError, match="gate_QFT") as error:
        run(case("duplicate_gate_definition.qasm"), {}, ["counts"])
    assert "already defined" in str(error.value)


def test_qasm3_power_operator_runs_or_names_the_operator():
    try:
        result = run(case("qasm3_power_operator.qasm"), {}, ["counts"])
    except CircuitError as error:
        assert "**" in str(error)
    else:
        assert result == {"counts": {"1": 1000}}


def test_custom_gate_bell_runs_the_user_defined_gate():
    result = run(case("custom_gate_bell.qasm"), {}, ["counts", "quasi_dist"])
    counts = result["counts"]
    assert set(counts) == {"00", "11"}
    assert sum(counts.values()) == 1000
    assert all(400 <= count <= 600 for count in counts.values())
    assert set(result["quasi_dist"]) == {0, 3}


def test_qasm3_unbound_input_fails_naming_theta():
    with pytest.raises(CircuitError, match="unbound parameters: theta"):
        run(case("qasm3_unbound_input.qasm"), {}, ["counts"])


def test_qasm3_input_bound_from_metadata():
    result = run(case("qasm3_unbound_input.qasm"), {"parameters": {"theta": math.pi}}, ["counts"])
    assert result == {"counts": {"1": 1000}}


def test_qasm3_for_loop_runs_or_fails_with_the_loader_error():
    try:
        result = run(case("qasm3_for_loop.qasm"), {}, ["counts"])
    except CircuitError as error:
        assert str(error)  # the reference importer's plain TypeError, kept as the message
        assert "index must be int" in str(error)
    else:
        assert result == {"counts": {"1111": 1000}}


def test_header_openqasm_3_short():
    assert run(case("header_openqasm_3_short.qasm"), {}, ["counts"]) == {"counts": {"1": 1000}}


def test_header_after_comment():
    assert run(case("header_after_comment.qasm"), {}, ["counts"]) == {"counts": {"1": 1000}}


def test_two_classical_registers_keep_qiskit_key_format():
    result = run(case("two_classical_registers.qasm"), {}, ["counts", "quasi_dist"])
    assert result == {"counts": {"11 0": 1000}, "quasi_dist": {6: 1.0}}


def test_bit_order_x_on_q0():
    metadata = {"obs": [[["ZI", 1]], [["IZ", 1]]]}
    result = run(case("bit_order_x_on_q0.qasm"), metadata, ["counts", "expval"])
    assert result == {"counts": {"01": 1000}, "expval": [1.0, -1.0]}


def test_too_big_40q_fails_fast_with_aers_memory_message():
    started = time.monotonic()
    with pytest.raises(SimulationError, match="(?i)memory") as error:
        run(case("too_big_40q_nonclifford.qasm"), {}, ["counts"])
    assert time.monotonic() - started < 10
    assert "Insufficient memory" in str(error.value)  # Aer's own status text


def test_too_big_40q_runs_with_matrix_product_state():
    result = run(case("too_big_40q_nonclifford.qasm"), {"method": "matrix_product_state"}, ["counts"])
    counts = result["counts"]
    assert sum(counts.values()) == 1000
    assert {len(key) for key in counts} == {40}


def test_wide_register_with_one_active_qubit_runs():
    assert run(case("wide_register_one_active_qubit.qasm"), {}, ["counts"]) == {"counts": {"1": 1000}}


def test_clifford_40q_runs_on_the_stabilizer_method():
    counts = run(case("clifford_40q.qasm"), {}, ["counts"])["counts"]
    assert sum(counts.values()) == 1000
    assert {len(key) for key in counts} == {40}
    assert len(counts) > 990


# --- beyond the table --------------------------------------------------------------------------


def test_bell_counts_quasi_dist_and_expval():
    metadata = {"obs": [[["ZZ", 1]], [["XX", 1]]]}
    result = run(BELL, metadata, ["counts", "quasi_dist", "expval"])
    counts = result["counts"]
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 1000
    assert set(result["quasi_dist"]) == {0, 3}
    assert result["quasi_dist"][0] == pytest.approx(0.5, abs=0.08)
    assert result["quasi_dist"][3] == pytest.approx(0.5, abs=0.08)
    # counts and quasi_dist come from one run
    assert result["quasi_dist"] == {int(key, 2): count / 1000 for key, count in counts.items()}
    assert result["expval"] == [1.0, 1.0]


def test_only_requested_keys_and_plain_python_types():
    result = run(BELL, {"shots": 10, "obs": [[["ZZ", 1]]]}, ["quasi_dist", "expval"])
    assert set(result) == {"quasi_dist", "expval"}
    assert all(type(key) is int and type(value) is float for key, value in result["quasi_dist"].items())
    assert all(type(value) is float for value in result["expval"])
    counts = run(BELL, {"shots": 10}, ["counts"])["counts"]
    assert all(type(key) is str and type(value) is int for key, value in counts.items())
    assert sum(counts.values()) == 10


def test_seed_makes_runs_identical():
    first = run(BELL, {"seed": 1234, "shots": 500}, ["counts"])
    second = run(BELL, {"seed": 1234, "shots": 500}, ["counts"])
    assert first == second


def test_ghz_5_qubits():
    ghz = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[5] q;\nbit[5] c;\nh q[0];\n'
    ghz += "".join(f"cx q[{i}], q[{i + 1}];\n" for i in range(4)) + "c = measure q;\n"
    result = run(ghz, {"obs": [[["ZZZZZ", 1]], [["XXXXX", 1]], [["IIIIZ", 1]]]}, ["counts", "expval"])
    assert set(result["counts"]) == {"00000", "11111"}
    assert result["expval"] == pytest.approx([0.0, 1.0, 0.0], abs=1e-9)


def test_qasm3_without_version_statement():
    text = 'include "stdgates.inc";\nqubit[1] q;\nbit[1] c;\nx q[0];\nc[0] = measure q[0];\n'
    assert run(text, {}, ["counts"]) == {"counts": {"1": 1000}}


def test_expval_ignores_final_measurements_and_sums_terms():
    text = BELL.replace("h q[0];", "x q[0];")  # |11>
    assert run(text, {"obs": [[["ZI", 1], ["IZ", 2], ["II", 0.5]]]}, ["expval"]) == {"expval": [-2.5]}


def test_expval_keeps_measurements_that_a_later_if_reads():
    text = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nbit[2] c;\nh q[0];\n'
    text += "c[0] = measure q[0];\nif (c[0]) { x q[1]; }\nc[1] = measure q[1];\n"
    result = run(text, {"seed": 7, "obs": [[["ZZ", 1]], [["ZI", 1]]]}, ["counts", "expval"])
    assert set(result["counts"]) == {"00", "11"}
    zz, zi = result["expval"]
    assert zz == pytest.approx(1.0)  # |00> or |11> in every shot
    assert abs(zi) < 0.15  # averaged over the shots


def test_expval_accepts_one_flat_pub_as_upstream_sends_it():
    assert run(BELL, {"obs": [["ZZ", 1], ["XX", 1]]}, ["expval"]) == {"expval": [2.0]}


def test_expval_on_a_wide_register_uses_only_the_observed_qubits():
    obs = [[["Z" + "I" * 45 + "I" * 4, 1]], [["I" * 4 + "Z" + "I" * 45, 1]]]  # qubits 49 and 45
    result = run(case("wide_register_one_active_qubit.qasm"), {"obs": obs}, ["expval"])
    assert result["expval"] == pytest.approx([1.0, -1.0])


def test_expval_on_idle_qubits_is_right_despite_aer_truncation_bug():
    # Qiskit/qiskit-aer#2442: Aer's truncation maps subsystem observables to the wrong qubit.
    text = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\nx q[0];\n'
    assert run(text, {"obs": [[["ZII", 1]], [["IIZ", 1]]]}, ["expval"]) == {"expval": [1.0, -1.0]}
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', "qreg q[12];", "h q[0];"]
    lines += [f"cx q[0], q[{t}];" for t in (3, 5, 4, 8, 9, 10)] + ["cx q[5], q[11];", "cx q[10], q[11];"]
    obs = [[["Z" + "I" * 11, 1]], [["I" * 11 + "Z", 1]], [["I" * 8 + "ZIIZ", 1]]]
    result = run("\n".join(lines) + "\n", {"obs": obs}, ["expval"])
    assert result["expval"] == pytest.approx([1.0, 0.0, 1.0], abs=1e-9)


@pytest.mark.parametrize("obs", [[[["ZZZ", 1]]], [[["Z", 1]]]])
def test_observable_of_wrong_width_raises(obs):
    with pytest.raises(CircuitError, match="acts on .* qubits but the circuit has 2"):
        run(BELL, {"obs": obs}, ["expval"])


@pytest.mark.parametrize(
    "metadata, pattern",
    [
        ({}, "needs metadata 'obs'"),
        ({"obs": [[["ZQ", 1]]]}, "not a Pauli operator"),
        ({"obs": [["ZZ"]]}, "list of PUBs"),
    ],
)
def test_bad_observables_raise(metadata, pattern):
    with pytest.raises(CircuitError, match=pattern):
        run(BELL, metadata, ["expval"])


@pytest.mark.parametrize(
    "metadata, pattern",
    [
        ({"shots": 0}, "shots"),
        ({"shots": "many"}, "shots"),
        ({"seed": 1.5}, "seed"),
        ({"method": "quantum_magic"}, "quantum_magic"),
        ({"parameters": {"phi": 1.0}}, "phi"),
    ],
)
def test_bad_metadata_raises(metadata, pattern):
    with pytest.raises(CircuitError, match=pattern):
        run(BELL, metadata, ["counts"])


def test_unknown_result_type_raises_naming_it():
    with pytest.raises(ValueError, match="probabilities"):
        run(BELL, {}, ["probabilities"])


def test_explicit_method_and_auto_alias():
    for method in ("auto", "automatic", "statevector", "stabilizer", "matrix_product_state"):
        result = run(BELL, {"method": method, "obs": [[["ZZ", 1]]]}, ["counts", "expval"])
        assert set(result["counts"]) <= {"00", "11"}
        assert result["expval"] == pytest.approx([1.0])


def test_method_aer_cannot_use_is_a_simulation_error():
    with pytest.raises(SimulationError):
        run(case("too_big_40q_nonclifford.qasm").replace("40", "3"), {"method": "stabilizer"}, ["counts"])


def test_max_memory_mb_is_passed_to_aer():
    text = case("too_big_40q_nonclifford.qasm").replace("40", "20")  # 16 MiB of statevector
    with pytest.raises(SimulationError, match="max memory: 4M"):
        run(text, {}, ["counts"], max_memory_mb=4)


def test_circuit_without_measurements_has_no_counts():
    text = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\nh q[0];\n'
    with pytest.raises(CircuitError, match="measures no qubit"):
        run(text, {}, ["counts"])


def test_includes_are_not_read_from_disk():
    with pytest.raises(CircuitError, match="/etc/hostname"):
        run('OPENQASM 2.0;\ninclude "/etc/hostname";\nqreg q[1];\n', {}, ["counts"])
    with pytest.raises(CircuitError, match="non-stdgates"):
        run('OPENQASM 3.0;\ninclude "/etc/hostname";\nqubit[1] q;\n', {}, ["counts"])


def test_opaque_gate_fails_naming_it():
    text = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nopaque foo a;\nqreg q[1];\ncreg c[1];\nfoo q[0];\nmeasure q -> c;\n'
    with pytest.raises(CircuitError, match="foo"):
        run(text, {}, ["counts"])


# --- circuits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, version",
    [
        ("OPENQASM 2.0;\nqreg q[1];", 2),
        ("OPENQASM 2;", 2),
        ("OPENQASM 3.0;", 3),
        ("OPENQASM 3;", 3),
        ("\n\n  // a comment\n/* block\n comment */\nOPENQASM 2.0;", 2),
        ("\ufeffOPENQASM 2.0;", 2),
        ("qubit[1] q;\n// OPENQASM 2.0;", 3),
        ("", 3),
        ('include "stdgates.inc";\nOPENQASM 2.0;', 3),  # not a leading version statement
    ],
)
def test_qasm_version(text, version):
    assert qasm_version(text) == version


def test_qasm3_syntax_error_says_where():
    with pytest.raises(CircuitError, match=r"syntax error at 3,0 near 'x'"):
        load_circuit("OPENQASM 3.0;\nqubit[1] q\nx q[0];\n")


def test_unsupported_version_raises():
    with pytest.raises(CircuitError, match="version 4"):
        load_circuit("OPENQASM 4.0;\nqubit[1] q;\n")


def test_qasm3_custom_gate_loads_through_the_reference_importer():
    text = 'OPENQASM 3.0;\ninclude "stdgates.inc";\ngate bell a, b { h a; cx a, b; }\n'
    text += "qubit[2] q;\nbit[2] c;\nbell q[0], q[1];\nc = measure q;\n"
    assert set(run(text, {}, ["counts"])["counts"]) == {"00", "11"}


def test_bind_parameters():
    circuit = load_circuit(case("qasm3_unbound_input.qasm"))
    assert not bind_parameters(circuit, {"theta": 0.5}).parameters
    with pytest.raises(CircuitError, match="unbound parameters: theta; give them in metadata 'parameters'"):
        bind_parameters(circuit, None)
    with pytest.raises(CircuitError, match="phi"):
        bind_parameters(circuit, {"theta": 0.5, "phi": 1.0})
    with pytest.raises(CircuitError, match="finite number"):
        bind_parameters(circuit, {"theta": "pi"})


# --- the plugin contract -----------------------------------------------------------------------


def test_plugin_contract(tmp_path):
    plugin = Plugin()
    assert plugin.backends == ["aer"]
    path = tmp_path / "bell.qasm"
    path.write_text(BELL)
    counts = plugin.execute("aer", str(path), {"shots": 100}, "counts")
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 100
    quasi = plugin.execute("aer", path, {"shots": 100}, "quasi_dist")
    assert set(quasi) <= {0, 3} and sum(quasi.values()) == pytest.approx(1.0)
    assert plugin.execute("aer", path, {"obs": [[["ZZ", 1]]]}, "expval") == [1.0]
    with pytest.raises(ValueError, match="fake1"):
        plugin.execute("fake1", path, {}, "counts")
    with pytest.raises(ValueError, match="histogram"):
        plugin.execute("aer", path, {}, "histogram")


def test_backends_txt_lists_aer():
    backends = Path(__file__).resolve().parents[2] / "plugins" / "aer" / "backends.txt"
    assert backends.read_text().split() == ["aer"]


def test_active_qubit_limits_per_method_count_active_qubits_not_the_declared_width():
    limits = {"matrix_product_state": 30, "statevector": 34, "stabilizer": 100}
    wide = case("wide_register_one_active_qubit.qasm")  # 50 declared, 1 active
    assert run(wide, {}, ["counts"], max_qubits={"statevector": 2})["counts"] == {"1": 1000}
    with pytest.raises(
        CircuitError, match="has 40 active qubits; this server runs at most 30 with the matrix_product_state method"
    ):
        run(case("too_big_40q_nonclifford.qasm"), {"method": "matrix_product_state"}, ["counts"], max_qubits=limits)
    # Clifford: the stabilizer method, whose limit is far higher
    assert sum(run(case("clifford_40q.qasm"), {}, ["counts"], max_qubits=limits)["counts"].values()) == 1000
