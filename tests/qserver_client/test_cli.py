"""The one `qserver` command as the client package makes it (no stack): the user's commands
alone where no server is installed, each `qserver.commands` entry point's commands beside them,
and a plugin that cannot be loaded reported on stderr, never fatal."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from qserver_client.cli import ENTRY_POINTS, load_commands, make_app

ROOT = Path(__file__).resolve().parents[2]
HERE = "tests.qserver_client.test_cli"
runner = CliRunner()
USERS = {"submit", "jobs", "job", "result", "watch", "cancel", "delete", "backends", "plugins", "history"}


def register_hello(app: typer.Typer) -> None:
    """A plugin's ``register``: one command, ``hello``."""

    @app.command("hello")
    def hello() -> None:
        print("hello from a plugin")


def register_raises(app: typer.Typer) -> None:
    """A plugin whose ``register`` fails."""
    raise RuntimeError("this plugin is broken [on purpose]")


def entry(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINTS)


@pytest.fixture
def installed(monkeypatch):
    """``installed(*entry_points)``: the environment's `qserver.commands` entry points are these
    (other groups, e.g. pydantic's plugins loaded on first use, are the environment's own)."""
    real = importlib.metadata.entry_points

    def install(*entries: EntryPoint) -> None:
        def entry_points(**params):
            if params != {"group": ENTRY_POINTS}:
                return real(**params)
            return importlib.metadata.EntryPoints(entries)

        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)

    return install


def commands(app: typer.Typer) -> set[str]:
    return set(typer.main.get_command(app).commands)


def test_the_client_alone_has_only_the_users_commands(installed):
    installed()  # a client-only install: no server, no plugin
    app = make_app()
    assert commands(app) == USERS
    shown = runner.invoke(app, ["--help"])
    assert shown.exit_code == 0 and "submit" in shown.stdout
    for operator in ("up", "down", "status", "node", "keys", "certs", "db", "janitor"):
        assert operator not in commands(app)
    refused = runner.invoke(app, ["up"])
    assert refused.exit_code == 2 and "No such command 'up'" in refused.output
    assert runner.invoke(app, ["submit", "--help"]).exit_code == 0


def test_version_names_the_client(installed):
    installed()
    shown = runner.invoke(make_app(), ["--version"])
    assert shown.exit_code == 0
    assert shown.stdout.splitlines() == [f"qserver-client {importlib.metadata.version('qserver-client')}"]


def test_a_plugin_adds_its_commands(installed):
    installed(entry("hello", f"{HERE}:register_hello"))
    app = make_app()
    assert commands(app) == USERS | {"hello"}
    said = runner.invoke(app, ["hello"])
    assert said.exit_code == 0 and said.stdout == "hello from a plugin\n"


def test_a_broken_plugin_is_reported_and_the_rest_still_work(installed, capsys):
    installed(
        entry("missing", "no_such_module_for_qserver:register"),
        entry("raises", f"{HERE}:register_raises"),
        entry("typo", f"{HERE}:no_such_function"),
        entry("hello", f"{HERE}:register_hello"),
    )
    assert entry("raises", f"{HERE}:register_raises").load() is register_raises
    assert entry("hello", f"{HERE}:register_hello").load() is register_hello
    assert load_commands(typer.Typer()) == ["hello"]
    capsys.readouterr()
    app = make_app()  # the plugins load here, as the `qserver` script starts
    warnings = " ".join(capsys.readouterr().err.split())
    assert commands(app) == USERS | {"hello"}
    shown = runner.invoke(app, ["--help"])
    assert shown.exit_code == 0, shown.output
    assert "skipped the commands of missing = no_such_module_for_qserver:register: ModuleNotFoundError" in warnings
    assert f"skipped the commands of raises = {HERE}:register_raises: RuntimeError: " in warnings
    assert "this plugin is broken [on purpose]" in warnings  # markup in a message is printed as is
    assert f"skipped the commands of typo = {HERE}:no_such_function: AttributeError" in warnings
    assert "hello" in shown.stdout and "submit" in shown.stdout
    assert runner.invoke(app, ["hello"]).stdout.endswith("hello from a plugin\n")


def _fake_distribution(root: Path, name: str, version: str, entry_points: str) -> None:
    """A distribution's metadata (what pip writes), found on sys.path under ``root``."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINTS}]\n{entry_points}\n")


def test_a_real_process_with_a_broken_plugin_installed(tmp_path):
    """`python -m qserver_client.cli` (what the `qserver` script runs) with a distribution whose
    entry point names a module that is not there: the warning on stderr, the user's commands
    and `--version` still answer, exit 0."""
    _fake_distribution(tmp_path, "broken-plugin", "9.9.9", "broken = no_such_module_for_qserver:register")
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}

    def qserver(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "qserver_client.cli", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    shown = qserver("--help")
    assert shown.returncode == 0, shown.stderr
    assert "submit" in shown.stdout
    warning = " ".join(shown.stderr.split())
    assert "skipped the commands of broken = no_such_module_for_qserver:register (broken-plugin 9.9.9)" in warning
    assert "ModuleNotFoundError" in warning
    version = qserver("--version")
    assert version.returncode == 0, version.stderr
    assert f"qserver-client {importlib.metadata.version('qserver-client')}" in version.stdout.splitlines()
    assert "broken-plugin 9.9.9" in version.stdout.splitlines()


def test_the_cli_imports_no_server_package_and_no_qiskit():
    """The client's command alone (no entry points loaded) loads no server package, nor Qiskit."""
    code = (
        "import sys\n"
        "from qserver_client.cli import make_app\n"
        "import typer.main\n"
        "typer.main.get_command(make_app(plugins=False))\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'core', 'ops', 'ingest', 'dispatcher', "
        "'cluster', 'plugins', 'api', 'protos', 'ray', 'psycopg', 'fastapi', 'qiskit', 'qiskit_aer'})\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")
