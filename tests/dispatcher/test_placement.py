"""Placement is pure: the Ray options a claimed job gets, and whether it can run now, later or never."""

from __future__ import annotations

import uuid

from core.settings import Settings
from core.store import ClaimedJob
from dispatcher.placement import Node, decide, task_options

GIB = 1024**3


def job(plugin: str | None = "aer-plugin", version: str | None = None, *, tags=(), gpu=False) -> ClaimedJob:
    return ClaimedJob(
        id=uuid.uuid4(),
        backend="x",
        plugin=plugin,
        plugin_version=version,
        qasm="",
        metadata={"tags": list(tags)} if tags else {},
        result_types=("counts",),
        attempts=1,
        needs_gpu=gpu,
    )


def test_builtin_aer_runs_in_the_base_environment_without_ray_retries():
    options = task_options(job(), Settings(), 512 * 1024**2)
    assert options["num_cpus"] == 1 and options["memory"] == 512 * 1024**2
    assert options["max_retries"] == 0 and options["retry_exceptions"] is False
    assert "runtime_env" not in options and "resources" not in options and "num_gpus" not in options


def test_plugin_job_runs_in_its_runtime_env_at_the_admitted_version_from_the_configured_index():
    settings = Settings(plugin_index_url="https://index.example/simple", plugin_env_setup_timeout_s=77)
    env = task_options(job("fake-plugin", "0.0.1"), settings, GIB)["runtime_env"]
    assert env["pip"]["packages"] == ["fake-plugin==0.0.1"]
    options = env["pip"]["pip_install_options"]
    assert "--isolated" in options
    assert options[options.index("--index-url") + 1] == "https://index.example/simple"
    assert env["env_vars"] == {"PIP_CONFIG_FILE": "/dev/null", "OMP_NUM_THREADS": "1"}
    assert env["config"] == {"setup_timeout_seconds": 77}


def test_tags_and_gpu_become_ray_resources_and_gpu_jobs_get_cuda_aer():
    settings = Settings(gpu_pip_packages=["qiskit-aer-gpu==0.18.2"])
    options = task_options(job(tags=["lab", "big"], gpu=True), settings, GIB)
    assert options["resources"] == {"tag:big": 0.001, "tag:lab": 0.001}
    assert options["num_gpus"] == 1
    assert options["runtime_env"]["pip"]["packages"] == ["qiskit-aer-gpu==0.18.2"]


CPU_BOX = Node("cpu-box-node", alive=True, tags=frozenset({"lab"}), memory=16 * GIB)
GPU_BOX = Node("gpu-box-node", alive=False, tags=frozenset({"gpu-box"}), gpus=1, memory=32 * GIB)


def test_decide_runs_when_an_alive_node_fits():
    assert decide(job(tags=["lab"]), GIB, [CPU_BOX, GPU_BOX]).action == "run"


def test_decide_waits_for_a_known_offline_node():
    decision = decide(job(gpu=True), GIB, [CPU_BOX, GPU_BOX])
    assert decision.action == "wait"
    assert decision.reason == "waiting for a node with a GPU to come online (known but offline: gpu-box-node)"


def test_decide_fails_for_what_no_node_ever_offered():
    decision = decide(job(tags=["nope"]), GIB, [CPU_BOX, GPU_BOX])
    assert decision.action == "fail" and decision.reason == "no node of this cluster has ever offered tag 'nope'"


def test_decide_fails_a_job_too_big_for_every_node_with_the_mps_hint():
    decision = decide(job(), 40 * GIB, [CPU_BOX, GPU_BOX])
    assert decision.action == "fail"
    assert decision.reason.startswith("needs 40.0 GiB of memory, but the largest node that can run it has 32.0 GiB")
    assert '"method": "matrix_product_state"' in decision.reason


def test_decide_waits_when_only_an_offline_node_is_big_enough():
    decision = decide(job(), 20 * GIB, [CPU_BOX, GPU_BOX])
    assert decision.action == "wait" and "gpu-box-node" in decision.reason


def test_big_jobs_run_in_a_worker_that_exits_afterwards():
    assert "max_calls" not in task_options(job(), Settings(), GIB)
    assert task_options(job(), Settings(), 3 * GIB)["max_calls"] == 1
