"""Which jobs may be answered from an earlier job's results, and the digest that finds it.

A job is answered from the cache when its answer is fully determined and an earlier finished job
of the same owner asked exactly the same: same program, bindings, backend, plugin version (for
the built-in backends, this server's version, which pins Qiskit and Aer), result types and
metadata (shots, seed, method, observables, parameters; not tags, timeout_s, cache or rerun_of,
which do not change the answer). Determined means: the job names a seed, or it asks only for
expectation values and the earlier run's receipt says they were exact (no measurement or reset
inside the circuit). The new job is a row of its own, finished at once, whose receipt names the
job it came from (``cached_from``); metadata ``"cache": false`` turns this off for a job.

No Qiskit here: ingest computes the digest.
"""

from __future__ import annotations

import hashlib
import json

from core.domain import JobSpec, ResultType

# metadata keys that do not change a job's answer
NOT_IN_DIGEST = frozenset({"tags", "timeout_s", "cache", "rerun_of"})


def cacheable(spec: JobSpec) -> bool:
    """Whether ``spec`` may be answered from the cache: ``cache`` not false, and a seed or
    only expectation values."""
    metadata = spec.metadata
    return metadata.get("cache") is not False and ("seed" in metadata or spec.result_types == (ResultType.EXPVAL,))


def digest(spec: JobSpec, plugin_version: str | None) -> bytes | None:
    """SHA-256 of what determines ``spec``'s answer, or None when it may not be answered from
    the cache (:func:`cacheable`)."""
    metadata = spec.metadata
    if not cacheable(spec):
        return None
    asked = {key: value for key, value in metadata.items() if key not in NOT_IN_DIGEST}
    head = json.dumps(
        [spec.backend, plugin_version, [rt.value for rt in spec.result_types], asked],
        sort_keys=True,
        separators=(",", ":"),
    )
    hasher = hashlib.sha256(head.encode())
    hasher.update(b"\0" + spec.qasm.encode())
    hasher.update(b"\0" + (spec.bindings or b""))
    return hasher.digest()
