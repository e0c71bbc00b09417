"""qserver_client's primitives and sweeps, checked against qiskit_aer.primitives on the same PUBs.

Each end-to-end test runs twice: on ``local``, the sweep contract of issue 13
played in this process on the server's own Aer plugin (``plugins.aer.simulate.run`` per binding,
so the exported programs go through the server's loader), and on ``stack``, the real stack. The
wire format, paging and the building of results are checked without any service.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import re
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit import Parameter, ParameterVector
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.providers import JobStatus
from qiskit.quantum_info import SparsePauliOp, Statevector
from qiskit_aer.primitives import EstimatorV2 as AerEstimatorV2
from qiskit_aer.primitives import SamplerV2 as AerSamplerV2

from plugins.aer import simulate
from plugins.aer.circuits import load_circuit
from qserver_client import (
    JobFailed,
    JobNotFound,
    QServerEstimatorV2,
    QServerSamplerV2,
    SubmitError,
    WaitTimeout,
    wire,
)
from qserver_client.primitives import broadcast_values, distinct_observables, sampler_pub_result
from qserver_client.sweeps import export_circuit, submit_sweep, sweep_items

SHOTS = 2000
ROOT = Path(__file__).resolve().parents[2]


# --- the sweep contract in this process ------------------------------------------------------


class LocalService:
    """What the primitives use of ``qserver_client.Client`` (``submit_messages``, ``wait``,
    ``job``, ``http``), answering as the sweep contract says, on the server's Aer plugin.

    ``hold``: jobs stay pending (nothing runs) until canceled. ``pages`` records each items
    request's (offset, limit); ``submissions`` each job's properties and bindings array.
    """

    def __init__(self, hold: bool = False):
        self.hold = hold
        self.jobs: dict[str, dict[str, Any]] = {}
        self.items: dict[str, list[dict[str, Any]]] = {}
        self.pages: list[tuple[int, int]] = []
        self.submissions: list[dict[str, Any]] = []
        self.http = httpx.Client(base_url="http://local", transport=httpx.MockTransport(self._answer))

    def submit_messages(self, messages) -> str:
        first, *rest = list(messages)
        props = first.properties
        metadata = json.loads(props.metadata)
        kinds = {message.WhichOneof("DataStream") for message in rest}
        assert kinds <= {"qasmChunk", "bindingsChunk"}
        qasm = "".join(message.qasmChunk for message in rest)
        pieces = [message.bindingsChunk for message in rest if message.WhichOneof("DataStream") == "bindingsChunk"]
        assert all(len(piece) <= wire.BINDINGS_CHUNK_BYTES for piece in pieces)
        values = np.load(io.BytesIO(b"".join(pieces)), allow_pickle=False) if pieces else None
        assert (values is None) == ("sweep" not in metadata) and "parameters" not in metadata
        wanted = [
            name
            for name, on in (
                ("counts", props.resultTypeCounts),
                ("quasi_dist", props.resultTypeQuasiDist),
                ("expval", props.resultTypeExpVal),
            )
            if on
        ]
        job_id = str(uuid.uuid4())
        self.submissions.append({"id": job_id, "metadata": metadata, "result_types": wanted, "values": values})
        self.jobs[job_id] = {"id": job_id, "status": "pending", "metadata": metadata, "results": None, "error": None}
        if not self.hold:
            self._run(job_id, qasm, metadata, wanted, values)
        return job_id

    def _run(self, job_id: str, qasm: str, metadata: dict, wanted: list[str], values: np.ndarray | None) -> None:
        job = self.jobs[job_id]
        empty = {"counts": None, "quasi_dist": None, "expval": None}
        if values is None:
            job["results"] = {**empty, **simulate.run(qasm, metadata, wanted)}
        else:
            names = metadata["sweep"]["parameters"]
            assert values.dtype == np.dtype("<f8") and values.shape[-1] == len(names) >= 1
            rows = values.reshape(-1, len(names))
            common = {key: value for key, value in metadata.items() if key != "sweep"}
            self.items[job_id] = [
                {
                    "index": index,
                    **simulate.run(
                        qasm, {**common, "parameters": dict(zip(names, map(float, row), strict=True))}, wanted
                    ),
                }
                for index, row in enumerate(rows)
            ]
            job["results"] = empty
            job["sweep"] = {"parameters": names, "shape": list(values.shape[:-1]), "bindings": len(rows)}
        job["status"] = "finished"

    def job(self, job_id: str) -> dict[str, Any]:
        if job_id not in self.jobs:
            raise JobNotFound("GET", f"/api/v1/job/{job_id}", 404, "no such job")
        return dict(self.jobs[job_id])

    def wait(self, job_id: str, timeout: float = 600.0) -> dict[str, Any]:
        job = self.job(job_id)
        if job["status"] not in ("finished", "failed", "canceled"):
            raise WaitTimeout(job, timeout)
        return job

    def _answer(self, request: httpx.Request) -> httpx.Response:
        items = re.fullmatch(r"/api/v1/job/([^/]+)/items", request.url.path)
        cancel = re.fullmatch(r"/api/v1/job/cancel/([^/]+)", request.url.path)
        if request.method == "GET" and items:
            job_id = items.group(1)
            if job_id not in self.items:
                return httpx.Response(404, json={"detail": "not a sweep"})
            offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
            if offset < 0 or not 1 <= limit <= 10_000:
                return httpx.Response(400, json={"detail": "bad page"})
            self.pages.append((offset, limit))
            listed = self.items[job_id]
            page = listed[offset : offset + limit]
            body = {"job_id": job_id, "bindings": len(listed), "offset": offset, "limit": limit, "items": page}
            return httpx.Response(200, json=body)
        if request.method == "PUT" and cancel:
            job = self.jobs.get(cancel.group(1))
            if job is None:
                return httpx.Response(404, json={"detail": "no such job"})
            if job["status"] in ("finished", "failed", "canceled"):
                return httpx.Response(409, json={"detail": f"job is {job['status']}"})
            job["status"] = "canceled"
            return httpx.Response(200, json=job)
        return httpx.Response(405)


def backend_on(client: Any, name: str = "aer") -> Any:
    """``client.backend(name)`` (a QServerBackend) where the client has it, else a stand-in
    with the two attributes the primitives use."""
    if hasattr(client, "backend"):
        return client.backend(name)
    return SimpleNamespace(client=client, name=name)


@pytest.fixture(params=["local", pytest.param("stack", marks=pytest.mark.stack)])
def backend(request):
    """The service the primitives run on: in this process, or the real stack."""
    if request.param == "local":
        return backend_on(LocalService())
    return backend_on(request.getfixturevalue("stack"))


# --- circuits and expectations ---------------------------------------------------------------


def rotations() -> QuantumCircuit:
    """Two qubits, one parameter with a name OpenQASM cannot keep (θ), measured into one register."""
    theta = Parameter("θ")
    circuit = QuantumCircuit(2, 2)
    circuit.ry(theta, 0)
    circuit.cx(0, 1)
    circuit.rx(theta / 2, 1)
    circuit.measure([0, 1], [0, 1])
    return circuit


def three_registers() -> QuantumCircuit:
    """Three qubits, a ParameterVector of 2, measured into registers a (1 bit) and b (2 bits)."""
    x = ParameterVector("x", 2)
    a, b = ClassicalRegister(1, "a"), ClassicalRegister(2, "b")
    circuit = QuantumCircuit(QuantumRegister(3, "q"), a, b)
    circuit.ry(x[0], 0)
    circuit.h(1)
    circuit.cx(0, 2)
    circuit.rz(x[1], 1)
    circuit.h(1)
    circuit.measure(0, a[0])
    circuit.measure([1, 2], [b[0], b[1]])
    return circuit


def unmeasured(circuit: QuantumCircuit) -> QuantumCircuit:
    return circuit.remove_final_measurements(inplace=False)


def probabilities(circuit: QuantumCircuit) -> dict[str, float]:
    """Exact joint outcome probabilities of a bound circuit whose measurements are final, keyed
    as the service counts them without spaces (clbit 0 rightmost)."""
    measured = {
        circuit.find_bit(i.clbits[0]).index: circuit.find_bit(i.qubits[0]).index
        for i in circuit.data
        if i.operation.name == "measure"
    }
    qubits = [measured[clbit] for clbit in range(circuit.num_clbits)]
    return Statevector(unmeasured(circuit)).probabilities_dict(qargs=qubits)


def joint_counts(pub_result, circuit: QuantumCircuit, index: tuple[int, ...]) -> Counter:
    """Per-shot joint outcomes at one binding, read register by register (clbit 0 rightmost)."""
    strings = [pub_result.data[register.name].get_bitstrings(index) for register in circuit.cregs]
    return Counter("".join(reversed(parts)) for parts in zip(*strings, strict=True))


def assert_sampled(counts: Counter, expected: dict[str, float], shots: int) -> None:
    """Each outcome within 5 standard deviations (+1) of shots * p; impossible ones never."""
    assert sum(counts.values()) == shots
    for outcome in set(counts) | set(expected):
        p, seen = expected.get(outcome, 0.0), counts.get(outcome, 0)
        if p < 1e-12:
            assert seen == 0, (outcome, seen)
        else:
            assert abs(seen - shots * p) <= 5 * math.sqrt(shots * p * (1 - p)) + 1, (outcome, seen, shots * p)


def check_sampler_pub(
    ours, aers, circuit: QuantumCircuit, values: np.ndarray, shots: int, aer_samples: bool = True
) -> None:
    """Same registers, shapes, bits and shots as Aer; ours (and Aer's, ``aer_samples``) sample
    the exact distribution at every binding."""
    shape = values.shape[:-1]
    assert ours.data.shape == aers.data.shape == shape
    assert list(ours.data) == list(aers.data) == [register.name for register in circuit.cregs]
    for register in circuit.cregs:
        mine, theirs = ours.data[register.name], aers.data[register.name]
        assert (mine.shape, mine.num_bits, mine.num_shots) == (theirs.shape, theirs.num_bits, theirs.num_shots)
        assert mine.num_shots == shots and mine.array.shape == theirs.array.shape
    assert ours.metadata["shots"] == aers.metadata["shots"] == shots
    assert ours.metadata["circuit_metadata"] == aers.metadata["circuit_metadata"]
    for index in np.ndindex(*shape):
        bound = circuit.assign_parameters(values[index]) if circuit.num_parameters else circuit
        expected = probabilities(bound)
        assert_sampled(joint_counts(ours, circuit, index), expected, shots)
        if aer_samples:
            assert_sampled(joint_counts(aers, circuit, index), expected, shots)


# --- no service: wire, export, paging, building results ----------------------------------------


def test_bindings_travel_as_one_npy_file_in_pieces_of_1_mib_at_most():
    values = np.random.default_rng(1).normal(size=(300, 500, 2))
    pieces = [message.bindingsChunk for message in wire.bindings_chunks(values)]
    assert [len(piece) for piece in pieces[:-1]] == [wire.BINDINGS_CHUNK_BYTES] * (len(pieces) - 1) and len(pieces) == 3
    loaded = np.load(io.BytesIO(b"".join(pieces)), allow_pickle=False)
    assert loaded.dtype == np.dtype("<f8") and loaded.shape == (300, 500, 2) and np.array_equal(loaded, values)
    one = np.load(io.BytesIO(b"".join(m.bindingsChunk for m in wire.bindings_chunks([0.5, 1]))), allow_pickle=False)
    assert one.shape == (2,) and one.tolist() == [0.5, 1.0]  # shape (): one binding
    for bad in (3.0, np.zeros((4, 0)), np.zeros((0, 2)), [[1.0, np.nan]], [np.inf]):
        with pytest.raises(ValueError):
            wire.bindings_chunks(bad)  # refused at the call, not inside gRPC's sending thread


def test_export_renames_parameters_in_circuit_order_and_the_server_binds_them():
    x = ParameterVector("x", 3)
    circuit = QuantumCircuit(2)
    circuit.ry(Parameter("θ"), 0)
    circuit.rx(x[2] - x[0], 1)
    circuit.crz(x[1] * 2, 0, 1)
    circuit.rz(Parameter("a"), 1)
    exported = export_circuit(circuit)
    assert exported.parameters == tuple(circuit.parameters) and exported.names == ("p0", "p1", "p2", "p3", "p4")
    loaded = load_circuit(exported.qasm)  # the server's loader
    assert sorted(parameter.name for parameter in loaded.parameters) == ["p0", "p1", "p2", "p3", "p4"]
    values = [0.3, -1.1, 0.7, 2.5, -0.4]
    ours = loaded.assign_parameters({p: values[int(p.name[1:])] for p in loaded.parameters})
    theirs = circuit.assign_parameters(dict(zip(circuit.parameters, values, strict=True)))
    assert Statevector(ours).equiv(Statevector(theirs))
    taken = QuantumCircuit(QuantumRegister(1, "q"), ClassicalRegister(1, "p0"))
    taken.rx(Parameter("t"), 0)
    assert export_circuit(taken).names == ("_p0",)
    assert export_circuit(QuantumCircuit(1)).names == ()


def test_submit_sweep_sends_properties_program_and_bindings():
    service = LocalService(hold=True)
    values = np.arange(12.0).reshape(2, 3, 2)
    job_id = submit_sweep(service, "OPENQASM 3.0;", ["p0", "p1"], values, shots=10, seed=3, metadata={"tags": ["x"]})
    (sent,) = service.submissions
    assert sent["id"] == job_id and sent["result_types"] == ["counts"]
    assert sent["metadata"] == {"tags": ["x"], "sweep": {"parameters": ["p0", "p1"]}, "shots": 10, "seed": 3}
    assert np.array_equal(sent["values"], values)
    with pytest.raises(ValueError, match="at least one parameter"):
        submit_sweep(service, "", [], np.zeros((3, 0)))
    with pytest.raises(ValueError, match="2 parameters"):
        submit_sweep(service, "", ["a", "b"], np.zeros((3, 3)))
    with pytest.raises(ValueError, match="'parameters'"):
        submit_sweep(service, "", ["a"], [1.0], metadata={"parameters": {"a": 1}})
    assert len(service.submissions) == 1


def test_sweep_items_reads_every_page_in_order():
    service = LocalService()
    service.items["j"] = [{"index": index, "counts": {"0": 1}} for index in range(25)]
    items = sweep_items(service, "j", page=10)
    assert [item["index"] for item in items] == list(range(25)) and service.pages == [(0, 10), (10, 10), (20, 10)]
    with pytest.raises(JobNotFound):
        sweep_items(service, "missing")
    with pytest.raises(ValueError):
        sweep_items(service, "j", page=10_001)


def test_sampler_result_keeps_registers_jointly_consistent():
    circuit = three_registers()  # registers a (1 bit) then b (2 bits): keys "b a"
    counts = [{"10 1": 30, "01 0": 60, "11 1": 10}, {"00 0": 100}, {"10 0": 50, "01 1": 50}] * 2
    registers = [("a", 1), ("b", 2)]
    result = sampler_pub_result(counts, (2, 3), 100, registers, np.random.default_rng(5), {"shots": 100})
    assert result.data.shape == (2, 3) and result.data.a.num_bits == 1 and result.data.b.num_bits == 2
    for flat, index in enumerate(np.ndindex(2, 3)):
        expected = Counter({key.replace(" ", ""): value for key, value in counts[flat].items()})
        assert joint_counts(result, circuit, index) == expected
        marginal = Counter()
        for key, value in counts[flat].items():
            marginal[key[-1]] += value
        assert result.data.a.get_counts(index) == dict(marginal)
    shared = sampler_pub_result(
        [{"10 1": 150, "00 0": 250}], (4,), 100, registers, np.random.default_rng(5), {}, shared=True
    )
    dealt = sum((joint_counts(shared, circuit, (index,)) for index in range(4)), Counter())
    assert dealt == Counter({"101": 150, "000": 250}) and shared.data.b.num_shots == 100


def test_estimator_broadcasts_distinct_observables_against_bindings():
    circuit = QuantumCircuit(2)
    circuit.ry(Parameter("t"), 0)
    observables = [["ZZ"], [SparsePauliOp(["XI", "ZZ"], [0.5, -2.0])], ["ZZ"]]  # shape (3, 1)
    pub = EstimatorPub.coerce((circuit, observables, np.linspace(0, 1, 4)))
    obs, index = distinct_observables(pub)
    assert obs == [[["ZZ", 1.0]], [["XI", 0.5], ["ZZ", -2.0]]] and index.tolist() == [[0], [1], [0]]
    values = np.arange(8.0).reshape(4, 2)  # [binding, distinct observable]
    evs = broadcast_values(values, (4,), index, per_binding=True)
    assert evs.shape == (3, 4) and evs.tolist() == [[0, 2, 4, 6], [1, 3, 5, 7], [0, 2, 4, 6]]
    assert broadcast_values(values[:1], (4,), index, per_binding=False).tolist() == [[0] * 4, [1] * 4, [0] * 4]


# --- end to end, local and on the stack ---------------------------------------------------------


def test_sampler_matches_aer_for_every_pub_shape(backend):
    theta = np.linspace(0.1, 3.0, 5)
    grid = np.random.default_rng(7).uniform(-3, 3, size=(2, 3, 2))
    bell = QuantumCircuit(2, 2, metadata={"name": "bell"})
    bell.h(0)
    bell.cx(0, 1)
    bell.measure([0, 1], [0, 1])
    pubs = [
        (rotations(), [0.8]),  # scalar: a sweep of shape ()
        (rotations(), theta[:, None]),  # 1-D
        (three_registers(), grid),  # 2-D, two registers
        (bell,),  # no parameters: a plain job
        (three_registers(), grid[0], 500),  # the PUB's own shots
    ]
    job = QServerSamplerV2(backend, default_shots=SHOTS, seed=11).run(pubs)
    result = job.result(timeout=300)
    aer = AerSamplerV2(default_shots=SHOTS, seed=11).run(pubs).result()
    assert len(result) == len(pubs) and result.metadata == {"version": 2}
    for pub, ours, aers in zip(pubs, result, aer, strict=True):
        values = np.asarray(pub[1], dtype=float) if len(pub) > 1 else np.zeros(0)
        check_sampler_pub(ours, aers, pub[0], values, pub[2] if len(pub) > 2 else SHOTS)
    assert job.done() and job.in_final_state() and job.status() == JobStatus.DONE
    assert all(job_id is not None for job_id in job.job_ids)


def test_sampler_without_parameters_deals_one_run_over_the_bindings(backend):
    bell = QuantumCircuit(2, 2)
    bell.h(0)
    bell.cx(0, 1)
    bell.measure([0, 1], [0, 1])
    pub = (bell, np.zeros((3, 0)), 400)  # three bindings of no parameters
    (ours,) = QServerSamplerV2(backend).run([pub]).result(timeout=120)
    (aers,) = AerSamplerV2().run([pub]).result()
    # Aer 0.18.2 runs such a PUB once and leaves the other bindings' shots all zero ("00")
    check_sampler_pub(ours, aers, bell, np.zeros((3, 0)), 400, aer_samples=False)


def test_sampler_of_a_circuit_that_measures_nothing_is_zeros_without_a_job(backend):
    circuit = QuantumCircuit(1, 1)
    circuit.x(0)
    with pytest.warns(UserWarning):
        QServerSamplerV2(backend).run([QuantumCircuit(1)])
    job = QServerSamplerV2(backend).run([circuit], shots=7)
    (ours,) = job.result()
    (aers,) = AerSamplerV2().run([circuit], shots=7).result()
    assert job.job_ids == [None] and ours.data.c.get_counts() == aers.data.c.get_counts() == {"0": 7}


def test_estimator_matches_aer_and_statevector_exactly(backend):
    x = ParameterVector("x", 2)
    circuit = QuantumCircuit(3, metadata={"ansatz": 1})
    circuit.ry(x[0], 0)
    circuit.cx(0, 1)
    circuit.rx(x[1], 2)
    circuit.cz(1, 2)
    circuit.ry(x[0] - x[1], 1)
    hamiltonian = SparsePauliOp(["ZZI", "IXX", "YIY", "III"], [0.7, -1.3, 0.25, 0.1])
    points = np.random.default_rng(3).uniform(-np.pi, np.pi, size=(4, 2))
    grid = points.reshape(2, 2, 2)
    fixed = QuantumCircuit(3)
    fixed.h([0, 1, 2])
    fixed.cx(0, 2)
    pubs = [
        (circuit, hamiltonian, points[0]),  # scalar
        (circuit, [hamiltonian, "XXZ", "ZZZ"], points[:3]),  # 1-D against 1-D
        (circuit, hamiltonian, grid),  # 2-D
        (circuit, [[hamiltonian], ["XYZ"], ["IIZ"]], points),  # (3, 1) observables x (4,) bindings
        (fixed, ["XIX", "ZZZ", "XXX"]),  # no parameters: a plain job
    ]
    result = QServerEstimatorV2(backend).run(pubs).result(timeout=300)
    aer = AerEstimatorV2().run(pubs).result()
    for pub, ours, aers in zip(pubs, result, aer, strict=True):
        coerced = EstimatorPub.coerce(pub, 0.0)
        assert ours.data.shape == aers.data.shape == ours.data.evs.shape == coerced.shape
        np.testing.assert_allclose(ours.data.evs, aers.data.evs, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(ours.data.stds, np.zeros(coerced.shape))
        assert ours.metadata["target_precision"] == 0.0 and ours.metadata["circuit_metadata"] == pub[0].metadata
        bindings, observables = np.broadcast_arrays(
            np.arange(coerced.parameter_values.size).reshape(coerced.parameter_values.shape), coerced.observables
        )
        flat_values = coerced.parameter_values.as_array(pub[0].parameters).reshape(coerced.parameter_values.size, -1)
        for index in np.ndindex(*coerced.shape):
            bound = pub[0].assign_parameters(flat_values[bindings[index]]) if pub[0].num_parameters else pub[0]
            operator = SparsePauliOp.from_list(list(observables[index].items()))
            assert abs(ours.data.evs[index] - Statevector(bound).expectation_value(operator).real) <= 1e-9


def test_estimator_precision_adds_aers_noise_with_the_seed(backend):
    circuit = QuantumCircuit(2)
    circuit.ry(Parameter("t"), 0)
    circuit.cx(0, 1)
    pubs = [(circuit, ["ZZ", "XX"], np.linspace(0, 2, 6)[:, None, None])]  # (6, 1) x (2,) -> (6, 2)
    (ours,) = QServerEstimatorV2(backend, default_precision=0.05, seed=42).run(pubs).result(timeout=120)
    options = {"default_precision": 0.05, "run_options": {"seed_simulator": 42}}
    (aers,) = AerEstimatorV2(options=options).run(pubs).result()
    assert ours.data.evs.shape == (6, 2) and ours.metadata["target_precision"] == 0.05
    np.testing.assert_allclose(ours.data.evs, aers.data.evs, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(ours.data.stds, aers.data.stds)


def test_a_refused_pub_cancels_the_jobs_already_sent():
    service = LocalService(hold=True)
    sent = []

    def submit_once(messages):
        if sent:
            raise SubmitError(grpc.StatusCode.INVALID_ARGUMENT, "refused")
        sent.append(LocalService.submit_messages(service, messages))
        return sent[-1]

    service.submit_messages = submit_once
    with pytest.raises(SubmitError):
        QServerSamplerV2(backend_on(service)).run([(rotations(), [0.1]), (rotations(), [0.2])])
    assert service.jobs[sent[0]]["status"] == "canceled"
    with pytest.raises(ValueError):  # 3 values for 2 parameters: refused while coercing, nothing sent
        QServerSamplerV2(backend_on(service)).run([(three_registers(), [0.1, 0.2, 0.3])])
    assert len(service.jobs) == 1


def test_cancel_local():
    service = LocalService(hold=True)
    job = QServerSamplerV2(backend_on(service)).run([(rotations(), np.linspace(0, 1, 50)[:, None])])
    assert job.status() == JobStatus.QUEUED and not job.in_final_state()
    assert job.cancel() is True and job.cancelled() and job.in_final_state()
    assert job.cancel() is False
    with pytest.raises(JobFailed, match="canceled"):
        job.result(timeout=5)


def test_cancel_on_the_stack(stack):
    """A sweep far too long to end before the cancel: canceled, and result() says so."""
    n = 16
    t = ParameterVector("t", 2)
    circuit = QuantumCircuit(n)
    for layer in range(6):
        circuit.ry(t[layer % 2], range(n))
        for qubit in range(n - 1):
            circuit.cx(qubit, qubit + 1)
    circuit.measure_all()
    values = np.random.default_rng(0).uniform(0, np.pi, size=(2000, 2))
    job = QServerSamplerV2(backend_on(stack)).run([(circuit, values, 1000)])
    assert job.cancel() is True
    with pytest.raises(JobFailed) as failed:
        job.result(timeout=60)
    assert failed.value.job["status"] == "canceled"
    assert job.cancelled() and job.in_final_state() and not job.done() and job.cancel() is False


def test_the_example_samples_and_draws_the_energy_curve(backend, capsys):
    spec = importlib.util.spec_from_file_location("qiskit_sweep", ROOT / "examples" / "qiskit_sweep.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    thetas, p01, energies = example.main(backend)
    shots, exact = example.SHOTS, np.sin(thetas / 2) ** 2
    assert np.all(np.abs(p01 - exact) * shots <= 5 * np.sqrt(shots * exact * (1 - exact)) + 1)
    circuit = example.ansatz(measured=False)
    for theta, energy in zip(thetas, energies, strict=True):
        state = Statevector(circuit.assign_parameters([theta]))
        assert abs(energy - state.expectation_value(example.HAMILTONIAN).real) <= 1e-9
    assert "lowest energy" in capsys.readouterr().out
