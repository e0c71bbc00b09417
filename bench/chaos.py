"""Chaos: a few hundred jobs while the dispatcher restarts, RabbitMQ restarts and Ray workers die.

A separate command, not part of CI (minutes). It starts its own private RabbitMQ and Postgres
and a stack on them (ops/faultlab.py: never the machine's shared services), then

    .venv/bin/python -m bench.chaos --jobs 300

submits ``--jobs`` jobs from a few client threads (a refused submission, UNAVAILABLE while
RabbitMQ is down, is retried as a client would) and, while they flow, injects in turn: a Ray
worker killed mid-job (kill -9), RabbitMQ restarted, the dispatcher stopped (SIGTERM) and
started, the dispatcher killed (SIGKILL) and started, another worker killed. A few jobs are
meant to fail (a 1 s timeout on a long simulation). When every job is terminal it prints:

* submitted: accepted submissions (each has an id);
* finished exactly once: ``finished``, one history row, results present;
* failed with a reason: ``failed``, one history row, a non-empty error;
* lost (must be 0): an accepted id with no row, or not terminal by the deadline;
* run twice (must be 0): more than one history row, or ``attempts`` > 1 that no injected
  fault explains (the job was not running when a worker or dispatcher was killed, and the
  dispatcher never logged it as lost);
* re-run after a fault: ``attempts`` > 1 explained by a fault (the job ran again, once);
* refused but stored (must be 0): rows no accepted submission accounts for.

Exit status 1 when lost, run twice or refused-but-stored is not 0.

``--hostile`` then runs a hostile tenant beside a normal one (``--skip-faults``: only that):
long small jobs (16 qubits, a mid-circuit measurement, ~4000 gates, 6000 shots: minutes of
per-shot simulation each, submitted as a fast-path job), programs that crash a parser or explode
in memory unless refused (each must fail, alone), cancel storms (each canceled a second
or so after it was submitted) and concurrent reads of a big result, while a normal client runs
Bell jobs one after another. It prints the normal jobs' latency (p50, p99) without and with the
hostile tenant, and lost, run twice and wrong status (a canceled job not canceled, a Bell job
not finished) over both tenants' jobs: each must be 0.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
from rich.console import Console
from rich.table import Table

from ops import procs
from ops.faultlab import FaultLab
from qserver_client import SubmitError

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
# Non-Clifford, run with extended_stabilizer: seconds for a few dozen shots (a job to kill).
SLOW = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[3];\nh q;\nt q;\nh q;\nt q;\nh q;\nmeasure q -> c;\n'
TERMINAL = ("finished", "failed", "canceled")
console = Console(stderr=True)


@dataclass
class Run:
    """What the clients and the chaos thread saw."""

    accepted: dict[str, str] = field(default_factory=dict)  # job id -> kind
    refusals: Counter = field(default_factory=Counter)  # gRPC code name -> count
    gave_up: int = 0  # submissions still refused after the client's patience
    events: list[tuple[float, str]] = field(default_factory=list)
    hit: dict[str, str] = field(default_factory=dict)  # job -> the fault that hit it while running
    old_logs: str = ""  # the dispatcher logs of the runs before each restart
    lock: threading.Lock = field(default_factory=threading.Lock)


def job_kind(i: int) -> tuple[str, str, dict]:
    """The i-th job: mostly Bell circuits, some longer simulations, a few that must time out."""
    if i % 50 == 7:
        return "timeout", SLOW, {"method": "extended_stabilizer", "shots": 2000, "timeout_s": 1}
    if i % 10 == 3:
        return "slow", SLOW, {"method": "extended_stabilizer", "shots": 5}
    return "bell", BELL, {"shots": 100 + i % 900, "seed": i, "cache": False}


def submit(lab: FaultLab, run: Run, qasm: str, metadata: dict, kind: str, patience: float = 120) -> str | None:
    """Submit, retrying UNAVAILABLE (the queue did not confirm) for ``patience`` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            job_id = lab.client.submit(qasm, counts=True, metadata=metadata)
        except SubmitError as error:
            with run.lock:
                run.refusals[error.code().name] += 1
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                with run.lock:
                    run.gave_up += 1
                console.print(f"[red]gave up on a submission: {error.code().name} {error.details()}")
                return None
            time.sleep(0.5)
            continue
        with run.lock:
            run.accepted[job_id] = kind
        return job_id


def submitters(lab: FaultLab, run: Run, jobs: int, seconds: float, threads: int) -> list[threading.Thread]:
    """``threads`` clients submitting ``jobs`` jobs in all, spread over about ``seconds``."""
    pace = seconds * threads / max(jobs, 1)

    def client(indices: range) -> None:
        for i in indices:
            kind, qasm, metadata = job_kind(i)
            started = time.monotonic()
            submit(lab, run, qasm, metadata, kind)
            time.sleep(max(0.0, pace * random.uniform(0.5, 1.5) - (time.monotonic() - started)))

    out = []
    for t in range(threads):
        thread = threading.Thread(target=client, args=(range(t, jobs, threads),), daemon=True)
        thread.start()
        out.append(thread)
    return out


def running_jobs(lab: FaultLab) -> set[str]:
    with lab.db() as conn:
        return {str(r[0]) for r in conn.execute("SELECT id FROM jobs WHERE status = 'running'")}


def worker_pids(job_id: str) -> list[int]:
    """Ray workers whose process title names this job's task (``ray::job-<id>``)."""
    found = []
    for pid in procs.all_pids():
        argv = procs.cmdline(pid)
        if argv and argv[0].startswith(f"ray::job-{job_id}"):
            found.append(pid)
    return found


def kill_a_worker(lab: FaultLab, run: Run, started: float) -> str:
    """Submit a longer job, wait until its worker runs it, kill -9 that worker."""
    job_id = submit(lab, run, SLOW, {"method": "extended_stabilizer", "shots": 40}, "killed")
    if job_id is None:
        return "kill a worker: the job was refused"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        pids = worker_pids(job_id)
        if pids and job_id in running_jobs(lab):
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            with run.lock:
                run.hit[job_id] = "its worker was killed"
            return f"killed Ray worker pid {','.join(map(str, pids))} running job {job_id[:8]}"
        time.sleep(0.05)
    return f"kill a worker: job {job_id[:8]} never ran on a worker within 90 s"


def restart_rabbitmq(lab: FaultLab, run: Run, started: float) -> str:
    seconds = lab.rabbit.restart()
    return f"restarted RabbitMQ ({seconds:.1f} s down and back)"


def restart_dispatcher(sig: int):
    def inject(lab: FaultLab, run: Run, started: float) -> str:
        before = running_jobs(lab)
        with run.lock:
            for job_id in before:
                run.hit.setdefault(job_id, f"running at the dispatcher's {signal.Signals(sig).name}")
        lab.stop_dispatcher(sig)
        run.old_logs += lab.log("dispatcher")  # `up` moves it aside, keeping only one
        seconds = lab.restart_dispatcher(sig)
        return (
            f"dispatcher {signal.Signals(sig).name} and started again ({seconds:.1f} s; "
            f"{len(before)} jobs were running)"
        )

    return inject


PLAN = [
    (0.15, "kill a Ray worker", kill_a_worker),
    (0.30, "restart RabbitMQ", restart_rabbitmq),
    (0.45, "restart the dispatcher (SIGTERM)", restart_dispatcher(signal.SIGTERM)),
    (0.65, "kill the dispatcher (SIGKILL) and start it", restart_dispatcher(signal.SIGKILL)),
    (0.80, "kill a Ray worker", kill_a_worker),
]


def chaos(lab: FaultLab, run: Run, jobs: int, started: float) -> None:
    """Inject each fault of PLAN once that fraction of the jobs has been accepted."""
    for fraction, what, inject in PLAN:
        while len(run.accepted) < fraction * jobs:
            time.sleep(0.1)
        at = time.monotonic() - started
        console.print(f"[yellow]{at:6.1f} s[/] {what} ...")
        try:
            note = inject(lab, run, started)
        except Exception as error:  # noqa: BLE001 - reported, the run goes on
            note = f"{what} failed: {type(error).__name__}: {error}"
        run.events.append((at, note))
        console.print(f"[yellow]{time.monotonic() - started:6.1f} s[/] {note}")


def wait_terminal(lab: FaultLab, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with lab.db() as conn:
            left = conn.execute(
                "SELECT count(*) FROM jobs WHERE id = ANY(%s::uuid[]) AND status NOT IN"
                " ('finished', 'failed', 'canceled')",
                (ids,),
            ).fetchone()[0]
        if left == 0:
            return
        time.sleep(1)


def judge(lab: FaultLab, run: Run) -> tuple[dict[str, int], list[str]]:
    """Count each outcome from the jobs and history tables (and the dispatcher's log)."""
    ids = list(run.accepted)
    with lab.db() as conn:
        rows = {
            str(r[0]): r[1:]
            for r in conn.execute(
                "SELECT j.id, j.status, j.attempts, j.error, r.counts IS NOT NULL,"
                " (SELECT count(*) FROM history h WHERE h.job_id = j.id)"
                " FROM jobs j LEFT JOIN results r ON r.job_id = j.id"
            )
        }
    log = run.old_logs + lab.log("dispatcher")
    lost_in_log = set(re.findall(r"job_id=([0-9a-f-]{36}) lost on attempt", log))
    counts = Counter()
    notes = []
    for job_id in ids:
        row = rows.get(job_id)
        if row is None or row[0] not in TERMINAL:
            counts["lost"] += 1
            notes.append(f"lost: {job_id} ({row[0] if row else 'no row'})")
            continue
        status, attempts, error, has_counts, history = row
        cause = run.hit.get(job_id) or ("lost per the dispatcher" if job_id in lost_in_log else None)
        if history != 1 or (attempts > 1 and not cause):
            counts["run twice"] += 1
            notes.append(f"run twice: {job_id} attempts={attempts} history={history}")
        elif attempts > 1:
            counts["re-run after a fault"] += 1
            notes.append(f"re-run: {job_id} attempts={attempts}, {status} once ({cause})")
        if status == "finished" and history == 1 and has_counts:
            counts["finished exactly once"] += 1
        elif status == "failed" and history == 1 and error:
            counts["failed with a reason"] += 1
            reason = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", error)[:70]
            counts[f"  reason: {reason}"] += 1
        else:
            counts["other"] += 1
            notes.append(f"other: {job_id} {status} history={history} error={error!r}")
    stray = set(rows) - set(ids)
    counts["refused but stored"] = len(stray)
    notes += [f"refused but stored: {job_id} {rows[job_id][0]}" for job_id in sorted(stray)]
    return counts, notes


def report(run: Run, counts: Counter, seconds: float, jobs: int) -> Table:
    table = Table(title=f"chaos: {jobs} jobs, {len(run.events)} faults, {seconds:.0f} s")
    table.add_column("outcome")
    table.add_column("jobs", justify="right")
    table.add_column("must be", justify="right")
    kinds = Counter(run.accepted.values())
    table.add_row(
        "submitted (accepted)",
        str(len(run.accepted)),
        "",
    )
    table.add_row("  of which", ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())), "")
    table.add_row("refusals retried (UNAVAILABLE)", str(run.refusals.get("UNAVAILABLE", 0)), "")
    other_refusals = {k: v for k, v in run.refusals.items() if k != "UNAVAILABLE"}
    table.add_row("other refusals", str(sum(other_refusals.values())), "0")
    table.add_row("submissions given up", str(run.gave_up), "0")
    table.add_row("finished exactly once", str(counts["finished exactly once"]), "")
    table.add_row("failed with a reason", str(counts["failed with a reason"]), "")
    for key in sorted(k for k in counts if k.startswith("  reason: ")):
        table.add_row(key, str(counts[key]), "")
    table.add_row("re-run after a fault (attempts 2+)", str(counts["re-run after a fault"]), "")
    table.add_row("other terminal states", str(counts["other"]), "0")
    table.add_row("lost", str(counts["lost"]), "0")
    table.add_row("run twice", str(counts["run twice"]), "0")
    table.add_row("refused but stored", str(counts["refused but stored"]), "0")
    return table


def long_small_qasm(seed: int, qubits: int = 16, gates: int = 4000) -> str:
    """The hostile tenant's job: small by its size (16 qubits, a short program), minutes of
    simulation (a mid-circuit measurement makes Aer simulate each of its shots on its own)."""
    rng = random.Random(seed)
    lines = [
        "OPENQASM 2.0;",
        'include "qelib1.inc";',
        f"qreg q[{qubits}];",
        f"creg c[{qubits}];",
        "h q;",
        "measure q[0] -> c[0];",
    ]
    for _ in range(gates):
        a = rng.randrange(qubits)
        b = (a + 1 + rng.randrange(qubits - 1)) % qubits
        lines.append(rng.choice([f"cx q[{a}],q[{b}];", f"rz(0.3) q[{a}];", f"h q[{a}];", f"t q[{a}];"]))
    return "\n".join([*lines, "measure q -> c;", ""])


# Programs that crash or blow up a loader unless refused first: an expression nested 10 000
# deep (Qiskit's Rust OpenQASM 3 parser dies with SIGSEGV on it, ../shared/cases), and gate
# definitions that double 17 times (2^17 gates from a 700-byte program). Each must fail with a
# message, alone, without crashing or re-running anyone's jobs.
CRASHER = (
    'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[1] q;\nbit[1] c;\nrx('
    + "(" * 10_000
    + "pi"
    + ")" * 10_000
    + ") q[0];\nc[0] = measure q[0];\n"
)
EXPLODER = "\n".join(
    [
        "OPENQASM 2.0;",
        'include "qelib1.inc";',
        "gate g0 a, b { h a; cx a, b; }",
        *(f"gate g{k} a, b {{ g{k - 1} a, b; g{k - 1} a, b; }}" for k in range(1, 18)),
        "qreg q[2];",
        "creg c[2];",
        "g17 q[0], q[1];",
        "measure q -> c;",
        "",
    ]
)

BIG_RESULT = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[18];\ncreg c[18];\nh q;\nmeasure q -> c;\n'


def normal_jobs(lab: FaultLab, count: int, expected: dict[str, str]) -> list[float]:
    """``count`` Bell jobs one after another: each one's seconds from submission to result."""
    took = []
    for i in range(count):
        started = time.perf_counter()
        job_id = lab.client.submit(BELL, counts=True, metadata={"shots": 1000, "seed": i, "cache": False})
        expected[job_id] = "finished"
        lab.client.wait(job_id, timeout=120)
        took.append(time.perf_counter() - started)
    return took


def hostile_tenant(lab: FaultLab, stop: threading.Event, expected: dict[str, str], big: str) -> None:
    """Until ``stop``: two long small jobs left running, a program that crashes a parser and one
    that explodes in memory unless refused, then a cancel storm (five, each canceled about a
    second after its submission), and four readers of a big result all along."""

    def read() -> None:
        while not stop.is_set():
            lab.client.http.get(f"/api/v1/job/result/{big}", timeout=60)

    readers = [threading.Thread(target=read, daemon=True) for _ in range(4)]
    for reader in readers:
        reader.start()
    seed = 0
    while not stop.is_set():
        for _ in range(2):
            seed += 1
            expected[lab.client.submit(long_small_qasm(seed), metadata={"shots": 6000})] = "canceled"
        for program in (CRASHER, EXPLODER):
            expected[lab.client.submit(program, counts=True)] = "failed"
        storm = []
        for _ in range(5):
            seed += 1
            storm.append(lab.client.submit(long_small_qasm(seed), metadata={"shots": 6000}))
            expected[storm[-1]] = "canceled"
        stop.wait(random.uniform(0.5, 1.5))
        for job_id in storm:
            lab.client.http.put(f"/api/v1/job/cancel/{job_id}")
        stop.wait(5.0)
    for reader in readers:
        reader.join(timeout=60)


def hostile_phase(lab: FaultLab, bells: int) -> bool:
    """The normal tenant's latency without and with the hostile tenant; lost, run twice and
    wrong status over both tenants' jobs. True when one of those is not 0."""
    out = Console(width=110)
    expected: dict[str, str] = {}
    quiet = normal_jobs(lab, bells, expected)
    big = lab.client.submit(BIG_RESULT, metadata={"shots": 200_000, "seed": 1, "cache": False})
    expected[big] = "finished"
    lab.client.wait(big, timeout=300)
    stop = threading.Event()
    tenant = threading.Thread(target=hostile_tenant, args=(lab, stop, expected, big), daemon=True)
    tenant.start()
    time.sleep(2.0)
    loud = normal_jobs(lab, bells, expected)
    stop.set()
    tenant.join(timeout=120)
    for job_id, status in list(expected.items()):
        if status == "canceled":
            lab.client.http.put(f"/api/v1/job/cancel/{job_id}")
    wait_terminal(lab, list(expected), 120)
    with lab.db() as conn:
        rows = {
            str(r[0]): r[1:]
            for r in conn.execute(
                "SELECT j.id, j.status, j.attempts, (SELECT count(*) FROM history h WHERE h.job_id = j.id)"
                " FROM jobs j WHERE j.id = ANY(%s::uuid[])",
                (list(expected),),
            )
        }
    counts = Counter()
    for job_id, status in expected.items():
        row = rows.get(job_id)
        if row is None or row[0] not in TERMINAL:
            counts["lost"] += 1
        elif row[2] != 1 or row[1] > 1:
            counts["run twice"] += 1
        elif row[0] != status:
            counts["wrong status"] += 1
            out.print(f"wrong status: {job_id} is {row[0]}, expected {status}", highlight=False)

    def pct(values: list[float], q: float) -> str:
        ordered = sorted(values)
        return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3:.0f} ms"

    table = Table(title=f"hostile tenant: {len(expected) - 2 * bells - 1} hostile jobs beside {bells} normal ones")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("must be", justify="right")
    table.add_row("normal jobs, alone: p50 / p99", f"{pct(quiet, 0.5)} / {pct(quiet, 0.99)}", "")
    table.add_row("normal jobs, beside the hostile tenant: p50 / p99", f"{pct(loud, 0.5)} / {pct(loud, 0.99)}", "")
    for what in ("lost", "run twice", "wrong status"):
        table.add_row(what, str(counts[what]), "0")
    out.print(table)
    return bool(counts["lost"] or counts["run twice"] or counts["wrong status"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300, help="jobs to submit (default 300)")
    parser.add_argument("--seconds", type=float, default=90, help="spread submissions over this")
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--wait", type=float, default=600, help="longest wait for the last jobs")
    parser.add_argument("--keep", action="store_true", help="keep the lab's directory (logs)")
    parser.add_argument("--hostile", action="store_true", help="then a hostile tenant beside a normal one")
    parser.add_argument("--skip-faults", action="store_true", help="no fault phase (with --hostile)")
    parser.add_argument("--hostile-bells", type=int, default=100, help="normal jobs per hostile half")
    args = parser.parse_args()
    random.seed(7)

    console.print("[bold]starting private RabbitMQ, Postgres and a stack on them ...")
    lab = FaultLab(sweep_after_s=5.0, executor_warm_workers=2)
    failed = True
    try:
        lab.start()
        console.print("lab up: " + ", ".join(f"{k} {v:.1f} s" for k, v in lab.timings.items()) + f"  ({lab.root})")
        failed = False
        if not args.skip_faults:
            failed = faults_phase(lab, args)
        if args.hostile:
            failed = hostile_phase(lab, args.hostile_bells) or failed
        return 1 if failed else 0
    finally:
        lab.close(keep=args.keep or failed)
        if args.keep or failed:
            console.print(f"lab kept in {lab.root} (logs under state/logs)")


def faults_phase(lab: FaultLab, args: argparse.Namespace) -> bool:
    """The jobs of ``job_kind`` under the faults of PLAN; True when something must-be-0 is not."""
    run = Run()
    started = time.monotonic()
    clients = submitters(lab, run, args.jobs, args.seconds, args.threads)
    injector = threading.Thread(target=chaos, args=(lab, run, args.jobs, started), daemon=True)
    injector.start()
    for thread in clients:
        thread.join()
    injector.join(timeout=600)
    console.print(f"{time.monotonic() - started:6.1f} s all submitted; waiting for the jobs ...")
    wait_terminal(lab, list(run.accepted), args.wait)
    seconds = time.monotonic() - started
    counts, notes = judge(lab, run)
    out = Console(width=110)
    out.print("faults injected:")
    for at, note in run.events:
        out.print(f"  {at:6.1f} s  {note}", highlight=False)
    out.print(report(run, counts, seconds, args.jobs))
    for note in notes[:50]:
        out.print(note, highlight=False)
    return bool(counts["lost"] or counts["run twice"] or counts["refused but stored"])


if __name__ == "__main__":
    sys.exit(main())
