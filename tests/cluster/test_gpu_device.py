"""The GPU executor path on a real GPU: only where one exists (a lent GPU machine runs
bench/gpu_check.py); everywhere else this test is skipped and says why."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_executor_path_on_a_real_gpu():
    if shutil.which("nvidia-smi") is None:
        pytest.skip(
            "no GPU on this machine: the GPU path (plugins.aer.run with device='GPU' on "
            "qiskit-aer-gpu) is checked by bench/gpu_check.py on a lent GPU machine; the "
            "placement of aer_gpu jobs is tested with a declared (mocked) GPU in test_homelab.py"
        )
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py")], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "GPU path OK" in done.stdout
