"""Homelab nodes: what `qserver node start/join` hands `ray start`, the version check, the node table.

A node offers its tags as Ray custom resources (``tag:NAME``, core/domain.py) and carries its
versions as Ray node labels, which the dispatcher copies into ``nodes.versions``; ``qserver node
join`` reads the head's row back and refuses a machine whose QServer, Python or Ray differ. The
processes are started in ops/rayhead.py; everything here is plain data and SQL (no Ray import).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from core import store
from core.domain import NODE_TAG, TAG_CAPACITY, TAG_RULE, tag_resource
from core.settings import Settings
from ops.endpoints import is_local
from ops.statedir import paths

# --- labels -----------------------------------------------------------------------------------
# Ray 2.60 node labels follow Kubernetes' syntax: a key is [prefix/]name, a value is at most 63
# of [A-Za-z0-9_.-], beginning and ending with a letter or digit (ray/_private/label_utils.py).
LABEL_QSERVER = "qserver-version"
LABEL_PYTHON = "python-version"
LABEL_RAY = "ray-version"
# One label per tag, "qserver-tag/NAME": "true" (a value could not list tags: no separator is
# left over). The tag's resource "tag:NAME" is what placement uses; the label names it for people
# (the dashboard) and for Ray's label selectors.
TAG_LABEL_PREFIX = "qserver-tag/"
# Who the node is across restarts (Ray gives it a new node id each time): node_key(). The
# dispatcher records it (nodes.node_key) and replaces an offline row when its node comes back.
NODE_KEY_LABEL = "qserver-node"
# Our short version names (as `nodes.versions` may also hold them) and their labels.
VERSION_LABELS = {"qserver": LABEL_QSERVER, "python": LABEL_PYTHON, "ray": LABEL_RAY}
VERSION_NAMES = {"qserver": "QServer", "python": "Python", "ray": "Ray"}


class NodeError(ValueError):
    """A node option or setting that cannot work; the message says what to do."""


def label_value(text: str) -> str:
    """``text`` as a valid label value: other characters become '_', ends trimmed, 63 at most."""
    value = re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def local_versions() -> dict[str, str]:
    """This machine's QServer, Python (major.minor.micro) and Ray versions, as label values."""
    return {
        "qserver": label_value(importlib.metadata.version("qserver")),
        "python": label_value(platform.python_version()),
        # read from the installed package: core never imports ray (import-linter)
        "ray": label_value(importlib.metadata.version("ray")),
    }


def check_tag(tag: str) -> str:
    """``tag`` if it can be a node tag.

    Raises:
        NodeError: it cannot.
    """
    if not NODE_TAG.fullmatch(tag):
        raise NodeError(f"node tag {tag!r} is not valid: a tag is {TAG_RULE}")
    return tag


@dataclass(frozen=True)
class NodeSpec:
    """What a node offers: tags, and CPUs/GPUs/memory where not Ray's own count; fixed ports."""

    tags: tuple[str, ...] = ()
    num_cpus: int | None = None
    num_gpus: int | None = None
    memory: int | None = None  # bytes Ray may hand to tasks
    ports: dict[str, int] = field(default_factory=dict)  # e.g. {"node-manager-port": 6381}

    def __post_init__(self) -> None:
        for tag in self.tags:
            check_tag(tag)
        for name, value in (("--num-cpus", self.num_cpus), ("--num-gpus", self.num_gpus)):
            if value is not None and value < 0:
                raise NodeError(f"{name} must be 0 or more, got {value}")
        if self.memory is not None and self.memory <= 0:
            raise NodeError(f"--memory is in bytes and must be more than 0, got {self.memory}")
        low, high = self.ports.get("min-worker-port"), self.ports.get("max-worker-port")
        if (low is None) != (high is None) or (low is not None and low > high):
            raise NodeError("--min-worker-port and --max-worker-port go together, min <= max")


def tag_resources(tags: tuple[str, ...] | list[str]) -> dict[str, float]:
    """Each tag as the Ray custom resource that stands for it."""
    return {tag_resource(tag): TAG_CAPACITY for tag in dict.fromkeys(tags)}


def node_key(settings: Settings, role: str) -> str:
    """Who this machine's ``role`` ("head" or "node") node is across restarts: 16 hex digits of
    SHA-256 over the host name, the state dir and the role (a valid label value). The head and a
    node `qserver node join` started from another state dir on the same machine differ."""
    text = f"{socket.gethostname()}|{paths(settings).root}|{role}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def node_labels(spec: NodeSpec, versions: dict[str, str], key: str | None = None) -> dict[str, str]:
    """The Ray node labels: versions under VERSION_LABELS' keys, one per tag, and the node's
    key (:func:`node_key`) under NODE_KEY_LABEL when given."""
    labels = {VERSION_LABELS[name]: versions[name] for name in VERSION_LABELS}
    labels.update({TAG_LABEL_PREFIX + tag: "true" for tag in spec.tags})
    if key:
        labels[NODE_KEY_LABEL] = key
    return labels


def ray_start_args(spec: NodeSpec, versions: dict[str, str] | None = None, key: str | None = None) -> list[str]:
    """The `ray start` options for ``spec``: resources, labels (with ``key``), CPUs/GPUs/memory, ports."""
    labels = node_labels(spec, versions or local_versions(), key)
    args = [f"--labels={','.join(f'{k}={v}' for k, v in labels.items())}"]
    if spec.tags:
        args.append(f"--resources={json.dumps(tag_resources(spec.tags), sort_keys=True)}")
    for option, value in (
        ("num-cpus", spec.num_cpus),
        ("num-gpus", spec.num_gpus),
        ("memory", spec.memory),
    ):
        if value is not None:
            args.append(f"--{option}={value}")
    args += [f"--{name}={port}" for name, port in sorted(spec.ports.items())]
    return args


def versions_from_labels(labels: dict[str, str]) -> dict[str, str]:
    """A Ray node's labels -> {"qserver": ..., "python": ..., "ray": ...} (what it has of them)."""
    return {name: labels[key] for name, key in VERSION_LABELS.items() if labels.get(key)}


def tags_from_labels(labels: dict[str, str]) -> list[str]:
    """The tags a node's labels name."""
    return sorted(key[len(TAG_LABEL_PREFIX) :] for key in labels if key.startswith(TAG_LABEL_PREFIX))


# --- the version check --------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """One version that differs between this machine and the head."""

    what: str  # "QServer", "Python" or "Ray"
    here: str
    head: str


def compare_versions(here: dict[str, str], head: dict[str, str]) -> list[Difference]:
    """Every version that differs, by name with both values ("(not reported)" when missing)."""
    head = normalise_versions(head)
    return [
        Difference(VERSION_NAMES[name], here.get(name, "(unknown)"), head.get(name, "(not reported)"))
        for name in VERSION_NAMES
        if here.get(name) != head.get(name)
    ]


def normalise_versions(versions: dict[str, Any]) -> dict[str, str]:
    """``nodes.versions`` keyed by our short names, whether the dispatcher stored them under
    those or under the label keys."""
    out = {}
    for name, key in VERSION_LABELS.items():
        value = versions.get(name, versions.get(key))
        if value:
            out[name] = str(value)
    return out


@dataclass(frozen=True)
class HeadVersions:
    """The node row whose versions stand for the head's."""

    node_id: str
    address: str
    alive: bool
    versions: dict[str, str]
    matched_address: bool


class CheckUnavailable(RuntimeError):
    """The head's versions could not be read; the message says why."""


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets) -> (host, port).

    Raises:
        NodeError: it is not host:port.
    """
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]\s]+):(\d+)", address.strip())
    if not match:
        raise NodeError(f"{address!r} is not HOST:PORT (the head's GCS, e.g. 192.168.1.10:6380)")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 0 < port < 65536:
        raise NodeError(f"port {port} of {address!r} is out of range")
    return host, port


def head_versions(dsn: str, head_host: str, *, timeout: float = 5.0) -> HeadVersions | None:
    """The head's versions as the dispatcher recorded them; None when no row has any.

    Raises:
        CheckUnavailable: Postgres is unreachable, or has no ``nodes`` table yet.
    """
    prefix = (f"[{head_host}]" if ":" in head_host else head_host) + ":"
    row = _read_nodes(
        dsn,
        timeout,
        lambda conn: store.head_node_versions_sync(conn, host=head_host, prefix=prefix),
        hint="run `qserver db upgrade` or `qserver up` on the head",
    )
    if row is None:
        return None
    return HeadVersions(
        node_id=row["node_id"],
        address=row["address"],
        alive=row["alive"],
        versions=normalise_versions(row["versions"] or {}),
        matched_address=row["matched"],
    )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def database_warning(env: dict[str, str], head_host: str) -> str | None:
    """Why this node's executors might not reach Postgres, or None."""
    url = env.get("QSERVER_DATABASE_URL")
    if not url:
        return (
            "QSERVER_DATABASE_URL is not set: this node's executors write results to Postgres and "
            "would look for it on this machine. Set it to the head's database, e.g. "
            "QSERVER_DATABASE_URL=postgresql://qserver:PASSWORD@HEAD_IP:5432/qserver"
        )
    try:
        db_host = psycopg.conninfo.conninfo_to_dict(url).get("host") or "127.0.0.1"
    except psycopg.Error:
        return f"QSERVER_DATABASE_URL is not a valid Postgres URL: {url!r}"
    if is_local(db_host.split(",")[0]) and not is_local(head_host):
        return (
            f"QSERVER_DATABASE_URL points at {db_host} while the head is {head_host}: this node's "
            "executors would write results to a Postgres on this machine. Point it at the head's."
        )
    return None


# --- the token ------------------------------------------------------------------------------------


class TokenMissing(NodeError):
    """No Ray token for `qserver node join`; the message says where to copy it from."""


def token_env(settings: Settings, token_file: Path | None, env: dict[str, str]) -> tuple[dict[str, str], str]:
    """Ray's auth variables for a joining node, and where the token came from.

    Looks at ``--token-file``, then RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, then
    ``<state dir>/ray_auth_token`` (where `qserver node start --head` and `qserver up` keep it on
    the head, and where README copies it to on a node).

    Raises:
        TokenMissing: none of them holds a token.
    """
    default = paths(settings).ray_token
    if token_file is not None:
        path = Path(token_file).expanduser().resolve()
        _check_token_file(path, "--token-file")
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}, f"--token-file {path}"
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": env["RAY_AUTH_TOKEN"].strip()}, "RAY_AUTH_TOKEN"
    if env.get("RAY_AUTH_TOKEN_PATH"):
        path = Path(env["RAY_AUTH_TOKEN_PATH"]).expanduser().resolve()
        _check_token_file(path, "RAY_AUTH_TOKEN_PATH")
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}, f"RAY_AUTH_TOKEN_PATH {path}"
    if default.is_file() and default.read_text().strip():
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(default)}, str(default)
    raise TokenMissing(
        "no Ray token: the head only lets in nodes that present its token (Ray's token "
        "authentication stays on). Copy it from the head's state dir, "
        f"e.g. `scp HEAD:~/.qserver/ray_auth_token {default}` (then `chmod 600 {default}`), "
        "or pass --token-file PATH, or set RAY_AUTH_TOKEN_PATH / RAY_AUTH_TOKEN"
    )


def _check_token_file(path: Path, where: str) -> None:
    try:
        text = path.read_text().strip()
    except OSError as error:
        raise TokenMissing(
            f"{where}: cannot read the Ray token at {path} ({error.strerror or error}). Copy it "
            "from the head's state dir, e.g. `scp HEAD:~/.qserver/ray_auth_token " + f"{path}`"
        ) from None
    if not text:
        raise TokenMissing(f"{where}: {path} is empty; copy the head's ~/.qserver/ray_auth_token")


# --- this machine's node (what `qserver node join` started) --------------------------------------

_NODE_TEMP_MAX = 40  # Ray's unix sockets live under its temp dir; paths stay < 107 bytes


def node_temp(settings: Settings) -> Path:
    """Ray's temp dir for the node `qserver node join` starts (apart from the head's)."""
    root = paths(settings).root
    temp = root / "ray-node"
    if len(str(temp)) > _NODE_TEMP_MAX:
        temp = Path("/tmp") / f"qserver-node-{hashlib.sha1(str(root).encode()).hexdigest()[:10]}"
    return temp


def node_session_file(settings: Settings) -> Path:
    """Where `qserver node join` keeps the session id of its `ray start`."""
    return paths(settings).run / "node.sid"


def node_info_file(settings: Settings) -> Path:
    """What `qserver node join` joined: head address, tags, when."""
    return paths(settings).run / "node.json"


# --- `qserver node status` --------------------------------------------------------------------------


def list_nodes(dsn: str, *, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Every row of the dispatcher's ``nodes`` table, alive first.

    Raises:
        CheckUnavailable: Postgres is unreachable or has no ``nodes`` table.
    """
    return _read_nodes(dsn, timeout, store.list_nodes_sync, hint="run `qserver db upgrade`")


def _read_nodes(dsn: str, timeout: float, read: Callable[[psycopg.Connection], Any], *, hint: str) -> Any:
    """``read(conn)`` over a short-lived connection to ``dsn``.

    Raises:
        CheckUnavailable: Postgres is unreachable, or has no ``nodes`` table (``hint`` says what to run).
    """
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, int(timeout)), row_factory=dict_row) as conn:
            return read(conn)
    except psycopg.errors.UndefinedTable:
        raise CheckUnavailable(f"the database has no `nodes` table yet ({hint})") from None
    except psycopg.Error as error:
        raise CheckUnavailable(f"Postgres did not answer: {_one_line(error)}") from None


def human_bytes(count: int | float) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def ago(when: datetime | None, now: datetime) -> str:
    """How long before ``now`` ``when`` was, in a few characters."""
    if when is None:
        return ""
    seconds = max(0.0, (now - when).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"


def node_env_defaults() -> dict[str, str]:
    """Variables every process of a joined node gets besides the token ones."""
    return {
        # A plugin's runtime_env is built once, not three times (as on the head).
        "RUNTIME_ENV_RETRY_TIMES": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONUNBUFFERED": "1",
    }


def join_env(base: dict[str, str], token: dict[str, str]) -> dict[str, str]:
    """The environment of `ray start --address` (and so of the node's raylet and workers)."""
    env = {k: v for k, v in base.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env.update(node_env_defaults())
    env.update(token)
    env["RAY_AUTH_MODE"] = "token"  # never off, whatever the shell says
    return env
