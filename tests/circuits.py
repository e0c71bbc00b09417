"""Circuits the tests share, and the QASM inputs of ../shared/cases."""

from __future__ import annotations

from pathlib import Path

CASES = Path(__file__).resolve().parents[1].parent / "shared" / "cases"

BELL = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0], q[1];
measure q -> c;
"""

BELL_QASM3 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[2] q;
bit[2] c;
h q[0];
cx q[0], q[1];
c = measure q;
"""

GHZ5 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[5];
creg c[5];
h q[0];
cx q[0], q[1];
cx q[1], q[2];
cx q[2], q[3];
cx q[3], q[4];
measure q -> c;
"""


def case(name: str) -> str:
    """The text of ../shared/cases/qasm/<name> (shared/ sits next to the repo root)."""
    return (CASES / "qasm" / name).read_text()
