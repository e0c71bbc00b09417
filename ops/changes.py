"""The settings each running part of the stack was started with, and what differs now.

Every process `qserver up` starts (ingest, api, dispatcher) and the Ray head record, when they
start, the settings they were started with in ``<state dir>/run/<part>.settings.json`` (mode
0600; a secret only as its SHA-256 digest). On the next `qserver up` those records are compared
with the settings of that call: a service whose settings differ is restarted, and a Ray head
whose own settings differ (its ports, dashboard, node address) makes `up` refuse before it
changes anything, since restarting the head ends every running job (ops/stack.py preflight).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from core.settings import Settings
from ops.statedir import paths

# The settings the Ray head is started with (ops/rayhead.py launch); the others only matter to
# the services (every one of them reads every setting).
HEAD_FIELDS = ("ray_head_port", "ray_dashboard_host", "ray_dashboard_port", "ray_node_ip")
SECRET_FIELDS = frozenset({"auth_secret"})


def env_name(field: str) -> str:
    """``nginx_bind`` -> ``QSERVER_NGINX_BIND``."""
    return f"QSERVER_{field.upper()}"


def fingerprint(settings: Settings, fields: tuple[str, ...] | None = None) -> dict[str, str]:
    """``settings`` (only ``fields`` when given) as {QSERVER_NAME: text}, the way the services
    read them; a secret as ``sha256:<digest>``, an unset value as ``""``."""
    values = settings.model_dump(mode="json")
    found = {}
    for field in fields or tuple(values):
        value = values[field]
        if value is None:
            text = ""
        elif isinstance(value, dict | list):
            text = json.dumps(value, sort_keys=True)
        else:
            text = str(value)
        if field in SECRET_FIELDS and text:
            text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        found[env_name(field)] = text
    return found


def _record_path(settings: Settings, part: str):
    return paths(settings).run / f"{part}.settings.json"


def record(settings: Settings, part: str, fields: tuple[str, ...] | None = None) -> None:
    """Keep what ``part`` (a service, or "ray" for the head) was just started with."""
    path = _record_path(settings, part)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(fingerprint(settings, fields), handle, indent=1, sort_keys=True)


def recorded(settings: Settings, part: str) -> dict[str, str] | None:
    """What ``part`` was started with, or None when it left no (readable) record."""
    try:
        found = json.loads(_record_path(settings, part).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


@dataclass(frozen=True)
class Change:
    """One setting whose value differs from the one a running part was started with."""

    name: str  # QSERVER_...
    old: str | None  # None: not in the record
    new: str

    def __str__(self) -> str:
        if self.new.startswith("sha256:") or (self.old or "").startswith("sha256:"):
            return f"{self.name} (changed)"
        return f"{self.name} {self.old or '(unset)'} -> {self.new or '(unset)'}"


def differences(old: dict[str, str], new: dict[str, str]) -> list[Change]:
    """The settings of ``new`` whose value in ``old`` differs (one ``old`` lacks counts as unset),
    by name."""
    return [Change(name, old.get(name), value) for name, value in sorted(new.items()) if old.get(name, "") != value]
