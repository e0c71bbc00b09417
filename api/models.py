"""Response models: the JSON shapes of the upstream contract, documented in the OpenAPI spec."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, create_model

from core.domain import VisibleStatus


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timestamp with a time zone, always rendered in UTC (ISO 8601)."""


class Health(BaseModel):
    """Liveness answer."""

    status: str = Field(examples=["OK"])


class Readiness(BaseModel):
    """Readiness answer: each check "ok" or why it fails (HTTP 503 when one fails)."""

    service: str = Field(examples=["api"])
    status: str = Field(examples=["OK", "unavailable"])
    checks: dict[str, str] = Field(examples=[{"database": "ok", "job_done_listener": "ok"}])


class ResultTypes(BaseModel):
    """Which result types the job asked for."""

    counts: bool
    quasi_dist: bool
    expval: bool


class Results(BaseModel):
    """A job's results; a field is null when it was not asked for or not computed yet."""

    counts: dict[str, int] | None = Field(
        None, description="{bitstring: shots}, Qiskit bit order", examples=[{"11 0": 1000}]
    )
    quasi_dist: dict[str, float] | None = Field(
        None, description="{outcome as an integer in a string: probability}", examples=[{"6": 1.0}]
    )
    expval: list[float] | None = Field(None, description="one value per PUB of metadata 'obs'")


class SweepSummary(BaseModel):
    """A sweep job (one program, many parameter bindings): its shape and where its items are."""

    parameters: list[str] = Field(description="the program's parameters, in the order of the bindings' last axis")
    shape: list[int] = Field(description="the PUB's shape: the bindings' shape without its last axis")
    bindings: int = Field(description="how many bindings: the product of shape")
    done: int = Field(description="how many bindings have results so far")
    items: str = Field(description="the route of its results, one item per binding (?offset=&limit=)")


_SWEEP = "a sweep's summary (its results are items: GET the `items` route); null for other jobs"


class Job(BaseModel):
    """A job: the upstream contract's job JSON plus error, node_id and attempts."""

    id: uuid.UUID
    pointer: int = Field(description="insertion counter; pass the last one seen as `cursor`")
    target_simulator: str
    qasm: str = Field(description="the program text")
    status: VisibleStatus = Field(
        description="pending until the job's simulation starts on a node (`waiting_for` says where it"
        " waits), then running; finished, failed or canceled at its end"
    )
    submission_date: UtcDatetime
    start_time: UtcDatetime | None = Field(description="when its simulation started on a node; null before")
    finish_time: UtcDatetime | None
    metadata: dict[str, Any]
    result_types: ResultTypes
    results: Results
    error: str | None = Field(description="why the job failed or was refused")
    node_id: str | None = Field(description="the Ray node that runs or ran the job; null until it starts")
    attempts: int
    waiting_for: str | None = Field(
        description="where a pending job waits: the queue (not yet taken by the dispatcher), an executor"
        " (taken, waiting in a warm executor's batch or for its Ray task to start), or what it was parked"
        " for: a node with its tag or a GPU, or with enough memory, that is offline; null once it started",
        examples=["waiting for a node with tag 'gpu' to come online (known but offline: 3f9c0a1b2c4d)"],
    )
    memory_bytes: int | None = Field(description="the memory the job asks Ray for, in bytes; null until it is known")
    owner: str | None = Field(None, description="the user whose API key submitted it; null when authentication was off")
    sweep: SweepSummary | None = Field(None, description=_SWEEP)
    receipt: dict[str, Any] | None = Field(
        None,
        description="a finished job's reproducibility receipt: seed (its own, or the one drawn for it), "
        "binding_seeds (a sweep's rule), method (what the simulator chose), plugin, plugin_version, qiskit, "
        "qiskit_aer, python, node_id, queue_s and run_s (seconds); POST /job/{id}/rerun runs it again",
        examples=[{"seed": 42, "method": "stabilizer", "plugin": "aer-plugin", "qiskit_aer": "0.18.2"}],
    )


class JobResult(Results):
    """The results row of a finished job."""

    id: uuid.UUID
    job_id: uuid.UUID
    sweep: SweepSummary | None = Field(None, description=_SWEEP)


class SweepItems(BaseModel):
    """A page of a sweep's results: one item per binding, in flat C order of its shape."""

    job_id: uuid.UUID
    shape: list[int]
    bindings: int
    offset: int
    limit: int
    items: list[dict[str, Any]] = Field(
        description="those of the page's bindings that have results so far (a finished sweep: all), each "
        "{index, counts?, quasi_dist?, expval?}: the job's result types for that binding",
        examples=[[{"index": 0, "counts": {"00": 512, "11": 488}}]],
    )


class Capabilities(BaseModel):
    """What a backend can run (core/capabilities.py): declared by its plugin, computed for the
    built-in ones."""

    methods: list[str] = Field(description="the simulation methods it runs", examples=[["statevector", "stabilizer"]])
    max_qubits: dict[str, int] = Field(
        description="the most active qubits a job may have per method; for the built-in backends bounded by"
        " QSERVER_MAX_ACTIVE_QUBITS and the memory of the largest node alive now that can run it",
        examples=[{"statevector": 31, "stabilizer": 10000}],
    )
    result_types: list[str] = Field(examples=[["counts", "quasi_dist", "expval"]])
    plugin_version: str | None = Field(
        description="the plugin's version (the built-in plugin's: QServer's)", examples=["0.1.0"]
    )
    needs_gpu: bool


class Backend(BaseModel):
    """A backend a job can target, and the plugin that provides it."""

    backend_name: str
    id: uuid.UUID
    pointer: int
    plugin: str
    needs_gpu: bool = Field(description="its jobs run only on a node with a GPU")
    capabilities: Capabilities | None = Field(
        None,
        description="what it can run; null where a third-party plugin declares nothing (a plugin declares"
        " them in <package>/capabilities.json)",
    )


class Node(BaseModel):
    """A Ray node as the dispatcher last saw it; kept after it leaves (``alive`` false)."""

    node_id: str = Field(description="the Ray node id")
    address: str = Field(description="the node's IP address", examples=["192.168.1.20"])
    hostname: str | None
    tags: list[str] = Field(description="the node's tags (Ray resources tag:NAME)")
    alive: bool = Field(description="whether the node is in the cluster now")
    cpus_total: float
    cpus_free: float
    gpus_total: float
    gpus_free: float
    memory_total: int = Field(description="bytes")
    memory_free: int = Field(description="bytes")
    jobs_running: int
    versions: dict[str, Any] = Field(
        description="versions of QServer, Python and Ray on the node",
        examples=[{"qserver": "0.1.0", "python": "3.11.9", "ray": "2.60.0"}],
    )
    first_seen: UtcDatetime
    last_seen: UtcDatetime


class ClusterTotals(BaseModel):
    """Sums over the nodes alive now; ``nodes_known`` and ``tags_known`` count every node."""

    nodes_alive: int
    nodes_known: int = Field(description="every node ever seen, alive or not")
    cpus_total: float
    cpus_free: float
    gpus_total: float
    gpus_free: float
    memory_total: int = Field(description="bytes")
    memory_free: int = Field(description="bytes")
    jobs_running: int
    tags: list[str] = Field(description="the tags of the nodes alive now, sorted")
    tags_known: list[str] = Field(description="the tags any node ever offered, sorted")


class Cluster(BaseModel):
    """The answer to GET /cluster: every node ever seen, and totals."""

    nodes: list[Node] = Field(description="alive nodes first, then in order of first_seen")
    totals: ClusterTotals


class DeletedJob(BaseModel):
    """The answer to DELETE /job/{id}."""

    id: uuid.UUID
    deleted: bool = Field(examples=[True])


class HistoryEntry(BaseModel):
    """A job as it was when it reached a terminal status; kept when the job is deleted."""

    id: uuid.UUID = Field(description="the history row's own id")
    pointer: int = Field(description="insertion counter; pass the last one seen as `cursor`")
    job_id: uuid.UUID
    target_simulator: str
    status: VisibleStatus = Field(description="finished, failed or canceled")
    metadata: dict[str, Any]
    error: str | None
    node_id: str | None
    attempts: int
    submission_date: UtcDatetime
    start_time: UtcDatetime | None
    finish_time: UtcDatetime
    result_types: ResultTypes
    results: Results
    owner: str | None = Field(
        None, description="the user whose API key submitted the job; null when authentication was off"
    )
    sweep: SweepSummary | None = Field(None, description=_SWEEP)


class AdmittedPlugin(BaseModel):
    """The answer to POST /plugin/{name}: the plugin as recorded and its backends."""

    name: str = Field(description="the package name, PEP 503-normalized", examples=["fake-plugin"])
    version: str | None = Field(
        description="the admitted version; null for the built-in aer-plugin", examples=["0.0.1"]
    )
    backends: list[str] = Field(examples=[["fake1", "fake2"]])


class Plugin(BaseModel):
    """An admitted plugin, in GET /plugins."""

    name: str = Field(examples=["fake-plugin"])
    version: str | None = Field(description="the admitted version; the built-in aer-plugin's is QServer's own")
    backends: list[str] = Field(description="its backends, in the order they were registered")
    builtin: bool = Field(description="part of QServer (aer-plugin): nothing was downloaded")
    enabled: bool = Field(description="whether its backends take jobs (false: the built-in plugin was removed)")
    admitted_at: UtcDatetime


class RemovedPlugin(BaseModel):
    """The answer to DELETE /plugin/{name}."""

    name: str
    removed: bool = Field(examples=[True])


class ErrorDetail(BaseModel):
    """Every error answer: a message meant for the user."""

    detail: str


@functools.lru_cache(maxsize=256)
def row_model(model: type[BaseModel], fields: tuple[str, ...]) -> type[BaseModel]:
    """A model of ``model``'s ``fields`` only, each with its type, validators and description."""
    chosen: Any = {name: (model.model_fields[name].annotation, model.model_fields[name]) for name in fields}
    return create_model(f"{model.__name__}Fields", **chosen)
