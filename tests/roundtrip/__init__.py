"""What Qiskit's own exporters write, checked against the original circuit (issue 10, point 2).

library.py and dynamic.py build the circuits, reference.py computes their true distributions and
the statistical bound, check.py exports them and holds the one check that
tests/plugins/test_exporter_roundtrip.py (plugins.aer.run directly) and
tests/test_exporter_roundtrip.py (the whole stack) make.
"""
