"""What every `qserver` command of the client shares: the two consoles, the exit codes, the
output and connection options, the connection itself (with each client error turned into its
exit code) and ``@latest``."""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn
from urllib.parse import urlsplit

import grpc
import typer
from rich.console import Console
from rich.markup import escape

from qserver_client.address import DEFAULT_URL
from qserver_client.client import Client
from qserver_client.errors import (
    ApiError,
    ApiUnreachable,
    JobFailed,
    JobNotFound,
    SubmitError,
    WaitTimeout,
)

err = Console(stderr=True, soft_wrap=True, highlight=False)  # progress, errors: never wrapped mid-message
# results: stdout, so they can be piped; piped, a table keeps its natural width (never cut at 80)
out = Console(soft_wrap=True, highlight=False)
if not out.is_terminal:
    out = Console(soft_wrap=True, highlight=False, width=1000)


class Exit(enum.IntEnum):
    """The exit codes of the user's commands (README, The CLI): stable, scripts rely on them."""

    OK = 0  # done; a job waited for (or whose results were asked for) finished
    FAILED = 1  # the job failed or was canceled
    USAGE = 2  # bad arguments or options (typer's own code for them)
    UNREACHABLE = 3  # no answer, or the server could not serve it (HTTP 5xx, gRPC UNAVAILABLE, ...)
    TIMED_OUT = 4  # the wait ended before the job did (or its results were asked for before it ended)
    REFUSED = 5  # the server said no: authentication, invalid input, not found, a conflicting status
    INTERRUPTED = 130  # Ctrl-C (the job goes on: the message says how to cancel it)


EXIT_CODES_HELP = (
    "Exit codes: 0 done (a job finished), 1 the job failed or was canceled, 2 bad usage, "
    "3 server unreachable or unavailable, 4 a wait timed out (or the job has no results yet), "
    "5 refused by the server (authentication, invalid input, not found, a status that does not "
    "allow it), 130 interrupted (Ctrl-C)."
)

# gRPC codes that mean the server did not serve the submission (worth trying again later)
_GRPC_UNREACHABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
)


class Format(str, enum.Enum):
    """``-o``: tables for people, JSON for scripts."""

    table = "table"
    json = "json"


OutputOpt = Annotated[
    Format, typer.Option("--output", "-o", help="table (for people) or json (one JSON document, for scripts).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only ids (names), one a line.")]

_CONNECTION = "Connection"
UrlOpt = Annotated[
    str | None,
    typer.Option(
        help="The REST base, http://HOST:PORT or https://HOST (TLS) \\[default: QSERVER_URL, else "
        "http://127.0.0.1:8080, the local stack's].",
        rich_help_panel=_CONNECTION,
    ),
]
GrpcOpt = Annotated[
    str | None,
    typer.Option(
        help="The gRPC address (submit), HOST:PORT, grpc://HOST:PORT or grpcs://HOST:PORT (TLS) \\[default: "
        "with --url, that server; else QSERVER_GRPC, else the url's host on port 50051 (https: the url's port)].",
        rich_help_panel=_CONNECTION,
    ),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        help="Your API key (`qserver keys create`), when authentication is on \\[default: QSERVER_API_KEY].",
        rich_help_panel=_CONNECTION,
    ),
]
CaFileOpt = Annotated[
    Path | None,
    typer.Option(
        help="CA certificate (PEM) that checks a TLS server's \\[default: QSERVER_CA_FILE, else the system's].",
        rich_help_panel=_CONNECTION,
    ),
]
TlsOpt = Annotated[
    bool,
    typer.Option(
        "--tls",
        help="Use TLS: an http:// url becomes https:// on nginx's TLS port (443), gRPC goes there too "
        "(or to --grpc, over TLS).",
        rich_help_panel=_CONNECTION,
    ),
]


@dataclass(frozen=True)
class Connection:
    """The connection options as given on the command line (None: not given)."""

    url: str | None = None
    grpc: str | None = None
    api_key: str | None = None
    ca_file: Path | None = None
    tls: bool = False

    def address(self) -> tuple[str | None, str | None]:
        """``(url, grpc)`` for ``Client``: as given; with ``--tls``, an ``http://`` url (given,
        QSERVER_URL or the default) as ``https://`` on port 443, and gRPC over TLS: ``--grpc``
        (``grpc://`` made ``grpcs://``), else a ``grpcs://`` QSERVER_GRPC, else the url's server."""
        if not self.tls:
            return self.url, self.grpc
        url = self.url or os.environ.get("QSERVER_URL") or DEFAULT_URL
        parts = urlsplit(url)
        if parts.scheme == "http" and parts.hostname:
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            url = f"https://{host}{parts.path}"  # nginx's TLS port, 443, serves REST and gRPC
        grpc_address = self.grpc
        if grpc_address is None and self.url is None:
            grpc_address = os.environ.get("QSERVER_GRPC") or ""
            grpc_address = grpc_address if grpc_address.startswith("grpcs://") else None
        if grpc_address is not None and grpc_address.startswith("grpc://"):
            grpc_address = "grpcs://" + grpc_address.removeprefix("grpc://")
        return url, grpc_address


def fail(code: Exit, message: str) -> NoReturn:
    """Print ``message`` (plain text) on stderr in red and exit with ``code``."""
    err.print(f"[red]qserver:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def exit_code(error: Exception) -> Exit:
    """The exit code for an error of the client (``qserver_client.errors``)."""
    if isinstance(error, WaitTimeout):
        return Exit.TIMED_OUT
    if isinstance(error, JobFailed):
        return Exit.FAILED
    if isinstance(error, SubmitError):
        return Exit.UNREACHABLE if error.code() in _GRPC_UNREACHABLE else Exit.REFUSED
    if isinstance(error, ApiError):
        return Exit.REFUSED if 400 <= error.status < 500 else Exit.UNREACHABLE
    return Exit.UNREACHABLE  # ApiUnreachable


def describe(error: Exception) -> str:
    """One line for a person: what went wrong."""
    if isinstance(error, SubmitError):
        return f"gRPC {error.code().name}: {error.details()}"
    if isinstance(error, ApiError):
        return f"{error.detail} (HTTP {error.status})"
    if isinstance(error, ApiUnreachable):
        return f"REST api unreachable: {error}"
    return str(error)


@contextmanager
def refusals_exit() -> Iterator[None]:
    """Turn the client's errors inside into their exit codes, with a message on stderr."""
    try:
        yield
    except (ApiError, ApiUnreachable, SubmitError, WaitTimeout, JobFailed) as error:
        fail(exit_code(error), describe(error))


@contextmanager
def connect(connection: Connection, *, timeout: float = 30.0) -> Iterator[Client]:
    """A ``Client`` for the options (closed after); inside, the client's errors exit with their
    codes. A url or address that does not parse, or a CA file that cannot be read, is a usage
    error (exit 2)."""
    url, grpc_address = connection.address()
    try:
        client = Client(
            url=url, grpc=grpc_address, api_key=connection.api_key, ca_file=connection.ca_file, timeout=timeout
        )
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--url/--grpc") from None
    except OSError as error:  # the CA file: missing, unreadable, not PEM (ssl.SSLError)
        raise typer.BadParameter(f"cannot use it: {error}", param_hint="--ca-file") from None
    with client, refusals_exit():
        yield client


LATEST = "@latest"


def resolve_id(client: Client, job_id: str) -> str:
    """``job_id``, or for ``@latest`` the id of the newest job the caller can see (with a user's
    key: their own; with authentication off or an admin's key: anyone's). No job: exit 5."""
    if job_id != LATEST:
        return job_id
    newest = client.jobs(order="desc", limit=1, fields=["id"])
    if not newest:
        raise JobNotFound("GET", "/api/v1/jobs", 404, "@latest: there is no job yet")
    return str(newest[0]["id"])


def resolve_ids(client: Client, job_ids: Sequence[str]) -> list[str]:
    """``resolve_id`` of each (``@latest`` looked up once)."""
    if LATEST not in job_ids:
        return list(job_ids)
    latest = resolve_id(client, LATEST)
    return [latest if job_id == LATEST else job_id for job_id in job_ids]


def cancel_command(connection: Connection, client: Client, job_id: str) -> str:
    """The exact command that cancels ``job_id`` on the server ``client`` talks to (an API key
    given as an option is shown as KEY, never printed)."""
    words = ["qserver", "cancel", job_id]
    if client.url != DEFAULT_URL:
        words += ["--url", client.url]
    ca_file = connection.ca_file or os.environ.get("QSERVER_CA_FILE")
    if ca_file:
        words += ["--ca-file", str(ca_file)]
    if connection.api_key:
        words += ["--api-key", "KEY"]
    return " ".join(words)


def interrupted(connection: Connection, client: Client, job_id: str) -> NoReturn:
    """After Ctrl-C while following ``job_id``: say that it goes on and how to cancel it; exit 130."""
    command = cancel_command(connection, client, job_id)
    key = " (KEY: the API key you gave)" if connection.api_key else ""
    err.print(
        f"\n[yellow]interrupted:[/] job {job_id} goes on without you. Cancel it with:\n  {escape(command)}{key}",
        highlight=False,
    )
    raise typer.Exit(Exit.INTERRUPTED)
