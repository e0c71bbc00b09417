"""The compose check's own logic (`.ci/compose-check` runs the whole of it, minutes, outside
pytest): which mirror, which compose, which stand-ins for which upstream images, when a cached
image is stale, what a Bell result must be."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ops.composecheck import host, images, run
from ops.prereqs import SetupError

ROOT = Path(__file__).resolve().parents[2]


def test_the_mirror_is_the_one_apt_uses(tmp_path):
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "nodesource.sources").write_text("Types: deb\nURIs: https://deb.nodesource.com/node_20.x\n")
    assert host.debian_mirror((tmp_path / "sources.list", parts)) == host.DEFAULT_MIRROR
    (parts / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    assert host.debian_mirror((tmp_path / "sources.list", parts)) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://other.example/debian bookworm main\n")
    assert host.debian_mirror((tmp_path / "sources.list", parts)) == "http://other.example/debian"


@pytest.mark.parametrize(
    ("output", "v2"),
    [
        ("Docker Compose version 2.26.1-4", True),
        ("Docker Compose version v2.30.3", True),
        ("docker-compose version 1.29.2, build unknown", False),
        ("", False),
        (None, False),
    ],
)
def test_only_compose_v2_will_do(output, v2):
    """Debian 12's compose v1 refuses compose.yml's `name:`."""
    assert host.compose_is_v2(output) is v2


def test_every_upstream_image_has_a_stand_in():
    assert images.upstream_names(ROOT) == {
        "python": "python:3.11-slim-bookworm",
        "nginx": "nginx:1.27-alpine",
        "postgres": "postgres:15",
        "rabbitmq": "rabbitmq:3.13",
    }
    for name in images.STANDINS:
        assert (images.STANDINS_DIR / name / "Dockerfile").is_file(), name
        assert "FROM ${BASE}" in (images.STANDINS_DIR / name / "Dockerfile").read_text(), name


def test_an_image_without_a_stand_in_is_named(tmp_path):
    for path in ("Dockerfile", "nginx/Dockerfile", "compose.yml"):
        (tmp_path / path).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    compose = tmp_path / "compose.yml"
    compose.write_text(compose.read_text().replace("image: postgres:15", "image: mysql:8"))
    with pytest.raises(SetupError, match="mysql:8 has no stand-in"):
        images.upstream_names(tmp_path)


def test_a_stand_in_is_rebuilt_when_its_files_or_its_base_change(tmp_path):
    context = images._context("python", tmp_path)
    assert (context / "Dockerfile").is_file() and (context / "ca").is_dir()
    first = images._digest(context, "sha256:base1")
    assert images._digest(context, "sha256:base1") == first
    assert images._digest(context, "sha256:base2") != first
    (context / "ca" / "extra.crt").write_text("another CA")
    assert images._digest(context, "sha256:base1") != first


BELL = {"counts": {"00": 1010, "11": 990}, "quasi_dist": {"0": 0.505, "3": 0.495}, "expval": [1.0, 1.0]}


def test_a_bell_result_is_checked():
    assert run.check_bell(BELL, "client") == BELL


@pytest.mark.parametrize(
    "change",
    [
        {"counts": {"00": 1000, "01": 10, "11": 990}},  # an outcome a Bell state never gives
        {"counts": {"00": 1000, "11": 999}},  # shots lost
        {"counts": {"00": 2000}},  # not entangled
        {"expval": [1.0, 0.5]},
        {"expval": [1.0]},
        {"counts": None},
    ],
)
def test_a_wrong_bell_result_fails_the_check(change):
    with pytest.raises(run.CheckFailed, match="client: not the Bell state's results"):
        run.check_bell({**BELL, **change}, "client")
