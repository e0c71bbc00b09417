"""The largest statevector job this machine's stack runs, and how long each size takes.

Manual benchmark (minutes, gigabytes): against a stack started with `qserver up`,

    .venv/bin/python -m bench.largest_statevector --from 24 --to 31

submits a non-Clifford n-qubit circuit (h, t, h on every qubit, 100 shots) for each n,
waits for it, and prints its status, the memory it asked Ray for, where it ran and the
end-to-end time; it stops after the first size that does not finish.
"""

from __future__ import annotations

import argparse
import json
import time

from core.settings import get_settings
from ops import endpoints
from qserver_client import Client


def circuit(qubits: int) -> str:
    """h, t, h on every qubit and a measurement: Aer's statevector method, no shortcut."""
    return (
        f'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[{qubits}];\ncreg c[{qubits}];\n'
        "h q;\nt q;\nh q;\nmeasure q -> c;\n"
    )


def main() -> None:
    """Measure and print; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="low", type=int, default=24)
    parser.add_argument("--to", dest="high", type=int, default=31)
    args = parser.parse_args()
    settings = get_settings()
    client = Client(**endpoints.client_address(settings))
    rows = []
    print(f"{'qubits':>6} {'status':>9} {'memory GiB':>11} {'seconds':>8}  error")
    for qubits in range(args.low, args.high + 1):
        started = time.perf_counter()
        job = client.run(circuit(qubits), counts=True, metadata={"shots": 100}, timeout=3600)
        seconds = time.perf_counter() - started
        memory = (job.get("memory_bytes") or 0) / 1024**3
        rows.append(
            {
                "qubits": qubits,
                "status": job["status"],
                "memory_bytes": job.get("memory_bytes"),
                "seconds": seconds,
                "error": job["error"],
            }
        )
        print(f"{qubits:>6} {job['status']:>9} {memory:>11.2f} {seconds:>8.1f}  {job['error'] or ''}")
        if job["status"] != "finished":
            break
    client.close()
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
