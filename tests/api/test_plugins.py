"""Plugin admission and removal: real PyPI for fake-plugin, a local index for edge cases.

The local index is a PEP 503 directory of wheels built here with ``zipfile``, served to
pip as a ``file://`` URL through the ``plugin_index_url`` setting.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from api import distribution
from core import capabilities, store

V1 = "/api/v1"
PYPI = "https://pypi.org/simple"
FAKES = [f"fake{i}" for i in range(1, 24)]
# A plugin's capabilities.json (core/capabilities.py): for both backends, cap_b needs a GPU.
CAPABLE = {
    "methods": ["statevector", "tensor"],
    "max_qubits": {"statevector": 30, "tensor": 60},
    "result_types": ["counts", "quasi_dist"],
    "backends": {"cap_b": {"needs_gpu": True, "max_qubits": {"statevector": 36}}},
}
BAD_CAPABILITIES = [
    ("caps-not-json", "{methods: []}", "caps-not-json 0.5: caps_not_json/capabilities.json is not JSON: "),
    (
        "caps-unknown-key",
        '{"methods": ["sv"], "qubits": 3}',
        "caps-unknown-key 0.5: caps_unknown_key/capabilities.json: qubits: Extra inputs are not permitted",
    ),
    (
        "caps-bad-type",
        '{"result_types": ["counts", "histogram"]}',
        "caps-bad-type 0.5: caps_bad_type/capabilities.json: result_types.1: Input should be 'counts', "
        "'quasi_dist' or 'expval'",
    ),
    (
        "caps-bad-qubits",
        '{"max_qubits": {"statevector": 0}}',
        "caps-bad-qubits 0.5: caps_bad_qubits/capabilities.json: max_qubits.statevector: Input should be "
        "greater than or equal to 1",
    ),
    (
        "caps-other-backend",
        '{"backends": {"cap_z": {"needs_gpu": true}}}',
        "caps-other-backend 0.5: caps_other_backend/capabilities.json names backend 'cap_z', which backends.txt "
        "does not",
    ),
    ("caps-a-list", "[1, 2]", "caps-a-list 0.5: caps_a_list/capabilities.json: the file: Input should be a valid"),
]
MakeJob = Callable[..., Awaitable[uuid.UUID]]


def backend_names(pages: list[list[dict[str, Any]]]) -> list[str]:
    return [b["backend_name"] for page in pages for b in page]


async def all_backend_pages(client: httpx.AsyncClient) -> list[list[dict[str, Any]]]:
    pages, cursor = [], 0
    while True:
        page = (await client.get(f"{V1}/backends", params={"cursor": cursor})).json()
        if not page:
            return pages
        pages.append(page)
        cursor = page[-1]["pointer"]


def forget_plugin(db: psycopg.Connection, name: str) -> None:
    db.execute("DELETE FROM backends WHERE plugin = %s", (name,))
    db.execute("DELETE FROM plugins WHERE name = %s", (name,))


@pytest.fixture
def aer_enabled_afterwards(db: psycopg.Connection) -> Iterator[None]:
    """Whatever a test does to aer-plugin, later tests find backend aer enabled."""
    yield
    db.execute("INSERT INTO plugins (name, builtin) VALUES ('aer-plugin', true) ON CONFLICT DO NOTHING")
    db.execute("UPDATE backends SET enabled = true WHERE backend_name = 'aer'")


# --- a local index ---------------------------------------------------------------------


def make_wheel(
    directory: Path,
    project: str,
    version: str,
    *,
    backends: str | None,
    package: str | None = None,
    capabilities: str | None = None,
) -> Path:
    """A minimal wheel whose ``<package>/backends.txt`` holds ``backends`` (None: no file), and
    ``<package>/capabilities.json`` ``capabilities`` (None: no file)."""
    dist = project.replace("-", "_")
    package = package or dist
    wheel = directory / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{package}/__init__.py", "raise SystemExit('never imported')\n")
        if backends is not None:
            archive.writestr(f"{package}/backends.txt", backends)
        if capabilities is not None:
            archive.writestr(f"{package}/capabilities.json", capabilities)
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n")
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def publish(index: Path, project: str, files: list[Path]) -> None:
    """Add ``project`` to a PEP 503 simple index directory."""
    folder = index / distribution.canonical_name(project)
    folder.mkdir(parents=True)
    links = []
    for file in files:
        target = folder / file.name
        file.rename(target)
        links.append(f'<a href="{target.name}">{target.name}</a>')
    (folder / "index.html").write_text(f"<html><body>{''.join(links)}</body></html>\n")


@pytest.fixture(scope="module")
def local_index(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A file:// index with a few good and bad plugins."""
    index = tmp_path_factory.mktemp("index")
    build = tmp_path_factory.mktemp("build")
    for project, version, backends, declared in [
        ("local-plugin", "1.2.3", "\nlocal_a\n  local-b  \n\nlocal_a\n", None),
        ("no-backends-txt", "0.1", None, None),
        ("empty-backends", "0.2", "\n \n", None),
        ("bad-backend", "0.3", "good1\nbad name\n", None),
        ("takes-aer", "0.4", "mine1\naer\n", None),
        ("capable-plugin", "2.0.0", "cap_a\ncap_b\n", json.dumps(CAPABLE)),
        *[(name, "0.5", "cap_c\n", text) for name, text, _ in BAD_CAPABILITIES],
    ]:
        wheel = make_wheel(build, project, version, backends=backends, capabilities=declared)
        publish(index, project, [wheel])
    sdist = build / "sdist_only-1.0.tar.gz"
    sdist.write_bytes(b"not even a tarball")
    publish(index, "sdist-only", [sdist])
    return index.as_uri()


@pytest.fixture
def local(use_settings: Callable[..., Any], local_index: str, db: psycopg.Connection) -> Iterator[str]:
    """The app downloads plugins from the local index; its plugins are forgotten afterwards."""
    use_settings(plugin_index_url=local_index)
    yield local_index
    for name in ("local-plugin", "takes-aer", "bad-backend", "capable-plugin"):
        forget_plugin(db, name)


async def test_admit_from_the_configured_index(client: httpx.AsyncClient, local: str, db: psycopg.Connection) -> None:
    response = await client.post(f"{V1}/plugin/Local_Plugin")
    assert response.status_code == 201
    assert response.json() == {"name": "local-plugin", "version": "1.2.3", "backends": ["local_a", "local-b"]}
    row = db.execute("SELECT version, builtin FROM plugins WHERE name = 'local-plugin'")
    assert row.fetchone() == {"version": "1.2.3", "builtin": False}
    one = (await client.get(f"{V1}/backend/local-b")).json()
    assert one["plugin"] == "local-plugin"

    again = await client.post(f"{V1}/plugin/local-plugin")
    assert again.status_code == 409
    assert again.json() == {"detail": "plugin local-plugin is already admitted (version 1.2.3)"}


async def test_capabilities_declared_by_a_plugin(client: httpx.AsyncClient, local: str, db: psycopg.Connection) -> None:
    response = await client.post(f"{V1}/plugin/capable-plugin")
    assert response.status_code == 201, response.text
    assert response.json() == {"name": "capable-plugin", "version": "2.0.0", "backends": ["cap_a", "cap_b"]}
    cap_a = (await client.get(f"{V1}/backend/cap_a")).json()
    assert cap_a["needs_gpu"] is False
    assert cap_a["capabilities"] == {
        "methods": ["statevector", "tensor"],
        "max_qubits": {"statevector": 30, "tensor": 60},
        "result_types": ["counts", "quasi_dist"],
        "plugin_version": "2.0.0",
        "needs_gpu": False,
    }
    cap_b = (await client.get(f"{V1}/backend/cap_b")).json()
    assert cap_b["needs_gpu"] is True  # placement gives its jobs a GPU
    assert cap_b["capabilities"] == {**cap_a["capabilities"], "max_qubits": {"statevector": 36}, "needs_gpu": True}
    row = db.execute("SELECT needs_gpu, capabilities FROM backends WHERE backend_name = 'cap_b'").fetchone()
    assert row == {"needs_gpu": True, "capabilities": {k: cap_b["capabilities"][k] for k in CAPABLE if k != "backends"}}
    listed = {b["backend_name"]: b for page in await all_backend_pages(client) for b in page}
    assert listed["cap_a"] == cap_a and listed["cap_b"] == cap_b
    plugins = (await client.get(f"{V1}/plugins")).json()
    mine = next(p for p in plugins if p["name"] == "capable-plugin")
    assert {k: v for k, v in mine.items() if k != "admitted_at"} == {
        "name": "capable-plugin",
        "version": "2.0.0",
        "backends": ["cap_a", "cap_b"],
        "builtin": False,
        "enabled": True,
    }


async def test_a_plugin_without_capabilities_json_declares_none(client: httpx.AsyncClient, local: str) -> None:
    await client.post(f"{V1}/plugin/local-plugin")  # no capabilities.json: null
    assert (await client.get(f"{V1}/backend/local_a")).json()["capabilities"] is None


def test_an_empty_declaration_gives_the_defaults() -> None:
    declared = capabilities.parse_declaration("{}", backends=("x", "y"), where="p 1: p/capabilities.json")
    empty = {"methods": [], "max_qubits": {}, "result_types": ["counts", "quasi_dist", "expval"], "needs_gpu": False}
    assert declared == {"x": empty, "y": empty}


@pytest.mark.parametrize(("name", "text", "detail"), BAD_CAPABILITIES)
async def test_bad_capabilities_are_422(
    client: httpx.AsyncClient, local: str, db: psycopg.Connection, name: str, text: str, detail: str
) -> None:
    response = await client.post(f"{V1}/plugin/{name}")
    assert response.status_code == 422
    assert response.json()["detail"].startswith(detail), response.json()
    assert db.execute("SELECT 1 FROM plugins WHERE name = %s", (name,)).fetchone() is None


async def test_configured_index_is_the_only_one(client: httpx.AsyncClient, local: str) -> None:
    # fake-plugin is on PyPI, and the machine's pip configuration may name other indexes
    started = time.monotonic()
    response = await client.post(f"{V1}/plugin/fake-plugin")
    assert response.status_code == 404
    assert response.json() == {"detail": f"no package fake-plugin on {local}"}
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("no-backends-txt", "no-backends-txt 0.1 is not a QServer plugin: it ships no no_backends_txt/backends.txt"),
        (
            "empty-backends",
            "empty-backends 0.2 is not a QServer plugin: its empty_backends/backends.txt names no backend",
        ),
        (
            "bad-backend",
            "bad-backend 0.3: bad_backend/backends.txt names an invalid backend "
            "'bad name': use letters, digits, '-' and '_' only, starting with a "
            "letter or digit, at most 100 characters",
        ),
    ],
)
async def test_not_a_plugin_is_422(
    client: httpx.AsyncClient, local: str, db: psycopg.Connection, name: str, detail: str
) -> None:
    response = await client.post(f"{V1}/plugin/{name}")
    assert response.status_code == 422
    assert response.json() == {"detail": detail}
    assert db.execute("SELECT 1 FROM plugins WHERE name = %s", (name,)).fetchone() is None


async def test_backend_of_another_plugin_is_409(client: httpx.AsyncClient, local: str, db: psycopg.Connection) -> None:
    response = await client.post(f"{V1}/plugin/takes-aer")
    assert response.status_code == 409
    assert response.json() == {
        "detail": "plugin takes-aer 0.4 ships backend names that other plugins already "
        "registered: aer (plugin aer-plugin)"
    }
    # one transaction: neither the plugin nor its other backend was recorded
    assert db.execute("SELECT 1 FROM plugins WHERE name = 'takes-aer'").fetchone() is None
    assert db.execute("SELECT 1 FROM backends WHERE backend_name = 'mine1'").fetchone() is None
    aer = db.execute("SELECT plugin, enabled FROM backends WHERE backend_name = 'aer'").fetchone()
    assert aer == {"plugin": "aer-plugin", "enabled": True}


async def test_sdist_only_is_not_downloaded(client: httpx.AsyncClient, local: str) -> None:
    # wheels only: learning an sdist's metadata would run its build backend
    response = await client.post(f"{V1}/plugin/sdist-only")
    assert response.status_code == 404
    assert response.json() == {"detail": f"no package sdist-only on {local}"}


async def test_download_timeout_is_504(
    client: httpx.AsyncClient, use_settings: Callable[..., Any], local_index: str
) -> None:
    use_settings(plugin_index_url=local_index, plugin_download_timeout_s=0.05)
    started = time.monotonic()
    response = await client.post(f"{V1}/plugin/local-plugin")
    assert response.status_code == 504
    assert response.json() == {
        "detail": f"downloading local-plugin from {local_index} took longer than 0.05 s "
        "(QSERVER_PLUGIN_DOWNLOAD_TIMEOUT_S); try again later"
    }
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("index", ["http://127.0.0.1:9/simple", "http://robot:s3cret@127.0.0.1:9/simple"])
async def test_unreachable_index_is_502(
    client: httpx.AsyncClient, use_settings: Callable[..., Any], index: str
) -> None:
    use_settings(plugin_index_url=index)
    started = time.monotonic()
    response = await client.post(f"{V1}/plugin/some-plugin")
    assert response.status_code == 502
    detail = response.json()["detail"]
    assert detail.startswith("the package index http://127.0.0.1:9/simple could not be reached: ")
    assert "Connection refused" in detail
    assert "s3cret" not in detail and "robot" not in detail
    assert time.monotonic() - started < 15


def test_shown_url_drops_credentials() -> None:
    assert distribution.shown_url("https://u:p@pkgs.example:8443/simple") == ("https://pkgs.example:8443/simple")
    assert distribution.shown_url("https://token@pkgs.example/simple") == "https://pkgs.example/simple"
    assert distribution.shown_url(PYPI) == PYPI


async def test_download_is_killed_on_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a pip that hangs: the subprocess group is killed, not left behind
    script = tmp_path / "hang.py"
    pidfile = tmp_path / "pid"
    script.write_text(f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n")
    monkeypatch.setattr(
        distribution,
        "pip_command",
        lambda name, **_: [distribution.sys.executable, str(script)],
    )
    with pytest.raises(distribution.DownloadTimedOut):
        await distribution.download("x", index_url="u", timeout_s=1.0, dest=tmp_path)
    pid = int(pidfile.read_text())
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_pip_ignores_the_machine_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "https://example.invalid/simple")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/etc/pip.conf")
    env = distribution.pip_environment()
    assert env["PIP_CONFIG_FILE"] == "/dev/null"
    assert [k for k in env if k.upper().startswith("PIP_")] == ["PIP_CONFIG_FILE"]
    command = distribution.pip_command("fake-plugin", index_url=PYPI, dest=Path("/tmp/x"), timeout_s=20)
    assert command[1:4] == ["-m", "pip", "download"]
    for flag in ("--isolated", "--no-deps", "--no-input", "--only-binary=:all:"):
        assert flag in command
    assert command[command.index("--index-url") + 1] == PYPI
    assert command[-1] == "fake-plugin"


# --- names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("fake-plugin==0.0.1", "fake-plugin==0.0.1"),
        ("..%2Fetc", "../etc"),
        ("-r", "-r"),
        ("https://x/y", "https://x/y"),
        ("https:%2F%2Fx%2Fy", "https://x/y"),
        ("a%20b", "a b"),
        ("_x", "_x"),
        ("x" * 101, "x" * 101),
        ("fake-plugin%5Bextra%5D", "fake-plugin[extra]"),
    ],
)
@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_bad_names_are_400(client: httpx.AsyncClient, method: str, path: str, name: str) -> None:
    response = await client.request(method, f"{V1}/plugin/{path}")
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"plugin name {name!r} is not valid: use letters, digits, '-' and '_' only, "
        "starting with a letter or digit, at most 100 characters (a bare package "
        "name: no version specifier, URL, path or pip option)"
    }


async def test_remove_unknown_plugin_is_404(client: httpx.AsyncClient) -> None:
    response = await client.delete(f"{V1}/plugin/no-such-plugin")
    assert response.status_code == 404
    assert response.json() == {"detail": "plugin no-such-plugin is not admitted"}


# --- aer-plugin ----------------------------------------------------------------------------


async def test_aer_plugin_admission_downloads_nothing(
    client: httpx.AsyncClient,
    use_settings: Callable[..., Any],
    db: psycopg.Connection,
    aer_enabled_afterwards: None,
) -> None:
    use_settings(plugin_index_url="http://127.0.0.1:9/simple")  # a download would fail (502)
    assert (await client.get(f"{V1}/backend/aer")).status_code == 200  # already enabled
    response = await client.post(f"{V1}/plugin/aer-plugin")
    assert response.status_code == 201
    assert response.json() == {"name": "aer-plugin", "version": None, "backends": ["aer", "aer_gpu"]}

    # even with its plugin row gone (a hand-edited database) nothing is downloaded
    db.execute("DELETE FROM plugins WHERE name = 'aer-plugin'")
    response = await client.post(f"{V1}/plugin/AER_Plugin")
    assert response.status_code == 201
    assert response.json() == {"name": "aer-plugin", "version": None, "backends": ["aer", "aer_gpu"]}
    row = db.execute("SELECT version, builtin FROM plugins WHERE name = 'aer-plugin'").fetchone()
    assert row == {"version": None, "builtin": True}


async def test_aer_plugin_removal_and_readmission(
    client: httpx.AsyncClient,
    make_job: MakeJob,
    db: psycopg.Connection,
    use_settings: Callable[..., Any],
    aer_enabled_afterwards: None,
) -> None:
    use_settings(plugin_index_url="http://127.0.0.1:9/simple")
    pending = await make_job()
    refused = await client.delete(f"{V1}/plugin/aer-plugin")
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith(
        "plugin aer-plugin cannot be removed: 1 job is pending or running on its backends"
    )
    assert (await client.delete(f"{V1}/job/{pending}")).status_code == 200

    finished = await make_job(status="finished", results={"counts": {"11 0": 1000}})
    response = await client.delete(f"{V1}/plugin/aer-plugin")
    assert response.status_code == 200
    assert response.json() == {"name": "aer-plugin", "removed": True}
    aer = await client.get(f"{V1}/backend/aer")
    assert aer.status_code == 404
    assert aer.json() == {"detail": "backend 'aer' is disabled: its plugin 'aer-plugin' was removed"}
    assert "aer" not in backend_names(await all_backend_pages(client))
    row = db.execute("SELECT builtin FROM plugins WHERE name = 'aer-plugin'").fetchone()
    assert row == {"builtin": True}
    aer_plugin = (await client.get(f"{V1}/plugins")).json()[0]
    assert aer_plugin["name"] == "aer-plugin" and aer_plugin["enabled"] is False
    job = await client.get(f"{V1}/job/{finished}")
    assert job.status_code == 200 and job.json()["results"]["counts"] == {"11 0": 1000}

    again = await client.delete(f"{V1}/plugin/aer-plugin")  # already disabled: still there
    assert again.status_code == 200

    readmitted = await client.post(f"{V1}/plugin/aer-plugin")
    assert readmitted.status_code == 201
    assert readmitted.json() == {"name": "aer-plugin", "version": None, "backends": ["aer", "aer_gpu"]}
    assert (await client.get(f"{V1}/backend/aer")).json()["plugin"] == "aer-plugin"
    assert "aer" in backend_names(await all_backend_pages(client))


# --- real PyPI --------------------------------------------------------------------------------


@pytest.fixture
def cold_pip_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip's cache (XDG_CACHE_HOME/pip) starts empty, as on a fresh machine."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


async def test_fake_plugin_from_pypi(
    client: httpx.AsyncClient,
    make_job: MakeJob,
    db: psycopg.Connection,
    dsn: str,
    use_settings: Callable[..., Any],
    cold_pip_cache: Path,
) -> None:
    use_settings(plugin_index_url=PYPI)
    try:
        with psycopg.connect(dsn, autocommit=True) as listener:
            listener.execute("LISTEN qserver_plugins")
            started = time.monotonic()
            response = await client.post(f"{V1}/plugin/fake-plugin")
            elapsed = time.monotonic() - started
            notes = [n.payload for n in listener.notifies(timeout=2, stop_after=1)]
        assert response.status_code == 201, response.text
        assert response.json() == {"name": "fake-plugin", "version": "0.0.1", "backends": FAKES}
        print(f"cold-cache admission of fake-plugin: {elapsed:.2f} s")
        assert notes == ["fake-plugin"]
        row = db.execute("SELECT version, builtin FROM plugins WHERE name = 'fake-plugin'")
        assert row.fetchone() == {"version": "0.0.1", "builtin": False}

        pages = await all_backend_pages(client)
        assert [len(page) for page in pages] == [20, 5]  # aer, aer_gpu, fake1..fake23
        assert backend_names(pages) == ["aer", "aer_gpu", *FAKES]
        assert {b["plugin"] for b in pages[1]} == {"fake-plugin"}
        fake23 = await client.get(f"{V1}/backend/fake23")
        assert fake23.status_code == 200 and fake23.json() == pages[1][-1]
        assert fake23.json()["capabilities"] is None  # fake-plugin declares none
        listed = [p for p in (await client.get(f"{V1}/plugins")).json() if p["name"] == "fake-plugin"]
        assert [{k: v for k, v in p.items() if k != "admitted_at"} for p in listed] == [
            {"name": "fake-plugin", "version": "0.0.1", "backends": FAKES, "builtin": False, "enabled": True}
        ]

        again = await client.post(f"{V1}/plugin/fake-plugin")
        assert again.status_code == 409
        assert again.json() == {"detail": "plugin fake-plugin is already admitted (version 0.0.1)"}

        job_id = await make_job(backend="fake1")
        refused = await client.delete(f"{V1}/plugin/fake-plugin")
        assert refused.status_code == 409
        assert refused.json() == {
            "detail": "plugin fake-plugin cannot be removed: 1 job is pending or running on its "
            "backends; wait for them to end or cancel them (PUT /api/v1/job/cancel/<id>)"
        }
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as aconn:
            (claimed,) = await store.claim_jobs(aconn, job_ids=[job_id])
        assert claimed is not None and claimed.plugin == "fake-plugin"
        refused = await client.delete(f"{V1}/plugin/fake-plugin")
        assert refused.status_code == 409
        assert "1 job is pending or running" in refused.json()["detail"]  # claimed: pending to its user
        sconn = store.connect_sync(dsn)
        try:
            assert await asyncio.to_thread(store.mark_started_sync, sconn, job_id=job_id, node_id="node-2")
            assert await asyncio.to_thread(
                store.finish_job_sync,
                sconn,
                job_id=job_id,
                results={"counts": {"00": 512, "11": 488}},
                node_id="node-2",
            )
        finally:
            sconn.close()

        removed = await client.delete(f"{V1}/plugin/fake-plugin")
        assert removed.status_code == 200
        assert removed.json() == {"name": "fake-plugin", "removed": True}
        assert db.execute("SELECT 1 FROM plugins WHERE name = 'fake-plugin'").fetchone() is None
        assert backend_names(await all_backend_pages(client)) == ["aer", "aer_gpu"]
        gone = await client.get(f"{V1}/backend/fake1")
        assert gone.status_code == 404
        assert gone.json() == {"detail": "backend 'fake1' does not exist; GET /api/v1/backends lists them"}
        job = await client.get(f"{V1}/job/{job_id}")
        assert job.status_code == 200
        assert job.json()["status"] == "finished"
        assert job.json()["target_simulator"] == "fake1"
        assert job.json()["results"]["counts"] == {"00": 512, "11": 488}
        result = await client.get(f"{V1}/job/result/{job_id}")
        assert result.status_code == 200 and result.json()["counts"] == {"00": 512, "11": 488}

        gone_again = await client.delete(f"{V1}/plugin/fake-plugin")
        assert gone_again.status_code == 404
        assert gone_again.json() == {"detail": "plugin fake-plugin is not admitted"}

        readmitted = await client.post(f"{V1}/plugin/fake-plugin")  # warm cache now
        assert readmitted.status_code == 201
        assert readmitted.json()["backends"] == FAKES
    finally:
        forget_plugin(db, "fake-plugin")


async def test_no_such_package_on_pypi_is_404(client: httpx.AsyncClient, use_settings: Callable[..., Any]) -> None:
    use_settings(plugin_index_url=PYPI)
    started = time.monotonic()
    response = await client.post(f"{V1}/plugin/qserver-no-such-plugin-0f3a9")
    assert response.status_code == 404
    assert response.json() == {"detail": f"no package qserver-no-such-plugin-0f3a9 on {PYPI}"}
    assert time.monotonic() - started < 10


async def test_a_package_that_is_not_a_plugin_is_422(
    client: httpx.AsyncClient, use_settings: Callable[..., Any], db: psycopg.Connection
) -> None:
    use_settings(plugin_index_url=PYPI)
    response = await client.post(f"{V1}/plugin/six")
    assert response.status_code == 422
    detail = response.json()["detail"]
    version = detail.split(" ")[1]
    assert version[0].isdigit()
    assert detail == f"six {version} is not a QServer plugin: it ships no six/backends.txt"
    assert db.execute("SELECT 1 FROM plugins WHERE name = 'six'").fetchone() is None


async def test_openapi_documents_the_new_routes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert set(paths[f"{V1}/plugin/{{name}}"]) == {"post", "delete"}
    post = paths[f"{V1}/plugin/{{name}}"]["post"]["responses"]
    assert {"201", "400", "404", "409", "422", "502", "504"} <= set(post)
    assert post["201"]["content"]["application/json"]["schema"]["$ref"].endswith("AdmittedPlugin")
    assert "put" in paths[f"{V1}/job/cancel/{{id}}"]
    assert {"get", "delete"} <= set(paths[f"{V1}/job/{{id}}"])
    history = paths[f"{V1}/history"]["get"]["responses"]["200"]["content"]["application/json"]
    assert history["schema"]["items"]["$ref"].endswith("HistoryEntry")
    assert (await client.get("/docs")).status_code == 200
