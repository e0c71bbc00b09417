"""A parameter sweep and an energy curve on a QServer, with Qiskit's own primitives.

    qserver up                        # a local stack (or point QSERVER_URL / QSERVER_GRPC at one)
    pip install ./client              # qserver-client, with Qiskit
    python examples/qiskit_sweep.py

Code written for ``qiskit_aer.primitives.SamplerV2`` / ``EstimatorV2`` runs on the cluster by
changing the constructor. Each PUB is one job however many parameter values it has: the
circuit travels once, its bindings beside it.
"""

from __future__ import annotations

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp

from qserver_client import Client, QServerEstimatorV2, QServerSamplerV2

POINTS = 200
SHOTS = 1000
# A two-qubit Hamiltonian (H2 at 0.735 A in a reduced two-qubit encoding): qubit 0 rightmost
HAMILTONIAN = SparsePauliOp.from_list(
    [("II", -1.0524), ("IZ", 0.3979), ("ZI", -0.3979), ("ZZ", -0.0113), ("XX", 0.1809)]
)


def ansatz(measured: bool) -> QuantumCircuit:
    """One parameter θ: cos(θ/2)|10> + sin(θ/2)|01> (qubit 0 rightmost)."""
    theta = Parameter("θ")
    circuit = QuantumCircuit(2)
    circuit.x(1)
    circuit.ry(theta, 0)
    circuit.cx(0, 1)
    if measured:
        circuit.measure_all()
    return circuit


def main(backend) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sweep θ with the sampler and the estimator; returns (θ, P(outcome 01), energies)."""
    thetas = np.linspace(-np.pi, np.pi, POINTS)

    sampler = QServerSamplerV2(backend, default_shots=SHOTS, seed=7)
    job = sampler.run([(ansatz(measured=True), thetas[:, None])])  # one job for all the points
    bits = job.result()[0].data.meas  # a BitArray of shape (POINTS,), SHOTS shots each
    p01 = np.array([bits.get_counts(i).get("01", 0) for i in range(POINTS)]) / SHOTS

    estimator = QServerEstimatorV2(backend)  # precision 0: exact expectation values
    energies = estimator.run([(ansatz(measured=False), HAMILTONIAN, thetas[:, None])]).result()[0].data.evs

    print(f"{'θ':>7} {'P(01)':>6} {'energy':>9}")
    for index in range(0, POINTS, POINTS // 10):
        print(f"{thetas[index]:7.3f} {p01[index]:6.3f} {energies[index]:9.5f}")
    best = int(np.argmin(energies))
    print(f"lowest energy {energies[best]:.5f} Ha at θ = {thetas[best]:.3f} ({POINTS} points, two jobs)")
    return thetas, p01, energies


if __name__ == "__main__":
    with Client() as client:  # QSERVER_URL, QSERVER_GRPC, QSERVER_API_KEY, else the local stack
        main(client.backend("aer"))
