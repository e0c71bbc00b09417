"""Sweeps through the whole stack: one job runs a program for many parameter bindings, its
results paged per binding; refusals of bad sweeps at submission. Checked against
qiskit.quantum_info.Statevector."""

from __future__ import annotations

import io
import time

import grpc
import numpy as np
import pytest
from qiskit import QuantumCircuit, qasm3
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp, Statevector

from protos.generated import jobs_pb2
from tests.circuits import BELL
from tests.client import chunks, properties
from tests.conftest import count_jobs

THETA, PHI = Parameter("theta"), Parameter("phi")


def circuit(measure: bool = True) -> QuantumCircuit:
    qc = QuantumCircuit(2)
    qc.ry(THETA, 0)
    qc.cx(0, 1)
    qc.rz(PHI, 1)
    qc.h(1)
    if measure:
        qc.measure_all()
    return qc


def bound(values) -> QuantumCircuit:
    """The circuit without measurements, theta and phi bound to ``values`` (in that order:
    the sweep's, not Qiskit's sorted parameter order)."""
    return circuit(measure=False).assign_parameters({THETA: values[0], PHI: values[1]})


def npy(values) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values, dtype=float), allow_pickle=False)
    return buffer.getvalue()


def sweep_messages(qasm: str, values, metadata: dict | None = None, *, piece: int = 1 << 20, **types):
    """properties (metadata.sweep naming theta, phi), the program, the bindings in pieces."""
    metadata = {"sweep": {"parameters": ["theta", "phi"]}, **(metadata or {})}
    data = npy(values)
    return [
        properties(metadata=metadata, **types),
        *chunks(qasm),
        *(jobs_pb2.JobData(bindingsChunk=data[i : i + piece]) for i in range(0, len(data), piece)),
    ]


def items(stack, job_id: str, *, limit: int = 1000) -> list[dict]:
    """Every item, page by page."""
    found, offset = [], 0
    while True:
        page = stack.http.get(f"/api/v1/job/{job_id}/items", params={"offset": offset, "limit": limit})
        assert page.status_code == 200, page.text
        body = page.json()
        found += body["items"]
        if offset + limit >= body["bindings"]:
            return found
        offset += limit


def assert_counts_follow(counts: dict[str, int], values, shots: int) -> None:
    exact = Statevector(bound(values)).probabilities_dict()
    assert sum(counts.values()) == shots
    for key in set(exact) | set(counts):
        p, count = exact.get(key, 0.0), counts.get(key, 0)
        if p < 1e-12:
            assert count == 0, (key, values)
        else:  # 5 sigma of the binomial
            assert abs(count - shots * p) <= 5 * np.sqrt(shots * p * (1 - p)) + 1, (key, count, p)


def test_a_2d_sweep_is_one_job_with_one_item_per_binding(stack):
    values = np.stack(np.meshgrid(np.linspace(0, np.pi, 6), np.linspace(-1, 1, 5), indexing="ij"), axis=-1)
    job_id = stack.add_job_stream(sweep_messages(qasm3.dumps(circuit()), values, {"shots": 2000}, counts=True))
    job = stack.wait(job_id)
    assert job["status"] == "finished", job["error"]
    assert job["attempts"] == 1
    assert job["sweep"] == {
        "parameters": ["theta", "phi"],
        "shape": [6, 5],
        "bindings": 30,
        "done": 30,
        "items": f"/api/v1/job/{job_id}/items",
    }
    assert job["results"] == {"counts": None, "quasi_dist": None, "expval": None}
    result = stack.result_response(job_id).json()
    assert result["sweep"]["bindings"] == 30 and result["counts"] is None
    found = items(stack, job_id, limit=7)  # pages of 7: offsets across the chunk
    assert [item["index"] for item in found] == list(range(30))
    for item, point in zip(found, values.reshape(30, 2), strict=True):
        assert_counts_follow(item["counts"], point, 2000)
    page = stack.http.get(f"/api/v1/job/{job_id}/items", params={"offset": 28, "limit": 10}).json()
    assert [item["index"] for item in page["items"]] == [28, 29] and page["shape"] == [6, 5]


def test_expectation_values_of_a_sweep_are_exact(stack):
    values = np.random.default_rng(5).uniform(-np.pi, np.pi, size=(25, 2))
    observables = [[["ZZ", 1.0], ["XI", 0.5]], [["IY", -1.5]]]
    messages = sweep_messages(qasm3.dumps(circuit(measure=False)), values, {"obs": observables}, expval=True)
    job = stack.wait(stack.add_job_stream(messages))
    assert job["status"] == "finished", job["error"]
    for item, point in zip(items(stack, job["id"]), values, strict=True):
        state = Statevector(bound(point))
        exact = [state.expectation_value(SparsePauliOp.from_list(terms)).real for terms in observables]
        assert item["expval"] == pytest.approx(exact, abs=1e-9)
        assert set(item) == {"index", "expval"}


def test_bindings_arrive_in_many_pieces_and_a_seeded_sweep_is_reproducible(stack):
    values = np.random.default_rng(9).uniform(0, 3, size=(3000, 2))
    qasm = qasm3.dumps(circuit())
    runs = []
    for _ in range(2):
        messages = sweep_messages(qasm, values, {"shots": 50, "seed": 42}, piece=4096, counts=True)
        job = stack.wait(stack.add_job_stream(messages), timeout=300)
        assert job["status"] == "finished", job["error"]
        runs.append([item["counts"] for item in items(stack, job["id"])])
    assert len(runs[0]) == 3000
    assert runs[0] == runs[1]


def test_history_keeps_a_summary_and_delete_removes_the_items(stack, db):
    job_id = stack.add_job_stream(sweep_messages(qasm3.dumps(circuit()), [[0.1, 0.2], [0.3, 0.4]], counts=True))
    assert stack.wait(job_id)["status"] == "finished"
    assert db.execute("SELECT count(*) FROM sweep_items WHERE job_id = %s", (job_id,)).fetchone()[0] == 1
    assert stack.http.delete(f"/api/v1/job/{job_id}").status_code == 200
    assert db.execute("SELECT count(*) FROM sweep_items WHERE job_id = %s", (job_id,)).fetchone()[0] == 0
    cursor, rows = 0, []
    while page := stack.http.get("/api/v1/history", params={"cursor": cursor}).json():
        rows += [row for row in page if row["job_id"] == job_id]
        cursor = page[-1]["pointer"]
    assert [row["sweep"]["bindings"] for row in rows] == [2]
    assert rows[0]["results"] == {"counts": None, "quasi_dist": None, "expval": None}


def test_items_of_a_job_that_is_not_a_sweep_or_unknown_are_404(stack):
    job = stack.run(BELL, counts=True)
    assert job["sweep"] is None
    answer = stack.http.get(f"/api/v1/job/{job['id']}/items")
    assert answer.status_code == 404 and "is not a sweep" in answer.json()["detail"]
    assert stack.http.get("/api/v1/job/00000000-0000-4000-8000-000000000000/items").status_code == 404
    assert stack.http.get(f"/api/v1/job/{job['id']}/items", params={"limit": 0}).status_code in (400, 422)


def test_canceling_a_running_sweep_stops_it(stack):
    qc = QuantumCircuit(12)
    for qubit in range(12):
        qc.ry(THETA, qubit)
        qc.rz(PHI, qubit)
    for qubit in range(11):
        qc.cx(qubit, qubit + 1)
    qc.measure_all()
    values = np.random.default_rng(1).uniform(0, 3, size=(20000, 2))
    job_id = stack.add_job_stream(sweep_messages(qasm3.dumps(qc), values, {"shots": 2000}, counts=True))
    deadline = time.monotonic() + 120
    while stack.job(job_id)["sweep"]["done"] == 0:  # the first chunk is in
        assert time.monotonic() < deadline, stack.job(job_id)
        time.sleep(0.2)
    assert stack.http.put(f"/api/v1/job/cancel/{job_id}").status_code == 200
    job = stack.wait(job_id)
    assert job["status"] == "canceled"
    done = job["sweep"]["done"]
    assert 0 < done < 20000
    time.sleep(3)  # nothing more is written once canceled
    assert stack.job(job_id)["sweep"]["done"] == done


@pytest.mark.parametrize(
    ("messages", "code", "message"),
    [
        (
            [properties(counts=True, metadata={"sweep": {"parameters": ["theta", "phi"]}}), *chunks("OPENQASM 3.0;")],
            grpc.StatusCode.INVALID_ARGUMENT,
            "no bindings came",
        ),
        (
            [properties(counts=True), *chunks("OPENQASM 3.0;"), jobs_pb2.JobData(bindingsChunk=npy([[1.0, 2.0]]))],
            grpc.StatusCode.INVALID_ARGUMENT,
            "bindings came without metadata 'sweep'",
        ),
        (
            [jobs_pb2.JobData(bindingsChunk=b"x"), properties(counts=True)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "bindings chunk before the properties",
        ),
        (
            sweep_messages("OPENQASM 3.0;", [[1.0, 2.0, 3.0]], counts=True),
            grpc.StatusCode.INVALID_ARGUMENT,
            "one value per parameter",
        ),
        (
            sweep_messages("OPENQASM 3.0;", [[1.0, float("inf")]], counts=True),
            grpc.StatusCode.INVALID_ARGUMENT,
            "binding 0 holds a value that is not a finite number",
        ),
        (
            [
                properties(counts=True, metadata={"sweep": {"parameters": ["a"]}}),
                *chunks("OPENQASM 3.0;"),
                jobs_pb2.JobData(bindingsChunk=b"\x93NUMPY garbage"),
            ],
            grpc.StatusCode.INVALID_ARGUMENT,
            "not an NPY file",
        ),
    ],
)
def test_bad_sweeps_are_refused_at_submission(stack, db, messages, code, message):
    before = count_jobs(db)
    with pytest.raises(grpc.RpcError) as refused:
        stack.add_job_stream(messages)
    assert refused.value.code() == code
    assert message in refused.value.details()
    assert count_jobs(db) == before


def test_a_sweep_whose_parameters_differ_from_the_program_fails_naming_them(stack):
    messages = sweep_messages(qasm3.dumps(circuit()).replace("phi", "psi"), [[0.1, 0.2]], counts=True)
    job = stack.wait(stack.add_job_stream(messages))
    assert job["status"] == "failed"
    assert "names phi, which the program does not use" in job["error"]


def test_tens_of_mib_of_bindings_pass_nginx_and_grpc(stack):
    """1 000 000 bindings of two parameters: a 16 MB NPY file, over 1 MiB pieces, through nginx;
    stored and summarised at once (the job is canceled: running it is not the point here)."""
    values = np.zeros((1000, 1000, 2))
    messages = sweep_messages(qasm3.dumps(circuit()), values, {"shots": 1}, counts=True)
    job_id = stack.add_job_stream(messages, timeout=120)
    assert stack.http.put(f"/api/v1/job/cancel/{job_id}").status_code == 200
    job = stack.wait(job_id)
    assert job["sweep"]["shape"] == [1000, 1000] and job["sweep"]["bindings"] == 1_000_000
    assert job["status"] == "canceled"


def test_more_bindings_than_the_limit_are_refused(stack, db):
    values = np.zeros((1_000_001, 2))
    before = count_jobs(db)
    with pytest.raises(grpc.RpcError) as refused:
        stack.add_job_stream(sweep_messages(qasm3.dumps(circuit()), values, counts=True), timeout=120)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1000001 bindings; at most 1000000 (QSERVER_MAX_BINDINGS)" in refused.value.details()
    assert count_jobs(db) == before


def test_expectation_values_come_packed_on_request(stack):
    values = np.random.default_rng(6).uniform(-np.pi, np.pi, size=(4, 5, 2))
    observables = [[["ZZ", 1.0]], [["XI", 0.5]], [["IY", -1.5]]]
    messages = sweep_messages(qasm3.dumps(circuit(measure=False)), values, {"obs": observables}, expval=True)
    job = stack.wait(stack.add_job_stream(messages))
    assert job["status"] == "finished", job["error"]
    page = stack.http.get(f"/api/v1/job/{job['id']}/items", params={"offset": 3, "limit": 12, "format": "npy"})
    assert page.status_code == 200 and page.headers["content-type"] == "application/x-npy"
    assert (page.headers["x-items-offset"], page.headers["x-items-count"]) == ("3", "12")
    packed = np.load(io.BytesIO(page.content), allow_pickle=False)
    assert packed.shape == (12, 3) and packed.dtype == np.float64
    listed = [item["expval"] for item in items(stack, job["id"])[3:15]]
    assert packed.tolist() == listed


def test_counts_are_not_packed(stack):
    job = stack.wait(stack.add_job_stream(sweep_messages(qasm3.dumps(circuit()), [[0.1, 0.2]], counts=True)))
    answer = stack.http.get(f"/api/v1/job/{job['id']}/items", params={"format": "npy"})
    assert answer.status_code == 400 and "has no expectation values to pack" in answer.json()["detail"]
    assert stack.http.get(f"/api/v1/job/{job['id']}/items", params={"format": "csv"}).status_code in (400, 422)
