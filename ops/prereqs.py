"""The stack's prerequisites: Postgres, RabbitMQ and nginx from Debian packages.

`qserver up` uses Postgres and RabbitMQ where something already listens at the addresses in
the settings; on a local address with nothing listening it installs them with apt and starts
them without systemd.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
from pathlib import Path

import psycopg

from core.settings import Settings
from ops.endpoints import (
    NotReady,
    connect_host,
    host_port,
    is_listening,
    is_local,
    wait_until,
)

log = logging.getLogger(__name__)

_APT_ENV = {
    "DEBIAN_FRONTEND": "noninteractive",
    # invoke-rc.d starts nothing in runlevel 1: Debian's default nginx site stays off port 80
    # and we start Postgres/RabbitMQ ourselves, the same way whether or not they were installed.
    "RUNLEVEL": "1",
}


class SetupError(RuntimeError):
    """A prerequisite of the stack could not be installed or started."""


_apt_updated = False


def _privileged(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return cmd
    if shutil.which("sudo"):
        return ["sudo", "-n", "--preserve-env=DEBIAN_FRONTEND,RUNLEVEL", *cmd]
    raise SetupError(f"`{' '.join(cmd)}` needs root, and sudo is not installed")


def _run(cmd: list[str], *, what: str, env: dict[str, str] | None = None) -> str:
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, env=os.environ | (env or {}), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise SetupError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc.stdout


def apt_install(*packages: str) -> None:
    """``apt-get install -y`` the packages (``apt-get update`` once per process first)."""
    global _apt_updated
    if not shutil.which("apt-get"):
        raise SetupError(f"{', '.join(packages)} missing and this machine has no apt-get")
    if not _apt_updated:
        _run(_privileged(["apt-get", "update"]), what="apt-get update", env=_APT_ENV)
        _apt_updated = True
    _run(
        _privileged(["apt-get", "install", "-y", "--no-install-recommends", *packages]),
        what=f"installing {' '.join(packages)}",
        env=_APT_ENV,
    )


def find_program(name: str) -> str | None:
    """``name`` on PATH, or in the sbin directories a non-root PATH often lacks."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        candidate = Path(directory) / name
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def ensure_nginx() -> str:
    """The nginx binary, installed from Debian packages if missing."""
    nginx = find_program("nginx")
    if nginx is None:
        log.info("nginx not found: installing it")
        apt_install("nginx")
        nginx = find_program("nginx")
    if nginx is None:
        raise SetupError("nginx is still missing after apt-get install nginx")
    return nginx


# --- Postgres ------------------------------------------------------------------------------------


def pg_address(settings: Settings) -> tuple[str, int]:
    """Host and port of settings.database_url."""
    first = settings.database_url.hosts()[0]
    return first.get("host") or "127.0.0.1", first.get("port") or 5432


def _postgres_answers(dsn: str) -> None:
    admin = psycopg.conninfo.make_conninfo(dsn, dbname="postgres", connect_timeout=3)
    try:
        with psycopg.connect(admin) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as error:
        raise NotReady(f"Postgres: {error}".strip()) from error


def _pg_clusters() -> list[tuple[str, str]]:
    """(version, name) of every Debian Postgres cluster on this machine."""
    base = Path("/etc/postgresql")
    if not base.is_dir():
        return []
    return sorted(
        (version.name, cluster.name)
        for version in base.iterdir()
        if version.is_dir()
        for cluster in version.iterdir()
        if (cluster / "postgresql.conf").exists()
    )


_HBA_MARK = "# qserver: trust local TCP (added by `qserver up`)"


def _trust_local_tcp(version: str, cluster: str) -> None:
    """Let local TCP connections in without a password (the default DSN has none)."""
    hba = Path("/etc/postgresql") / version / cluster / "pg_hba.conf"
    text = hba.read_text()
    if _HBA_MARK in text:
        return
    lines = [
        _HBA_MARK,
        "host    all    all    127.0.0.1/32    trust",
        "host    all    all    ::1/128         trust",
    ]
    # pg_hba.conf is first-match: our lines go on top.
    hba.write_text("\n".join(lines) + "\n" + text)
    log.info("added trust auth for local TCP to %s", hba)


def ensure_postgres(settings: Settings, *, timeout: float = 120) -> None:
    """Use the Postgres at settings.database_url; on localhost, install and start it if needed.

    Raises:
        SetupError: it is remote and down, or could not be installed/started in ``timeout``.
    """
    host, port = pg_address(settings)
    dsn = settings.database_dsn
    if is_listening(host, port):
        wait_until(lambda: _postgres_answers(dsn), timeout=timeout)
        return
    if not is_local(host):
        raise SetupError(f"Postgres at {host_port(host, port)} is not reachable")
    if not _pg_clusters() or not find_program("pg_ctlcluster"):
        log.info("Postgres not found: installing it")
        apt_install("postgresql")
    clusters = _pg_clusters()
    if not clusters:
        raise SetupError("no Postgres cluster under /etc/postgresql after installing postgresql")
    version, cluster = clusters[-1]
    if not psycopg.conninfo.conninfo_to_dict(dsn).get("password"):
        _trust_local_tcp(version, cluster)
    ctl = ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster]
    running = subprocess.run(_privileged([*ctl, "status"]), capture_output=True, check=False)
    if running.returncode == 0:  # it runs, on another port than the DSN's: the wait says so
        _run(_privileged([*ctl, "reload"]), what="reloading Postgres")
    else:
        log.info("starting Postgres %s/%s", version, cluster)
        _run(_privileged([*ctl, "start"]), what="starting Postgres")
    try:
        wait_until(lambda: _postgres_answers(dsn), timeout=timeout)
    except TimeoutError as error:
        raise SetupError(
            f"Postgres {version}/{cluster} started but {host_port(host, port)} does not answer: "
            f"{error} (is the cluster's port the one in QSERVER_DATABASE_URL?)"
        ) from error


# --- RabbitMQ ------------------------------------------------------------------------------------


def _amqp_answers(host: str, port: int) -> None:
    """RabbitMQ answers an AMQP protocol header with its Connection.Start frame."""
    try:
        with socket.create_connection((connect_host(host), port), timeout=3) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            if not sock.recv(8):
                raise NotReady("RabbitMQ closed the connection")
    except OSError as error:
        raise NotReady(f"RabbitMQ: {error}") from error


def amqp_address(settings: Settings) -> tuple[str, int]:
    """Host and port of settings.amqp_url."""
    return settings.amqp_url.host or "127.0.0.1", settings.amqp_url.port or 5672


def ensure_rabbitmq(settings: Settings, *, timeout: float = 180) -> None:
    """Use the RabbitMQ at settings.amqp_url; on localhost, install and start it if needed.

    Raises:
        SetupError: it is remote and down, or could not be installed/started in ``timeout``.
    """
    host, port = amqp_address(settings)
    if is_listening(host, port):
        wait_until(lambda: _amqp_answers(host, port), timeout=timeout)
        return
    if not is_local(host):
        raise SetupError(f"RabbitMQ at {host_port(host, port)} is not reachable")
    if not find_program("rabbitmq-server"):
        log.info("RabbitMQ not found: installing it")
        apt_install("rabbitmq-server")
    log.info("starting RabbitMQ")
    _run(_privileged(["rabbitmq-server", "-detached"]), what="starting RabbitMQ")
    try:
        wait_until(lambda: _amqp_answers(host, port), timeout=timeout, interval=1.0)
    except TimeoutError as error:
        raise SetupError(
            f"RabbitMQ started but {host_port(host, port)} does not answer: {error} (see /var/log/rabbitmq/)"
        ) from error


def ensure_prerequisites(settings: Settings) -> str:
    """Postgres and RabbitMQ answering, nginx installed; returns the nginx binary."""
    ensure_postgres(settings)
    ensure_rabbitmq(settings)
    return ensure_nginx()


# --- probes ------------------------------------------------------------------------------------


if __name__ == "__main__":  # .ci/install.sh: `python -m ops.prereqs`
    from core.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print("nginx:", ensure_prerequisites(get_settings()))
