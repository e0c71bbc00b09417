"""`qserver node start/join/status/leave`: `ray start` arguments, the version check, the token,
and one live two-node cluster on this machine (a head and a tagged node, checked by a driver)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb
from rich.console import Console
from typer.testing import CliRunner

from core.domain import TAG_CAPACITY
from core.settings import Settings
from ops import cli, endpoints, nodes, procs, rayhead

PROJECT_ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
VERSIONS = {"qserver": "0.1.0", "python": "3.11.7", "ray": "2.60.0"}


def _parse(args: list[str]) -> dict[str, str]:
    out = {}
    for arg in args:
        name, _, value = arg.partition("=")
        out[name] = value
    return out


# --- `ray start` arguments ------------------------------------------------------------------------


def test_tags_become_resources_and_labels():
    spec = nodes.NodeSpec(tags=("lab", "gpu-box"), num_gpus=1, num_cpus=4, memory=8 * 2**30)
    args = _parse(nodes.ray_start_args(spec, VERSIONS))
    assert json.loads(args["--resources"]) == {"tag:lab": TAG_CAPACITY, "tag:gpu-box": TAG_CAPACITY}
    assert args["--num-gpus"] == "1" and args["--num-cpus"] == "4"
    assert args["--memory"] == str(8 * 2**30)
    from ray._private.label_utils import parse_node_labels_string  # Ray's own parser

    assert parse_node_labels_string(args["--labels"]) == {
        "qserver-version": "0.1.0",
        "python-version": "3.11.7",
        "ray-version": "2.60.0",
        "qserver-tag/lab": "true",
        "qserver-tag/gpu-box": "true",
    }


def test_no_options_means_only_the_version_labels():
    args = _parse(nodes.ray_start_args(nodes.NodeSpec(), VERSIONS))
    assert set(args) == {"--labels"}
    assert "qserver-version=0.1.0" in args["--labels"]


def test_fixed_ports_are_passed_on_and_worker_ports_go_together():
    spec = nodes.NodeSpec(ports={"node-manager-port": 6381, "min-worker-port": 10002, "max-worker-port": 10100})
    args = _parse(nodes.ray_start_args(spec, VERSIONS))
    assert args["--node-manager-port"] == "6381"
    assert (args["--min-worker-port"], args["--max-worker-port"]) == ("10002", "10100")
    with pytest.raises(nodes.NodeError, match="go together"):
        nodes.NodeSpec(ports={"min-worker-port": 10002})


@pytest.mark.parametrize("tag", ["_lab", "lab-", "a" * 64, "a,b", "a=b", "", "Ü"])
def test_a_tag_that_cannot_be_a_ray_label_is_refused(tag):
    with pytest.raises(nodes.NodeError, match="not valid: a tag is 1-63"):
        nodes.NodeSpec(tags=(tag,))


def test_negative_counts_and_zero_memory_are_refused():
    with pytest.raises(nodes.NodeError, match="--num-gpus"):
        nodes.NodeSpec(num_gpus=-1)
    with pytest.raises(nodes.NodeError, match="--memory is in bytes"):
        nodes.NodeSpec(memory=0)


def test_label_values_follow_rays_syntax():
    from ray._private.label_utils import validate_label_value

    for raw, want in (("0.1.0+g12ab.dirty", "0.1.0_g12ab.dirty"), ("3.12.0+", "3.12.0"), ("2.60.0", "2.60.0")):
        assert nodes.label_value(raw) == want
        validate_label_value(nodes.label_value(raw))


def test_local_versions_are_this_machines():
    versions = nodes.local_versions()
    assert versions == {
        "qserver": importlib.metadata.version("qserver"),
        "python": platform.python_version(),
        "ray": importlib.metadata.version("ray"),
    }
    assert nodes.versions_from_labels(nodes.node_labels(nodes.NodeSpec(tags=("x",)), versions)) == versions
    assert nodes.tags_from_labels(nodes.node_labels(nodes.NodeSpec(tags=("x", "y")), versions)) == ["x", "y"]


def test_up_starts_its_head_with_the_version_labels(tmp_path, monkeypatch):
    started = []

    class FakePopen:
        pid = 999_999_999

        def __init__(self, cmd, **kwargs):
            started.append(cmd)

    monkeypatch.setattr(rayhead.subprocess, "Popen", FakePopen)
    settings = Settings(state_dir=tmp_path / "s", ray_head_port=endpoints.free_port())
    rayhead.launch(settings, {})
    rayhead.launch(settings, {}, nodes.NodeSpec(tags=("lab",)))
    plain, tagged = (_parse(cmd[2:]) for cmd in started)
    assert "--head" in plain and plain["--labels"].startswith("qserver-version=")
    assert "--resources" not in plain
    assert json.loads(tagged["--resources"]) == {"tag:lab": TAG_CAPACITY}


# --- the version check -------------------------------------------------------------------------------


def test_differences_are_reported_by_name_with_both_values():
    head = {"qserver-version": "0.1.0", "python-version": "3.11.9", "ray-version": "2.60.0"}
    assert nodes.compare_versions(VERSIONS, head) == [nodes.Difference("Python", "3.11.7", "3.11.9")]
    assert nodes.compare_versions(VERSIONS, dict(VERSIONS)) == []
    missing = nodes.compare_versions(VERSIONS, {"qserver": "0.2.0"})
    assert missing == [
        nodes.Difference("QServer", "0.1.0", "0.2.0"),
        nodes.Difference("Python", "3.11.7", "(not reported)"),
        nodes.Difference("Ray", "2.60.0", "(not reported)"),
    ]


@pytest.mark.parametrize(
    "address, host, port",
    [
        ("192.168.1.10:6380", "192.168.1.10", 6380),
        ("head.lan:6380", "head.lan", 6380),
        ("[fd00::1]:6380", "fd00::1", 6380),
    ],
)
def test_head_address(address, host, port):
    assert nodes.split_address(address) == (host, port)


@pytest.mark.parametrize("address", ["192.168.1.10", "head:", ":6380", "h:0", "h:70000", "fd00::1:6380"])
def test_a_bad_head_address_is_refused(address):
    with pytest.raises(nodes.NodeError):
        nodes.split_address(address)


def test_database_warnings():
    assert "QSERVER_DATABASE_URL is not set" in nodes.database_warning({}, "192.168.1.10")
    local = {"QSERVER_DATABASE_URL": "postgresql://q@127.0.0.1:5432/qserver"}
    assert "points at 127.0.0.1 while the head is 192.168.1.10" in nodes.database_warning(local, "192.168.1.10")
    assert "localhost" in nodes.database_warning({"QSERVER_DATABASE_URL": "postgresql://q@localhost/qserver"}, "h.lan")
    assert nodes.database_warning(local, "127.0.0.1") is None
    assert (
        nodes.database_warning({"QSERVER_DATABASE_URL": "postgresql://q@192.168.1.10/qserver"}, "192.168.1.10") is None
    )


# --- the token ----------------------------------------------------------------------------------------


@pytest.fixture
def state(tmp_path) -> Settings:
    return Settings(state_dir=tmp_path / "state")


def test_missing_token_says_where_to_copy_it_from(state):
    with pytest.raises(nodes.TokenMissing) as missing:
        nodes.token_env(state, None, {})
    message = str(missing.value)
    assert "Copy it from the head's state dir" in message
    assert f"scp HEAD:~/.qserver/ray_auth_token {state.state_dir}/ray_auth_token" in message
    assert "--token-file PATH" in message and "RAY_AUTH_TOKEN_PATH / RAY_AUTH_TOKEN" in message


def test_token_sources_in_order(state, tmp_path):
    given = tmp_path / "given"
    given.write_text("t1\n")
    env, source = nodes.token_env(state, given, {"RAY_AUTH_TOKEN": "t2"})
    assert env == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(given)} and source.startswith("--token-file")
    env, source = nodes.token_env(state, None, {"RAY_AUTH_TOKEN": " t2 ", "RAY_AUTH_TOKEN_PATH": str(given)})
    assert env == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "t2"} and source == "RAY_AUTH_TOKEN"
    env, _ = nodes.token_env(state, None, {"RAY_AUTH_TOKEN_PATH": str(given)})
    assert env["RAY_AUTH_TOKEN_PATH"] == str(given)
    default = state.state_dir / "ray_auth_token"
    default.parent.mkdir(parents=True)
    default.write_text("t3")
    env, source = nodes.token_env(state, None, {})
    assert env["RAY_AUTH_TOKEN_PATH"] == str(default.resolve()) and source == str(default.resolve())


def test_unreadable_or_empty_token_files_are_named(state, tmp_path):
    with pytest.raises(nodes.TokenMissing, match=f"--token-file: cannot read the Ray token at {tmp_path}/nope"):
        nodes.token_env(state, tmp_path / "nope", {})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(nodes.TokenMissing, match="RAY_AUTH_TOKEN_PATH: .*empty is empty"):
        nodes.token_env(state, None, {"RAY_AUTH_TOKEN_PATH": str(tmp_path / "empty")})


def test_the_join_environment_keeps_token_auth_on():
    shell = {"RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": "x:1", "RAY_AUTH_TOKEN": "old", "PATH": "/bin"}
    env = nodes.join_env(shell, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/t"})
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == "/t"
    assert "RAY_ADDRESS" not in env and "RAY_AUTH_TOKEN" not in env
    assert env["RUNTIME_ENV_RETRY_TIMES"] == "1" and env["PATH"] == "/bin"


# --- the CLI without Ray ------------------------------------------------------------------------------


@pytest.fixture
def node_cli(state, monkeypatch, tmp_path):
    """`qserver node ...` with ``state`` settings, a token file and no real `ray start`."""
    monkeypatch.setattr(cli.common, "settings_or_exit", lambda: state)
    token = tmp_path / "token"
    token.write_text("secret")
    joined = []
    monkeypatch.setattr(rayhead, "join_node", lambda *args: joined.append(args) or "10.0.0.7")
    monkeypatch.setattr(rayhead, "node_raylet_pid", lambda settings: None)
    monkeypatch.setenv("QSERVER_DATABASE_URL", "postgresql://q@10.0.0.1/qserver")

    def invoke(*args: str):
        result = runner.invoke(cli.app, ["node", *args], catch_exceptions=False)
        return result, joined

    invoke.token = token
    return invoke


def test_join_refuses_different_versions_unless_forced(node_cli, monkeypatch):
    head = nodes.HeadVersions("n" * 56, "10.0.0.1", True, {**nodes.local_versions(), "ray": "2.59.0"}, True)
    monkeypatch.setattr(nodes, "head_versions", lambda dsn, host: head)
    result, joined = node_cli("join", "10.0.0.1:6380", "--token-file", str(node_cli.token))
    assert result.exit_code == 1, result.output
    assert "versions that differ" in result.output and "2.59.0" in result.output
    assert "Ray" in result.output and "not joining" in result.output and not joined
    result, joined = node_cli("join", "10.0.0.1:6380", "--token-file", str(node_cli.token), "--tag", "lab", "--force")
    assert result.exit_code == 0, result.output
    ((settings, address, spec, env),) = joined
    assert address == "10.0.0.1:6380" and spec.tags == ("lab",)
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == str(node_cli.token)
    assert "joined 10.0.0.1:6380 as node 10.0.0.7" in result.output


def test_join_with_the_same_versions(node_cli, monkeypatch):
    head = nodes.HeadVersions("n" * 56, "10.0.0.1", True, nodes.local_versions(), True)
    monkeypatch.setattr(nodes, "head_versions", lambda dsn, host: head)
    result, joined = node_cli("join", "10.0.0.1:6380", "--token-file", str(node_cli.token), "--num-gpus", "1")
    assert result.exit_code == 0, result.output
    assert "same QServer" in result.output and joined[0][2].num_gpus == 1


def test_join_without_a_database_needs_force(node_cli, monkeypatch):
    monkeypatch.setenv("QSERVER_DATABASE_URL", "postgresql://q@127.0.0.1:1/qserver")
    state = Settings(state_dir=cli.common.settings_or_exit().state_dir)  # reads the unreachable URL
    monkeypatch.setattr(cli.common, "settings_or_exit", lambda: state)
    result, joined = node_cli("join", "10.0.0.1:6380", "--token-file", str(node_cli.token))
    assert result.exit_code == 1
    assert "could not check the versions against the head: Postgres did not answer" in result.output
    assert "points at 127.0.0.1 while the head is 10.0.0.1" in result.output
    assert not joined
    result, joined = node_cli("join", "10.0.0.1:6380", "--token-file", str(node_cli.token), "--force")
    assert result.exit_code == 0 and joined


def test_join_without_a_token_exits_2_saying_where_it_is(node_cli, monkeypatch):
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    result, joined = node_cli("join", "10.0.0.1:6380")
    assert result.exit_code == 2 and not joined
    assert "no Ray token" in result.output and "ray_auth_token" in result.output


def test_start_needs_head_and_bad_tags_exit_2(node_cli):
    result, _ = node_cli("start")
    assert result.exit_code == 2 and "qserver node join HEAD_ADDRESS" in result.output
    result, _ = node_cli("join", "10.0.0.1:6380", "--tag", "-bad", "--token-file", str(node_cli.token))
    assert result.exit_code == 2 and "not valid" in result.output


def test_leave_with_nothing_joined(node_cli):
    result, _ = node_cli("leave")
    assert result.exit_code == 0 and "no node started by `qserver node join` runs here" in result.output


# --- the head's versions and `node status` against a scratch database ---------------------------------


@pytest.fixture
def db(scratch_dsn):
    with psycopg.connect(scratch_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE nodes")
        yield conn


def _node(db, node_id, address, *, alive=True, versions=None, seen_s_ago=0.0, **more):
    columns = {"node_id": node_id, "address": address, "alive": alive, "versions": Jsonb(versions or {}), **more}
    db.execute(
        f"INSERT INTO nodes ({', '.join(columns)}, last_seen) VALUES "
        f"({', '.join(['%s'] * len(columns))}, now() - make_interval(secs => %s))",
        [*columns.values(), seen_s_ago],
    )


def test_head_row_is_the_one_at_the_head_address(db, scratch_dsn):
    assert nodes.head_versions(scratch_dsn, "10.0.0.1") is None  # empty table
    _node(db, "head", "10.0.0.1", versions={"qserver-version": "0.1.0", "ray-version": "2.60.0"}, seen_s_ago=60)
    _node(db, "other", "10.0.0.2", versions={"qserver": "0.0.9"})
    _node(db, "blank", "10.0.0.1:6380", versions={})  # no versions: never the answer
    head = nodes.head_versions(scratch_dsn, "10.0.0.1")
    assert (head.node_id, head.matched_address) == ("head", True)
    assert head.versions == {"qserver": "0.1.0", "ray": "2.60.0"}
    # another host: the alive node seen last
    other = nodes.head_versions(scratch_dsn, "192.168.9.9")
    assert (other.node_id, other.matched_address) == ("other", False)
    db.execute("UPDATE nodes SET alive = false")
    assert nodes.head_versions(scratch_dsn, "192.168.9.9") is None
    assert nodes.head_versions(scratch_dsn, "10.0.0.1").node_id == "head"  # a dead head still counts
    # "ip:port" addresses match the host too, and LIKE wildcards are not wildcards
    db.execute("TRUNCATE nodes")
    _node(db, "p", "head_1.lan:6380", versions={"ray": "2.60.0"}, alive=False)
    assert nodes.head_versions(scratch_dsn, "head_1.lan").node_id == "p"
    assert nodes.head_versions(scratch_dsn, "head-1.lan") is None


def test_head_versions_without_a_nodes_table(scratch_dsn):
    empty = psycopg.conninfo.make_conninfo(scratch_dsn, dbname="postgres")
    with pytest.raises(nodes.CheckUnavailable, match="no `nodes` table"):
        nodes.head_versions(empty, "10.0.0.1")


def test_node_status_lists_the_table(db, scratch_dsn, monkeypatch, tmp_path):
    settings = Settings(state_dir=tmp_path / "s", database_url=scratch_dsn)
    monkeypatch.setattr(cli.common, "settings_or_exit", lambda: settings)
    monkeypatch.setattr(cli.node, "out", Console(width=200, soft_wrap=True))  # one line per node
    result = runner.invoke(cli.app, ["node", "status"], catch_exceptions=False)
    assert result.exit_code == 0 and "the dispatcher hasn't reported" in result.stdout
    _node(
        db,
        "a" * 56,
        "10.0.0.1",
        hostname="head",
        tags=["lab"],
        cpus_total=8,
        cpus_free=6,
        gpus_total=1,
        gpus_free=1,
        memory_total=16 * 2**30,
        memory_free=12 * 2**30,
        jobs_running=2,
    )
    _node(db, "b" * 56, "10.0.0.2", alive=False, seen_s_ago=600)
    result = runner.invoke(cli.app, ["node", "status"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    head = next(line for line in lines if "aaaaaaaa " in line)
    for text in ("10.0.0.1 ", " head ", "lab", " alive ", "6/8", "1/1", "12.0/16.0", " 2 "):
        assert text in head, (text, head)
    gone = next(line for line in lines if "bbbbbbbb " in line)
    assert " offline " in gone and "10m ago" in gone
    assert "1 offline: their tags still count as known" in result.stdout and "qserver node forget ID" in result.stdout


# --- live: a head and a tagged node on this machine ---------------------------------------------------

DRIVER = """
import json, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
print(json.dumps([{"id": n["NodeID"], "alive": n["Alive"], "resources": n["Resources"], "labels": n.get("Labels", {})}
                  for n in ray.nodes()]))
"""


def _qserver(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_live_head_and_tagged_node(scratch_dsn):
    root = Path(tempfile.mkdtemp(prefix="qsn", dir="/tmp"))  # short: Ray's sockets live below
    port = endpoints.free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "QSERVER_"))}
    base |= {"QSERVER_DATABASE_URL": scratch_dsn, "RAY_USAGE_STATS_ENABLED": "0"}
    head_env = base | {
        "QSERVER_STATE_DIR": str(root / "h"),
        "QSERVER_RAY_HEAD_PORT": str(port),
        "QSERVER_RAY_DASHBOARD_PORT": str(endpoints.free_port()),
    }
    node_env = base | {"QSERVER_STATE_DIR": str(root / "n")}
    head_settings = Settings(state_dir=root / "h", ray_head_port=port)
    node_settings = Settings(state_dir=root / "n")
    token = root / "h" / "ray_auth_token"
    started = time.monotonic()
    try:
        head = _qserver(head_env, "node", "start", "--head", "--tag", "headtag")
        assert head.returncode == 0, head.stdout + head.stderr
        assert f":{port}" in head.stdout and f"token:      {token}" in head.stdout
        assert "qserver node join " in head.stdout and "--token-file" in head.stdout
        # a second start cannot give the running head other tags: it says so and fails
        again = _qserver(head_env, "node", "start", "--head", "--tag", "other")
        assert again.returncode == 1 and again.stdout == "", again.stdout + again.stderr
        assert "our Ray head already runs" in again.stderr and "nothing was started" in again.stderr
        assert "`qserver down`" in again.stderr and "then `qserver up`" in again.stderr
        # the dispatcher's row for the head (it is not running here)
        with psycopg.connect(scratch_dsn, autocommit=True) as db:
            db.execute("TRUNCATE nodes")
            _node(db, "head", "127.0.0.1", versions=nodes.node_labels(nodes.NodeSpec(), nodes.local_versions()))
            db.execute("DELETE FROM jobs")
        join = _qserver(
            node_env,
            "node",
            "join",
            f"127.0.0.1:{port}",
            "--tag",
            "lab",
            "--num-cpus",
            "1",
            "--token-file",
            str(token),
        )
        assert join.returncode == 0, join.stdout + join.stderr
        assert "same QServer" in join.stderr and "joined 127.0.0.1:" in join.stdout
        driver = subprocess.run(
            [sys.executable, "-c", DRIVER, f"127.0.0.1:{port}"],
            env=base | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert driver.returncode == 0, driver.stderr[-3000:]
        seen = [n for n in json.loads(driver.stdout.strip().splitlines()[-1]) if n["alive"]]
        assert len(seen) == 2, seen
        (lab,) = [n for n in seen if "tag:lab" in n["resources"]]
        assert lab["resources"]["tag:lab"] == TAG_CAPACITY and lab["resources"]["CPU"] == 1
        assert lab["labels"]["qserver-tag/lab"] == "true"
        (other,) = [n for n in seen if n is not lab]
        assert "tag:headtag" in other["resources"]
        for node in seen:
            assert nodes.versions_from_labels(node["labels"]) == nodes.local_versions()
        assert lab["labels"][nodes.NODE_KEY_LABEL] == nodes.node_key(node_settings, "node")
        assert other["labels"][nodes.NODE_KEY_LABEL] == nodes.node_key(head_settings, "head")
        # a job runs on the joined node (its row and the job's as the dispatcher and an executor
        # would write them: neither runs here): leave refuses, naming it, unless --force
        job_id = str(uuid.uuid4())
        with psycopg.connect(scratch_dsn, autocommit=True) as db:
            _node(db, lab["id"], "127.0.0.1", node_key=lab["labels"][nodes.NODE_KEY_LABEL])
            db.execute(
                "INSERT INTO jobs (id, target_simulator, qasm, status, node_id, start_time)"
                " VALUES (%s, 'aer', 'x', 'running', %s, now())",
                (job_id, lab["id"]),
            )
        refused = _qserver(node_env, "node", "leave")
        assert refused.returncode == 1, refused.stderr
        assert f"1 job(s) running on this node ({lab['id'][:12]}): {job_id}" in refused.stderr
        assert "not leaving" in refused.stderr and "qserver node drain" in refused.stderr
        assert rayhead.node_raylet_pid(node_settings) is not None  # still there
        leave = _qserver(node_env, "node", "leave", "--force")
        assert leave.returncode == 0 and "left the cluster" in leave.stderr, leave.stderr
        assert "--force: leaving" in leave.stderr
        assert rayhead.node_pids(node_settings) == []
        assert rayhead.gcs_pid(head_settings) is not None  # the head is not ours to stop there
    finally:
        rayhead.leave_node(node_settings)
        rayhead.stop(head_settings)
        leftovers = [pid for pid in procs.all_pids() if any(str(root) + "/" in a for a in procs.cmdline(pid))]
        shutil.rmtree(root, ignore_errors=True)
    assert leftovers == []
    assert time.monotonic() - started < 120
