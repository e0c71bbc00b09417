"""Job and result types shared by every service: plain Python, no Qiskit, no protobuf.

The metadata keys and their meaning are those of the upstream contract
(shared/design/upstream-contract.md, "Metadata keys").
"""

from __future__ import annotations

import enum
import json
import math
import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, get_args

from core.errors import InvalidJob
from core.sweeps import check_parameters


class JobStatus(str, enum.Enum):
    """A job's lifecycle as the store holds it: pending -> claimed -> running -> finished |
    failed | canceled; TRANSITIONS lists every change the store makes.

    ``claimed`` is internal: the dispatcher has taken the job (the guard against running it
    twice) but its simulation has not started (it waits in a warm executor's batch or for its
    Ray task to start). Users see it as ``pending`` (:meth:`visible`): the contract's five
    statuses (VISIBLE_STATUSES) are what every answer names.
    """

    PENDING = "pending"
    CLAIMED = "claimed"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"

    def is_terminal(self) -> bool:
        """True for finished, failed and canceled: a job never leaves these."""
        return self in TERMINAL_STATUSES

    def visible(self) -> JobStatus:
        """The status users see: ``claimed`` is ``pending``, the others are themselves."""
        return JobStatus.PENDING if self is JobStatus.CLAIMED else self


TERMINAL_STATUSES = frozenset({JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED})
# The upstream contract's statuses: what the REST job JSON, /jobs and /history name.
VisibleStatus = Literal["pending", "running", "finished", "failed", "canceled"]
VISIBLE_STATUSES = frozenset(JobStatus(name) for name in get_args(VisibleStatus))
# Where a pending job waits, when nothing more precise (a parked job's reason) is known.
WAITING_IN_QUEUE = "the queue: the dispatcher has not taken the job yet"
WAITING_FOR_EXECUTOR = (
    "an executor: the dispatcher has taken the job; it waits in a warm executor's batch or for its Ray task to start"
)

# Every status change the store makes, as {from: the statuses it may move to}; each is one
# guarded UPDATE (core/store/jobs.py, outcomes.py), built with core.store.jobs.Move, which
# refuses at import a change this table does not allow. A terminal status is never left.
TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = MappingProxyType(
    {
        # claimed by the dispatcher; canceled before it was claimed; finished at once, answered
        # from an earlier job's results (core/cache.py), in the transaction that stored it
        JobStatus.PENDING: frozenset({JobStatus.CLAIMED, JobStatus.CANCELED, JobStatus.FINISHED}),
        # its worker starts it; finished or failed at once: a warm executor's job that finished
        # within settings.batch_running_after_s (never shown running; its start_time is its true
        # start); canceled; failed by the dispatcher (no node can run it, its runtime_env did not
        # build, timed out or lost in Ray's queue); pending again: parked for a node, or its
        # worker, executor or dispatcher died before it started (attempt not counted)
        JobStatus.CLAIMED: frozenset(
            {JobStatus.RUNNING, JobStatus.FINISHED, JobStatus.CANCELED, JobStatus.FAILED, JobStatus.PENDING}
        ),
        # its outcome written; canceled; claimed again: its worker handed it back unsimulated (it
        # needs more memory than it was granted); pending again: requeued after its worker or node
        # died, or recovered from a dispatcher that stopped mid-job
        JobStatus.RUNNING: frozenset(
            {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.PENDING, JobStatus.CLAIMED}
        ),
        JobStatus.FINISHED: frozenset(),
        JobStatus.FAILED: frozenset(),
        JobStatus.CANCELED: frozenset(),
    }
)


def can_move(source: JobStatus, target: JobStatus) -> bool:
    """True when a job in status ``source`` may move to ``target`` (TRANSITIONS)."""
    return target in TRANSITIONS[source]


class Outcome(str, enum.Enum):
    """What one execution of a job ended as, as the worker, the runner and the dispatcher
    report it (cluster/messages.Report). The values are the words of the logs."""

    FINISHED = "finished"  # results written; the job is finished
    FAILED = "failed"  # the error written; the job is failed
    DROPPED = "dropped"  # nothing run or written: the job was no longer claimed or running (canceled, deleted)
    NEEDS_MEMORY = "needs_memory"  # nothing written: the circuit needs more memory than granted
    CANCELED = "canceled"  # its Ray work was stopped because the job was canceled
    TIMED_OUT = "timed_out"  # its Ray work was stopped after the job's timeout
    LOST = "lost"  # the worker, warm executor or node running it died
    ERROR = "error"  # Ray could not run it (a runtime_env that failed to build, out of memory)
    UNKNOWN = "unknown"  # the runner has no record of the job


@dataclass(frozen=True)
class MemoryNeed:
    """What a circuit needs that its worker was not granted: ``memory_bytes`` in all (the
    worker and the simulation's state), the Aer ``method`` it runs with, its ``active_qubits``."""

    memory_bytes: int
    method: str
    active_qubits: int


class ResultType(str, enum.Enum):
    """What a job asks for; the values are the plugin contract's ``result_type`` names."""

    COUNTS = "counts"
    QUASI_DIST = "quasi_dist"
    EXPVAL = "expval"


# Aer's simulation methods (qiskit_aer.AerSimulator ``method`` option); "auto" is our alias.
AER_METHODS = frozenset(
    {
        "auto",
        "automatic",
        "statevector",
        "density_matrix",
        "stabilizer",
        "extended_stabilizer",
        "matrix_product_state",
        "unitary",
        "superop",
    }
)
DEFAULT_SHOTS = 1000
# Our built-in backend `aer` is registered as this plugin (upstream-contract.md, Plugins).
BUILTIN_PLUGIN = "aer-plugin"
# Its backends (migrations 0001 and 0004 insert them; POST /plugin/aer-plugin enables them again).
BUILTIN_BACKENDS = ("aer", "aer_gpu")
_PAULI = re.compile(r"[IXYZ]+")  # used with fullmatch: "$" would let "ZZ\n" through

# A node tag NAME is the Ray custom resource "tag:NAME" (qserver node join --tag NAME offers
# TAG_CAPACITY of it; a job asking for the tag takes TAG_SHARE, so tags never limit how many
# jobs a node runs, only where they run).
TAG_RESOURCE_PREFIX = "tag:"
TAG_CAPACITY = 1000.0
TAG_SHARE = 0.001


def tag_resource(tag: str) -> str:
    """The Ray custom resource that stands for node tag ``tag``."""
    return f"{TAG_RESOURCE_PREFIX}{tag}"


MAX_METADATA_DEPTH = 32  # nesting of arrays/objects; deeper JSON cannot be served back


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)``, shortened to ``limit`` characters for an error message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text)} chars)"


def _reject_constant(name: str) -> Any:
    raise InvalidJob(f"metadata is not valid JSON: {name} is not a JSON number")


def _check_json_values(value: Any, depth: int = 0) -> None:
    """Refuse what Postgres' jsonb and our JSON answers cannot hold: deep nesting, NUL,
    lone surrogates, non-finite numbers."""
    if depth > MAX_METADATA_DEPTH:
        raise InvalidJob(f"metadata is nested more than {MAX_METADATA_DEPTH} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_json_values(key, depth + 1)
            _check_json_values(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json_values(item, depth + 1)
    elif isinstance(value, str):
        if "\x00" in value:
            raise InvalidJob("metadata strings must not contain the NUL character (\\u0000)")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidJob(f"metadata holds a string that is not valid Unicode: {show(value)}") from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidJob("metadata holds a number too large for a float (over 1.8e308)")


# A node tag: a job's metadata `tags` names them, `qserver node join --tag` offers them. Each is a
# Ray node label value too (Ray 2.60 follows Kubernetes: at most 63 of [A-Za-z0-9_.-], beginning
# and ending with a letter or digit; ray/_private/label_utils.py), so this is the one rule.
NODE_TAG = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
TAG_RULE = "1-63 letters, digits, '_', '.', '-', beginning and ending with a letter or digit"


@dataclass(frozen=True)
class Limits:
    """What a submission may ask for; filled from Settings by the service."""

    max_shots: int = 1_000_000
    max_observables: int = 1_000
    max_metadata_bytes: int = 1024 * 1024
    max_timeout_s: float = 24 * 3600.0
    max_bindings: int = 1_000_000
    max_bindings_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class JobSpec:
    """A validated submission, before it is stored.

    Attributes:
        backend: backend name, e.g. ``"aer"``.
        result_types: the requested result types, in contract order, never empty.
        metadata: the metadata object as sent (unknown keys kept for the plugin).
        qasm: the program text (OpenQASM 2 or 3).
        bindings: a sweep's parameter values, an NPY file as sent (core/sweeps.py); None for
            a job that is not a sweep.
    """

    backend: str
    result_types: tuple[ResultType, ...]
    metadata: dict[str, Any]
    qasm: str = ""
    bindings: bytes | None = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite real number that fits a float (a 400-digit JSON integer does not)."""
    if not (_is_int(value) or isinstance(value, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _utf8_size(text: str, what: str) -> int:
    """The size of ``text`` in UTF-8.

    Raises:
        InvalidJob: ``text`` holds a lone surrogate, which no UTF-8 text (nor Postgres) can hold.
    """
    try:
        return len(text.encode())
    except UnicodeEncodeError as error:
        raise InvalidJob(f"{what} is not valid Unicode: it holds a lone surrogate at character {error.start}") from None


def check_properties(
    *,
    counts: bool,
    quasi_dist: bool,
    expval: bool,
    backend: str,
    metadata_text: str,
    limits: Limits = Limits(),
) -> JobSpec:
    """Validate the gRPC ``JobProperties`` of a submission, without the program.

    Args:
        counts, quasi_dist, expval: the three result-type flags.
        backend: ``targetSimulator``, a backend name.
        metadata_text: ``metadata``, a JSON object as text.
        limits: the server's caps on shots, observables, metadata size and timeout.

    Returns:
        A JobSpec with an empty ``qasm``.

    Raises:
        InvalidJob: the message names the first problem found.
    """
    result_types = tuple(
        rt
        for rt, wanted in (
            (ResultType.COUNTS, counts),
            (ResultType.QUASI_DIST, quasi_dist),
            (ResultType.EXPVAL, expval),
        )
        if wanted
    )
    if not result_types:
        raise InvalidJob("no result type selected: ask for at least one of counts, quasi_dist, expval")
    if not backend.strip():
        raise InvalidJob("targetSimulator is empty: name a backend, e.g. 'aer'")
    if len(backend) > 100:
        raise InvalidJob(f"targetSimulator is {len(backend)} characters long: a backend name has at most 100")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in backend):
        raise InvalidJob(
            f"targetSimulator {show(backend)} holds a control character or a lone surrogate: "
            "a backend name is letters, digits, '-' and '_'"
        )
    metadata = parse_metadata(metadata_text, limits)
    if ResultType.EXPVAL in result_types and "obs" not in metadata:
        raise InvalidJob("expval needs observables: set metadata 'obs' to a list of PUBs")
    return JobSpec(backend=backend, result_types=result_types, metadata=metadata)


def parse_metadata(text: str, limits: Limits = Limits()) -> dict[str, Any]:
    """Parse and check the metadata JSON object.

    Known keys (shots, obs, method, seed, parameters, sweep, tags, timeout_s) must have
    the types of the contract's metadata table; other keys pass through.

    Raises:
        InvalidJob: empty, too large, not valid Unicode, not JSON, not an object, or a known
            key is wrong.
    """
    if not text.strip():
        raise InvalidJob("metadata is empty: send a JSON object, e.g. {}")
    if _utf8_size(text, "metadata") > limits.max_metadata_bytes:
        raise InvalidJob(f"metadata is larger than {limits.max_metadata_bytes} bytes")
    try:
        metadata = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, or an int of > 4300 digits
        raise InvalidJob(f"metadata is not valid JSON: {show(str(error), 200)}") from None
    if not isinstance(metadata, dict):
        raise InvalidJob(f"metadata must be a JSON object, got {type(metadata).__name__}")
    _check_json_values(metadata)
    _check_known_keys(metadata, limits)
    return metadata


def _check_known_keys(md: dict[str, Any], limits: Limits) -> None:
    if "shots" in md:
        shots = md["shots"]
        if not _is_int(shots) or not 1 <= shots <= limits.max_shots:
            raise InvalidJob(f"metadata 'shots' must be an integer from 1 to {limits.max_shots}, got {show(shots)}")
    if "obs" in md:
        check_observables(md["obs"], limits)
    if "method" in md:
        method = md["method"]
        if not isinstance(method, str) or method not in AER_METHODS:
            raise InvalidJob(f"metadata 'method' must be one of {', '.join(sorted(AER_METHODS))}, got {show(method)}")
    if "seed" in md:
        seed = md["seed"]
        if not _is_int(seed) or not 0 <= seed < 2**63:
            raise InvalidJob(f"metadata 'seed' must be an integer from 0 to 2**63-1, got {show(seed)}")
    if "parameters" in md:
        params = md["parameters"]
        if not isinstance(params, dict) or not all(_is_number(v) for v in params.values()):
            raise InvalidJob("metadata 'parameters' must be an object of {name: number}")
    if "cache" in md and not isinstance(md["cache"], bool):
        raise InvalidJob(f"metadata 'cache' must be true or false, got {show(md['cache'])}")
    if "sweep" in md:
        check_parameters(md["sweep"])
        if "parameters" in md:
            raise InvalidJob(
                "metadata has both 'parameters' (one binding) and 'sweep' (many): send the binding as a sweep of one"
            )
    if "tags" in md:
        tags = md["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) and NODE_TAG.fullmatch(t) for t in tags):
            raise InvalidJob(f"metadata 'tags' must be a list of node tag names, each {TAG_RULE}")
    if "timeout_s" in md:
        timeout = md["timeout_s"]
        if not _is_number(timeout) or not 0 < timeout <= limits.max_timeout_s:
            raise InvalidJob(
                "metadata 'timeout_s' must be a number of seconds in "
                f"(0, {limits.max_timeout_s:g}], got {show(timeout)}"
            )


def check_observables(obs: Any, limits: Limits = Limits()) -> None:
    """Check ``obs``: a non-empty list of PUBs, each a non-empty list of ``[pauli, coeff]``.

    The format is Qiskit's ``SparsePauliOp.from_list``: Pauli labels over I, X, Y, Z with
    qubit 0 the rightmost character; all labels of one PUB have one length.

    Raises:
        InvalidJob: naming the PUB and term at fault.
    """
    if not isinstance(obs, list) or not obs:
        raise InvalidJob("metadata 'obs' must be a non-empty list of PUBs, e.g. [[[\"ZZ\", 1.0]]]")
    if isinstance(obs[0], list) and len(obs[0]) == 2 and isinstance(obs[0][0], str):
        raise InvalidJob(
            "metadata 'obs' must be a list of PUBs, each a list of [pauli, coefficient] pairs: "
            f"wrap your terms in one more list, e.g. [{show(obs, 40)}]"
        )
    if len(obs) > limits.max_observables:
        raise InvalidJob(f"metadata 'obs' has {len(obs)} PUBs, more than the limit {limits.max_observables}")
    for i, pub in enumerate(obs):
        if not isinstance(pub, list) or not pub:
            raise InvalidJob(f"obs[{i}] must be a non-empty list of [pauli, coefficient] pairs")
        if len(pub) > limits.max_observables:
            raise InvalidJob(f"obs[{i}] has {len(pub)} terms, more than the limit {limits.max_observables}")
        widths = set()
        for j, term in enumerate(pub):
            if (
                not isinstance(term, list)
                or len(term) != 2
                or not isinstance(term[0], str)
                or not _PAULI.fullmatch(term[0])
                or not _is_number(term[1])
            ):
                raise InvalidJob(
                    f"obs[{i}][{j}] must be [pauli, coefficient] with a Pauli label over I, X, Y, Z "
                    f"and a real number, got {show(term)}"
                )
            widths.add(len(term[0]))
        if len(widths) > 1:
            first, second = sorted(widths)[:2]
            raise InvalidJob(
                f"obs[{i}] mixes Pauli labels of lengths {first} and {second} ({len(widths)} lengths in all):"
                " all labels of one PUB act on the same qubits"
            )


def check_program(qasm: str, max_bytes: int) -> None:
    """Check the joined QASM text before it is stored (it is parsed later, on a node).

    Raises:
        InvalidJob: empty, larger than ``max_bytes``, holding a NUL character or a lone
            surrogate (neither is text Postgres can store).
    """
    if _utf8_size(qasm, "QASM program") > max_bytes:
        raise InvalidJob(f"QASM program is larger than the limit of {max_bytes} bytes")
    if not qasm.strip():
        raise InvalidJob("no QASM: the program is empty")
    if "\x00" in qasm:
        raise InvalidJob("QASM program contains a NUL character (\\0): send it as text")


def parse_job_id(text: str) -> uuid.UUID:
    """Parse a job id.

    Raises:
        InvalidJob: ``text`` is not a UUID.
    """
    try:
        return uuid.UUID(text)
    except (ValueError, AttributeError, TypeError):
        raise InvalidJob(f"job id {text!r} is not a UUID") from None


@dataclass
class JobResults:
    """Results of one job, JSON-ready.

    Attributes:
        counts: {bitstring: shots}, bitstrings in Qiskit's order (qubit 0 rightmost,
            classical registers separated by a space, last-declared leftmost).
        quasi_dist: {outcome as int: probability}.
        expval: one float per PUB of ``obs``.
    """

    counts: dict[str, int] | None = None
    quasi_dist: dict[int, float] | None = None
    expval: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
