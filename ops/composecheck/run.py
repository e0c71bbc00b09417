"""The compose stack of the check: build, up, health, Bell jobs from both clients, TLS, down.

Everything runs under the compose project PROJECT (its own containers, network and volumes,
which `down -v` removes) with nginx published on loopback ports PORTS, apart from `qserver up`'s
(8080, 50051, 443) and the test stack's (18080, 15051, 443): no lock is needed beside them.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ops.composecheck.host import docker
from ops.composecheck.images import LABEL

log = logging.getLogger(__name__)

PROJECT = "qserver-check"
PORTS = {"QSERVER_NGINX_HTTP_PORT": 28080, "QSERVER_NGINX_GRPC_PORT": 25051, "QSERVER_NGINX_TLS_PORT": 28443}
IMAGES = {"QSERVER_IMAGE": "qserver:compose-check", "QSERVER_NGINX_IMAGE": "qserver-nginx:compose-check"}
TRUSTED_LAN = "compose.trusted-lan.yml"
HEALTH_TIMEOUT_S = 1200.0  # every service healthy: Ray and the dispatcher's warm-up on a busy 2-core host
JOB_TIMEOUT_S = 600.0
SHOTS = 2000
# <ZZ> and <XX + 0.5 ZI> of the Bell state: 1 and 1 (as tests/upstream checks)
OBSERVABLES = [[["ZZ", 1.0]], [["XX", 1.0], ["ZI", 0.5]]]
WORKER_TAG = "compose-check"  # RAY_WORKER_TAGS: the plain-text Bell job asks for it


class CheckFailed(RuntimeError):
    """A step of the check did not give what it should; the message says what was seen."""


@dataclass
class Compose:
    """`docker compose -p PROJECT -f ...` in ``root`` with ``env``."""

    root: Path
    env: dict[str, str]
    files: tuple[str, ...] = ("compose.yml",)

    def argv(self, *args: str) -> list[str]:
        files = [arg for name in self.files for arg in ("-f", str(self.root / name))]
        return [docker(), "compose", "-p", PROJECT, *files, *args]

    def __call__(self, *args: str, check: bool = True, timeout: float = 3600) -> subprocess.CompletedProcess:
        """Run it, output captured.

        Raises:
            CheckFailed: it failed and ``check`` (the message has the end of its output).
        """
        proc = subprocess.run(
            self.argv(*args), env=self.env, cwd=self.root, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
            raise CheckFailed(f"docker compose {' '.join(args)} exited with {proc.returncode}:\n{tail}")
        return proc

    def with_files(self, *files: str) -> Compose:
        return Compose(self.root, self.env, files)


def compose_env(workers: int) -> dict[str, str]:
    """The environment of every compose command: fresh secrets, loopback ports, our image tags."""
    return {
        **os.environ,
        "POSTGRES_PASSWORD": secrets.token_hex(24),
        "RABBITMQ_USER": "qserver",
        "RABBITMQ_PASSWORD": secrets.token_hex(24),
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "QSERVER_AUTH_SECRET": secrets.token_hex(32),
        "QSERVER_NGINX_BIND": "127.0.0.1",
        "RAY_WORKER_REPLICAS": str(workers),
        "RAY_WORKER_TAGS": WORKER_TAG,
        **{name: str(port) for name, port in PORTS.items()},
        **IMAGES,
    }


def containers(compose: Compose) -> list[dict[str, Any]]:
    """`compose ps -a` as dicts (Service, Name, State, Health, ExitCode)."""
    text = compose("ps", "-a", "--format", "json").stdout.strip()
    if not text:
        return []
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def health_problems(compose: Compose, one_shots: set[str]) -> list[str]:
    """What keeps the stack from being healthy; [] when every service is."""
    rows = containers(compose)
    services = set(compose("config", "--services").stdout.split())
    problems = [f"{name}: no container" for name in sorted(services - {row["Service"] for row in rows})]
    for row in rows:
        name = row["Name"]
        if row["Service"] in one_shots:
            if row["State"] != "exited" or int(row.get("ExitCode") or 0) != 0:
                problems.append(f"{name}: {row['State']} (exit {row.get('ExitCode')})")
        elif row["State"] != "running" or row.get("Health") not in ("healthy", None, ""):
            problems.append(f"{name}: {row['State']} {row.get('Health') or ''}".strip())
    return problems


def wait_healthy(compose: Compose, one_shots: set[str], timeout: float = HEALTH_TIMEOUT_S) -> float:
    """Seconds until every service is healthy (one-shots: exited 0).

    Raises:
        CheckFailed: not within ``timeout`` (the message lists what was not, with their logs' ends).
    """
    started = time.monotonic()
    while True:
        problems = health_problems(compose, one_shots)
        if not problems:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            services = sorted({p.split(":")[0].rsplit("-", 1)[0].removeprefix(f"{PROJECT}-") for p in problems})
            logs = compose("logs", "--no-color", "--tail", "40", *services, check=False).stdout
            raise CheckFailed(f"not healthy after {timeout:.0f} s: {'; '.join(problems)}\n{logs[-6000:]}")
        time.sleep(5)


def one_shot_services(compose: Compose) -> set[str]:
    """Services that run once (restart: "no"), e.g. migrate."""
    config = json.loads(compose("config", "--format", "json").stdout)
    return {name for name, service in config["services"].items() if service.get("restart") == "no"}


# --- the clients ---------------------------------------------------------------------------------


def check_bell(result: dict[str, Any], who: str) -> dict[str, Any]:
    """``result`` (counts, quasi_dist, expval) if it is the Bell state's.

    Raises:
        CheckFailed: it is not.
    """
    counts = result.get("counts") or {}
    expval = result.get("expval") or []
    good = (
        set(counts) <= {"00", "11"}
        and sum(counts.values()) == SHOTS
        and 0.4 * SHOTS <= counts.get("00", 0) <= 0.6 * SHOTS
        and len(expval) == 2
        and all(abs(value - 1.0) < 1e-9 for value in expval)
    )
    if not good:
        raise CheckFailed(f"{who}: not the Bell state's results: {result}")
    return {"counts": counts, "quasi_dist": result.get("quasi_dist"), "expval": expval}


def our_bell(
    qasm: str, *, url: str, grpc: str | None, api_key: str, ca_file: Path | None, tags: list[str] | None = None
) -> dict[str, Any]:
    """A Bell job with our client (qserver_client) through nginx (on nodes with ``tags``); its
    checked results.

    Raises:
        CheckFailed: the job did not finish with the Bell state's results.
    """
    from qserver_client import Client

    with Client(url=url, grpc=grpc, api_key=api_key, ca_file=ca_file) as client:
        job = client.run(
            qasm,
            counts=True,
            quasi_dist=True,
            expval=True,
            metadata={"shots": SHOTS, "obs": OBSERVABLES},
            tags=tags,
        )
        if job["status"] != "finished":
            raise CheckFailed(f"qserver_client at {url}: job {job['id']} {job['status']}: {job.get('error')}")
        return check_bell(client.result(job["id"]), f"qserver_client at {url}")


def upstream_python(root: Path) -> Path:
    """A Python with the upstream client qserver-connect: the project's .venv when it has it,
    else the virtualenv tests/upstream uses (made here the same way when missing)."""
    from tests.upstream.test_qserver_connect import CLIENT_PACKAGES, CLIENT_VENV

    project = root / ".venv" / "bin" / "python"
    if subprocess.run([str(project), "-c", "import qserver_connect"], capture_output=True).returncode == 0:
        return project
    python = CLIENT_VENV / "bin" / "python"
    stamp = CLIENT_VENV / ".installed"
    if not stamp.exists() or stamp.read_text() != " ".join(CLIENT_PACKAGES):
        for cmd in (
            [sys.executable, "-m", "venv", "--clear", str(CLIENT_VENV)],
            [str(python), "-m", "pip", "install", "-q", *CLIENT_PACKAGES],
        ):
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
            if done.returncode != 0:
                raise CheckFailed(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
        stamp.write_text(" ".join(CLIENT_PACKAGES))
    return python


def upstream_bell(python: Path, root: Path, *, host: str, port: int, grpc_port: int, ca: Path | None) -> dict:
    """A Bell job with the upstream client, unchanged (tests/upstream/scenario.py); its results.

    Raises:
        CheckFailed: the scenario failed or its job did not give the Bell state's results.
    """
    from tests.upstream.test_qserver_connect import BELL, SCENARIO

    env = dict(os.environ)
    if ca is not None:
        env |= {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(ca), "REQUESTS_CA_BUNDLE": str(ca)}
    mode = "tls" if ca is not None else "plain"
    done = subprocess.run(
        [str(python), str(SCENARIO), host, str(port), str(grpc_port), mode, str(BELL)],
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
        env=env,
        cwd=root,
        check=False,
    )
    who = f"qserver-connect ({mode}, {host}:{port})"
    if done.returncode != 0:
        raise CheckFailed(f"{who} failed:\n{done.stderr[-3000:]}")
    aer = json.loads(done.stdout.strip().splitlines()[-1])["aer"]
    if aer["status"] != "finished":
        raise CheckFailed(f"{who}: job {aer['status']}: {aer['error']}")
    return check_bell(aer, who)


def tls_facts(port: int, ca: Path) -> dict[str, Any]:
    """A TLS handshake with nginx on ``port`` checked against ``ca``, and one against the
    system's roots, which must fail: the certificate is the one `certs` made.

    Raises:
        CheckFailed: the first fails or the second does not.
    """
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            cert = tls.getpeercert()
            facts = {"version": tls.version(), "alpn": tls.selected_alpn_protocol(), "not_after": cert["notAfter"]}
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            ssl.create_default_context().wrap_socket(raw, server_hostname="localhost").close()
    except ssl.SSLCertVerificationError:
        return facts
    raise CheckFailed("nginx's certificate passed against the system's roots: not the one `certs` made")


def rest_status(url: str, ca: Path | None = None) -> int:
    """The HTTP status of GET /api/v1/jobs without an API key."""
    return httpx.get(
        f"{url}/api/v1/jobs", verify=ssl.create_default_context(cafile=str(ca)) if ca else True
    ).status_code


# --- the dispatcher's readiness does not survive a kill ------------------------------------------


def kill_dispatcher(compose: Compose) -> str:
    """SIGKILL the dispatcher process in its container; once Docker has restarted the container
    (restart: unless-stopped), its own healthcheck must fail until it consumes again (a ready
    file in the container's layer used to survive this). Returns what was seen.

    Raises:
        CheckFailed: the container did not restart, or its healthcheck passed at once.
    """
    (row,) = [row for row in containers(compose) if row["Service"] == "dispatcher"]
    before = _started_at(row["Name"])
    kill = (
        "import os, psutil; "
        "[os.kill(p.pid, 9) for p in psutil.process_iter(['cmdline']) "
        "if (p.info['cmdline'] or [])[-2:] == ['-m', 'dispatcher']]"
    )
    compose("exec", "-T", "dispatcher", "python", "-c", kill, check=False)
    _wait(lambda: _started_at(row["Name"]) not in (before, ""), 120, "the dispatcher's container to restart")
    inspect = [docker(), "inspect", "--format", "{{json .Config.Healthcheck.Test}}", row["Name"]]
    test = json.loads(subprocess.run(inspect, capture_output=True, text=True, check=True).stdout)
    argv = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
    health = compose("exec", "-T", "dispatcher", *argv, check=False)
    if health.returncode == 0:
        raise CheckFailed(f"the dispatcher's healthcheck passed right after a SIGKILL and restart: {test}")
    return "SIGKILL, restarted by Docker, its healthcheck fails until it consumes again"


def _started_at(name: str) -> str:
    proc = subprocess.run(
        [docker(), "inspect", "--format", "{{if .State.Running}}{{.State.StartedAt}}{{end}}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip()


def _wait(done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise CheckFailed(f"waited {timeout:.0f} s for {what}")
        time.sleep(1)


# --- the whole run -------------------------------------------------------------------------------


@dataclass
class Report:
    """What the check saw: seconds per step, the Bell results, the nodes, TLS."""

    steps: dict[str, float] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def timed(self, name: str, step: Callable[[], Any]) -> Any:
        started = time.monotonic()
        print(f"[compose-check] {name} ...", flush=True)
        value = step()
        self.steps[name] = round(time.monotonic() - started, 1)
        print(f"[compose-check] {name}: {self.steps[name]} s", flush=True)
        return value


def run_stack(root: Path, work: Path, report: Report, *, workers: int, keep: bool) -> None:
    """Build the project's images, bring the stack up, run the clients, tear it down.

    Raises:
        CheckFailed: a step failed (the stack is still torn down unless ``keep``).
    """
    compose = Compose(root, compose_env(workers))
    lan = compose.with_files("compose.yml", TRUSTED_LAN)
    qasm = (root / "examples" / "bell.qasm").read_text()
    http, grpc_port, tls = (
        PORTS[k] for k in ("QSERVER_NGINX_HTTP_PORT", "QSERVER_NGINX_GRPC_PORT", "QSERVER_NGINX_TLS_PORT")
    )
    url = f"http://127.0.0.1:{http}"
    lan("down", "-v", "--remove-orphans")  # what an earlier run left
    try:
        report.timed("compose build", lambda: compose("build"))
        # each service that builds tags the same image: the earlier builds' tags are left dangling
        subprocess.run(
            [docker(), "image", "prune", "--force", "--filter", f"label={LABEL}"], capture_output=True, check=False
        )
        one_shots = one_shot_services(compose)
        report.timed("certs (compose run --rm certs)", lambda: compose("run", "--rm", "certs"))
        report.timed("compose up -d", lambda: compose("up", "-d"))
        report.timed("healthy", lambda: wait_healthy(compose, one_shots))
        key = compose("exec", "-T", "api", "qserver", "keys", "create", "compose-check", "--role", "admin")
        api_key = key.stdout.strip().splitlines()[-1]
        ca = work / "ca.crt"
        compose("cp", "nginx:/etc/qserver/tls/ca.crt", str(ca))
        report.facts["nodes"] = compose("exec", "-T", "api", "qserver", "node", "status").stdout.rstrip()
        report.facts["ray start"] = [
            line.split("|", 1)[-1].strip()
            for line in compose("logs", "--no-color", "ray-head", "ray-worker").stdout.splitlines()
            if "ray node:" in line
        ]
        if (status := rest_status(url)) != 401:
            raise CheckFailed(f"authentication on: GET /api/v1/jobs without a key answered {status}, not 401")
        report.results["qserver_client plain"] = report.timed(
            f"Bell, qserver_client, plain text, on tag {WORKER_TAG}",
            lambda: our_bell(
                qasm, url=url, grpc=f"127.0.0.1:{grpc_port}", api_key=api_key, ca_file=None, tags=[WORKER_TAG]
            ),
        )
        report.facts["tls"] = tls_facts(tls, ca)
        report.results["qserver_client TLS"] = report.timed(
            "Bell, qserver_client, TLS",
            lambda: our_bell(qasm, url=f"https://localhost:{tls}", grpc=None, api_key=api_key, ca_file=ca),
        )
        report.facts["dispatcher kill"] = report.timed("dispatcher SIGKILL", lambda: kill_dispatcher(compose))
        report.timed("compose up -d, trusted LAN", lambda: lan("up", "-d"))
        report.timed("healthy, trusted LAN", lambda: wait_healthy(lan, one_shots))
        if (status := rest_status(url)) != 200:
            raise CheckFailed(f"trusted LAN: GET /api/v1/jobs without a key answered {status}, not 200")
        python = report.timed("upstream client venv", lambda: upstream_python(root))
        report.results["qserver-connect plain"] = report.timed(
            "Bell, qserver-connect, plain text",
            lambda: upstream_bell(python, root, host="127.0.0.1", port=http, grpc_port=grpc_port, ca=None),
        )
        report.results["qserver-connect TLS"] = report.timed(
            "Bell, qserver-connect, TLS",
            lambda: upstream_bell(python, root, host="localhost", port=tls, grpc_port=tls, ca=ca),
        )
    except Exception:
        print(lan("ps", "-a", check=False).stdout, file=sys.stderr)
        raise
    finally:
        if not keep:
            report.timed("compose down -v", lambda: lan("down", "-v", "--remove-orphans", check=False))
