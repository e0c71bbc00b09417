"""Latency of one Bell job, submission (gRPC through nginx) until its results are readable over REST.

Run against a stack started with `qserver up` (same QSERVER_* settings):

    .venv/bin/python -m bench.latency --jobs 200

Prints p50/p95 of the end-to-end time next to the floor (qiskit-aer in this
process, one thread, one circuit per run) and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


from core.settings import get_settings
from tests.client import Stack

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` by linear interpolation (statistics.quantiles)."""
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def floor_ms(jobs: int) -> list[float]:
    """Aer alone: one thread, one 1000-shot Bell circuit per run() call, in ms."""
    from qiskit import QuantumCircuit, transpile
    from qiskit_aer import AerSimulator

    sim = AerSimulator(max_parallel_threads=1)
    circuit = transpile(QuantumCircuit.from_qasm_str(BELL), sim)
    sim.run(circuit, shots=1000).result()
    times = []
    for _ in range(jobs):
        start = time.perf_counter()
        sim.run(circuit, shots=1000).result().get_counts()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def stack_ms(stack: Stack, jobs: int, poll_s: float) -> list[float]:
    """End to end through nginx: submit, poll GET /job/result/{id} every ``poll_s``, in ms."""
    times = []
    for _ in range(jobs):
        start = time.perf_counter()
        job_id = stack.submit(BELL, counts=True, metadata={"shots": 1000})
        while True:
            response = stack.result(job_id)
            if response.status_code == 200:
                break
            detail = response.json().get("detail", "")
            if "failed" in detail or "canceled" in detail:
                raise RuntimeError(detail)
            time.sleep(poll_s)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    """Measure and print; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--poll-ms", type=float, default=2.0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--out", type=Path, default=Path("bench/latency.json"))
    args = parser.parse_args()
    settings = get_settings()
    stack = Stack(args.host, settings.nginx_grpc_port, settings.nginx_http_port)
    stack_ms(stack, 10, args.poll_ms / 1e3)  # warm the path
    ours = stack_ms(stack, args.jobs, args.poll_ms / 1e3)
    floor = floor_ms(args.jobs)
    rows = {
        "floor (Aer in-process)": floor,
        "QServer end to end": ours,
    }
    print(f"{'':28s} {'p50 ms':>8s} {'p95 ms':>8s}")
    report = {}
    for name, values in rows.items():
        p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
        report[name] = {"p50_ms": p50, "p95_ms": p95, "n": len(values)}
        print(f"{name:28s} {p50:8.2f} {p95:8.2f}")
    overhead = report["QServer end to end"]["p50_ms"] - report["floor (Aer in-process)"]["p50_ms"]
    report["overhead_p50_ms"] = overhead
    print(f"overhead (p50 ours - p50 floor): {overhead:.2f} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    stack.http.close()


if __name__ == "__main__":
    main()
