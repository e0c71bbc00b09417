"""The executor: runs one claimed job on a Ray worker and writes its outcome to Postgres.

Plain functions; the dispatcher applies ``ray.remote`` at the edge. Qiskit and
the plugin are imported once per worker process (module import), and each
worker keeps one Postgres connection (cluster/workerdb.py), so a warm worker spends
a job's time on the simulation. It takes a :class:`cluster.messages.Work` and answers
a :class:`cluster.messages.Report`; any exception, of any type, becomes a failed job
with its message.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import json
import logging
import os
import platform
import secrets
import tempfile
import time
from dataclasses import replace
from typing import Any

import ray

from cluster import sweep as split
from cluster.messages import ESTIMATE, MEMORY, Report, Work
from cluster.watch import Watch
from cluster.workerdb import WorkerDb
from core import sweeps
from core.domain import BUILTIN_PLUGIN, MemoryNeed, Outcome
from core.settings import get_settings

log = logging.getLogger(__name__)
MIB = 1024 * 1024

_db = WorkerDb()  # the task path's connection, one per worker process
_heartbeat_db = WorkerDb()  # the watch threads' (cluster/watch.py), used by one thread at a time
_plugins: dict[str, Any] = {}


def node_id() -> str | None:
    """The Ray node this process runs on (None outside Ray: tests calling the executor directly)."""
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray
        return None


class TooSlow(Exception):
    """A built-in Aer job estimated to take longer than ``Work.max_estimate_s``: nothing was
    simulated; the message gives the estimate."""


def compute(work: Work) -> dict[str, Any] | MemoryNeed:
    """Compute the job's requested results.

    Returns:
        {result type: JSON-ready value} for each requested result type, and "receipt" (a
        sweep: the receipt only, its items stored chunk by chunk as they come); or, for a built-in Aer job whose
        circuit needs more than ``work.memory_bytes``, what it needs (nothing was simulated).

    Raises:
        TooSlow: a built-in Aer job estimated past ``work.max_estimate_s`` (nothing simulated).
        Exception: whatever the loader, simulator or plugin raises.
    """
    job = work.job
    if job.plugin in (None, BUILTIN_PLUGIN):
        from plugins import aer
        from plugins.aer import sizing

        options = _aer_options(work)
        try:
            sweep = sweeps.of_metadata(job.metadata)
            if sweep is not None:
                return _run_sweep(work, sweep, options)
            receipt = versions(job.plugin or BUILTIN_PLUGIN, job.plugin_version)
            results = aer.run(
                job.qasm,
                job.metadata,
                list(job.result_types),
                max_seconds=work.max_estimate_s,
                receipt=receipt,
                **options,
            )
            return {**results, "receipt": receipt}
        except aer.NeedsMemory as exc:  # the plugin's exceptions, mapped here once
            return MemoryNeed(exc.size.memory_bytes, exc.size.method, exc.size.active_qubits)
        except sizing.TooSlow as exc:
            raise TooSlow(str(exc)) from None
    return _compute_with_plugin(work)


def _aer_options(work: Work) -> dict[str, Any]:
    """The keyword arguments plugins.aer.run and run_sweep take from ``work`` and settings."""
    budget = work.memory_bytes
    return {
        "memory_budget_bytes": budget,
        "max_memory_mb": budget // MIB if budget else None,
        "device": work.device,
        "max_qubits": get_settings().max_active_qubits,
        "max_expanded_gates": get_settings().max_expanded_gates,
        "threads": work.threads,
    }


class SweepStopped(Exception):
    """A sweep's job stopped running (canceled, deleted) while its chunks were written."""


def _run_sweep(work: Work, sweep: sweeps.Sweep, options: dict[str, Any]) -> dict[str, Any]:
    """Run a sweep job (plugins.aer.run_sweep) here and, when it is large, on the other nodes
    too (cluster/sweep.py), storing each chunk of items as it comes (store.save_items_sync);
    its results row keeps none: this returns only the receipt ({"receipt": ...}).

    Raises:
        SweepStopped: the job no longer runs; ValueError: bindings missing or not storable
            results; what run_sweep raises, here or on another node.
    """
    data = _db.bindings(work.job_id)
    if data is None:
        raise ValueError("the sweep's bindings are missing from the database")
    _, values = sweeps.read_bindings(data, sweep.parameters, max_bindings=sweep.bindings)
    job = work.job
    if job.attempts > 1:  # an earlier attempt's items may come from another seed
        _db.clear_items(job.id)
    if job.metadata.get("seed") is None:  # one seed for every part, wherever it runs
        work = replace(work, job=replace(job, metadata={**job.metadata, "seed": secrets.randbits(63)}))
    receipt = versions(job.plugin or BUILTIN_PLUGIN, job.plugin_version)
    node = node_id()
    split.run_split(work, values, node, _part_runner(work, sweep, {**options, "receipt": receipt}, node), _remote_part)
    return {"receipt": receipt}


def _part_runner(work: Work, sweep: sweeps.Sweep, options: dict[str, Any], node: str | None) -> split.RunPart:
    """``run_part(first, values)``: run those bindings of the sweep in this process and store
    their items (indexes from ``first``), or raise SweepStopped once the job no longer runs."""
    from plugins import aer

    job = work.job

    def run_part(first: int, values: Any) -> None:
        def save(offset: int, items: list[dict[str, Any]]) -> None:
            check_storable({"items": items})
            if not _db.save_items(job.id, first + offset, items, node):
                raise SweepStopped(f"the job stopped running (binding {first + offset} of {sweep.bindings})")

        result_types = list(job.result_types)
        aer.run_sweep(job.qasm, job.metadata, result_types, sweep.parameters, values, save, start=first, **options)

    return run_part


def run_sweep_part(work: Work, first: int, values: Any) -> int:
    """A part of a sweep job on another node (cluster/sweep.py): its bindings from ``first``
    (``values``, shape (count, P)) run on one thread, their items stored, its memory watched
    as the job's task is (cluster/watch.py). Returns how many ran. Raises what run_sweep raises,
    SweepStopped once the job no longer runs."""
    node = node_id()
    sweep = sweeps.of_metadata(work.job.metadata)
    if sweep is None:
        raise ValueError("not a sweep")
    watch = Watch(work.job_id, work.memory_bytes, node, _heartbeat_db)
    try:
        _part_runner(work, sweep, {**_aer_options(work), "threads": 1}, node)(first, values)
    finally:
        watch.stop()
    return len(values)


_remote_part = ray.remote(run_sweep_part)


def execute(work: Work, node: str | None) -> tuple[Report, dict[str, Any] | None]:
    """Compute ``work`` and check its results can be stored; nothing is written here.

    Returns:
        (report, results): FINISHED with the results; FAILED (``report.error`` says why) or
        NEEDS_MEMORY with None: kind MEMORY (``report.memory`` says what the circuit needs)
        or ESTIMATE (over ``work.max_estimate_s``; ``report.error`` gives the estimate).
        ``run_ms`` is the time spent.

    Raises:
        KeyboardInterrupt, SystemExit: only these; every other failure is a FAILED report.
    """
    started = time.perf_counter()
    results = memory = error = kind = None
    try:
        computed = compute(work)
        if isinstance(computed, MemoryNeed):
            outcome, memory, kind = Outcome.NEEDS_MEMORY, computed, MEMORY
        else:
            check_storable(computed)
            outcome, results = Outcome.FINISHED, computed
    except TooSlow as exc:
        outcome, error, kind = Outcome.NEEDS_MEMORY, str(exc), ESTIMATE
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a failed job
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        outcome, error = Outcome.FAILED, error_message(exc)
    run_ms = (time.perf_counter() - started) * 1e3
    return Report(work.job_id, outcome, run_ms, node, error=error, kind=kind, memory=memory), results


def load_plugin(name: str) -> Any:
    """This worker's instance of plugin ``name``'s ``Plugin`` class (imported once).

    The import name is the package name with ``-`` replaced by ``_`` (upstream contract).
    """
    if name not in _plugins:
        module = importlib.import_module(name.replace("-", "_"))
        _plugins[name] = module.Plugin()
    return _plugins[name]


def plugin_backends(name: str) -> dict[str, Any]:
    """Import plugin ``name`` in its runtime_env and list its backends: {"node_id", "backends"}.

    The dispatcher runs this once per node when a plugin is admitted, so that the
    runtime_env is built before the first job needs it.
    """
    return {"node_id": node_id(), "backends": list(load_plugin(name).backends)}


def _compute_with_plugin(work: Work) -> dict[str, Any]:
    """The upstream plugin contract: ``Plugin().execute(backend, qasm_path, metadata, result_type)``.

    The QASM is written to a temporary file on this node (nodes share no disk).
    """
    job = work.job
    plugin = load_plugin(job.plugin)
    with tempfile.NamedTemporaryFile("w", suffix=".qasm", encoding="utf-8") as qasm_file:
        qasm_file.write(job.qasm)
        qasm_file.flush()
        results = {
            result_type: _json_ready(plugin.execute(job.backend, qasm_file.name, dict(job.metadata), result_type))
            for result_type in job.result_types
        }
    return {**results, "receipt": versions(job.plugin, job.plugin_version)}


@functools.cache
def _installed(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(plugin: str, plugin_version: str | None) -> dict[str, Any]:
    """The start of a job's receipt: its plugin and version (the built-in plugin's is this
    server's), and the Qiskit, Aer and Python versions of this worker's environment (a new
    dict: the run adds to it)."""
    return dict(_versions(plugin, plugin_version))


@functools.cache
def _versions(plugin: str, plugin_version: str | None) -> dict[str, Any]:
    return {
        "plugin": plugin,
        "plugin_version": plugin_version or _installed("qserver"),
        "qiskit": _installed("qiskit"),
        "qiskit_aer": _installed("qiskit-aer") or _installed("qiskit-aer-gpu"),
        "python": platform.python_version(),
    }


def _json_ready(value: Any) -> Any:
    """Turn numpy scalars/arrays and dict keys from plugins into JSON types."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if hasattr(value, "tolist"):
        return _json_ready(value.tolist())
    if hasattr(value, "item"):
        return value.item()
    return value


def check_storable(results: dict[str, Any]) -> None:
    """Refuse results that JSON (and Postgres' jsonb) cannot hold.

    Raises:
        ValueError: a value is NaN or infinite (e.g. an expectation value that overflowed).
    """
    try:
        json.dumps(results, allow_nan=False)
    except ValueError:
        raise ValueError(
            "the results hold a value that is not a finite number (NaN or infinity): "
            "an expectation value overflowed? Use smaller observable coefficients"
        ) from None


def error_message(error: BaseException) -> str:
    """A failed job's ``error`` text: the exception's type and message."""
    text = str(error).strip() or repr(error)
    return f"{type(error).__name__}: {text}"


def run_job(work: Work) -> Report:
    """Run one claimed job and record its outcome (finished with results, or failed).

    Args:
        work: the job, the memory Ray granted this task, its threads and device.

    Returns:
        A Report: FINISHED or FAILED (written); DROPPED when the job was no longer running
        (canceled meanwhile; ``database`` names this worker's database); NEEDS_MEMORY
        (nothing written; ``memory`` says what the circuit needs) when it needs more memory
        than this task was granted. A job that grows this worker past its grant is failed
        (written) and the worker ended by cluster/watch.py: Ray then reports the task's worker
        crashed, and the dispatcher finds the job failed.

    Raises:
        psycopg.OperationalError: Postgres stayed unreachable for the outcome's write.
    """
    node = node_id()
    if not _db.mark_started(work.job_id, node):  # canceled or deleted while claimed: not run
        return Report(work.job_id, Outcome.DROPPED, 0.0, node, database=_db.database())
    watch = Watch(work.job_id, work.memory_bytes, node, _heartbeat_db)  # heartbeats and memory
    try:
        report, results = execute(work, node)
    finally:
        watch.stop()
    if report.outcome is Outcome.NEEDS_MEMORY:
        _db.hand_back(work.job_id)  # not simulated: claimed again, for the dispatcher to place
        return report
    written, error = _db.record_job(work.job_id, results, report.error, node)
    if not written:
        report = replace(report, outcome=Outcome.DROPPED, database=_db.database())
    elif error is not None and report.error is None:  # Postgres refused the results
        report = replace(report, outcome=Outcome.FAILED, error=error)
    log.info("job_id=%s %s in %.1f ms on node %s", work.job_id, report.outcome.value, report.run_ms, node)
    return report


def warm_up(pause_s: float = 0.5) -> dict[str, Any]:
    """Import Qiskit and the built-in plugin, run a tiny circuit, open the DB connection.

    The dispatcher runs one per CPU at start so that no job waits on imports.
    ``pause_s`` keeps this worker busy a little so that the others get the rest.
    Returns {"pid", "node_id", "ms"}.
    """
    started = time.perf_counter()
    from plugins import aer

    aer.run(
        'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n',
        {"shots": 10, "obs": [[["ZZ", 1.0]]]},
        ["counts", "quasi_dist", "expval"],
    )
    _db.conn().execute("SELECT 1")
    time.sleep(pause_s)
    return {"pid": os.getpid(), "node_id": node_id(), "ms": (time.perf_counter() - started) * 1e3}
