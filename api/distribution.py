"""A plugin's wheel from the configured index, and its backends read without running its code.

Plain functions for ``POST /api/v1/plugin/{name}``: check the name, ``pip download``
exactly that package (wheels only, from one index, with every pip configuration of
the machine ignored) into a temporary directory, and read ``<import_name>/backends.txt`` (and
``<import_name>/capabilities.json`` when the plugin ships one: core/capabilities.py) out of the
wheel with ``zipfile``.

Wheels only: pip can learn an sdist's version and metadata only by running its build
backend (``setup.py``), and admission must not run the plugin's code. The upstream
plugins publish wheels, and a plugin is a pure-Python package anyway.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from api.errors import DownloadTimedOut, IndexUnavailable, InvalidName
from core import capabilities
from core.errors import NotAPlugin, PluginNotFound

log = logging.getLogger(__name__)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"
NAME_RULE = "letters, digits, '-' and '_' only, starting with a letter or digit, at most 100 characters"
_NAME = re.compile(NAME_PATTERN)
MAX_BACKENDS_TXT_BYTES = 64 * 1024
_STDERR_TAIL = 2000


@dataclass(frozen=True)
class Distribution:
    """What admission learned from a plugin's wheel: ``capabilities`` per backend
    (core.capabilities.parse_declaration), None when it ships no capabilities.json."""

    name: str
    version: str
    backends: tuple[str, ...]
    capabilities: dict[str, dict] | None = None


def check_plugin_name(text: str) -> str:
    """The plugin name in canonical form (PEP 503: lower case, ``_`` as ``-``).

    Raises:
        InvalidName: not a bare package name (a version specifier, URL, path or pip option).
    """
    if not _NAME.fullmatch(text):
        raise InvalidName(
            f"plugin name {text!r} is not valid: use {NAME_RULE} (a bare package name: "
            "no version specifier, URL, path or pip option)"
        )
    return canonical_name(text)


def canonical_name(name: str) -> str:
    """PEP 503's normalized project name: ``Fake_Plugin`` -> ``fake-plugin``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def import_name(name: str) -> str:
    """The contract's import name of a plugin package: ``fake-plugin`` -> ``fake_plugin``."""
    return canonical_name(name).replace("-", "_")


def pip_command(name: str, *, index_url: str, dest: Path, timeout_s: float) -> list[str]:
    """The ``pip download`` command line for exactly one wheel of ``name`` from ``index_url``.

    pip's socket timeout is a quarter of the whole budget and it retries once, so an
    unreachable index is reported as such before the budget runs out.
    """
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--isolated",
        "--no-deps",
        "--no-input",
        "--disable-pip-version-check",
        "--no-color",
        "--progress-bar",
        "off",
        "--only-binary=:all:",
        "--retries",
        "1",
        "--timeout",
        f"{max(2.0, timeout_s / 4):g}",
        "--index-url",
        index_url,
        "--dest",
        str(dest),
        name,
    ]


def pip_environment() -> dict[str, str]:
    """The environment for pip: no ``PIP_*`` variable and no configuration file at all.

    ``--isolated`` skips user configuration and ``PIP_*`` variables but still reads the
    global (``/etc/pip.conf``, ``/etc/xdg/pip/pip.conf``) and site files, which may add
    indexes, find-links or constraints; ``PIP_CONFIG_FILE=/dev/null`` makes pip skip them.
    """
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def shown_url(url: str) -> str:
    """``url`` without its credentials (``https://user:secret@host/simple`` -> ``https://host/simple``)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


async def download(name: str, *, index_url: str, timeout_s: float, dest: Path) -> Path:
    """Download the newest wheel of ``name`` from ``index_url`` into ``dest``; its path.

    Messages name the index without any credentials in its URL.

    Raises:
        PluginNotFound: the index has no wheel of that name.
        IndexUnavailable: the index could not be reached, or pip failed otherwise.
        DownloadTimedOut: pip ran past ``timeout_s``; it was killed.
    """
    shown = shown_url(index_url)
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *pip_command(name, index_url=index_url, dest=dest, timeout_s=timeout_s),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=pip_environment(),
        start_new_session=True,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        raise DownloadTimedOut(
            f"downloading {name} from {shown} took longer than {timeout_s:g} s "
            "(QSERVER_PLUGIN_DOWNLOAD_TIMEOUT_S); try again later"
        ) from None
    finally:
        if proc.returncode is None:  # timed out, or the request was cancelled
            _kill(proc)
            await proc.wait()
    stderr = err.decode(errors="replace")
    log.info(
        "pip download %s from %s: rc=%s in %.2f s",
        name,
        shown,
        proc.returncode,
        time.monotonic() - started,
    )
    if proc.returncode != 0:
        raise _download_error(name, shown, stderr)
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise IndexUnavailable(f"pip download of {name} from {shown} left {len(wheels)} wheels, expected one")
    return wheels[0]


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _download_error(name: str, index_url: str, stderr: str) -> Exception:
    unreachable = [
        line.strip() for line in stderr.splitlines() if "Retrying (" in line or "Could not fetch URL" in line
    ]
    if unreachable:
        return IndexUnavailable(f"the package index {index_url} could not be reached: {unreachable[-1][:_STDERR_TAIL]}")
    if "No matching distribution found" in stderr:
        return PluginNotFound(f"no package {name} on {index_url}")
    errors = [line.strip() for line in stderr.splitlines() if line.startswith("ERROR:")]
    last = errors[-1] if errors else stderr.strip()[-_STDERR_TAIL:]
    return IndexUnavailable(f"could not download {name} from {index_url}: {last[:_STDERR_TAIL]}")


def wheel_version(wheel: Path, *, name: str) -> str:
    """The version in a wheel's file name (``{dist}-{version}(-{build})?-{py}-{abi}-{plat}.whl``).

    Raises:
        IndexUnavailable: the file name is not a wheel's, or names another project.
    """
    parts = wheel.name[: -len(".whl")].split("-")
    if len(parts) not in (5, 6) or canonical_name(parts[0]) != canonical_name(name):
        raise IndexUnavailable(f"the index served {wheel.name!r} for {name}: not a wheel of it")
    return parts[1]


def read_backends(wheel: Path, *, name: str) -> Distribution:
    """Name, version, backends and declared capabilities of a plugin wheel, read from its zip
    (nothing is run).

    Raises:
        NotAPlugin: no ``<import_name>/backends.txt``, it names no backend, or a backend
            name is not valid; a ``capabilities.json`` that is not as core.capabilities says.
    """
    version = wheel_version(wheel, name=name)
    member = f"{import_name(name)}/backends.txt"
    declaration = f"{import_name(name)}/capabilities.json"
    try:
        with zipfile.ZipFile(wheel) as archive:
            raw = _member(archive, member, f"{name} {version}")
            if raw is None:
                raise NotAPlugin(f"{name} {version} is not a QServer plugin: it ships no {member}")
            declared = _member(archive, declaration, f"{name} {version}")
    except zipfile.BadZipFile as error:
        raise NotAPlugin(f"{name} {version} is not a valid wheel: {error}") from None
    backends = parse_backends(_text(raw, f"{name} {version}: {member}"), where=f"{name} {version}: {member}")
    if not backends:
        raise NotAPlugin(f"{name} {version} is not a QServer plugin: its {member} names no backend")
    where = f"{name} {version}: {declaration}"
    return Distribution(
        name=name,
        version=version,
        backends=backends,
        capabilities=None
        if declared is None
        else capabilities.parse_declaration(_text(declared, where), backends=backends, where=where),
    )


def _member(archive: zipfile.ZipFile, member: str, plugin: str) -> bytes | None:
    """The bytes of ``member`` (None when the wheel has none). Raises NotAPlugin when it is
    larger than MAX_BACKENDS_TXT_BYTES."""
    try:
        info = archive.getinfo(member)
    except KeyError:
        return None
    if info.file_size > MAX_BACKENDS_TXT_BYTES:
        raise NotAPlugin(f"{plugin}: {member} is larger than {MAX_BACKENDS_TXT_BYTES} bytes")
    return archive.read(info)


def _text(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NotAPlugin(f"{where} is not UTF-8 text") from None


def parse_backends(text: str, *, where: str) -> tuple[str, ...]:
    """Backend names of a ``backends.txt``: one a line, blanks skipped, duplicates once.

    Raises:
        NotAPlugin: a name does not follow the naming rule.
    """
    names: dict[str, None] = {}
    for line in text.splitlines():
        backend = line.strip()
        if not backend:
            continue
        if not _NAME.fullmatch(backend):
            raise NotAPlugin(f"{where} names an invalid backend {backend[:120]!r}: use {NAME_RULE}")
        names[backend] = None
    return tuple(names)


async def fetch_plugin(name: str, *, index_url: str, timeout_s: float) -> Distribution:
    """Download ``name``'s wheel into a temporary directory and read its backends.

    Raises:
        PluginNotFound, IndexUnavailable, DownloadTimedOut: see ``download``.
        NotAPlugin: see ``read_backends``.
    """
    with tempfile.TemporaryDirectory(prefix="qserver-plugin-") as tmp:
        wheel = await download(name, index_url=index_url, timeout_s=timeout_s, dest=Path(tmp))
        return await asyncio.to_thread(read_backends, wheel, name=name)
