"""`python -m ops.raynode`: a compose container's Ray node started as `qserver node` starts one
(tags, version labels, threads, memory from the container's limit) and its own health check.

The containers themselves run in `.ci/compose-check`; here the options, the memory split, the
cgroup files and the health check against real sockets.
"""

from __future__ import annotations

import json
import socket

import pytest
from typer.testing import CliRunner

from core.settings import Settings
from ops import nodes, raynode
from ops.raynode import GIB, MIB, NodeConfigError

runner = CliRunner()


def _options(cmd: list[str]) -> dict[str, str]:
    return {name: value for name, _, value in (arg.partition("=") for arg in cmd[2:])}


# --- tags and counts ---------------------------------------------------------------------------


def test_tags_are_comma_or_space_separated_and_checked():
    assert raynode.parse_tags("gpu, big  gpu,,lab-2") == ("gpu", "big", "lab-2")
    assert raynode.parse_tags("") == ()


@pytest.mark.parametrize("text", ["bad!", "a b/c", "-lead"])
def test_a_bad_tag_is_refused_naming_the_variable(text):
    with pytest.raises(NodeConfigError, match="QSERVER_NODE_TAGS: node tag"):
        raynode.parse_tags(text)


# --- memory -------------------------------------------------------------------------------------


def test_memory_limit_reads_cgroup_v2_then_v1(tmp_path):
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    assert raynode.memory_limit(v2, v1) is None  # neither file: no limit
    v1.write_text(f"{4 * GIB}\n")
    assert raynode.memory_limit(v2, v1) == 4 * GIB
    v1.write_text("9223372036854771712\n")  # cgroup v1's "unlimited"
    assert raynode.memory_limit(v2, v1) is None
    v2.write_text("max\n")
    assert raynode.memory_limit(v2, v1) is None
    v2.write_text(f"{2 * GIB}\n")
    assert raynode.memory_limit(v2, v1) == 2 * GIB


def test_memory_split_leaves_the_object_store_and_ray_its_share():
    # 4 GiB, 2 GiB of /dev/shm: object store 30 %, 10 % kept, jobs 60 %
    tasks, store = raynode.split_memory(4 * GIB, 2 * GIB)
    assert store == int(4 * GIB * 0.3)
    assert tasks == 4 * GIB - store - int(4 * GIB * 0.1)
    # a small /dev/shm caps the object store at 90 % of it; jobs get what is left
    tasks, store = raynode.split_memory(4 * GIB, 1 * GIB)
    assert store == int(0.9 * GIB)
    assert tasks + store + int(4 * GIB * 0.1) == 4 * GIB
    # 2 GiB: the 256 MiB floor of what Ray keeps applies
    tasks, store = raynode.split_memory(2 * GIB, 1 * GIB)
    assert tasks == 2 * GIB - store - 256 * MIB


def test_a_memory_limit_too_small_for_jobs_is_refused():
    with pytest.raises(NodeConfigError, match=r"memory limit \(0.50 GiB\) leaves .* MiB for jobs"):
        raynode.split_memory(512 * MIB, 1 * GIB)


# --- the `ray start` command ------------------------------------------------------------------------


def test_a_worker_starts_as_qserver_node_join_would(monkeypatch):
    env = {"QSERVER_NODE_TAGS": "gpu,lab", "QSERVER_NODE_CPUS": "3", "PATH": "/usr/bin"}
    settings = Settings(ray_address="ray-head:6380")
    cmd, run_env = raynode.start_command("worker", env, settings, 4 * GIB, 2 * GIB)
    options = _options(cmd)
    assert cmd[1] == "start" and options["--address"] == "ray-head:6380" and "--block" in options
    assert "--head" not in options
    labels = dict(item.split("=") for item in options["--labels"].split(","))
    assert labels["qserver-version"] == nodes.local_versions()["qserver"]
    assert labels["ray-version"] == nodes.local_versions()["ray"]
    assert labels["qserver-tag/gpu"] == labels["qserver-tag/lab"] == "true"
    assert json.loads(options["--resources"]) == nodes.tag_resources(["gpu", "lab"])
    assert options["--num-cpus"] == "3"
    tasks, store = raynode.split_memory(4 * GIB, 2 * GIB)
    assert options["--memory"] == str(tasks) and options["--object-store-memory"] == str(store)
    assert options["--node-manager-port"] == str(raynode.NODE_MANAGER_PORT)
    # every worker may use all the node's CPUs (ops/rayhead.node_env); Ray never retries OOM kills
    assert run_env["OMP_NUM_THREADS"] == "3"
    assert run_env["RAY_task_oom_retries"] == "0"
    assert run_env["RUNTIME_ENV_RETRY_TIMES"] == "1" and run_env["PATH"] == "/usr/bin"


def test_the_head_listens_where_the_settings_say_and_without_a_limit_ray_counts_memory():
    settings = Settings(ray_head_port=6390, ray_dashboard_host="0.0.0.0", ray_dashboard_port=8270)
    cmd, _ = raynode.start_command("head", {"QSERVER_NODE_CPUS": "0"}, settings, None)
    options = _options(cmd)
    assert "--head" in options and "--block" in options and "--address" not in options
    assert options["--port"] == "6390" and options["--dashboard-port"] == "8270"
    assert options["--dashboard-host"] == "0.0.0.0" and options["--num-cpus"] == "0"
    assert "--memory" not in options and "--object-store-memory" not in options
    assert "--resources" not in options  # no tags


def test_the_driver_offers_nothing_and_returns_once_joined():
    env = {"QSERVER_NODE_CPUS": "8", "QSERVER_NODE_GPUS": "1", "QSERVER_NODE_MEMORY": str(GIB)}
    cmd, _ = raynode.start_command("driver", env, Settings(ray_address="ray-head:6380"), 2 * GIB)
    options = _options(cmd)
    assert options["--num-cpus"] == "0" and options["--num-gpus"] == "0"
    assert "--block" not in options
    # QSERVER_NODE_MEMORY wins over the computed split
    assert options["--memory"] == str(GIB) and "--object-store-memory" not in options


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"QSERVER_NODE_CPUS": "two"}, "QSERVER_NODE_CPUS must be a whole number, got 'two'"),
        ({"QSERVER_NODE_GPUS": "-1"}, "QSERVER_NODE_GPUS must be 0 or more, got -1"),
        ({"QSERVER_NODE_TAGS": "no way"}, None),  # two good tags
        ({"QSERVER_NODE_TAGS": "bad!"}, "QSERVER_NODE_TAGS: node tag 'bad!' is not valid"),
    ],
)
def test_bad_node_variables_are_refused_with_their_names(env, message):
    if message is None:
        cmd, _ = raynode.start_command("worker", env, Settings(), None)
        assert "qserver-tag/no=true" in _options(cmd)["--labels"]
        return
    with pytest.raises(NodeConfigError) as raised:
        raynode.start_command("worker", env, Settings(), None)
    assert message in str(raised.value)


def test_the_command_refuses_an_unknown_role_and_bad_variables(monkeypatch):
    done = runner.invoke(raynode.app, ["start", "boss"])
    assert done.exit_code == 2 and "role must be head, worker or driver, got 'boss'" in done.output
    monkeypatch.setenv("QSERVER_NODE_CPUS", "lots")
    done = runner.invoke(raynode.app, ["start", "worker"])
    assert done.exit_code == 2 and "QSERVER_NODE_CPUS must be a whole number" in done.output


# --- health ---------------------------------------------------------------------------------------


@pytest.fixture
def listening():
    """A real listening TCP port on loopback (and one that refuses)."""
    server = socket.create_server(("127.0.0.1", 0))
    closed = socket.create_server(("127.0.0.1", 0))
    refused = closed.getsockname()[1]
    closed.close()
    yield server.getsockname()[1], refused
    server.close()


def test_health_connects_to_this_containers_raylet_and_gcs(listening):
    port, refused = listening
    raylet = ["/opt/python/lib/ray/core/src/ray/raylet/raylet", "--node_ip_address=127.0.0.1"]
    gcs = ["/opt/python/lib/ray/core/src/ray/gcs/gcs_server", f"--gcs_server_port={port}"]
    assert raynode.check_health([[*raylet, f"--node_manager_port={port}"]]) == f"raylet 127.0.0.1:{port}"
    seen = raynode.check_health([["sh"], [*raylet, f"--node_manager_port={port}"], gcs])
    assert seen == f"raylet 127.0.0.1:{port}, GCS 127.0.0.1:{port}"
    with pytest.raises(RuntimeError, match=f"the raylet at 127.0.0.1:{refused} does not accept connections"):
        raynode.check_health([[*raylet, f"--node_manager_port={refused}"]])
    gcs_down = [gcs[0], f"--gcs_server_port={refused}"]
    with pytest.raises(RuntimeError, match="the GCS at .* does not accept connections"):
        raynode.check_health([[*raylet, f"--node_manager_port={port}"], gcs_down])
    with pytest.raises(RuntimeError, match="no raylet runs in this container"):
        raynode.check_health([["python", "-m", "dispatcher"]])
    with pytest.raises(RuntimeError, match="no port on its command line"):
        raynode.check_health([raylet])
