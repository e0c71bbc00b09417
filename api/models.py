"""Response models: the JSON shapes of the upstream contract, documented in the OpenAPI spec."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field

from core.domain import JobStatus


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timestamp with a time zone, always rendered in UTC (ISO 8601)."""


class Health(BaseModel):
    """Liveness answer."""

    status: str = Field(examples=["OK"])


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


class Job(BaseModel):
    """A job: the upstream contract's job JSON plus error, node_id and attempts."""

    id: uuid.UUID
    pointer: int = Field(description="insertion counter; pass the last one seen as `cursor`")
    target_simulator: str
    qasm: str = Field(description="the program text")
    status: JobStatus
    submission_date: UtcDatetime
    start_time: UtcDatetime | None
    finish_time: UtcDatetime | None
    metadata: dict[str, Any]
    result_types: ResultTypes
    results: Results
    error: str | None = Field(description="why the job failed or was refused")
    node_id: str | None = Field(description="the Ray node that ran the job")
    attempts: int


class JobResult(Results):
    """The results row of a finished job."""

    id: uuid.UUID
    job_id: uuid.UUID


class Backend(BaseModel):
    """A backend a job can target, and the plugin that provides it."""

    backend_name: str
    id: uuid.UUID
    pointer: int
    plugin: str


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
    status: JobStatus = Field(description="finished, failed or canceled")
    metadata: dict[str, Any]
    error: str | None
    node_id: str | None
    attempts: int
    submission_date: UtcDatetime
    start_time: UtcDatetime | None
    finish_time: UtcDatetime
    result_types: ResultTypes
    results: Results


class AdmittedPlugin(BaseModel):
    """The answer to POST /plugin/{name}: the plugin as recorded and its backends."""

    name: str = Field(description="the package name, PEP 503-normalized", examples=["fake-plugin"])
    version: str | None = Field(
        description="the admitted version; null for the built-in aer-plugin", examples=["0.0.1"]
    )
    backends: list[str] = Field(examples=[["fake1", "fake2"]])


class RemovedPlugin(BaseModel):
    """The answer to DELETE /plugin/{name}."""

    name: str
    removed: bool = Field(examples=[True])


class ErrorDetail(BaseModel):
    """Every error answer: a message meant for the user."""

    detail: str
