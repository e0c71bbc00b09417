"""The executor: runs one claimed job on a Ray worker and writes its outcome to Postgres.

Plain functions; the dispatcher applies ``ray.remote`` at the edge. Qiskit and
the plugin are imported once per worker process (module import), and each
worker keeps one Postgres connection, so a warm worker spends a job's time on
the simulation. Any exception, of any type, becomes a failed job with its message.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import tempfile
import threading
import time
import uuid
from typing import Any

import psycopg
import ray
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from core import store
from core.domain import BUILTIN_PLUGIN
from core.settings import get_settings

log = logging.getLogger(__name__)
MIB = 1024 * 1024

_conn: psycopg.Connection | None = None
_plugins: dict[str, Any] = {}


def _db() -> psycopg.Connection:
    """This worker's Postgres connection, reopened if it broke."""
    global _conn
    if _conn is None or _conn.closed or _conn.broken:
        _conn = store.connect_sync(get_settings().database_dsn)
    return _conn


def _node_id() -> str | None:
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (tests calling run_job directly)
        return None


def compute(job: dict[str, Any]) -> dict[str, Any]:
    """Compute the job's requested results.

    Args:
        job: {"backend", "plugin", "qasm", "metadata", "result_types"} as claimed.

    Returns:
        {result type: JSON-ready value} for each requested result type.

    Raises:
        Exception: whatever the loader, simulator or plugin raises.
    """
    if job["plugin"] in (None, BUILTIN_PLUGIN):
        from plugins import aer

        budget = job.get("memory_bytes")
        try:
            return aer.run(
                job["qasm"], job["metadata"], job["result_types"],
                memory_budget_bytes=budget,
                max_memory_mb=budget // MIB if budget else None,
                device=job.get("device", "CPU"),
                max_qubits=get_settings().max_active_qubits,
                max_expanded_gates=get_settings().max_expanded_gates,
                threads=job.get("threads"),
            )
        except aer.NeedsMemory as exc:
            raise MoreMemory(exc.size.memory_bytes, exc.size.method, exc.size.active_qubits) from None
    return _compute_with_plugin(job)


class MoreMemory(Exception):
    """The circuit needs more memory than this task was granted (bytes, method, active qubits)."""

    def __init__(self, memory_bytes: int, method: str, active_qubits: int):
        super().__init__(f"needs {memory_bytes} bytes")
        self.memory_bytes, self.method, self.active_qubits = memory_bytes, method, active_qubits


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
    return {"node_id": _node_id(), "backends": list(load_plugin(name).backends)}


def _compute_with_plugin(job: dict[str, Any]) -> dict[str, Any]:
    """The upstream plugin contract: ``Plugin().execute(backend, qasm_path, metadata, result_type)``.

    The QASM is written to a temporary file on this node (nodes share no disk).
    """
    plugin = load_plugin(job["plugin"])
    with tempfile.NamedTemporaryFile("w", suffix=".qasm", encoding="utf-8") as qasm_file:
        qasm_file.write(job["qasm"])
        qasm_file.flush()
        return {
            result_type: _json_ready(
                plugin.execute(job["backend"], qasm_file.name, dict(job["metadata"]), result_type)
            )
            for result_type in job["result_types"]
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


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one claimed job and record its outcome (finished with results, or failed).

    Args:
        job: the claimed job as a dict: id (str), backend, plugin, qasm, metadata, result_types,
            and optionally memory_bytes (what Ray granted this task), device ("CPU"/"GPU") and
            threads (the CPUs Ray granted it: Aer's thread count for a large circuit).

    Returns:
        {"job_id", "status" ("finished" | "failed" | "dropped" | "needs_memory"), "run_ms",
        "node_id"}; "dropped" when the job was no longer running (canceled meanwhile);
        "needs_memory" (nothing written; "memory_bytes", "method", "active_qubits" say what
        the circuit needs) when it needs more memory than this task was granted.
    """
    job_id = uuid.UUID(job["id"])
    node_id = _node_id()
    started = time.perf_counter()
    _mark_started(job_id, node_id)
    beating = _Heartbeat(job_id)
    try:
        results = compute(job)
        check_storable(results)
        error = None
    except MoreMemory as exc:
        return {
            "job_id": str(job_id), "status": "needs_memory", "node_id": node_id,
            "run_ms": (time.perf_counter() - started) * 1e3,
            "memory_bytes": exc.memory_bytes, "method": exc.method, "active_qubits": exc.active_qubits,
        }
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a failed job
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        results, error = None, error_message(exc)
    finally:
        beating.stop()
    run_ms = (time.perf_counter() - started) * 1e3
    status, written = _record(job_id, results, error, node_id)
    log.info("job_id=%s %s in %.1f ms on node %s", job_id, status, run_ms, node_id)
    return {
        "job_id": str(job_id),
        "database": _database_name(),
        "status": status if written else "dropped",
        "error": error,
        "run_ms": run_ms,
        "node_id": node_id,
    }


class _Heartbeat:
    """A thread that marks the job alive every ``heartbeat_s`` on a connection of its own,
    so that a job whose worker or node dies unseen is noticed (dispatcher's reaper)."""

    _conn: psycopg.Connection | None = None  # one per worker process, used by this thread only

    def __init__(self, job_id: uuid.UUID):
        self._job_id = job_id
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        interval = get_settings().heartbeat_s
        while not self._done.wait(interval):
            try:
                if _Heartbeat._conn is None or _Heartbeat._conn.closed:
                    _Heartbeat._conn = store.connect_sync(get_settings().database_dsn)
                store.heartbeat_sync(_Heartbeat._conn, job_id=self._job_id)
            except psycopg.Error:
                _Heartbeat._conn = None  # try again next beat

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)


def _database_name() -> str:
    """host:port/dbname of this worker's database (to tell a misconfigured node apart)."""
    info = _db().info
    return f"{info.host}:{info.port}/{info.dbname}"


def _mark_started(job_id: uuid.UUID, node_id: str | None) -> None:
    global _conn
    try:
        store.mark_started_sync(_db(), job_id=job_id, node_id=node_id)
    except psycopg.OperationalError:
        _conn = None  # not worth failing the job over; the outcome write retries


# A write whose connection broke (Postgres restarted) is retried on a new one: safe, since
# every outcome write is guarded on status = 'running'. The caller drops its connection.
retry_db_write = retry(
    retry=retry_if_exception_type(psycopg.OperationalError),
    stop=stop_after_attempt(3),
    wait=wait_exponential(multiplier=0.2, max=2),
    reraise=True,
)


@retry_db_write
def _record(
    job_id: uuid.UUID, results: dict | None, error: str | None, node_id: str | None
) -> tuple[str, bool]:
    """Write the outcome; returns (status written, whether the job was still running).

    A broken connection (Postgres restarted) is reopened and the write retried: safe,
    since both writes are guarded on status = 'running'. Results Postgres refuses
    make the job fail with Postgres' reason.
    """
    global _conn
    try:
        conn = _db()
        if error is None:
            try:
                return "finished", store.finish_job_sync(conn, job_id=job_id, results=results, node_id=node_id)
            except psycopg.DataError as exc:
                error = f"the results could not be stored: {str(exc).strip()}"
        return "failed", store.fail_job_sync(conn, job_id=job_id, error=error, node_id=node_id)
    except psycopg.OperationalError:
        _conn = None
        raise


def warm_up(pause_s: float = 0.5) -> dict[str, Any]:
    """Import Qiskit and the built-in plugin, run a tiny circuit, open the DB connection.

    The dispatcher runs one per CPU at start so that no job waits on imports.
    ``pause_s`` keeps this worker busy a little so that the others get the rest.
    Returns {"pid", "node_id", "ms"}.
    """
    started = time.perf_counter()
    from plugins import aer

    aer.run(
        'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\n'
        "measure q -> c;\n",
        {"shots": 10, "obs": [[["ZZ", 1.0]]]},
        ["counts", "quasi_dist", "expval"],
    )
    _db().execute("SELECT 1")
    time.sleep(pause_s)
    return {"pid": os.getpid(), "node_id": _node_id(), "ms": (time.perf_counter() - started) * 1e3}
