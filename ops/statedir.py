"""The local stack's files under ``settings.state_dir``, and the error that points at a log."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.settings import Settings

# Unix socket paths are limited to ~107 bytes and Ray puts
# "<temp>/session_<date>_<time>_<pid>/sockets/plasma_store" under its temp dir.
_RAY_TEMP_MAX = 40


class ComponentFailed(RuntimeError):
    """A component did not come up; carries its name, why, and the tail of its log."""

    def __init__(self, component: str, reason: str, log_path: Path | None = None, tail: str = ""):
        self.component = component
        self.reason = reason
        self.log_path = log_path
        self.log_tail = tail
        message = f"{component} did not start: {reason}"
        if log_path is not None:
            message += f"\n--- last lines of {log_path} ---\n{tail or '(empty)'}"
        super().__init__(message)


@dataclass(frozen=True)
class Paths:
    """Where ``up`` keeps its files for one state dir."""

    root: Path
    logs: Path
    run: Path
    nginx: Path
    nginx_conf: Path
    nginx_pid: Path
    ray_token: Path
    ray_session: Path
    ray_temp: Path

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def pid(self, name: str) -> Path:
        return self.run / f"{name}.pid"


def paths(settings: Settings) -> Paths:
    """The file layout under ``settings.state_dir``."""
    root = Path(settings.state_dir).expanduser().resolve()
    ray_temp = root / "ray"
    if len(str(ray_temp)) > _RAY_TEMP_MAX:
        ray_temp = Path("/tmp") / f"qserver-ray-{hashlib.sha1(str(root).encode()).hexdigest()[:10]}"
    return Paths(
        root=root,
        logs=root / "logs",
        run=root / "run",
        nginx=root / "nginx",
        nginx_conf=root / "nginx" / "nginx.conf",
        nginx_pid=root / "nginx" / "nginx.pid",
        ray_token=root / "ray_auth_token",
        ray_session=root / "run" / "ray.sid",
        ray_temp=ray_temp,
    )


def open_log(p: Paths, name: str) -> BinaryIO:
    """``logs/<name>.log`` opened to append; the previous run's log is kept once as ``.log.1``."""
    p.logs.mkdir(parents=True, exist_ok=True)
    log = p.log(name)
    if log.exists() and log.stat().st_size:
        log.replace(log.with_suffix(".log.1"))  # keep the previous run's log once
    return log.open("ab")
