"""QServerBackend (a Qiskit BackendV2) against the real stack: counts checked against exact
probabilities (Statevector), per classical register, seeded runs, transpile, cancel."""

from __future__ import annotations

import math

import grpc
import pytest
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister, transpile
from qiskit.circuit import Parameter
from qiskit.circuit.library import QFTGate
from qiskit.providers import JobStatus
from qiskit.quantum_info import Statevector

from ops import endpoints
from qserver_client import Client, JobFailed, QServerBackend, QServerBackendJob, SubmitError
from qserver_client.backend import DEFAULT_NUM_QUBITS

SHOTS = 4000
SIGMAS = 5  # a correct sampler is outside 5 sigma about once in 1.7 million outcomes


@pytest.fixture(scope="module")
def backend(stack, settings):
    with Client(**endpoints.client_address(settings)) as client:
        yield client.backend("aer")


def bell() -> QuantumCircuit:
    circuit = QuantumCircuit(2, 2, name="bell")
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure([0, 1], [0, 1])
    return circuit


def two_registers() -> QuantumCircuit:
    """q0 rotated (P(1) = sin^2(0.5) ~ 0.23), q1 copies it, q2 a fair coin; q0, q1 -> a, q2 -> b."""
    q, a, b = QuantumRegister(3, "q"), ClassicalRegister(2, "a"), ClassicalRegister(1, "b")
    circuit = QuantumCircuit(q, a, b, name="two_registers")
    circuit.ry(1.0, 0)
    circuit.cx(0, 1)
    circuit.h(2)
    circuit.measure([0, 1, 2], [a[0], a[1], b[0]])
    return circuit


def expected(circuit: QuantumCircuit) -> dict[str, float]:
    """Exact probabilities of the circuit's counts keys; it measures qubit i into clbit i, last."""
    probabilities = Statevector(circuit.remove_final_measurements(inplace=False)).probabilities_dict()
    sizes = [register.size for register in circuit.cregs]
    return {_register_key(bits, sizes): p for bits, p in probabilities.items()}


def _register_key(bits: str, sizes: list[int]) -> str:
    """A bitstring (clbit 0 rightmost) as Qiskit's counts key: one group per register, the first
    register rightmost."""
    groups, end = [], len(bits)
    for size in sizes:
        groups.append(bits[end - size : end])
        end -= size
    return " ".join(reversed(groups))


def assert_sampled(counts: dict[str, int], probabilities: dict[str, float], shots: int) -> None:
    """Each outcome within SIGMAS binomial standard deviations of shots * p; an impossible
    outcome never seen."""
    possible = {key for key, p in probabilities.items() if p > 1e-12}
    assert set(counts) <= possible, counts
    assert sum(counts.values()) == shots
    for key in possible:
        p = probabilities[key]
        sigma = math.sqrt(shots * p * (1 - p))
        assert abs(counts.get(key, 0) - shots * p) <= SIGMAS * sigma + 1e-9, (key, counts, p)


def test_backend_is_a_permissive_backend_v2(backend):
    assert isinstance(backend, QServerBackend) and backend.name == "aer"
    assert backend.num_qubits == DEFAULT_NUM_QUBITS and backend.max_circuits is None
    assert {"h", "cx", "rzz", "measure", "reset", "delay", "if_else", "for_loop"} <= set(backend.operation_names)
    assert backend.options.shots == 1024 and backend.options.seed_simulator is None
    bigger = backend.client.backend("aer", num_qubits=40)
    assert bigger.num_qubits == 40 and bigger.target.num_qubits == 40


def test_bell_counts_match_the_statevector(backend):
    circuit = bell()
    job = backend.run(circuit, shots=SHOTS)
    assert isinstance(job, QServerBackendJob) and job.job_ids == [job.job_id()]
    result = job.result(timeout=120)
    assert result.success and result.backend_name == "aer"
    assert_sampled(result.get_counts(circuit), {"00": 0.5, "11": 0.5, "01": 0.0, "10": 0.0}, SHOTS)
    assert job.status() is JobStatus.DONE and job.done()


def test_two_registers_are_keyed_per_register(backend):
    circuit = two_registers()
    counts = backend.run(circuit, shots=SHOTS).result().get_counts(circuit)
    probabilities = expected(circuit)
    # b a: a is q1 q0 (equal), b the coin; the outcomes with a = 01 or 10 never happen
    assert set(probabilities) == {"0 00", "0 11", "1 00", "1 11"}
    assert probabilities["1 11"] == pytest.approx(math.sin(0.5) ** 2 / 2)
    assert_sampled(counts, probabilities, SHOTS)


def test_several_circuits_in_one_run(backend):
    circuits = [bell(), two_registers()]
    job = backend.run(circuits, shots=SHOTS)
    assert len(job.job_ids) == 2 and job.job_id() == ",".join(job.job_ids)
    result = job.result()
    for circuit in circuits:
        assert_sampled(result.get_counts(circuit), expected(circuit), SHOTS)
    assert [result.get_counts(i) for i in range(2)] == [result.get_counts(c) for c in circuits]


def test_a_seed_reproduces_the_counts(backend):
    circuit = two_registers()
    first = backend.run(circuit, shots=1000, seed_simulator=1234).result()
    second = backend.run(circuit, shots=1000, seed_simulator=1234).result()
    assert first.get_counts(circuit) == second.get_counts(circuit)
    assert first.results[0].seed_simulator == 1234
    backend.set_options(seed_simulator=1234, shots=1000)
    try:
        assert backend.run(circuit).result().get_counts(circuit) == first.get_counts(circuit)
    finally:
        backend.set_options(seed_simulator=None, shots=1024)


def test_transpile_to_the_backend_then_run(backend):
    inner = QuantumCircuit(2, name="entangle")
    inner.h(0)
    inner.crx(0.7, 0, 1)
    circuit = QuantumCircuit(3, name="transpiled")
    circuit.append(QFTGate(3), [0, 1, 2])
    circuit.append(inner.to_gate(), [1, 2])
    circuit.rzz(0.3, 0, 2)
    circuit.measure_all()
    compiled = transpile(circuit, backend, optimization_level=1, seed_transpiler=5)
    names = {instruction.operation.name for instruction in compiled.data}
    assert names <= set(backend.operation_names) | {"barrier"} and "QFT" not in names
    counts = backend.run(compiled, shots=SHOTS).result().get_counts(compiled)
    assert_sampled(counts, expected(circuit), SHOTS)


def slow() -> QuantumCircuit:
    """Seconds of extended-stabilizer simulation at 2000 shots."""
    circuit = QuantumCircuit(3, 3, name="slow")
    for _ in range(2):
        circuit.h(range(3))
        circuit.t(range(3))
    circuit.h(range(3))
    circuit.measure(range(3), range(3))
    return circuit


def test_cancel_and_a_failed_job(backend):
    job = backend.run(slow(), shots=2000, method="extended_stabilizer")
    assert job.status() in (JobStatus.QUEUED, JobStatus.RUNNING)
    job.cancel()
    assert job.status() is JobStatus.CANCELLED and job.cancelled()
    job.cancel()  # ended already: nothing to do
    with pytest.raises(JobFailed) as canceled:
        job.result()
    assert canceled.value.job["status"] == "canceled"
    failing = backend.run(slow(), shots=2000, method="extended_stabilizer", timeout_s=1)
    with pytest.raises(JobFailed) as failed:
        failing.result(timeout=60)
    assert failed.value.job["error"] == "timed out after 1 s"
    assert failing.status() is JobStatus.ERROR


def test_what_the_server_refuses_is_a_submit_error(backend):
    with pytest.raises(SubmitError) as refused:
        backend.run(bell(), method="no_such_method")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "no_such_method" in refused.value.details()


def test_what_run_refuses(backend):
    with pytest.raises(ValueError, match="memory"):
        backend.run(bell(), memory=True)
    with pytest.raises(ValueError, match="no classical bits"):
        backend.run(QuantumCircuit(1))
    theta = QuantumCircuit(1, 1)
    theta.rx(Parameter("theta"), 0)
    theta.measure(0, 0)
    with pytest.raises(ValueError, match="theta"):
        backend.run(theta)


def test_a_refused_circuit_cancels_those_submitted_before_it(backend, monkeypatch):
    submitted: list[str] = []
    real_submit = backend.client.submit

    def submit_once(qasm, **options):
        if submitted:
            raise SubmitError(grpc.StatusCode.UNAVAILABLE, "the second is refused")
        submitted.append(real_submit(qasm, **options))
        return submitted[-1]

    monkeypatch.setattr(backend.client, "submit", submit_once)
    with pytest.raises(SubmitError):
        backend.run([slow(), slow()], shots=2000, method="extended_stabilizer")
    assert len(submitted) == 1
    assert backend.client.wait(submitted[0], timeout=30)["status"] == "canceled"
