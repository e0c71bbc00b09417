"""Placement: pure functions from a claimed job to the Ray options of its task."""

from __future__ import annotations

import os
from typing import Any

from core.domain import BUILTIN_PLUGIN
from core.settings import Settings
from core.store import ClaimedJob


def plugin_runtime_env(plugin: str, version: str | None, settings: Settings) -> dict[str, Any]:
    """The Ray runtime_env that installs ``plugin`` at its admitted ``version``.

    pip runs ``--isolated`` with ``PIP_CONFIG_FILE=/dev/null`` (``--isolated`` alone still
    reads /etc/pip.conf), so the node's own pip configuration and PIP_* variables are
    ignored and packages come from ``settings.plugin_index_url`` only. Ray builds it once per node and
    caches it; a build longer than ``settings.plugin_env_setup_timeout_s`` fails.
    No secrets here: Ray stores the runtime_env as job metadata.
    """
    requirement = f"{plugin}=={version}" if version else plugin
    return {
        "pip": {
            "packages": [requirement],
            "pip_check": False,
            "pip_install_options": [
                "--isolated",
                "--index-url",
                settings.plugin_index_url,
                "--disable-pip-version-check",
                "--no-input",
            ],
        },
        # Ray passes these to its pip install too (and to the plugin's workers, harmlessly).
        "env_vars": {"PIP_CONFIG_FILE": os.devnull},
        "config": {"setup_timeout_seconds": settings.plugin_env_setup_timeout_s},
    }


def task_options(job: ClaimedJob, settings: Settings) -> dict[str, Any]:
    """Ray ``.options(...)`` for the task that runs ``job``.

    One CPU per job. Ray's own retries are off (``max_retries=0``): a job is retried
    only by QServer, deliberately, never behind its back. A third-party plugin's job
    runs in that plugin's runtime_env; the built-in ``aer`` runs in the base environment.
    """
    options: dict[str, Any] = {
        "num_cpus": 1,
        "max_retries": 0,
        "retry_exceptions": False,
        "name": f"job-{job.id}",
    }
    if job.plugin and job.plugin != BUILTIN_PLUGIN:
        options["runtime_env"] = plugin_runtime_env(job.plugin, job.plugin_version, settings)
    return options
