"""Issue 13's sweep benchmark: a parameter sweep as one job, end to end, next to Aer's own
primitive in one process (the floor).

    .venv/bin/python -m bench.sweep [--points 100 1000 10000] [--shots 1000] [--jobs-vs 1000]

Starts the benchmark stack (bench.perf.bench_settings: its own database, ports and state dir),
then for each number of points runs a 4-qubit, 2-parameter circuit with that many random
bindings through ``QServerSamplerV2`` (submission, the sweep job, its items over REST, the
PrimitiveResult built) and prints points per second. For the largest, the floor is
``qiskit_aer.primitives.SamplerV2`` on the same PUB in this process with as many threads as this
machine's CPUs (what the service gives a large job); the target is at most 1.3x the floor.
Then ``--jobs-vs`` points once as one sweep job and once as that many plain jobs (one binding
each, metadata ``parameters``, from 8 clients): wall time and CPU of the whole stack for each.
Numbers on a shared 2-core machine vary by about 30 %.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import psycopg
from qiskit import QuantumCircuit, qasm3
from qiskit.circuit import Parameter
from qiskit_aer.primitives import SamplerV2

from bench.cpu import cpu_profile
from bench.perf import bench_settings, throughput
from ops import stack as stack_ops
from ops.endpoints import client_address
from qserver_client import Client, QServerSamplerV2

TARGET_RATIO = 1.3


def circuit() -> QuantumCircuit:
    """4 qubits, 2 parameters, measured: the benchmark's PUB circuit."""
    theta, phi = Parameter("theta"), Parameter("phi")
    qc = QuantumCircuit(4)
    for qubit in range(4):
        qc.ry(theta, qubit)
    for qubit in range(3):
        qc.cx(qubit, qubit + 1)
    for qubit in range(4):
        qc.rz(phi, qubit)
        qc.h(qubit)
    qc.measure_all()
    return qc


def sweep_seconds(backend, values: np.ndarray, shots: int) -> float:
    """Seconds for QServerSamplerV2 to run the PUB (circuit, values) and build its result."""
    sampler = QServerSamplerV2(backend, default_shots=shots, seed=11)
    started = time.perf_counter()
    result = sampler.run([(circuit(), values)]).result()
    elapsed = time.perf_counter() - started
    assert result[0].data.meas.num_shots == shots and result[0].data.meas.shape == values.shape[:-1]
    return elapsed


def floor_seconds(values: np.ndarray, shots: int) -> float:
    """Seconds for qiskit_aer's SamplerV2 in this process on the same PUB, all CPUs."""
    threads = os.cpu_count() or 1
    sampler = SamplerV2(default_shots=shots, seed=11, options={"backend_options": {"max_parallel_threads": threads}})
    started = time.perf_counter()
    sampler.run([(circuit(), values)]).result()
    return time.perf_counter() - started


def as_many_jobs(settings, values: np.ndarray, shots: int, clients: int = 8) -> float:
    """Seconds to run each binding as a job of its own (metadata ``parameters``) from
    ``clients`` threads, each submitting its share, then waiting on each result
    (bench.perf.throughput)."""
    program = qasm3.dumps(circuit())
    work = [
        (program, {"counts": True, "metadata": {"shots": shots, "parameters": {"theta": theta, "phi": phi}}})
        for theta, phi in values.tolist()
    ]
    return len(work) / throughput(settings, work, clients)


def main() -> None:
    """Run the sweeps and print the table; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--shots", type=int, default=1000)
    parser.add_argument("--jobs-vs", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("bench/sweep.json"))
    args = parser.parse_args()
    settings = bench_settings()
    stack_ops.down(settings)
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS qserver_bench WITH (FORCE)")
    stack_ops.up(settings)
    client = Client(**client_address(settings))
    backend = client.backend("aer")
    rng = np.random.default_rng(5)
    report: dict = {}
    try:
        sweep_seconds(backend, rng.uniform(0, 3, size=(10, 2)), args.shots)  # warm the path
        for points in args.points:
            values = rng.uniform(0, 3, size=(points, 2))
            seconds = sweep_seconds(backend, values, args.shots)
            report[f"points_per_s_{points}"] = points / seconds
            report[f"seconds_{points}"] = seconds
        largest = max(args.points)
        values = rng.uniform(0, 3, size=(largest, 2))
        report["floor_seconds"] = floor_seconds(values, args.shots)
        report["sweep_seconds"] = sweep_seconds(backend, values, args.shots)
        report["ratio"] = report["sweep_seconds"] / report["floor_seconds"]

        values = rng.uniform(0, 3, size=(args.jobs_vs, 2))
        with cpu_profile(jobs=args.jobs_vs) as one_job:
            report["one_job_seconds"] = sweep_seconds(backend, values, args.shots)
        with cpu_profile(jobs=args.jobs_vs) as many_jobs:
            report["many_jobs_seconds"] = as_many_jobs(settings, values, args.shots)
        report["one_job_cpu_s"] = sum(one_job.seconds.values())
        report["many_jobs_cpu_s"] = sum(many_jobs.seconds.values())
    finally:
        client.close()
        stack_ops.down(settings)
    print(f"\n{'measure':<26}{'value':>12}")
    for name, value in report.items():
        print(f"{name:<26}{value:>12.3f}")
    largest = max(args.points)
    met = "met" if report["ratio"] <= TARGET_RATIO else "NOT met"
    print(
        f"\n{largest} points x {args.shots} shots: {report['sweep_seconds']:.2f} s end to end, floor "
        f"{report['floor_seconds']:.2f} s: {report['ratio']:.2f}x (target <= {TARGET_RATIO}x: {met})"
    )
    print(
        f"{args.jobs_vs} points as one job: {report['one_job_seconds']:.2f} s, {report['one_job_cpu_s']:.2f} CPU s; "
        f"as {args.jobs_vs} jobs: {report['many_jobs_seconds']:.2f} s, {report['many_jobs_cpu_s']:.2f} CPU s"
    )
    print("\nCPU per part, one job:\n" + one_job.table())
    print(f"\nCPU per part, {args.jobs_vs} jobs:\n" + many_jobs.table())
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
