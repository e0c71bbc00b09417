"""Issue 6's benchmark: QServer end to end next to the simulator's own floor, in one run.

    .venv/bin/python -m bench.perf [--jobs 2000] [--clients 8] [--skip-large]

Starts a stack of its own (database ``qserver_bench``, its own ports, queue and state
dir; the machine's Postgres and RabbitMQ), measures, prints a table with each target
met or not, writes bench/perf.json, and stops the stack. The floor is qiskit-aer in
this process, one thread, one circuit per ``run()`` call. Numbers on a shared 2-core
machine vary by about 30 %.

a. latency: one client, Bell, 1000 shots: submission (gRPC through nginx) until the
   result is readable over REST, waiting with GET /job/result/{id}?wait_s= (the service's
   push: it answers when the job ends); p50/p95 next to the floor's time.
b. throughput: ``--jobs`` small circuits (2-5 qubits, counts) from ``--clients``
   concurrent clients, each submitting its share, then waiting on each result the same
   way; jobs/s from the first submission to the last result.
c. a 24-qubit quantum-volume-style circuit, statevector: end to end / floor.
d. the api with 100 000 old jobs: p50 of GET /api/v1/jobs at a deep cursor and GET /job/{id}.
e. b again with those 100 000 jobs in the tables.
f. b again with counts, quasi_dist and expval (ZZ...) per job.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import threading
import time
from pathlib import Path

import httpx
import psycopg

from bench.cpu import cpu_profile
from core.settings import Settings
from ops import endpoints
from ops import stack as stack_ops
from qserver_client import Client

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
TARGETS = {
    "a_overhead_ms": ("<=", 10.0),
    "b_jobs_per_s": (">=", 300.0),
    "c_ratio": ("<=", 1.05),
    "d_jobs_p50_ms": ("<=", 5.0),
    "d_job_p50_ms": ("<=", 5.0),
    "e_within_10pct": ("==", True),
    "f_jobs_per_s": (">=", 100.0),
}


def bench_settings() -> Settings:
    """The benchmark stack: nothing shared with a developer's or the tests' stacks."""
    return Settings(
        database_url="postgresql://postgres@127.0.0.1:5432/qserver_bench",
        queue_name="qserver.bench.jobs",
        ingest_port=52052,
        api_port=18301,
        ingest_monitor_port=18302,
        dispatcher_monitor_port=18303,
        nginx_http_port=18380,
        nginx_grpc_port=15351,
        nginx_tls_port=18843,
        ray_head_port=6391,
        ray_dashboard_port=8275,
        state_dir=Path("/tmp/qserver-bench"),
    )


def small_circuit(rng: random.Random) -> str:
    """A random 2-5 qubit circuit with measurements."""
    n = rng.randint(2, 5)
    gates = [
        f"h q[{rng.randrange(n)}];" if rng.random() < 0.5 else f"cx q[{i}],q[{i + 1}];"
        for i in (rng.randrange(n - 1) for _ in range(rng.randint(2, 8)))
    ]
    head = f'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[{n}];\ncreg c[{n}];\n'
    return head + "\n".join(gates) + "\nmeasure q -> c;\n"


def qv_circuit(qubits: int, depth: int, seed: int = 7) -> str:
    """A quantum-volume-style circuit: layers of random SU(4)-ish blocks on random pairs."""
    rng = random.Random(seed)
    lines = [f'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[{qubits}];\ncreg c[{qubits}];']
    for _ in range(depth):
        order = list(range(qubits))
        rng.shuffle(order)
        for a, b in zip(order[::2], order[1::2], strict=False):  # an odd qubit out sits a layer out
            for q in (a, b):
                angles = ",".join(f"{rng.uniform(0, 3.14):.4f}" for _ in range(3))
                lines.append(f"u({angles}) q[{q}];")
            lines.append(f"cx q[{a}],q[{b}];")
    lines.append("measure q -> c;")
    return "\n".join(lines) + "\n"


def pct(values: list[float], q: float) -> float:
    """The q-quantile of values (0 < q < 1)."""
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def floor_run(qasms: list[str], threads: int = 1, method: str = "automatic") -> list[float]:
    """Seconds per circuit for Aer alone, in this process."""
    from qiskit import QuantumCircuit
    from qiskit_aer import AerSimulator

    sim = AerSimulator(max_parallel_threads=threads, method=method)
    times = []
    for text in qasms:
        circuit = QuantumCircuit.from_qasm_str(text)
        started = time.perf_counter()
        sim.run(circuit, shots=1000).result().get_counts()
        times.append(time.perf_counter() - started)
    return times


def latency(client: Client, jobs: int) -> tuple[list[float], list[dict]]:
    """Seconds from submission to readable result, one client waiting on each result; and per job
    the wall-clock instants (epoch s) of submission, its answer and the result seen."""
    times, marks = [], []
    for _ in range(jobs):
        started, wall = time.perf_counter(), time.time()
        job_id = client.submit(BELL, counts=True, metadata={"shots": 1000})
        accepted = time.time()
        # GET /job/result/{id}?wait_s=: the service answers when the job ends (LISTEN/NOTIFY)
        client.wait_result(job_id)
        times.append(time.perf_counter() - started)
        marks.append({"id": job_id, "submit": wall, "accepted": accepted, "seen": time.time()})
    return times, marks


def latency_stages(settings: Settings, marks: list[dict]) -> dict[str, float]:
    """Median ms of each stage of the latency run, from the client's instants and the
    database's (submission_date: ingest's insert; start_time: the dispatcher's claim;
    finish_time: the executor's write)."""
    with psycopg.connect(settings.database_dsn) as conn:
        rows = {
            str(row[0]): row[1:]
            for row in conn.execute(
                "SELECT id, extract(epoch FROM submission_date), extract(epoch FROM start_time),"
                " extract(epoch FROM finish_time) FROM jobs WHERE id = ANY(%s)",
                ([mark["id"] for mark in marks],),
            )
        }
    stages: dict[str, list[float]] = {
        "submit -> stored (gRPC, nginx, ingest)": [],
        "stored -> claimed (RabbitMQ, dispatcher)": [],
        "claimed -> finished (executor, Aer, write)": [],
        "finished -> seen (REST, waiting)": [],
        "stored -> client has the id": [],
    }
    for mark in marks:
        stored, claimed, finished = (float(value) for value in rows[mark["id"]])
        stages["submit -> stored (gRPC, nginx, ingest)"].append(stored - mark["submit"])
        stages["stored -> claimed (RabbitMQ, dispatcher)"].append(claimed - stored)
        stages["claimed -> finished (executor, Aer, write)"].append(finished - claimed)
        stages["finished -> seen (REST, waiting)"].append(mark["seen"] - finished)
        stages["stored -> client has the id"].append(mark["accepted"] - stored)
    return {name: statistics.median(values) * 1e3 for name, values in stages.items()}


def throughput(settings: Settings, work: list[tuple[str, dict]], clients: int) -> float:
    """Jobs/s for ``work`` ((qasm, submit properties) pairs) from ``clients`` threads: each
    submits its share, then waits on each result."""
    shares = [work[i::clients] for i in range(clients)]
    errors: list[BaseException] = []

    def one_client(share: list[tuple[str, dict]]) -> None:
        try:
            with Client(**endpoints.client_address(settings)) as client:
                ids = [client.submit(text, **props) for text, props in share]
                for job_id in ids:
                    client.wait_result(job_id)
        except BaseException as error:  # reported after the run
            errors.append(error)

    threads = [threading.Thread(target=one_client, args=(share,)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return len(work) / (time.perf_counter() - started)


def width(qasm: str) -> int:
    """The width of a circuit from small_circuit()."""
    return int(qasm.split("qreg q[")[1].split("]")[0])


def fill_old_jobs(settings: Settings, count: int) -> None:
    """Insert ``count`` finished jobs with results and history (one SQL statement each)."""
    with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
        conn.execute(
            """
            WITH new AS (
                INSERT INTO jobs (id, target_simulator, qasm, status, metadata, attempts,
                                  start_time, finish_time)
                SELECT gen_random_uuid(), 'aer', %s, 'finished', '{}'::jsonb, 1, now(), now()
                  FROM generate_series(1, %s)
                RETURNING id)
            , rt AS (INSERT INTO result_types (job_id, counts) SELECT id, true FROM new RETURNING job_id)
            INSERT INTO results (job_id, counts) SELECT job_id, '{"00": 500, "11": 500}' FROM rt
            """,
            (BELL, count),
        )
        conn.execute("ANALYZE")


def api_p50(settings: Settings, requests: int = 300) -> tuple[float, float]:
    """p50 ms of GET /jobs at a deep cursor and of GET /job/{id}, through nginx."""
    with psycopg.connect(settings.database_dsn) as conn:
        deep = conn.execute("SELECT pointer FROM jobs ORDER BY pointer DESC OFFSET 5000 LIMIT 1").fetchone()[0]
        ids = [str(r[0]) for r in conn.execute("SELECT id FROM jobs ORDER BY random() LIMIT %s", (requests,))]
    with httpx.Client(base_url=f"http://127.0.0.1:{settings.nginx_http_port}") as http:

        def timed(path: str) -> float:
            started = time.perf_counter()
            assert http.get(path).status_code == 200
            return (time.perf_counter() - started) * 1e3

        lists = [timed(f"/api/v1/jobs?cursor={deep}") for _ in range(requests)]
        singles = [timed(f"/api/v1/job/{job_id}") for job_id in ids]
    return statistics.median(lists), statistics.median(singles)


def verdict(name: str, value) -> str:
    op, target = TARGETS[name]
    ok = {"<=": value <= target, ">=": value >= target, "==": value == target}[op]
    return "met" if ok else "MISSED"


def main() -> None:
    """Run a-f and print the table; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--latency-jobs", type=int, default=300)
    parser.add_argument("--skip-large", action="store_true", help="skip c (minutes)")
    parser.add_argument("--out", type=Path, default=Path("bench/perf.json"))
    args = parser.parse_args()
    settings = bench_settings()
    stack_ops.down(settings)
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS qserver_bench WITH (FORCE)")
    stack_ops.up(settings)
    client = Client(**endpoints.client_address(settings))
    rng = random.Random(1)
    report: dict = {}
    try:
        latency(client, 20)  # warm the path
        ours, marks = latency(client, args.latency_jobs)
        stages = latency_stages(settings, marks)
        floor = floor_run([BELL] * args.latency_jobs)
        report["a_p50_ms"], report["a_p95_ms"] = pct(ours, 0.5) * 1e3, pct(ours, 0.95) * 1e3
        report["a_floor_p50_ms"] = pct(floor, 0.5) * 1e3
        report["a_overhead_ms"] = report["a_p50_ms"] - report["a_floor_p50_ms"]

        small = [small_circuit(rng) for _ in range(args.jobs)]
        counts_only = [(text, {"counts": True}) for text in small]
        report["b_floor_jobs_per_s"] = len(small) / sum(floor_run(small))
        with cpu_profile(jobs=len(counts_only)) as b_profile:
            report["b_jobs_per_s"] = throughput(settings, counts_only, args.clients)
        all_three = [
            (
                text,
                {"counts": True, "quasi_dist": True, "expval": True, "metadata": {"obs": [[["Z" * width(text), 1.0]]]}},
            )
            for text in small
        ]
        with cpu_profile(jobs=len(all_three)) as f_profile:
            report["f_jobs_per_s"] = throughput(settings, all_three, args.clients)

        if not args.skip_large:
            qv = qv_circuit(24, 24)
            started = time.perf_counter()
            client.wait_result(client.submit(qv, counts=True, metadata={"method": "statevector"}))
            ours_large = time.perf_counter() - started
            floor_large = floor_run([qv], threads=os.cpu_count() or 1, method="statevector")[0]
            report["c_seconds"], report["c_floor_seconds"] = ours_large, floor_large
            report["c_ratio"] = ours_large / floor_large

        fill_old_jobs(settings, 100_000)
        report["d_jobs_p50_ms"], report["d_job_p50_ms"] = api_p50(settings)
        with cpu_profile(jobs=len(counts_only)) as e_profile:
            report["e_jobs_per_s"] = throughput(settings, counts_only, args.clients)
        report["e_within_10pct"] = report["e_jobs_per_s"] >= 0.9 * report["b_jobs_per_s"]
    finally:
        client.close()
        stack_ops.down(settings)
    print(f"\n{'measure':<28}{'value':>12}  target")
    for name, value in report.items():
        if isinstance(value, dict):
            continue
        target = f"{TARGETS[name][0]} {TARGETS[name][1]}  {verdict(name, value)}" if name in TARGETS else ""
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"{name:<28}{shown:>12}  {target}")
    print("\na. where a job's latency goes (median ms per stage):")
    for name, value in stages.items():
        print(f"  {name:<44}{value:>8.2f}")
    report["a_stages_ms"] = stages
    for name, profile in (("b", b_profile), ("e", e_profile), ("f", f_profile)):
        print(f"\n{name}. CPU time per part of the stack, {profile.jobs} jobs:")
        print(profile.table())
        report[f"{name}_cpu_s"] = profile.seconds
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
