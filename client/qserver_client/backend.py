"""``QServerBackend``: a QServer backend as a Qiskit ``BackendV2``.

``client.backend("aer")`` makes one. ``transpile(circuit, backend)`` works against a permissive
target (every standard gate, measure, reset, delay and control flow on every qubit, no coupling
map); ``backend.run(circuits, shots=..., seed_simulator=...)`` exports each circuit as
OpenQASM 3, submits one job per circuit (counts) and answers a ``QServerBackendJob`` whose
``result()`` waits for them (the server's long-poll) and is a ``qiskit.result.Result``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from qiskit import QuantumCircuit, qasm3
from qiskit.circuit import ForLoopOp, IfElseOp, SwitchCaseOp, WhileLoopOp
from qiskit.circuit.library import get_standard_gate_name_mapping
from qiskit.providers import BackendV2, JobError, JobStatus, JobV1, Options
from qiskit.result import Result
from qiskit.transpiler import Target

from qserver_client.errors import Conflict, QServerClientError

if TYPE_CHECKING:
    from qserver_client.client import Client

# The target's size when the server does not give one: it only bounds transpile (a job's real
# limit is the server's, per simulation method: QSERVER_MAX_ACTIVE_QUBITS and the nodes' memory).
DEFAULT_NUM_QUBITS = 30
CONTROL_FLOW = {"if_else": IfElseOp, "while_loop": WhileLoopOp, "for_loop": ForLoopOp, "switch_case": SwitchCaseOp}
# The server's job statuses (GET /job/{id} "status") as Qiskit's.
STATUS = {
    "pending": JobStatus.QUEUED,
    "running": JobStatus.RUNNING,
    "finished": JobStatus.DONE,
    "failed": JobStatus.ERROR,
    "canceled": JobStatus.CANCELLED,
}
_INT64 = 2**63  # the server's seeds are signed 64-bit integers


def permissive_target(num_qubits: int) -> Target:
    """A target of ``num_qubits`` ideal qubits with Qiskit's standard gates (measure, reset and
    delay among them) and control flow on every qubit, and no coupling map. Barriers need no
    entry: every target takes them."""
    names = [*get_standard_gate_name_mapping(), *CONTROL_FLOW]
    return Target.from_configuration(names, num_qubits=num_qubits, custom_name_mapping=CONTROL_FLOW)


def _num_qubits(info: dict[str, Any]) -> int | None:
    """The backend's qubits as the server's backend JSON gives them, if it does."""
    capabilities = info.get("capabilities")
    given = info.get("num_qubits") or (capabilities.get("num_qubits") if isinstance(capabilities, dict) else None)
    return given if isinstance(given, int) and given > 0 else None


class QServerBackend(BackendV2):
    """A backend of a QServer (``client.backend(name)``): one job per circuit, counts only.

    ``info`` is the server's backend JSON (``GET /api/v1/backend/{name}``); ``capabilities``
    its capabilities (methods, max_qubits per method, result_types, plugin_version, needs_gpu),
    None where the backend's plugin does not declare them. ``num_qubits``:
    the target's size; default the server's when its backend JSON has one, else
    ``DEFAULT_NUM_QUBITS`` (it only bounds ``transpile``). Options (``set_options`` or ``run``'s
    keywords): ``shots`` (1024), ``seed_simulator`` (None: a fresh seed per job; an integer:
    circuit i of a run gets seed + i), ``method`` (None: the server's choice; an Aer method
    name), ``timeout_s`` (None: the server's default time limit of a job).
    """

    def __init__(self, client: Client, info: dict[str, Any], *, num_qubits: int | None = None):
        name = info["backend_name"]
        super().__init__(
            name=name,
            description=f"QServer backend {name!r} at {client.url} (plugin {info.get('plugin')})",
        )
        self.client = client
        self.info = info
        self.capabilities: dict[str, Any] | None = info.get("capabilities")
        self._target = permissive_target(num_qubits or _num_qubits(info) or DEFAULT_NUM_QUBITS)

    @classmethod
    def _default_options(cls) -> Options:
        return Options(shots=1024, seed_simulator=None, method=None, timeout_s=None)

    @property
    def target(self) -> Target:
        """The permissive target (see ``permissive_target``)."""
        return self._target

    @property
    def max_circuits(self) -> None:
        """No limit: each circuit is a job of its own."""
        return None

    def run(self, run_input: QuantumCircuit | Sequence[QuantumCircuit], **options: Any) -> QServerBackendJob:
        """Submit each circuit as a job of its own (OpenQASM 3, counts); the job handle at once.

        ``options`` override the backend's (``shots``, ``seed_simulator``, ``method``,
        ``timeout_s``). Raises ValueError for an unknown option, a circuit without classical
        bits or with unbound parameters, and ``SubmitError`` when the server refuses a circuit
        (the circuits submitted before it are canceled).
        """
        circuits = [run_input] if isinstance(run_input, QuantumCircuit) else list(run_input)
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(f"unknown options {', '.join(unknown)}; this backend takes {', '.join(self.options)}")
        chosen = {**dict(self.options), **options}
        for circuit in circuits:
            _check(circuit)
        programs = [qasm3.dumps(circuit) for circuit in circuits]
        metadata = [_metadata(chosen, index) for index in range(len(circuits))]
        job_ids: list[str] = []
        try:
            for program, meta in zip(programs, metadata, strict=True):
                job_ids.append(self.client.submit(program, backend=self.name, metadata=meta))
        except BaseException:
            with contextlib.suppress(QServerClientError):  # best effort: the error to raise is the first
                _cancel(self.client, job_ids)
            raise
        return QServerBackendJob(self, job_ids, circuits, metadata)


def _check(circuit: QuantumCircuit) -> None:
    """Refuse what the server could only fail: nothing to count, or values missing."""
    if circuit.num_clbits == 0:
        raise ValueError(f"circuit {circuit.name!r} has no classical bits: measure it (measure_all) to get counts")
    if circuit.parameters:
        names = ", ".join(sorted(parameter.name for parameter in circuit.parameters))
        raise ValueError(f"circuit {circuit.name!r} has unbound parameters ({names}): assign_parameters first")


def _metadata(options: dict[str, Any], index: int) -> dict[str, Any]:
    """The job metadata of circuit ``index`` of a run."""
    metadata: dict[str, Any] = {"shots": int(options["shots"])}
    seed = options["seed_simulator"]
    if seed is not None:
        metadata["seed"] = (int(seed) + index + _INT64) % (2 * _INT64) - _INT64
    for key in ("method", "timeout_s"):
        if options[key] is not None:
            metadata[key] = options[key]
    return metadata


def _cancel(client: Client, job_ids: Sequence[str]) -> None:
    """Cancel those of the jobs that have not ended (one that has is left as it is)."""
    for job_id in job_ids:
        try:
            client.cancel(job_id)
        except Conflict:
            pass


class QServerBackendJob(JobV1):
    """The jobs of one ``QServerBackend.run``: one server job per circuit.

    ``job_id()`` is the server's job ids joined by commas (one id for one circuit); ``job_ids``
    lists them. ``result(timeout=None)`` waits (long-poll, no polling loop) and raises
    ``JobFailed`` when a job failed or was canceled (its ``.job["error"]`` says why) and
    ``WaitTimeout`` after ``timeout`` seconds.
    """

    def __init__(
        self,
        backend: QServerBackend,
        job_ids: list[str],
        circuits: list[QuantumCircuit],
        metadata: list[dict[str, Any]],
    ):
        super().__init__(backend, ",".join(job_ids))
        self.job_ids = job_ids
        self._client = backend.client
        self._runs = list(zip(circuits, job_ids, metadata, strict=True))
        self._result: Result | None = None

    def submit(self) -> None:
        """Never needed: ``QServerBackend.run`` submits the circuits. Raises JobError."""
        raise JobError("the circuits were submitted by QServerBackend.run")

    def result(self, timeout: float | None = None) -> Result:
        """Wait for every job; their counts as one ``qiskit.result.Result``, one experiment per
        circuit, named as the circuit (``get_counts(circuit)``), keys per classical register."""
        if self._result is None:
            deadline = math.inf if timeout is None else time.monotonic() + timeout
            experiments = [
                _experiment(circuit, job_id, meta, self._client.wait_result(job_id, deadline - time.monotonic()))
                for circuit, job_id, meta in self._runs
            ]
            self._result = Result.from_dict(
                {
                    "backend_name": self.backend().name,
                    "backend_version": None,
                    "job_id": self.job_id(),
                    "success": True,
                    "status": "COMPLETED",
                    "results": experiments,
                }
            )
        return self._result

    def status(self) -> JobStatus:
        """The jobs' status as one: ERROR or CANCELLED if any job is so, DONE when all are,
        RUNNING while any runs, else QUEUED."""
        statuses = {STATUS[self._client.job(job_id)["status"]] for job_id in self.job_ids}
        for status in (JobStatus.ERROR, JobStatus.CANCELLED, JobStatus.RUNNING):
            if status in statuses:
                return status
        return JobStatus.DONE if statuses == {JobStatus.DONE} else JobStatus.QUEUED

    def cancel(self) -> None:
        """Cancel the jobs that have not ended yet."""
        _cancel(self._client, self.job_ids)


def _experiment(
    circuit: QuantumCircuit, job_id: str, metadata: dict[str, Any], results: dict[str, Any]
) -> dict[str, Any]:
    """One experiment of a ``Result`` (its dict form): a circuit, its job's id, metadata and results.

    The server's counts keys are Qiskit's (registers separated by spaces, the last register
    and bit 0 of each rightmost); they go in as hex memory with the circuit's register sizes,
    so that ``Result.get_counts`` formats them back per register.
    """
    counts: dict[str, int] = {}
    for key, value in (results.get("counts") or {}).items():
        memory = hex(int(key.replace(" ", ""), 2))
        counts[memory] = counts.get(memory, 0) + value
    experiment = {
        "shots": metadata["shots"],
        "success": True,
        "status": "DONE",
        "data": {"counts": counts},
        "header": {
            "name": circuit.name,
            "creg_sizes": [[register.name, register.size] for register in circuit.cregs],
            "memory_slots": circuit.num_clbits,
            "metadata": dict(circuit.metadata or {}),
        },
        "job_id": job_id,
    }
    if "seed" in metadata:
        experiment["seed_simulator"] = metadata["seed"]
    return experiment
