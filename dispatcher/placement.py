"""Placement: pure functions from a claimed job (and the cluster's nodes) to Ray options.

Ray places the task; we only ask for resources: one CPU, the job's memory, a GPU for
backends that need one, and ``tag:NAME`` for each node tag the job asks for. Before
asking, :func:`decide` checks the request against the nodes, so that a job no node
can ever hold fails at once and a job whose node is offline (or draining: `qserver node
drain`) waits as pending, instead of queueing forever inside Ray.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from core import sweeps
from core.domain import BUILTIN_PLUGIN, TAG_SHARE, tag_resource
from core.settings import Settings
from core.store import ClaimedJob

GIB = 1024**3
# Jobs asking more than this run in a worker that exits afterwards, returning the memory.
BIG_JOB_BYTES = 2 * GIB
# plugins.aer.sizing's memory model (WORKER_BYTES, GATE_BYTES, PROGRAM_BYTES_*, BATCH_GATES),
# not imported from there: that module loads Qiskit. tests/dispatcher/test_batching.py checks
# that the two agree.
WORKER_BYTES = 256 * 1024**2
GATE_BYTES = 6 * 1024
PROGRAM_BYTES_QASM2, PROGRAM_BYTES_QASM3 = 24, 1200
BATCH_GATES = 8192
_QASM2 = re.compile(r"^\s*OPENQASM\s+2", re.MULTILINE)
MPS_HINT = '"method": "matrix_product_state" in the metadata may fit (it suits wide, lightly entangled circuits)'


@dataclass(frozen=True)
class Node:
    """What one Ray node offers: its tags, GPUs, memory (Ray's ``memory`` resource, bytes), CPUs;
    ``draining``: alive, but taking no new job (`qserver node drain`)."""

    node_id: str
    alive: bool
    tags: frozenset[str] = frozenset()
    gpus: float = 0.0
    memory: int = 0
    cpus: int = 0
    draining: bool = False

    @property
    def open(self) -> bool:
        """Whether a new job may go there: alive and not draining."""
        return self.alive and not self.draining


@dataclass(frozen=True)
class Decision:
    """``run`` now, ``wait`` (pending, ``reason`` says for what) or ``fail`` (``reason`` says why)."""

    action: str
    reason: str = ""


def _human(size: int) -> str:
    for unit, scale in (("TiB", 1024**4), ("GiB", GIB), ("MiB", 1024**2)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def _missing(job: ClaimedJob, node: Node) -> list[str]:
    """What ``node`` lacks for ``job``, ignoring memory."""
    lacks = [f"tag '{tag}'" for tag in job.tags if tag not in node.tags]
    if job.needs_gpu and node.gpus < 1:
        lacks.append("a GPU")
    return lacks


def decide(job: ClaimedJob, memory_bytes: int, nodes: list[Node]) -> Decision:
    """Can ``job``, asking ``memory_bytes``, run on an alive node now, later, or never?

    Args:
        job: the claimed job (its tags, whether its backend needs a GPU).
        memory_bytes: the memory it asks Ray for.
        nodes: every node on record, alive or not (a forgotten one is not).
    """
    suitable = [node for node in nodes if not _missing(job, node)]
    if not suitable:
        wants = ", ".join(_missing(job, Node("", True))) or "nothing"
        return Decision("fail", f"no node of this cluster has ever offered {wants}")
    big_enough = [node for node in suitable if node.memory >= memory_bytes]
    if not big_enough:
        largest = max(node.memory for node in suitable)
        return Decision(
            "fail",
            f"needs {_human(memory_bytes)} of memory, but the largest node that can run it has "
            f"{_human(largest)}; {MPS_HINT}",
        )
    if any(node.open for node in big_enough):
        return Decision("run")
    offline = ", ".join(node.node_id[:12] for node in big_enough if not node.alive)
    draining = ", ".join(node.node_id[:12] for node in big_enough if node.alive)
    known = "; ".join(
        [*([f"known but offline: {offline}"] if offline else []), *([f"draining: {draining}"] if draining else [])]
    )
    needs = ", ".join([*(f"tag '{t}'" for t in job.tags), *(["a GPU"] if job.needs_gpu else [])])
    return Decision(
        "wait",
        f"waiting for a node with {needs or _human(memory_bytes) + ' of memory'} to come online ({known})",
    )


# Aer methods whose cost a small circuit bounds (extended_stabilizer and matrix_product_state
# can take minutes on a few qubits; they run as tasks of their own, with their timeouts).
BATCH_METHODS = frozenset({None, "auto", "automatic", "statevector", "density_matrix", "stabilizer"})


def runs_in_batch(job: ClaimedJob, settings: Settings) -> bool:
    """Can ``job`` run on a warm executor, in a batch (cluster/batch.py)?

    Yes for a built-in Aer job on a CPU with no node tags, no memory estimate of its own
    (it was never found too large), no timeout of its own, an Aer method whose cost a
    small circuit bounds, at most ``settings.batch_max_shots`` shots and at most
    ``settings.batch_max_qasm_bytes`` of program, and not a sweep. The executor still hands back one
    whose circuit needs more memory than ``batch_memory_bytes(settings)``.
    """
    metadata = job.metadata
    shots = metadata.get("shots")
    return (
        job.plugin in (None, BUILTIN_PLUGIN)
        and not job.needs_gpu
        and not job.tags
        and job.memory_bytes is None
        and metadata.get("timeout_s") is None
        and metadata.get("method") in BATCH_METHODS
        and (shots is None or (isinstance(shots, (int, float)) and shots <= settings.batch_max_shots))
        and len(job.qasm) <= settings.batch_max_qasm_bytes
        and "sweep" not in metadata
    )


def batch_memory_bytes(settings: Settings) -> int:
    """The memory budget of a batched job: a Ray worker, a statevector of
    ``settings.batch_max_qubits`` qubits and BATCH_GATES gates (plugins.aer.sizing's formula)."""
    state = 16 * 2**settings.batch_max_qubits
    return WORKER_BYTES + state + state // 8 + GATE_BYTES * BATCH_GATES


def first_memory_bytes(job: ClaimedJob, settings: Settings) -> int:
    """The memory a job first asks Ray for, before its program is parsed (bytes): its own
    estimate if a worker made one, else ``settings.default_job_memory_bytes`` or, for a long
    program, what loading it takes (plugins.aer.sizing: PROGRAM_BYTES_QASM2 or _QASM3 per byte
    of program, measured with Qiskit's loaders, 1.5x the worst) on top of a worker."""
    if job.memory_bytes:
        return job.memory_bytes
    per_byte = PROGRAM_BYTES_QASM2 if _QASM2.search(job.qasm[:4096]) else PROGRAM_BYTES_QASM3
    return max(settings.default_job_memory_bytes, WORKER_BYTES + per_byte * len(job.qasm))


SWEEP_ALL_CPUS = 64  # a sweep of this many bindings runs on all of a node's CPUs


def job_cpus(job: ClaimedJob, memory_bytes: int, nodes: list[Node], settings: Settings) -> int:
    """CPUs to ask Ray for: one, or for a large job (one asking more than
    ``settings.default_job_memory_bytes``, i.e. found too large for it, or a sweep of
    SWEEP_ALL_CPUS bindings or more) all the CPUs of the largest alive node that can run it, at
    most ``settings.max_job_cpus``. Aer runs a large circuit, or a sweep's bindings, on as many
    threads (a small circuit alone gains nothing from threads: plugins.aer.simulate)."""
    sweep = sweeps.of_metadata(job.metadata)
    large = memory_bytes > settings.default_job_memory_bytes or (sweep is not None and sweep.bindings >= SWEEP_ALL_CPUS)
    if not large or job.needs_gpu:
        return 1
    cpus = [node.cpus for node in nodes if node.open and node.memory >= memory_bytes and not _missing(job, node)]
    most = max(cpus, default=1)
    if settings.max_job_cpus:
        most = min(most, settings.max_job_cpus)
    return max(most, 1)


def pip_runtime_env(requirements: list[str], settings: Settings) -> dict[str, Any]:
    """A Ray runtime_env that pip-installs ``requirements`` from ``settings.plugin_index_url`` only.

    pip runs ``--isolated`` with ``PIP_CONFIG_FILE=/dev/null`` (``--isolated`` alone still
    reads /etc/pip.conf), so the node's own pip configuration and PIP_* variables are
    ignored. Ray builds it once per node and caches it; a build longer than
    ``settings.plugin_env_setup_timeout_s`` fails. No secrets here: Ray stores the
    runtime_env as job metadata.
    """
    return {
        "pip": {
            "packages": list(requirements),
            "pip_check": False,
            "pip_install_options": [
                "--isolated",
                "--index-url",
                settings.plugin_index_url,
                "--disable-pip-version-check",
                "--no-input",
            ],
        },
        # Ray passes these to its pip install too (and to the workers, harmlessly). A plugin
        # runs on the one CPU its task asks for: OpenMP (Aer's threads) too, whatever the
        # node's OMP_NUM_THREADS (core/rayhead.node_env).
        "env_vars": {"PIP_CONFIG_FILE": os.devnull, "OMP_NUM_THREADS": "1"},
        "config": {"setup_timeout_seconds": settings.plugin_env_setup_timeout_s},
    }


def plugin_runtime_env(plugin: str, version: str | None, settings: Settings) -> dict[str, Any]:
    """The runtime_env that installs ``plugin`` at its admitted ``version``."""
    return pip_runtime_env([f"{plugin}=={version}" if version else plugin], settings)


def task_options(job: ClaimedJob, settings: Settings, memory_bytes: int, cpus: int = 1) -> dict[str, Any]:
    """Ray ``.options(...)`` for the task that runs ``job`` with ``memory_bytes`` of memory.

    ``cpus`` CPUs (:func:`job_cpus`), ``memory`` for what its circuit needs, a GPU for a backend that needs
    one, ``tag:NAME`` shares for its tags. Ray's own retries are off (``max_retries=0``):
    a job is retried only by QServer, deliberately, never behind its back. A third-party
    plugin's job runs in that plugin's runtime_env; GPU jobs in one with CUDA Aer
    (``settings.gpu_pip_packages``); the built-in ``aer`` in the base environment.
    """
    options: dict[str, Any] = {
        "num_cpus": cpus,
        "memory": memory_bytes,
        "max_retries": 0,
        "retry_exceptions": False,
        "name": f"job-{job.id}",
    }
    if memory_bytes > BIG_JOB_BYTES:
        # the worker gives its memory back to the node afterwards (a warm worker keeps it)
        options["max_calls"] = 1
    if job.tags:
        options["resources"] = {tag_resource(tag): TAG_SHARE for tag in job.tags}
    if job.needs_gpu:
        options["num_gpus"] = 1
        if settings.gpu_pip_packages:
            options["runtime_env"] = pip_runtime_env(settings.gpu_pip_packages, settings)
    if job.plugin and job.plugin != BUILTIN_PLUGIN:
        options["runtime_env"] = plugin_runtime_env(job.plugin, job.plugin_version, settings)
    return options
