"""Docker on this machine for the compose check: Debian's docker.io, its daemon, compose v2, buildx.

Debian 12's own compose is v1 (`docker-compose` 1.29), which refuses compose.yml's `name:`;
Debian 13's `docker-compose` (v2, a Go binary) and `docker-buildx` run against bookworm's
daemon once unpacked into a Docker CLI plugins folder, which is what ``ensure_plugins`` does,
with apt-get download from the trixie suite of the mirror apt already uses (in a throwaway apt
state of its own: the machine's sources stay as they are).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ops import prereqs, procs
from ops.prereqs import SetupError

log = logging.getLogger(__name__)

DEFAULT_MIRROR = "http://deb.debian.org/debian"
PLUGIN_DIR = Path("/usr/local/lib/docker/cli-plugins")  # searched by every Docker CLI since 19.03
PLUGINS = {"compose": "docker-compose", "buildx": "docker-buildx"}  # CLI plugin -> trixie package
DAEMON_START_S = 90.0


def docker() -> str:
    """The Docker CLI.

    Raises:
        SetupError: none is installed.
    """
    found = shutil.which("docker")
    if found is None:
        raise SetupError("no docker command (apt-get install docker.io)")
    return found


def debian_mirror(sources: tuple[Path, ...] = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))) -> str:
    """The Debian mirror apt uses (``URIs:`` of a .sources file or a ``deb`` line whose path ends
    in /debian), else deb.debian.org."""
    files: list[Path] = []
    for source in sources:
        files += sorted(source.glob("*.sources")) + sorted(source.glob("*.list")) if source.is_dir() else [source]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri in re.findall(r"^\s*(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, re.M):
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def ensure_packages() -> None:
    """docker.io (dockerd, containerd, runc) and debootstrap from Debian, where missing."""
    missing = [
        package
        for package, program in (("docker.io", "dockerd"), ("debootstrap", "debootstrap"))
        if prereqs.find_program(program) is None
    ]
    if shutil.which("docker") is None and "docker.io" not in missing:
        missing.append("docker.io")
    if missing:
        log.info("installing %s", " ".join(missing))
        prereqs.apt_install(*missing)


def daemon_answers(timeout: float = 10.0) -> bool:
    """True when the Docker daemon answers the CLI."""
    try:
        proc = subprocess.run(
            [docker(), "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def start_daemon(log_path: Path) -> int | None:
    """Start dockerd (no systemd here) unless a daemon answers; its pid, or None when one ran.

    Raises:
        SetupError: dockerd did not answer within DAEMON_START_S (the message has its log's tail).
    """
    if daemon_answers():
        return None
    dockerd = prereqs.find_program("dockerd")
    if dockerd is None:
        raise SetupError("no dockerd (apt-get install docker.io)")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        child = subprocess.Popen(
            prereqs._privileged([dockerd]),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + DAEMON_START_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            break
        if daemon_answers():
            log.info("started dockerd (pid %d, log %s)", child.pid, log_path)
            return child.pid
        time.sleep(1)
    stop_daemon(child.pid)
    raise SetupError(f"dockerd did not come up (log {log_path}):\n{procs.log_tail(log_path)}")


def stop_daemon(pid: int) -> None:
    """Stop the dockerd ``start_daemon`` started (SIGTERM, then SIGKILL), and only it."""
    procs.terminate([pid], timeout=30.0)


def plugin_version(plugin: str) -> str | None:
    """`docker PLUGIN version` as the CLI finds the plugin, or None when it has none."""
    proc = subprocess.run([docker(), plugin, "version"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    return proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""


def compose_is_v2(version: str | None) -> bool:
    """True for `docker compose version` output of compose v2 or later."""
    found = re.search(r"v?(\d+)\.\d+", version or "")
    return found is not None and int(found.group(1)) >= 2


def ensure_plugins(mirror: str) -> dict[str, str]:
    """compose v2 and buildx as Docker CLI plugins (from trixie where missing); their versions.

    Raises:
        SetupError: apt-get could not fetch them, or the CLI still does not find them.
    """
    wanted = {plugin: package for plugin, package in PLUGINS.items() if not _plugin_ok(plugin)}
    if wanted:
        with tempfile.TemporaryDirectory(prefix="qserver-plugins-") as work:
            _fetch_trixie(mirror, list(wanted.values()), Path(work))
            tree = Path(work) / "tree"
            for deb in Path(work).glob("*.deb"):
                prereqs._run(["dpkg-deb", "-x", str(deb), str(tree)], what=f"unpacking {deb.name}")
            prereqs._run(prereqs._privileged(["mkdir", "-p", str(PLUGIN_DIR)]), what="making the plugins folder")
            for package in wanted.values():
                binary = tree / "usr/libexec/docker/cli-plugins" / package
                prereqs._run(
                    prereqs._privileged(["install", "-m", "0755", str(binary), str(PLUGIN_DIR / package)]),
                    what=f"installing {package}",
                )
    versions = {plugin: plugin_version(plugin) for plugin in PLUGINS}
    for plugin, version in versions.items():
        if not _plugin_ok(plugin):
            raise SetupError(f"`docker {plugin}` does not work after installing it: {version!r}")
    return {plugin: version or "" for plugin, version in versions.items()}


def _plugin_ok(plugin: str) -> bool:
    version = plugin_version(plugin)
    return version is not None and (plugin != "compose" or compose_is_v2(version))


def _fetch_trixie(mirror: str, packages: list[str], work: Path) -> None:
    """apt-get download ``packages`` from trixie into ``work``, with an apt state of its own."""
    (work / "lists" / "partial").mkdir(parents=True)
    (work / "cache" / "archives" / "partial").mkdir(parents=True)
    sources = work / "trixie.list"
    sources.write_text(f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} trixie main\n")
    options = [
        f"-oDir::Etc::SourceList={sources}",
        "-oDir::Etc::SourceParts=/nonexistent",
        f"-oDir::State::Lists={work / 'lists'}",
        f"-oDir::Cache={work / 'cache'}",
        "-oAPT::Sandbox::User=root",
    ]
    prereqs._run(
        prereqs._privileged(["apt-get", *options, "update"]), what="apt-get update (trixie, for compose v2 and buildx)"
    )
    done = subprocess.run(
        prereqs._privileged(["apt-get", *options, "download", *packages]),
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SetupError(f"apt-get download {' '.join(packages)} from trixie failed:\n{done.stderr[-2000:]}")
