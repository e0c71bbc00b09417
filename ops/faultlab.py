"""Private RabbitMQ and Postgres instances, and a QServer stack on them, for fault injection.

Fault tests (tests/faults) and ``bench/chaos.py`` (both use it; it lives here, with the
other tools that start services, so that neither imports the other) stop, restart and kill RabbitMQ and Postgres.
They must never touch the machine's shared services (5432/5672, which other stacks use), so each
run gets its own:

* a RabbitMQ node (its own node name, AMQP port, distribution port and epmd port, its own
  Erlang cookie under a private HOME, no plugins, no /etc/rabbitmq files), run as a child
  process and stopped with ``rabbitmqctl -n <node> stop``;
* a throwaway Postgres cluster (``initdb --auth=trust``, ``pg_ctl`` on its own port and socket
  directory; run as the ``postgres`` user when we are root, since Postgres refuses root);
* a QServer stack (``ops.stack.up``) with its own ports, state dir, database and queue,
  pointing at those two.

Everything lives under one directory and goes away with :meth:`FaultLab.close`.
"""

from __future__ import annotations

import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from core.settings import Settings
from ops import endpoints, prereqs, procs
from ops.statedir import paths
from qserver_client import Client

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


class ServiceError(RuntimeError):
    """A private service did not start or stop."""


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return not endpoints.is_listening("127.0.0.1", port, timeout=0.2)


def free_port(low: int = 20000, high: int = 30000) -> int:
    """A port nothing uses now, below the kernel's ephemeral range (no clash with clients)."""
    for _ in range(200):
        port = random.randint(low, high)
        if _port_free(port):
            return port
    raise ServiceError(f"no free port in {low}-{high}")


def _tail(path: Path, lines: int = 30) -> str:
    return procs.log_tail(path, lines=lines) if path.exists() else "(no log)"


def _wait(check, timeout: float, what: str, interval: float = 0.2) -> float:
    """Call ``check()`` until it returns true; returns the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise ServiceError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(interval)
    return time.monotonic() - started


# --- RabbitMQ ---------------------------------------------------------------------------------


@dataclass
class PrivateRabbit:
    """A RabbitMQ node of our own under ``base`` (nothing of /etc/rabbitmq or /var/lib/rabbitmq)."""

    base: Path
    name: str = "qsfault"
    port: int = field(default_factory=free_port)
    # RabbitMQ's CLI tools use the distribution port + 10000 (.. + 10010): keep that < 65536
    dist_port: int = field(default_factory=free_port)
    epmd_port: int = field(default_factory=free_port)
    child: subprocess.Popen | None = None
    # more rabbitmq.conf lines (e.g. "consumer_timeout = 10000"), applied at the next start
    extra_conf: str = ""

    @property
    def node(self) -> str:
        return f"{self.name}@localhost"

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def log(self) -> Path:
        return self.base / "server.out"

    def env(self) -> dict[str, str]:
        """The environment of the node and of rabbitmqctl talking to it."""
        b = self.base
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(b / "home"),  # the Erlang cookie: ours, not /var/lib/rabbitmq's
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_PORT=str(self.epmd_port),  # a private epmd: our node name clashes with none
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            RABBITMQ_MNESIA_BASE=str(b / "mnesia"),
            RABBITMQ_LOG_BASE=str(b / "log"),
            RABBITMQ_CONFIG_FILE=str(b / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(b / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(b / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(b / "enabled_plugins"),  # none: no management
            RABBITMQ_PID_FILE=str(b / "rabbit.pid"),
        )
        return env

    def prepare(self) -> None:
        b = self.base
        for sub in ("home", "mnesia", "log"):
            (b / sub).mkdir(parents=True, exist_ok=True)
        (b / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            "loopback_users.guest = true\n"
            "log.console = false\n"
            "log.file.level = info\n" + self.extra_conf
        )
        (b / "rabbitmq-env.conf").write_text("# private node: nothing from /etc/rabbitmq\n")
        (b / "enabled_plugins").write_text("[].\n")
        cookie = b / "home" / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(20).upper())
            cookie.chmod(0o400)

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """``rabbitmqctl -n <node> ARGS``; returns stdout. Raises ServiceError on failure."""
        proc = subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise ServiceError(f"rabbitmqctl {' '.join(args)}: {proc.stdout}{proc.stderr}".strip())
        return proc.stdout

    def running(self) -> bool:
        return self.child is not None and self.child.poll() is None

    def start(self, timeout: float = 90) -> float:
        """Start the node (a child process) and wait until it serves AMQP; returns seconds."""
        if self.running():
            return 0.0
        if endpoints.is_listening("127.0.0.1", self.port):
            raise ServiceError(f"port {self.port} is taken")
        self.prepare()
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.child = subprocess.Popen(
                [str(RABBIT_BIN / "rabbitmq-server")],
                env=self.env(),
                cwd=self.base,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def up() -> bool:
            if self.child.poll() is not None:
                raise ServiceError(f"rabbitmq-server exited with {self.child.returncode}:\n{_tail(self.log)}")
            try:
                prereqs._amqp_answers("127.0.0.1", self.port)
            except endpoints.NotReady:
                return False
            return True

        _wait(up, timeout, f"RabbitMQ {self.node}")
        return time.monotonic() - started

    def stop(self, timeout: float = 60) -> float:
        """``rabbitmqctl stop``, then wait for the process to end; returns seconds."""
        if not self.running():
            return 0.0
        started = time.monotonic()
        try:
            self.ctl("stop", timeout=timeout)
        except (ServiceError, subprocess.TimeoutExpired):
            self._kill()
        try:
            self.child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill()
        _wait(lambda: not endpoints.is_listening("127.0.0.1", self.port), 10, "RabbitMQ port closed")
        return time.monotonic() - started

    def restart(self) -> float:
        """Stop and start the node (its durable queues and persistent messages survive)."""
        return self.stop() + self.start()

    def _kill(self) -> None:
        if self.child is not None and self.child.poll() is None:
            os.killpg(self.child.pid, signal.SIGKILL)
            self.child.wait(timeout=10)

    def consumers(self, queue_name: str) -> int | None:
        """How many consumers ``queue_name`` has (``rabbitmqctl list_queues name consumers``)."""
        out = self.ctl("list_queues", "name", "consumers", "--no-table-headers", "--quiet")
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue_name:
                return int(parts[1])
        return None

    def close(self) -> None:
        """Stop the node and its private epmd."""
        try:
            self.stop()
        finally:
            self._kill()
            subprocess.run(
                ["epmd", "-port", str(self.epmd_port), "-kill"],
                env=self.env(),
                capture_output=True,
                check=False,
                timeout=10,
            )


# --- Postgres ---------------------------------------------------------------------------------


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise ServiceError("no /usr/lib/postgresql/*/bin/initdb")
    return found[-1].parent


@dataclass
class PrivatePostgres:
    """A throwaway Postgres cluster under ``base`` on its own port and socket directory."""

    base: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *cmd: str, timeout: float = 60) -> str:
        argv = [str(_pg_bin() / cmd[0]), *cmd[1:]]
        if os.geteuid() == 0:  # Postgres refuses to run as root
            argv = ["runuser", "-u", "postgres", "--", *argv]
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",
        )
        if proc.returncode != 0:
            raise ServiceError(
                f"{' '.join(cmd[:2])} failed ({proc.returncode}): {proc.stdout}{proc.stderr}\n{_tail(self.log)}"
            )
        return proc.stdout

    def init(self) -> float:
        started = time.monotonic()
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.base, user.pw_uid, user.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        return time.monotonic() - started

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )

    def running(self) -> bool:
        return endpoints.is_listening("127.0.0.1", self.port, timeout=0.5)

    def start(self) -> float:
        started = time.monotonic()
        if not self.data.exists():
            self.init()
        self._run("pg_ctl", "-D", str(self.data), "-o", self._options(), "-l", str(self.log), "-w", "-t", "60", "start")
        return time.monotonic() - started

    def stop(self, mode: str = "fast") -> float:
        started = time.monotonic()
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        return time.monotonic() - started

    def restart(self, mode: str = "fast") -> float:
        """``pg_ctl restart``: every connection any client holds is cut."""
        started = time.monotonic()
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            self._options(),
            "-l",
            str(self.log),
            "-m",
            mode,
            "-w",
            "-t",
            "60",
            "restart",
        )
        return time.monotonic() - started

    def close(self) -> None:
        try:
            self.stop("immediate")
        except ServiceError:
            pass


# --- a stack on them --------------------------------------------------------------------------


def stack_settings(rabbit: PrivateRabbit, pg: PrivatePostgres, state_dir: Path, **extra) -> Settings:
    """Settings of a stack on the private services: every port free, its own state dir."""
    ports = set()

    def port() -> int:
        while (p := free_port()) in ports:
            pass
        ports.add(p)
        return p

    values = dict(
        database_url=pg.dsn("qserver_faults"),
        amqp_url=rabbit.amqp_url,
        queue_name="qserver.faults.jobs",
        ingest_port=port(),
        api_port=port(),
        ingest_monitor_port=port(),
        dispatcher_monitor_port=port(),
        nginx_http_port=port(),
        nginx_grpc_port=port(),
        nginx_tls_port=port(),
        ray_head_port=port(),
        ray_dashboard_port=port(),
        ray_start_head=True,
        ray_address="auto",
        state_dir=state_dir,
        tls_dir=state_dir / "tls",  # empty: TLS off
        sweep_after_s=2.0,
        janitor_interval_s=3600.0,
        executor_warm_workers=0,
    )
    values.update(extra)
    return Settings(**values)


class FaultLab:
    """Private RabbitMQ + Postgres and a stack on them; ``timings`` says what took how long."""

    def __init__(self, root: Path | None = None, *, name: str = "qsfault", **settings_extra):
        self.root = Path(root or tempfile.mkdtemp(prefix="qsfault-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # mkdtemp's 0700 would keep the postgres user out
        self.rabbit = PrivateRabbit(self.root / "rabbitmq", name=name)
        self.pg = PrivatePostgres(self.root / "postgres")
        # short: Ray's unix socket paths must stay under ~107 bytes
        self.settings = stack_settings(self.rabbit, self.pg, self.root / "state", **settings_extra)
        self.timings: dict[str, float] = {}
        self.client: Client | None = None  # set by start(): a client of the lab's stack

    def _timed(self, what: str, fn, *args) -> float:
        started = time.monotonic()
        fn(*args)
        self.timings[what] = time.monotonic() - started
        return self.timings[what]

    def start_services(self) -> None:
        self._timed("postgres initdb+start", self.pg.start)
        self._timed("rabbitmq start", self.rabbit.start)

    def ensure_services(self) -> None:
        """Both private services answering (a test that stopped one left it so)."""
        if not self.pg.running():
            self.pg.start()
        if not self.rabbit.running():
            self.rabbit.start()

    def up(self) -> None:
        """``ops.stack.up`` on the private services (and only on them)."""
        from ops import stack

        self._guard()
        stack.up(self.settings)

    def start(self) -> FaultLab:
        """Start both services and the stack; ``client`` then talks to the stack."""
        self.start_services()
        self._timed("stack up", self.up)
        s = self.settings
        self.client = Client(**endpoints.client_address(s))
        return self

    def _guard(self) -> None:
        # ops.endpoints would start the machine's own Postgres/RabbitMQ when nothing listens
        for what, (host, port), mine in (
            ("Postgres", prereqs.pg_address(self.settings), self.pg.port),
            ("RabbitMQ", prereqs.amqp_address(self.settings), self.rabbit.port),
        ):
            if port != mine or not endpoints.is_listening(host, port):
                raise ServiceError(f"private {what} on :{mine} is not running; not starting the stack")

    def service_pid(self, name: str) -> int | None:
        return procs.read_pid(paths(self.settings).pid(name))

    def stop_dispatcher(self, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
        """End the dispatcher with ``sig`` and wait until it is gone."""
        pid = self.service_pid("dispatcher")
        if pid is None or not procs.pid_alive(pid):
            return
        os.kill(pid, sig)
        _wait(lambda: not procs.pid_alive(pid), timeout, "dispatcher exit")
        paths(self.settings).pid("dispatcher").unlink(missing_ok=True)

    def restart_dispatcher(self, sig: int = signal.SIGTERM) -> float:
        """Stop the dispatcher (``sig``) and start it again with ``ops.stack.up``."""
        started = time.monotonic()
        self.stop_dispatcher(sig)
        self.up()
        return time.monotonic() - started

    def db(self) -> psycopg.Connection:
        return psycopg.connect(self.settings.database_dsn, autocommit=True)

    def log(self, name: str) -> str:
        path = paths(self.settings).log(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self, keep: bool = False) -> None:
        """Stop the stack and both services; remove everything unless ``keep``."""
        from ops import stack

        if self.client is not None:
            self.client.close()
        try:
            stack.down(self.settings)
        finally:
            try:
                self.rabbit.close()
            finally:
                self.pg.close()
                if not keep:
                    shutil.rmtree(self.root, ignore_errors=True)
