"""The client as a user installs it: ``pip install ./client`` into an environment of its own
(no server package, no Aer), then the README's Qiskit example run against the real stack."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qiskit.quantum_info import Statevector

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "qiskit_sweep.py"


@pytest.fixture(scope="module")
def client_python(tmp_path_factory) -> Path:
    """python of a new venv with only ``pip install ./client`` (from pip's cache when warm)."""
    home = tmp_path_factory.mktemp("client-venv")
    subprocess.run([sys.executable, "-m", "venv", str(home)], check=True, timeout=120)
    subprocess.run(
        [str(home / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(ROOT / "client")],
        check=True,
        timeout=900,
    )
    return home / "bin" / "python"


def run(python: Path, args: list[str], cwd: Path, settings) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(cwd),
        "QSERVER_URL": f"http://127.0.0.1:{settings.nginx_http_port}",
        "QSERVER_GRPC": f"127.0.0.1:{settings.nginx_grpc_port}",
    }
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_client_alone_has_no_server_package(client_python, tmp_path, settings):
    modules = ("ray", "psycopg", "core", "ops", "qiskit_aer")
    probe = f"import importlib.util as u; print([m for m in {modules!r} if u.find_spec(m)])"
    found = run(client_python, ["-c", probe], tmp_path, settings)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"


def test_the_readme_example_runs_from_a_fresh_install(stack, client_python, tmp_path, settings):
    done = run(client_python, [str(EXAMPLE)], tmp_path, settings)
    assert done.returncode == 0, done.stderr[-3000:]
    lowest = re.search(r"lowest energy (-?\d+\.\d+) Ha at θ = (-?\d+\.\d+) \(200 points, two jobs\)", done.stdout)
    assert lowest, done.stdout
    example = runpy.run_path(str(EXAMPLE))  # its circuit and Hamiltonian, here, for the reference
    thetas = np.linspace(-np.pi, np.pi, example["POINTS"])
    exact = [
        Statevector(example["ansatz"](measured=False).assign_parameters([theta]))
        .expectation_value(example["HAMILTONIAN"])
        .real
        for theta in thetas
    ]
    assert float(lowest.group(1)) == pytest.approx(min(exact), abs=1e-5)
    assert float(lowest.group(2)) == pytest.approx(thetas[int(np.argmin(exact))], abs=1e-3)
