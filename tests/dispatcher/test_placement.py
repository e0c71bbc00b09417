"""Placement is a pure function: the Ray options a claimed job gets."""

from __future__ import annotations

import uuid

from core.settings import Settings
from core.store import ClaimedJob
from dispatcher.placement import task_options


def job(plugin: str | None, version: str | None = None) -> ClaimedJob:
    return ClaimedJob(
        id=uuid.uuid4(), backend="x", plugin=plugin, plugin_version=version, qasm="",
        metadata={}, result_types=("counts",), attempts=1,
    )


def test_builtin_aer_runs_in_the_base_environment_without_ray_retries():
    options = task_options(job("aer-plugin"), Settings())
    assert options["num_cpus"] == 1
    assert options["max_retries"] == 0 and options["retry_exceptions"] is False
    assert "runtime_env" not in options


def test_plugin_job_runs_in_its_runtime_env_at_the_admitted_version_from_the_configured_index():
    settings = Settings(plugin_index_url="https://index.example/simple", plugin_env_setup_timeout_s=77)
    env = task_options(job("fake-plugin", "0.0.1"), settings)["runtime_env"]
    assert env["pip"]["packages"] == ["fake-plugin==0.0.1"]
    options = env["pip"]["pip_install_options"]
    assert "--isolated" in options
    assert options[options.index("--index-url") + 1] == "https://index.example/simple"
    assert env["env_vars"] == {"PIP_CONFIG_FILE": "/dev/null"}
    assert env["config"] == {"setup_timeout_seconds": 77}
