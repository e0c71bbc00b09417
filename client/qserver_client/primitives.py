"""Qiskit's primitives on a QServer: ``QServerSamplerV2``, ``QServerEstimatorV2``, ``QServerJob``.

PUBs in, ``PrimitiveResult`` out, with the semantics of ``qiskit_aer.primitives.SamplerV2`` and
``EstimatorV2`` (code written for those runs here by changing the constructor). Each PUB is one
job: a PUB with parameters is a sweep (the circuit once, all its bindings beside it, see
``qserver_client.sweeps``), one without is a plain job.

The sampler builds one ``BitArray`` per classical register, in the PUB's shape, from the joint
counts the service stores for each binding: the counts are expanded into that many samples
(shuffled, since a simulator's shot order carries nothing) and every register reads its bits
from the same samples, so registers stay jointly consistent. The estimator sends each distinct
observable of a PUB once and broadcasts the values ([bindings, observables]) to the PUB's shape;
values are exact, and with ``precision > 0`` Gaussian noise is added as Aer does.

Qiskit's ``BackendSamplerV2`` is not used: over a service that keeps counts, not per-shot
memory, it fills the missing data with zeros.
"""

from __future__ import annotations

import math
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.primitives import BaseEstimatorV2, BaseSamplerV2
from qiskit.primitives.base.base_primitive_job import BasePrimitiveJob
from qiskit.primitives.containers import (
    BitArray,
    DataBin,
    EstimatorPubLike,
    PrimitiveResult,
    PubResult,
    SamplerPubLike,
    SamplerPubResult,
)
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.providers import JobStatus
from qiskit.providers.jobstatus import JOB_FINAL_STATES

from qserver_client import wire
from qserver_client.errors import ApiError, ApiUnreachable, JobFailed, QServerClientError
from qserver_client.sweeps import export_circuit, submit_sweep, sweep_items

if TYPE_CHECKING:
    from qserver_client.client import Client

FOREVER_S = 7 * 24 * 3600.0  # result() with no timeout: a week of long-poll rounds
_STATUSES = {  # the service's job statuses as Qiskit's
    "pending": JobStatus.QUEUED,
    "running": JobStatus.RUNNING,
    "finished": JobStatus.DONE,
    "failed": JobStatus.ERROR,
    "canceled": JobStatus.CANCELLED,
}


@dataclass(frozen=True)
class _PubRun:
    """One PUB on its way: its job (None when the answer needs none) and how its result is made
    from the job's results (a sweep's items, or a plain job's ``results``)."""

    job_id: str | None
    sweep: bool
    build: Callable[[Any], PubResult]


class QServerJob(BasePrimitiveJob[PrimitiveResult, JobStatus]):
    """The jobs of one ``run()`` of a QServer primitive: one service job per PUB.

    ``job_id()`` is this handle's own id; ``job_ids`` the service's job ids, one per PUB (None
    for a PUB answered without a job, e.g. a circuit that measures nothing). ``result(timeout)``
    waits on the service (long-poll, no polling loop) and builds the ``PrimitiveResult`` once;
    ``status()`` is Qiskit's ``JobStatus`` over all the PUBs' jobs; ``cancel()`` cancels those
    not yet ended.
    """

    def __init__(self, client: Client, runs: Sequence[_PubRun]):
        super().__init__(str(uuid.uuid4()))
        self._client = client
        self._runs = list(runs)
        self._final: dict[str, str] = {}  # job id -> its terminal status, once seen
        self._built: list[PubResult] = []  # the PUBs' results so far, each built once
        self._result: PrimitiveResult | None = None

    @property
    def job_ids(self) -> list[str | None]:
        """The service's job id for each PUB, in PUB order (None: answered without a job)."""
        return [run.job_id for run in self._runs]

    def result(self, timeout: float | None = None) -> PrimitiveResult:
        """Wait for every PUB's job and return the results (built once, then kept).

        ``timeout``: seconds for all of them together (None: no limit). Raises ``JobFailed``
        for a job that failed or was canceled (``.job["error"]`` says why), ``WaitTimeout``,
        and what the client raises when the service cannot be read.
        """
        if self._result is None:
            deadline = None if timeout is None else time.monotonic() + timeout
            for run in self._runs[len(self._built) :]:  # after a timeout, where it stopped
                payload = None
                if run.job_id is not None:
                    remaining = FOREVER_S if deadline is None else max(0.0, deadline - time.monotonic())
                    job = self._client.wait(run.job_id, remaining)
                    self._final[run.job_id] = job["status"]
                    if job["status"] != "finished":
                        raise JobFailed(job)
                    payload = sweep_items(self._client, run.job_id) if run.sweep else job["results"]
                self._built.append(run.build(payload))
            self._result = PrimitiveResult(self._built, metadata={"version": 2})
        return self._result

    def status(self) -> JobStatus:
        """DONE, ERROR (a job failed) or CANCELLED once every job has ended; RUNNING while one
        runs; QUEUED while they wait."""
        statuses = []
        for job_id in self.job_ids:
            if job_id is None:
                statuses.append("finished")
            elif job_id in self._final:
                statuses.append(self._final[job_id])
            else:
                status = self._client.job(job_id)["status"]
                if _STATUSES.get(status) in JOB_FINAL_STATES:
                    self._final[job_id] = status
                statuses.append(status)
        if all(_STATUSES.get(status) in JOB_FINAL_STATES for status in statuses):
            for status in ("failed", "canceled"):
                if status in statuses:
                    return _STATUSES[status]
            return JobStatus.DONE
        return JobStatus.RUNNING if "running" in statuses else JobStatus.QUEUED

    def done(self) -> bool:
        """Whether every PUB's job has finished with results."""
        return self.status() == JobStatus.DONE

    def running(self) -> bool:
        """Whether a PUB's job is running (and none is left to end in another way)."""
        return self.status() == JobStatus.RUNNING

    def cancelled(self) -> bool:
        """Whether the jobs have all ended and one of them was canceled (none failed)."""
        return self.status() == JobStatus.CANCELLED

    def in_final_state(self) -> bool:
        """Whether every PUB's job has ended (finished, failed or canceled)."""
        return self.status() in JOB_FINAL_STATES

    def cancel(self) -> bool:
        """Cancel every PUB's job that has not ended (``PUT /api/v1/job/cancel/{id}``); True
        when at least one was canceled, False when all had already ended. Raises ``ApiError``
        for another refusal (e.g. 401), ``ApiUnreachable``."""
        canceled = False
        for job_id in self.job_ids:
            if job_id is None or job_id in self._final:
                continue
            path = f"/api/v1/job/cancel/{job_id}"
            try:
                response = self._client.http.put(path)
            except httpx.TransportError as error:
                raise ApiUnreachable(f"PUT {path}: {error!r}") from error
            if response.status_code == 200:
                canceled = True
                self._final[job_id] = "canceled"
            elif response.status_code != 409:  # 409: it had ended already
                raise ApiError("PUT", path, response.status_code, response.text)
        return canceled


def _submit_all(client: Client, submits: Iterable[Callable[[], _PubRun]]) -> QServerJob:
    """Submit each PUB in turn; when one is refused, cancel those already sent and re-raise."""
    runs: list[_PubRun] = []
    try:
        for submit in submits:
            runs.append(submit())
    except BaseException:
        if any(run.job_id for run in runs):
            try:
                QServerJob(client, runs).cancel()
            except QServerClientError:
                pass  # the refusal is the error worth raising
        raise
    return QServerJob(client, runs)


def _backend_parts(backend: Any) -> tuple[Client, str]:
    """The client and backend name of a ``QServerBackend`` (``client.backend(name)``)."""
    try:
        return backend.client, str(backend.name)
    except AttributeError as error:
        raise TypeError(
            f"expected a QServerBackend (from Client.backend(name)), got {type(backend).__name__}"
        ) from error


def _measures(circuit: QuantumCircuit) -> bool:
    """Whether any instruction, inside control flow too, is a measurement."""
    for instruction in circuit.data:
        if instruction.operation.name == "measure":
            return True
        if any(_measures(block) for block in getattr(instruction.operation, "blocks", ())):
            return True
    return False


def _items_for(items: Sequence[Mapping[str, Any]], count: int, job_id: str) -> Sequence[Mapping[str, Any]]:
    """The sweep's items, checked to be all ``count`` bindings in order."""
    if [item.get("index") for item in items] != list(range(count)):
        raise QServerClientError(f"sweep {job_id} listed {len(items)} items for {count} bindings, or out of order")
    return items


# --- sampler --------------------------------------------------------------------------------


def _registers(circuit: QuantumCircuit) -> list[tuple[str, int]]:
    """(name, size) of each classical register, in declaration order."""
    return [(register.name, register.size) for register in circuit.cregs]


def _register_rows(keys: Sequence[str], registers: Sequence[tuple[str, int]]) -> dict[str, np.ndarray]:
    """Per register, one packed row (big-endian bytes, as ``BitArray`` holds them) per outcome.

    ``keys``: joint outcomes as the service counts them (registers space-separated, the last
    declared leftmost, qubit/bit 0 rightmost).
    """
    total = sum(size for _, size in registers)
    rows = {name: np.zeros((len(keys), (size + 7) // 8), dtype=np.uint8) for name, size in registers}
    for row, key in enumerate(keys):
        bits = key.replace(" ", "")
        if len(bits) != total or bits.strip("01"):
            raise QServerClientError(f"outcome {key!r} does not fit the circuit's {total} classical bits")
        end = len(bits)
        for name, size in registers:
            if size:
                value = int(bits[end - size : end], 2)
                rows[name][row] = np.frombuffer(value.to_bytes((size + 7) // 8, "big"), dtype=np.uint8)
            end -= size
    return rows


def _expand(counts: Sequence[Mapping[str, int]], shots: int) -> tuple[list[str], np.ndarray]:
    """Joint counts (one mapping per binding, ``shots`` each) as samples: the distinct outcomes,
    and an array [binding, shot] of indices into them."""
    outcomes: dict[str, int] = {}
    samples = np.empty((len(counts), shots), dtype=np.int64)
    for binding, mapping in enumerate(counts):
        indices = [outcomes.setdefault(key, len(outcomes)) for key in mapping]
        repeats = [int(value) for value in mapping.values()]
        if sum(repeats) != shots:
            raise QServerClientError(f"binding {binding} has {sum(repeats)} shots counted, not {shots}")
        samples[binding] = np.repeat(np.asarray(indices, dtype=np.int64), repeats)
    return list(outcomes), samples


def sampler_pub_result(
    counts: Sequence[Mapping[str, int]],
    shape: tuple[int, ...],
    shots: int,
    registers: Sequence[tuple[str, int]],
    rng: np.random.Generator,
    metadata: Mapping[str, Any],
    *,
    shared: bool = False,
) -> SamplerPubResult:
    """A SamplerPubResult from joint counts: one ``BitArray`` of ``shape`` per register.

    ``counts``: one mapping per binding (``prod(shape)`` of them, flat C order, ``shots`` each)
    or, ``shared``, a single mapping of ``prod(shape) * shots`` shots for all the bindings (a PUB
    without parameters): its samples are shuffled and dealt ``shots`` to each binding. Each
    binding's samples are shuffled with ``rng``; all registers read the same samples.
    """
    size = math.prod(shape)
    if shared:
        if len(counts) != 1:
            raise QServerClientError(f"{len(counts)} counts to share, not one")
        keys, samples = _expand(counts, size * shots)
        samples = rng.permutation(samples[0]).reshape(size, shots)
    else:
        if len(counts) != size:
            raise QServerClientError(f"{len(counts)} counts for {size} bindings")
        keys, samples = _expand(counts, shots)
        samples = rng.permuted(samples, axis=1)
    rows = _register_rows(keys, registers)
    arrays = {
        name: BitArray(rows[name][samples].reshape(*shape, shots, rows[name].shape[1]), num_bits)
        for name, num_bits in registers
    }
    return SamplerPubResult(DataBin(**arrays, shape=shape), metadata=dict(metadata))


def _unmeasured_result(pub: SamplerPub, registers: Sequence[tuple[str, int]]) -> SamplerPubResult:
    """What Aer answers for a circuit that measures nothing (or for no bindings at all): zeros
    in every register."""
    shape = pub.parameter_values.shape
    arrays = {
        name: BitArray(np.zeros((*shape, pub.shots, (size + 7) // 8), dtype=np.uint8), size) for name, size in registers
    }
    metadata = {"shots": pub.shots, "circuit_metadata": pub.circuit.metadata}
    return SamplerPubResult(DataBin(**arrays, shape=shape), metadata=metadata)


class _OnBackend:
    """What both primitives keep: the backend, its client and name, and the seed."""

    def __init__(self, backend: Any, seed: int | None) -> None:
        self._backend = backend
        self._client, self._backend_name = _backend_parts(backend)
        self._seed = seed

    @property
    def backend(self) -> Any:
        """The backend the PUBs run on."""
        return self._backend

    @property
    def seed(self) -> int | None:
        """The seed (the sampler's: of the simulator and the shuffle; the estimator's: of the
        noise for a precision above 0); None: a fresh one each time."""
        return self._seed


class QServerSamplerV2(_OnBackend, BaseSamplerV2):
    """``SamplerV2`` on a QServer backend: each PUB one job (a sweep when it has parameters).

    ``backend``: a ``QServerBackend`` (``Client.backend("aer")``); ``default_shots``: shots of a
    PUB that gives none; ``seed``: the simulator's seed for every PUB (each binding of a sweep
    uses it) and the seed of the shuffle that orders the shots.
    """

    def __init__(self, backend: Any, *, default_shots: int = 1024, seed: int | None = None):
        _OnBackend.__init__(self, backend, seed)
        self._default_shots = default_shots

    @property
    def default_shots(self) -> int:
        """Shots of a PUB that gives none."""
        return self._default_shots

    def run(self, pubs: Iterable[SamplerPubLike], *, shots: int | None = None) -> QServerJob:
        """Submit one job per PUB and return at once; ``result()`` waits for them."""
        if shots is None:
            shots = self._default_shots
        coerced = [SamplerPub.coerce(pub, shots) for pub in pubs]
        for index, pub in enumerate(coerced):
            if not pub.circuit.cregs:
                warnings.warn(
                    f"The {index}-th pub's circuit has no output classical registers and so the result "
                    "will be empty. Did you mean to add measurement instructions?",
                    UserWarning,
                    stacklevel=2,
                )
        rng = np.random.default_rng(self._seed)
        return _submit_all(self._client, [lambda pub=pub: self._submit(pub, rng) for pub in coerced])

    def _submit(self, pub: SamplerPub, rng: np.random.Generator) -> _PubRun:
        registers = _registers(pub.circuit)
        if not registers or not _measures(pub.circuit) or pub.parameter_values.size == 0:
            result = _unmeasured_result(pub, registers)
            return _PubRun(None, False, lambda _: result)
        shape, shots = pub.parameter_values.shape, pub.shots
        exported = export_circuit(pub.circuit)
        seed = {} if self._seed is None else {"seed": self._seed}
        if exported.names:
            values = pub.parameter_values.as_array(exported.parameters)
            job_id = submit_sweep(
                self._client,
                exported.qasm,
                exported.names,
                values,
                backend=self._backend_name,
                counts=True,
                shots=shots,
                seed=self._seed,
            )
        else:  # no parameters: one run of all the shots the PUB's bindings need, dealt out
            first = wire.properties(
                backend=self._backend_name,
                counts=True,
                metadata={"shots": shots * math.prod(shape), **seed},
            )
            job_id = self._client.submit_messages([first, *wire.chunks(exported.qasm)])
        metadata = {"shots": shots, "circuit_metadata": pub.circuit.metadata, "job_id": job_id}

        def build(payload: Any) -> SamplerPubResult:
            if exported.names:
                counts = [item["counts"] for item in _items_for(payload, math.prod(shape), job_id)]
            else:
                counts = [payload["counts"]]
            return sampler_pub_result(counts, shape, shots, registers, rng, metadata, shared=not exported.names)

        return _PubRun(job_id, bool(exported.names), build)


# --- estimator ------------------------------------------------------------------------------


def distinct_observables(pub: EstimatorPub) -> tuple[list[list[list[Any]]], np.ndarray]:
    """The PUB's observables once each, as the service's metadata ``obs`` takes them (a list of
    ``[pauli_label, real coefficient]`` pairs per observable, qubit 0 rightmost), and an array
    of the observables' shape indexing that list. An observable with no terms is ``[]``."""
    observables = np.asarray(pub.observables)  # dicts {pauli_label: coefficient}
    distinct: dict[tuple[tuple[str, float], ...], int] = {}
    index = np.empty(observables.shape, dtype=np.int64)
    for position, observable in np.ndenumerate(observables):
        terms = tuple(sorted((str(label), float(np.real(coeff))) for label, coeff in observable.items()))
        index[position] = distinct.setdefault(terms, len(distinct))
    return [[[label, coeff] for label, coeff in terms] for terms in distinct], index


def broadcast_values(
    values: np.ndarray, parameter_shape: tuple[int, ...], observable_index: np.ndarray, per_binding: bool
) -> np.ndarray:
    """Expectation values in the PUB's shape: ``values`` is [binding, distinct observable]
    (one row for all bindings unless ``per_binding``), broadcast as parameter values' shape
    against the observables' (numpy rules)."""
    size = math.prod(parameter_shape)
    binding = np.arange(size).reshape(parameter_shape) if per_binding else np.zeros(parameter_shape, dtype=np.int64)
    bindings, observables = np.broadcast_arrays(binding, observable_index)
    return np.asarray(values, dtype=float)[bindings, observables]


def estimator_pub_result(evs: np.ndarray, precision: float, seed: int | None, metadata: Mapping[str, Any]) -> PubResult:
    """A PubResult as Aer's EstimatorV2 makes it: ``evs`` exact, or with ``precision > 0`` drawn
    from N(evs, precision) with ``numpy.random.default_rng(seed)`` (a fresh generator per PUB);
    ``stds`` ``precision`` everywhere."""
    stds = np.full(evs.shape, precision)
    if precision > 0:
        evs = np.random.default_rng(seed).normal(evs, precision, evs.shape)
    return PubResult(DataBin(evs=evs, stds=stds, shape=evs.shape), metadata={"target_precision": precision, **metadata})


class QServerEstimatorV2(_OnBackend, BaseEstimatorV2):
    """``EstimatorV2`` on a QServer backend: each PUB one job (a sweep when it has parameters)
    computing every distinct observable exactly at every binding.

    ``backend``: a ``QServerBackend`` (``Client.backend("aer")``); ``default_precision``: the
    precision of a PUB that gives none (0: exact values); ``seed``: the seed of the noise added
    for a precision above 0 (Aer's ``run_options={"seed_simulator": seed}``).
    """

    def __init__(self, backend: Any, *, default_precision: float = 0.0, seed: int | None = None):
        _OnBackend.__init__(self, backend, seed)
        self._default_precision = default_precision

    @property
    def default_precision(self) -> float:
        """The precision of a PUB that gives none."""
        return self._default_precision

    def run(self, pubs: Iterable[EstimatorPubLike], *, precision: float | None = None) -> QServerJob:
        """Submit one job per PUB and return at once; ``result()`` waits for them."""
        if precision is None:
            precision = self._default_precision
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        for index, pub in enumerate(coerced):
            if pub.precision < 0.0:
                raise ValueError(f"The {index}-th pub has precision less than 0 ({pub.precision}).")
        return _submit_all(self._client, [lambda pub=pub: self._submit(pub) for pub in coerced])

    def _submit(self, pub: EstimatorPub) -> _PubRun:
        parameter_shape = pub.parameter_values.shape
        obs, observable_index = distinct_observables(pub)
        sent = [column for column, terms in enumerate(obs) if terms]  # a term-less observable is 0
        metadata: dict[str, Any] = {"circuit_metadata": pub.circuit.metadata}

        def finish(values: np.ndarray, per_binding: bool) -> PubResult:
            evs = broadcast_values(values, parameter_shape, observable_index, per_binding)
            return estimator_pub_result(evs, pub.precision, self._seed, metadata)

        if not sent or pub.size == 0:  # nothing to compute: all values are 0 (or there are none)
            result = finish(np.zeros((1, len(obs))), False)
            return _PubRun(None, False, lambda _: result)
        exported = export_circuit(pub.circuit)
        wanted = [obs[column] for column in sent]
        if exported.names:
            values = pub.parameter_values.as_array(exported.parameters)
            job_id = submit_sweep(
                self._client,
                exported.qasm,
                exported.names,
                values,
                backend=self._backend_name,
                counts=False,
                expval=True,
                obs=wanted,
            )
        else:
            first = wire.properties(backend=self._backend_name, expval=True, metadata={"obs": wanted})
            job_id = self._client.submit_messages([first, *wire.chunks(exported.qasm)])
        metadata["job_id"] = job_id

        def build(payload: Any) -> PubResult:
            if exported.names:
                rows = [item["expval"] for item in _items_for(payload, math.prod(parameter_shape), job_id)]
            else:
                rows = [payload["expval"]]
            values = np.zeros((len(rows), len(obs)))
            values[:, sent] = np.asarray(rows, dtype=float).reshape(len(rows), len(sent))
            return finish(values, bool(exported.names))

        return _PubRun(job_id, bool(exported.names), build)
