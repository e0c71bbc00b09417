"""The one settings class: every knob of every service, read from ``QSERVER_*`` variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AmqpDsn, Field, PostgresDsn, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


# What nginx (large_client_header_buffers) and ingest's gRPC server (grpc.max_metadata_size) let
# through as request headers: far above grpc_max_header_bytes, so that ingest itself answers
# oversized metadata with a status that names the limit (not UNAVAILABLE, which clients retry).
GRPC_HEADER_TRANSPORT_BYTES = 256 * 1024


class Settings(BaseSettings):
    """QServer settings; each field is read from ``QSERVER_<FIELD>`` (case-insensitive).

    The defaults run everything on one machine against a local Postgres
    (trust auth, user ``postgres``) and RabbitMQ (guest/guest).

    Raises:
        pydantic.ValidationError: a value has the wrong type or is out of range.
    """

    model_config = SettingsConfigDict(env_prefix="QSERVER_", env_file=None, extra="ignore")

    # --- services we use -------------------------------------------------
    database_url: PostgresDsn = Field(
        PostgresDsn("postgresql://postgres@127.0.0.1:5432/qserver"),
        description="Postgres DSN; the database is created by `qserver db upgrade` if missing.",
    )
    amqp_url: AmqpDsn = Field(AmqpDsn("amqp://guest:guest@127.0.0.1:5672/"))
    queue_name: str = Field("qserver.jobs", description="Durable RabbitMQ queue carrying job ids.")
    ray_address: str = Field("auto", description="Ray cluster the dispatcher joins (`ray start --head` address).")
    ray_start_head: bool = Field(
        True, description="`qserver up` starts a Ray head; false: it joins QSERVER_RAY_ADDRESS."
    )
    ray_head_port: int = Field(6380, description="GCS port of the head that `qserver up` starts (6379 is often Redis).")
    ray_dashboard_host: str = Field("127.0.0.1", description="Never a public address.")
    ray_dashboard_port: int = 8265
    ray_node_ip: str | None = Field(
        None,
        description="The address Ray announces for this machine's node (`ray start --node-ip-address`: "
        "the head's and `qserver node join`'s); default Ray's choice, the default route's interface. "
        "Ray 2.60 listens on every interface whatever it is, and cannot be bound to loopback "
        "(README, Ray and token authentication).",
    )

    # --- our processes ----------------------------------------------------
    ingest_host: str = "127.0.0.1"
    ingest_port: int = Field(50052, description="ingest's own gRPC port (nginx proxies to it).")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, description="the api's own HTTP port (nginx proxies to it).")
    monitor_host: str = Field(
        "127.0.0.1",
        description="Where ingest's and the dispatcher's /metrics and /health listen (never proxied).",
    )
    ingest_monitor_port: int = Field(8001, description="ingest's /metrics and /health (HTTP).")
    dispatcher_monitor_port: int = Field(8002, description="the dispatcher's /metrics and /health (HTTP).")
    nginx_bind: str = Field("127.0.0.1", description="Address nginx listens on; 0.0.0.0 for a LAN.")
    nginx_http_port: int = Field(8080, description="REST (HTTP/1.1) through nginx.")
    nginx_grpc_port: int = Field(50051, description="Plain-text gRPC through nginx.")
    state_dir: Path = Field(Path.home() / ".qserver", description="Logs, pid files and nginx config of `qserver up`.")

    nginx_tls_port: int = Field(443, description="REST and gRPC over TLS through nginx (ALPN).")
    tls_dir: Path | None = Field(
        None, description="server.crt/server.key (and ca.crt) for TLS; default <state_dir>/tls."
    )

    # --- authentication (core/auth.py decides the mode) -------------------------------
    auth: Literal["on", "off"] | None = Field(
        None,
        description="API keys on or off; default: off only when nginx, ingest and the api all "
        "bind to loopback, else on. Off on another bind needs trusted_lan.",
    )
    trusted_lan: bool = Field(
        False, description="Declares the network trusted: allows auth=off on a non-loopback bind."
    )
    auth_secret: str | None = Field(
        None,
        repr=False,
        description="Server secret keying the HMAC-SHA256 of API keys; required when auth is on. "
        "Changing it invalidates every key.",
    )
    auth_cache_ttl_s: float = Field(
        5.0,
        ge=0,
        description="Seconds a verified key stays cached in each process (revocation takes "
        "effect within it); 0 looks every key up.",
    )
    ui_session_s: int = Field(
        12 * 3600,
        ge=60,
        description="How long a login on the web page (/ui) lasts; revoking its key ends it sooner.",
    )
    max_pending_per_user: int = Field(
        1000, ge=1, description="Most pending jobs one user may have (RESOURCE_EXHAUSTED beyond)."
    )

    @field_validator("auth", mode="before")
    @classmethod
    def _auth_word(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        word = value.strip().lower()
        return None if word in ("", "auto") else word

    # --- plugins ----------------------------------------------------------------
    plugin_index_url: str = Field(
        "https://pypi.org/simple",
        description="The only package index plugins come from (the machine's pip config is ignored).",
    )
    plugin_download_timeout_s: float = Field(
        20.0, gt=0, description="Admission's download of a plugin (the client waits 30 s)."
    )
    plugin_env_setup_timeout_s: int = Field(
        300, ge=10, description="Longest build of a plugin's Ray runtime_env on a node."
    )

    # --- placement -------------------------------------------------------------------
    default_job_memory_bytes: int = Field(
        512 * MIB,
        ge=64 * MIB,
        description="Memory a job first asks Ray for; a circuit that needs more is re-placed "
        "with its estimate (active qubits x method).",
    )
    gpu_pip_packages: list[str] = Field(
        ["qiskit-aer-gpu==0.18.2"],
        description="runtime_env of GPU jobs (aer_gpu): CUDA Aer, only ever installed on GPU nodes.",
    )
    max_active_qubits: dict[str, int] = Field(
        {
            "statevector": 34,
            "density_matrix": 17,
            "unitary": 17,
            "superop": 9,
            "stabilizer": 10_000,
            "extended_stabilizer": 63,
            "matrix_product_state": 1_000,
        },
        description="Most active qubits a job may have, per Aer method (the method Aer will use; "
        "never the declared width). Memory placement bounds them further.",
    )
    api_inline_result_bytes: int = Field(
        256 * 1024,
        ge=0,
        description="Results up to this stored (compressed) size come with the job in one statement; "
        "larger ones are read on their own, under the admission of large reads.",
    )
    api_large_reads: int = Field(2, ge=1, description="Large results one api process reads at once.")
    api_large_reads_per_caller: int = Field(
        1, ge=1, description="Large results one caller may be reading at once; more is 429 with Retry-After."
    )
    api_large_read_wait_s: float = Field(
        1.0, ge=0, description="How long a large read waits for a free slot before 503 with Retry-After."
    )
    max_result_wait_s: float = Field(
        30.0,
        ge=0,
        description="Longest wait GET /job/result/{id}?wait_s= grants; a longer one is cut to it.",
    )
    events_keepalive_s: float = Field(
        15.0, gt=0, description="Seconds between keep-alive comments on an idle server-sent event stream."
    )
    events_streams: int = Field(
        500, ge=1, description="Event streams (/events, /job/{id}/events) one api process serves at once; more: 503."
    )
    events_streams_per_caller: int = Field(
        16, ge=1, description="Event streams one caller (user, or address with authentication off) may hold; more: 429."
    )
    max_job_cpus: int = Field(
        0,
        ge=0,
        description="Most CPUs (Aer threads) one large job gets; 0 = all of the node's. "
        "Jobs that fit the default memory get one.",
    )
    aer_gpu_device: str = Field("GPU", description="Aer device of aer_gpu jobs (tests mock it: CPU).")
    cluster_refresh_s: float = Field(2.0, gt=0, description="How often the dispatcher reads Ray's nodes.")

    # --- retention ----------------------------------------------------------------
    retention_days: float = Field(
        30.0, gt=0, description="Jobs in a terminal status older than this are deleted (history kept)."
    )
    janitor_interval_s: float = Field(3600.0, gt=0, description="How often the stack runs the janitor.")

    # --- limits -------------------------------------------------------------
    max_qasm_bytes: int = Field(32 * MIB, ge=1, description="Largest QASM program accepted.")
    max_shots: int = Field(1_000_000, ge=1)
    max_observables: int = Field(1_000, ge=1, description="Most PUBs and Pauli terms per PUB.")
    max_metadata_bytes: int = Field(1 * MIB, ge=2)
    max_bindings: int = Field(1_000_000, ge=1, description="Most parameter bindings in one sweep job.")
    max_bindings_bytes: int = Field(
        64 * MIB, ge=1024, description="Largest bindings file (NPY) of a sweep job, beside its program."
    )
    grpc_max_header_bytes: int = Field(
        16 * 1024,
        ge=1024,
        le=GRPC_HEADER_TRANSPORT_BYTES // 2,
        description="Largest gRPC request metadata (headers, e.g. an API key) ingest accepts; more "
        "is refused RESOURCE_EXHAUSTED naming this limit. nginx and gRPC itself carry up to "
        "GRPC_HEADER_TRANSPORT_BYTES so that the refusal, not a dropped stream, reaches the client.",
    )
    max_timeout_s: float = Field(24 * 3600.0, gt=0)
    dispatcher_prefetch: int = Field(
        256, ge=1, description="Jobs the dispatcher holds at once (claimed or about to be)."
    )
    batch_executors: int | None = Field(
        None,
        ge=0,
        description="Warm executors that run small jobs in batches (cluster/batch.py); "
        "None = one per CPU of the cluster at dispatcher start, 0 = none (every job is a Ray task).",
    )
    batch_max_jobs: int = Field(64, ge=1, description="Most jobs handed to a warm executor at once.")
    batch_max_qubits: int = Field(
        16,
        ge=1,
        le=30,
        description="A batched job's memory budget: a statevector of this many qubits and 8192 gates "
        "(plugins.aer.sizing); a circuit that needs more runs as a Ray task of its own.",
    )
    batch_max_shots: int = Field(100_000, ge=1, description="Jobs with more shots run as their own Ray task.")
    max_expanded_gates: int = Field(
        50_000,
        ge=1,
        description="Most gates a program's own gate definitions may expand to; a "
        "program past it fails at load, naming the limit.",
    )
    batch_max_qasm_bytes: int = Field(
        16 * 1024,
        ge=1,
        description="Jobs with a longer program run as their own Ray task: a program is parsed before "
        "its cost can be estimated, and parsing 16 KiB of OpenQASM takes about 10 ms here, 64 KiB "
        "40 ms or more, the time the jobs behind it in a batch would wait.",
    )
    batch_max_estimate_s: float = Field(
        0.5,
        gt=0,
        description="Seconds a warm executor's job may be estimated to take (plugins.aer.sizing.cost: "
        "active qubits, gates after expansion, shots, per-shot simulation); one estimated longer "
        "is handed back unsimulated and runs as a Ray task of its own.",
    )
    batch_max_run_s: float = Field(
        2.0,
        gt=0,
        description="Seconds a job may simulate on a warm executor; one still running then is "
        "stopped and runs again as a Ray task of its own (that run not counted as an attempt).",
    )
    batch_running_after_s: float = Field(
        0.1,
        ge=0,
        description="Seconds a warm executor's job simulates before it is marked running (one write); "
        "a job that finishes sooner goes from pending straight to finished, its start_time its true start.",
    )
    executor_warm_workers: int = Field(
        0, ge=0, description="Ray workers to warm at dispatcher start; 0 = the cluster's CPUs."
    )
    db_pool_size: int = Field(8, ge=1)
    sweep_after_s: float = Field(
        30.0,
        gt=0,
        description="A pending job older than this, with the queue empty, lost its message: "
        "the dispatcher publishes it again (claiming is idempotent).",
    )
    heartbeat_s: float = Field(5.0, gt=0, description="How often an executor marks its job alive.")
    heartbeat_stale_s: float = Field(
        30.0,
        gt=0,
        description="A running job whose heartbeat is older than this lost its worker or node: "
        "it runs again (or ends failed after max_attempts).",
    )
    max_attempts: int = Field(3, ge=1, description="Runs a job gets when its worker is lost before it ends failed.")

    @field_validator("ray_node_ip")
    @classmethod
    def _routable(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if value in ("localhost", "0.0.0.0", "::") or value.startswith("127.") or value == "::1":
            raise ValueError(
                f"{value!r}: Ray 2.60 announces the machine's own address instead of a loopback one and "
                "listens on every interface whatever this says; name this machine's LAN address, or "
                "leave it unset and firewall Ray's ports (README, Ray and token authentication)"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        ports = [
            self.ingest_port,
            self.api_port,
            self.ingest_monitor_port,
            self.dispatcher_monitor_port,
            self.nginx_http_port,
            self.nginx_grpc_port,
            self.nginx_tls_port,
        ]
        if len(set(ports)) != len(ports):
            raise ValueError(f"QServer ports must differ, got {ports}")
        return self

    @property
    def tls_path(self) -> Path:
        """Where the TLS certificate and key live."""
        return self.tls_dir or self.state_dir / "tls"

    @property
    def database_dsn(self) -> str:
        """The DSN as a plain string, as psycopg wants it."""
        return str(self.database_url)

    @property
    def max_body_bytes(self) -> int:
        """nginx's body limit (bytes): the largest program and sweep bindings, plus 1 MiB."""
        return self.max_qasm_bytes + self.max_bindings_bytes + MIB

    @property
    def grpc_max_message_bytes(self) -> int:
        """gRPC's per-message limit, set just above the QASM limit (one chunk may hold it all)."""
        return self.max_qasm_bytes + MIB


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
