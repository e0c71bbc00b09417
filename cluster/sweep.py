"""A sweep job across the cluster: its bindings split into parts, run on every node that can take
the job, in parallel, each part's items stored under the index of its first binding (so they read
back in the PUB's order whichever node ran them).

The job's own task is the coordinator: it runs parts itself, on the CPUs it was granted, and
keeps ``IN_FLIGHT`` parts running on each other alive node that offers what the job needs (its
tags, a GPU, its memory), as Ray tasks pinned to that node (``NodeAffinitySchedulingStrategy``)
that it owns: a cancel or timeout of the job (``ray.cancel`` of the coordinator, recursive) ends
them too, and a part's write of items is guarded on the job running. When the coordinator has no
part left of its own, it runs the parts another node has not finished yet as well (whichever
ends first writes them; a seeded binding gives the same items either way), so a busy or slow node
never holds the sweep up. A part that fails fails the sweep with its error; a node that dies is
worked around (its parts are run by the coordinator).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cluster.messages import Work
from core.domain import TAG_SHARE, tag_resource

log = logging.getLogger(__name__)

SPLIT_FROM = 2_000  # bindings: a smaller sweep runs on its own node only
PARTS_PER_NODE = 4  # parts per node taking part (more: finer balance, more calls)
IN_FLIGHT = 2  # parts queued on each other node at once (one runs while the next waits)

RunPart = Callable[[int, np.ndarray], None]  # (first binding's index, values) -> items stored


def other_nodes(work: Work, me: str | None) -> list[str]:
    """Alive Ray nodes other than ``me`` that offer what ``work``'s job needs: one CPU, its
    memory, a GPU if its device is one, and its tags. Their ids, in Ray's order."""
    job = work.job
    needs = {"CPU": 1.0, "memory": float(work.memory_bytes)}
    needs.update({tag_resource(tag): TAG_SHARE for tag in job.tags})
    if work.device != "CPU":
        needs["GPU"] = 1.0
    return [
        node["NodeID"]
        for node in ray.nodes()
        if node["Alive"] and node["NodeID"] != me and all(node["Resources"].get(k, 0) >= v for k, v in needs.items())
    ]


def parts(bindings: int, nodes: int) -> list[tuple[int, int]]:
    """(first, count) of each part: ``PARTS_PER_NODE`` per node, in order."""
    count = math.ceil(bindings / (PARTS_PER_NODE * nodes))
    return [(first, min(count, bindings - first)) for first in range(0, bindings, count)]


def run_split(work: Work, values: np.ndarray, me: str | None, run_part: RunPart, remote: Callable) -> int:
    """Run a sweep's bindings (``values``, shape (bindings, P)) here and on the other nodes.

    ``run_part(first, values)`` runs and stores part of the sweep in this process;
    ``remote`` is the Ray remote function that does the same on another node, called as
    ``remote.options(...).remote(work, first, values)``. Returns how many bindings ran.

    Raises:
        Exception: what ``run_part`` raises, or a part on another node raised.
    """
    nodes = other_nodes(work, me) if len(values) >= SPLIT_FROM else []
    if not nodes:
        run_part(0, values)
        return len(values)
    todo = parts(len(values), len(nodes) + 1)
    done: set[int] = set()
    running: dict[ray.ObjectRef, tuple[str, int, int]] = {}  # ref -> (node, first, count)

    def send(node: str) -> None:
        first, count = todo.pop()  # other nodes take parts from the end, this one from the start
        options: dict[str, Any] = {
            "num_cpus": 1,
            "memory": work.memory_bytes,
            "max_retries": 0,
            "retry_exceptions": False,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False),
            "name": f"sweep-{work.job_id}-{first}",
        }
        if work.job.tags:
            options["resources"] = {tag_resource(tag): TAG_SHARE for tag in work.job.tags}
        if work.device != "CPU":
            options["num_gpus"] = 1
        running[remote.options(**options).remote(work, first, values[first : first + count])] = (node, first, count)

    def collect() -> None:
        ready, _ = ray.wait(list(running), num_returns=len(running), timeout=0)
        for ref in ready:
            node, first, count = running.pop(ref)
            try:
                ray.get(ref)
            except (ray.exceptions.NodeDiedError, ray.exceptions.WorkerCrashedError) as error:
                log.warning("job_id=%s sweep part at %d lost with node %s: %s", work.job_id, first, node, error)
                if node in nodes:
                    nodes.remove(node)
                if first not in done:
                    todo.insert(0, (first, count))  # run here
                continue
            done.add(first)
            if todo and node in nodes:
                send(node)

    for node in nodes:
        for _ in range(IN_FLIGHT):
            if todo:
                send(node)
    while True:
        if todo:
            first, count = todo.pop(0)
        else:  # nothing left of our own: run what another node has not finished, first part first
            waiting = sorted((first, count) for _, first, count in running.values() if first not in done)
            if not waiting:
                break
            first, count = waiting[0]
        run_part(first, values[first : first + count])
        done.add(first)
        collect()
    for ref in running:  # parts run here first
        ray.cancel(ref, force=True)
    return len(values)
