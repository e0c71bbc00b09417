"""Standalone check of the GPU executor path: plugins.aer on qiskit-aer-gpu with device="GPU".

For a lent GPU machine (no Ray, no Postgres there): install qiskit and qiskit-aer-gpu,
copy plugins/ and run

    python bench/gpu_check.py

It runs a Bell circuit and a 24-qubit non-Clifford circuit on the GPU through
``plugins.aer.run`` (the code aer_gpu jobs run) and prints the results and times;
it exits non-zero if Aer has no GPU device or a result is wrong.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plugins import aer  # noqa: E402

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'


def main() -> int:
    """Run the checks; 0 when the GPU path gives right answers."""
    from qiskit_aer import AerSimulator

    devices = AerSimulator().available_devices()
    print(f"Aer devices: {devices}")
    if "GPU" not in devices:
        print("no GPU device in Aer: qiskit-aer-gpu missing or no CUDA GPU")
        return 1
    started = time.perf_counter()
    bell = aer.run(BELL, {"shots": 1000, "obs": [[["ZZ", 1.0]]]}, ["counts", "expval"], device="GPU")
    print(f"Bell on GPU: {bell} in {time.perf_counter() - started:.3f} s")
    ok = set(bell["counts"]) <= {"00", "11"} and abs(bell["expval"][0] - 1.0) < 1e-9
    qubits = 24
    wide = (
        f'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[{qubits}];\ncreg c[{qubits}];\n'
        "h q;\nt q;\nh q;\nmeasure q -> c;\n"
    )
    started = time.perf_counter()
    counts = aer.run(wide, {"shots": 100}, ["counts"], device="GPU")["counts"]
    print(f"{qubits} qubits on GPU: {sum(counts.values())} shots in {time.perf_counter() - started:.3f} s")
    ok = ok and sum(counts.values()) == 100 and all(len(key) == qubits for key in counts)
    print("GPU path OK" if ok else "GPU path gave wrong results")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
