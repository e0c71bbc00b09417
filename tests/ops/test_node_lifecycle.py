"""`qserver node drain` and `forget` against a scratch database, the node rows the dispatcher
writes (core/store/cluster.py save_nodes), and placement around draining and forgotten nodes.

No dispatcher runs here: the rows and running jobs are written the way the dispatcher and the
executors write them, and a thread stands in for the dispatcher stopping a drained node. The
dispatcher's own part (Ray's drain, warm executors moved, the node stopped) runs for real in
tests/cluster/test_homelab.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import psycopg
import pytest
from rich.console import Console
from typer.testing import CliRunner

from core import store
from core.settings import Settings
from core.store import ClaimedJob
from dispatcher.cluster import ClusterView
from dispatcher.placement import Node, decide, job_cpus
from ops import cli, nodes

runner = CliRunner()
HEAD, LAB, OLD, OTHER = "aa" * 28, "bb" * 28, "cc" * 28, "bc" * 28  # Ray node ids: 56 hex digits
GIB = 1024**3


@pytest.fixture
def db(scratch_dsn):
    with psycopg.connect(scratch_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE nodes; DELETE FROM jobs")
        yield conn


@pytest.fixture
def qserver(scratch_dsn, monkeypatch, tmp_path):
    """`qserver node ARGS` with the scratch database's settings; returns click's Result."""
    settings = Settings(state_dir=tmp_path / "s", database_url=scratch_dsn)
    monkeypatch.setattr(cli.common, "settings_or_exit", lambda: settings)
    monkeypatch.setattr(cli.node, "out", Console(width=250, soft_wrap=True))

    def invoke(*args: str):
        return runner.invoke(cli.app, ["node", *args], catch_exceptions=False)

    invoke.settings = settings
    return invoke


def _row(db, node_id, address, *, alive=True, tags=(), head=False, node_key=None, draining=False):
    db.execute(
        "INSERT INTO nodes (node_id, address, alive, tags, head, node_key, cpus_total, draining_since)"
        " VALUES (%s, %s, %s, %s, %s, %s, 2, CASE WHEN %s THEN now() END)",
        (node_id, address, alive, list(tags), head, node_key, draining),
    )


def _running_job(db, node_id) -> str:
    job_id = str(uuid.uuid4())
    db.execute(
        "INSERT INTO jobs (id, target_simulator, qasm, status, node_id, start_time)"
        " VALUES (%s, 'aer', 'x', 'running', %s, now())",
        (job_id, node_id),
    )
    return job_id


def _cluster(db):
    db.execute("TRUNCATE nodes")
    _row(db, HEAD, "10.0.0.1", tags=["cpu"], head=True)
    _row(db, LAB, "10.0.0.2", tags=["lab", "cpu"])
    _row(db, OLD, "10.0.0.3", alive=False, tags=["attic"])
    _row(db, OTHER, "10.0.0.4", alive=False)


# --- drain ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ident", "code", "says"),
    [
        ("xyz", 2, "is not a node id: give its first 4 or more hex digits"),
        ("bb", 2, "is not a node id"),
        ("dddd", 1, "no node's id starts with dddd"),
        ("b", 2, "is not a node id"),
        ("aaaa", 1, "is the Ray head: the dispatcher and the runner"),
        ("cccc", 1, f"node {OLD[:12]} is offline: nothing to drain; `qserver node forget {OLD[:12]}`"),
    ],
)
def test_drain_refuses_what_cannot_be_drained(db, qserver, ident, code, says):
    _cluster(db)
    result = qserver("drain", ident, "--no-wait")
    assert result.exit_code == code, result.output
    assert says in result.output
    assert db.execute("SELECT count(*) FROM nodes WHERE draining_since IS NOT NULL").fetchone()[0] == 0


def test_a_prefix_of_two_nodes_names_both(db, qserver):
    _cluster(db)
    _row(db, "bbbb" + "0" * 52, "10.0.0.9")
    result = qserver("drain", "bbbb", "--no-wait")
    assert (
        result.exit_code == 1
        and f"bbbb names 2 nodes ({'bbbb' + '0' * 8}, {LAB[:12]}): give more digits" in result.output
    )
    assert qserver("drain", "bbbbb", "--no-wait").exit_code == 0


def test_drain_without_an_id_needs_a_node_joined_here(db, qserver):
    _cluster(db)
    result = qserver("drain")
    assert result.exit_code == 2
    assert "no node that `qserver node join` started here" in result.output and "NODE_ID" in result.output


def test_drain_marks_the_node_and_status_shows_it(db, qserver):
    _cluster(db)
    result = qserver("drain", LAB[:6], "--no-wait")
    assert result.exit_code == 0, result.output
    assert f"draining node {LAB[:12]} (10.0.0.2, tags lab,cpu): no new job goes there" in result.output
    (since,) = db.execute("SELECT draining_since FROM nodes WHERE node_id = %s", (LAB,)).fetchone()
    assert since is not None
    assert qserver("drain", LAB[:6], "--no-wait").exit_code == 0  # again: kept, not moved
    assert db.execute("SELECT draining_since FROM nodes WHERE node_id = %s", (LAB,)).fetchone()[0] == since
    status = qserver("status").stdout
    assert " draining " in next(line for line in status.splitlines() if line.startswith(LAB[:8]))
    assert "alive (head)" in next(line for line in status.splitlines() if line.startswith(HEAD[:8]))


def test_drain_waits_for_the_running_jobs_and_the_node_to_leave(db, qserver, scratch_dsn):
    _cluster(db)
    job = _running_job(db, LAB)
    # still running at the timeout: exit 1, naming the job
    result = qserver("drain", LAB[:8], "--timeout", "1")
    assert result.exit_code == 1, result.output
    assert f"1 job(s) running on node {LAB[:12]}: {job}" in result.output
    assert f"node {LAB[:12]} still draining after 1 s (1 job(s) running)" in result.output

    def dispatcher() -> None:  # the job ends, then the dispatcher stops the drained node
        with psycopg.connect(scratch_dsn, autocommit=True) as conn:
            time.sleep(1.5)
            conn.execute("UPDATE jobs SET status = 'finished', finish_time = now() WHERE id = %s", (job,))
            time.sleep(1.5)
            conn.execute("UPDATE nodes SET alive = false WHERE node_id = %s", (LAB,))

    stand_in = threading.Thread(target=dispatcher)
    stand_in.start()
    started = time.monotonic()
    result = qserver("drain", LAB[:8])
    stand_in.join()
    assert result.exit_code == 0, result.output
    assert 2.5 < time.monotonic() - started < 15
    assert f"1 job(s) running on node {LAB[:12]}" in result.output
    assert f"no job runs on node {LAB[:12]}: waiting for the dispatcher to stop it" in result.output
    assert f"node {LAB[:12]} drained and left the cluster; `qserver node forget {LAB[:12]}`" in result.stdout


def test_drain_says_so_when_the_dispatcher_cancels_it(db, qserver, scratch_dsn):
    _cluster(db)

    def dispatcher() -> None:  # the dispatcher's Ray connection is on that node: it cancels the drain
        with psycopg.connect(scratch_dsn, autocommit=True) as conn:
            time.sleep(1.5)
            conn.execute("UPDATE nodes SET draining_since = NULL WHERE node_id = %s", (LAB,))

    stand_in = threading.Thread(target=dispatcher)
    stand_in.start()
    result = qserver("drain", LAB[:8], "--timeout", "30")
    stand_in.join()
    assert result.exit_code == 1, result.output
    assert f"the dispatcher cancelled the drain of node {LAB[:12]}: its own Ray connection" in result.output


# --- forget ---------------------------------------------------------------------------------------


def test_forget_refuses_an_alive_node_and_forgets_offline_ones(db, qserver, scratch_dsn):
    _cluster(db)
    result = qserver("forget", LAB[:6])
    assert result.exit_code == 1 and f"node {LAB[:12]} is alive: `qserver node drain {LAB[:12]}` first" in result.output
    assert qserver("forget").exit_code == 2
    result = qserver("forget", OLD[:4])
    assert result.exit_code == 0, result.output
    assert f"forgot node {OLD[:12]} (10.0.0.3, tags attic)" in result.stdout
    assert "no node on record offers tag(s) attic any more: new jobs asking for them are refused" in result.output
    assert {row[0] for row in db.execute("SELECT node_id FROM nodes")} == {HEAD, LAB, OTHER}

    async def capabilities():
        async with await psycopg.AsyncConnection.connect(scratch_dsn, row_factory=psycopg.rows.dict_row) as conn:
            return await store.cluster_capabilities(conn)

    assert asyncio.run(capabilities())["tags_known"] == {"cpu", "lab"}
    result = qserver("forget", OLD[:4])
    assert result.exit_code == 1 and "no node's id starts with" in result.output
    result = qserver("forget", "--all-offline")
    assert result.exit_code == 0 and f"forgot node {OTHER[:12]} (10.0.0.4, tags -)" in result.stdout
    assert "any more" not in result.output  # it offered no tag
    assert qserver("forget", "--all-offline").stdout.strip() == "no offline node on record"


# --- the rows the dispatcher writes ---------------------------------------------------------------


def _ray_row(node_id, *, alive=True, key=None, head=False, tags=()):
    return {
        "node_id": node_id,
        "address": "10.0.0.5",
        "hostname": "box",
        "tags": list(tags),
        "alive": alive,
        "cpus_total": 4.0,
        "cpus_free": 4.0,
        "gpus_total": 0.0,
        "gpus_free": 0.0,
        "memory_total": GIB,
        "memory_free": GIB,
        "jobs_running": 0,
        "versions": {},
        "head": head,
        "node_key": key,
    }


def test_saved_nodes_a_node_that_comes_back_replaces_its_row_and_forgotten_ones_stay_gone(db, scratch_dsn):
    async def save(*rows):
        async with await psycopg.AsyncConnection.connect(scratch_dsn, row_factory=psycopg.rows.dict_row) as conn:
            await store.save_nodes(conn, nodes=list(rows))

    def table():
        return {r[0]: r[1:] for r in db.execute("SELECT node_id, alive, head, node_key, tags FROM nodes")}

    asyncio.run(save(_ray_row(HEAD, head=True, key="h"), _ray_row(LAB, key="k", tags=["lab"])))
    assert table() == {HEAD: (True, True, "h", []), LAB: (True, False, "k", ["lab"])}
    db.execute("UPDATE nodes SET draining_since = now() WHERE node_id = %s", (LAB,))
    # the lab node leaves: Ray lists it dead (its resources gone); we keep what it offered
    asyncio.run(save(_ray_row(HEAD, head=True, key="h"), {**_ray_row(LAB, alive=False, key="k"), "tags": []}))
    assert table()[LAB] == (False, False, "k", ["lab"])
    # a dead node never seen alive is not recorded (a forgotten one stays forgotten)
    db.execute("DELETE FROM nodes WHERE node_id = %s", (LAB,))
    asyncio.run(
        save(_ray_row(HEAD, head=True, key="h"), _ray_row(LAB, alive=False, key="k"), _ray_row(OLD, alive=False))
    )
    assert set(table()) == {HEAD}
    # the same machine's node comes back (a new Ray node id, the same key): its offline row goes
    asyncio.run(save(_ray_row(HEAD, head=True, key="h"), _ray_row(LAB, key="k", tags=["lab"])))
    asyncio.run(save(_ray_row(HEAD, head=True, key="h"), _ray_row(OTHER, key=None)))  # LAB left
    assert table()[LAB][0] is False
    asyncio.run(save(_ray_row(HEAD, head=True, key="h"), _ray_row(OTHER), _ray_row(OLD, key="k", tags=["lab"])))
    assert set(table()) == {HEAD, OTHER, OLD}
    # a node without a key replaces nothing
    asyncio.run(save(_ray_row(HEAD, head=True, key="h"), _ray_row(OLD, key="k")))
    asyncio.run(save(_ray_row(HEAD, head=True, key="h"), _ray_row(LAB)))
    assert set(table()) == {HEAD, OTHER, OLD, LAB}
    db.execute("UPDATE nodes SET draining_since = now() WHERE node_id = %s", (OLD,))

    async def known():
        async with await psycopg.AsyncConnection.connect(scratch_dsn, row_factory=psycopg.rows.dict_row) as conn:
            return {row["node_id"]: row for row in await store.known_nodes(conn)}

    rows = asyncio.run(known())
    assert rows[OLD]["draining"] is True and rows[LAB]["draining"] is False and rows[HEAD]["head"] is True


# --- placement ------------------------------------------------------------------------------------


def _job(tags=()) -> ClaimedJob:
    return ClaimedJob(
        id=uuid.uuid4(),
        backend="aer",
        plugin="aer-plugin",
        plugin_version=None,
        qasm="",
        metadata={"tags": list(tags)} if tags else {},
        result_types=("counts",),
        attempts=1,
        needs_gpu=False,
    )


def test_a_draining_node_takes_no_new_job_and_its_jobs_wait():
    lab = Node("lab-node-0001", alive=True, tags=frozenset({"lab"}), memory=16 * GIB, cpus=8, draining=True)
    gone = Node("lab-node-0002", alive=False, tags=frozenset({"lab"}), memory=16 * GIB, cpus=8)
    head = Node("head-node-001", alive=True, memory=4 * GIB, cpus=2)
    decision = decide(_job(["lab"]), GIB, [head, lab])
    assert decision.action == "wait"
    assert decision.reason == "waiting for a node with tag 'lab' to come online (draining: lab-node-000)"
    both = decide(_job(["lab"]), GIB, [head, lab, gone]).reason
    assert both.endswith("(known but offline: lab-node-000; draining: lab-node-000)")
    assert (
        decide(_job(["lab"]), GIB, [head, Node("lab-node-0001", True, frozenset({"lab"}), memory=GIB)]).action == "run"
    )
    # a large job gets the CPUs of the largest open node, not the draining one's
    assert job_cpus(_job(), 3 * GIB, [head, lab], Settings()) == 2


def test_the_view_republishes_when_a_node_drains_or_is_forgotten():
    def rows(*specs):
        return [
            {"node_id": n, "alive": a, "tags": [], "gpus_total": 0, "memory_total": GIB, "cpus_total": 1,
             "head": n == "head", "jobs_running": 0, "draining": d}
            for n, a, d in specs
        ]  # fmt: skip

    view = ClusterView()
    assert view.update(rows(("head", True, False), ("lab", True, False), ("old", False, False)))
    assert not view.update(rows(("head", True, False), ("lab", True, False), ("old", False, False)))
    assert view.update(rows(("head", True, False), ("lab", True, True), ("old", False, False)))  # draining
    assert view.draining() == {"lab"}
    assert view.update(rows(("head", True, False), ("lab", True, True)))  # old forgotten
    assert not view.update(rows(("head", True, False), ("lab", True, True)))
    view.update(rows(("head", True, True), ("lab", True, True)))
    assert view.draining() == {"lab"}  # never the head: the dispatcher lives there


def test_node_keys_tell_roles_and_state_dirs_apart(tmp_path):
    a, b = Settings(state_dir=tmp_path / "a"), Settings(state_dir=tmp_path / "b")
    assert nodes.node_key(a, "node") == nodes.node_key(Settings(state_dir=tmp_path / "a"), "node")
    assert len({nodes.node_key(a, "node"), nodes.node_key(a, "head"), nodes.node_key(b, "node")}) == 3
    assert nodes.label_value(nodes.node_key(a, "node")) == nodes.node_key(a, "node")
    labels = nodes.node_labels(nodes.NodeSpec(tags=("lab",)), nodes.local_versions(), nodes.node_key(a, "node"))
    assert labels[nodes.NODE_KEY_LABEL] == nodes.node_key(a, "node")
    assert nodes.NODE_KEY_LABEL not in nodes.node_labels(nodes.NodeSpec(), nodes.local_versions())
