"""Lists: `qserver jobs` (the jobs the caller can see) and `qserver history` (one row per job
that ended, kept after the job is deleted), filtered on the server, newest first by default."""

from __future__ import annotations

import enum
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import typer

from qserver_client.cli.common import (
    ApiKeyOpt,
    CaFileOpt,
    Connection,
    Format,
    GrpcOpt,
    OutputOpt,
    QuietOpt,
    TlsOpt,
    UrlOpt,
    connect,
    out,
)
from qserver_client.cli.render import jobs_table, print_ids, print_json

app = typer.Typer()

STATUSES = ("pending", "running", "finished", "failed", "canceled")
# what a row of `qserver jobs` carries unless --fields says otherwise (id and pointer always
# come): the table's columns, without the program text and results that make a page heavy
LEAN_FIELDS = (
    "status",
    "target_simulator",
    "owner",
    "submission_date",
    "start_time",
    "finish_time",
    "attempts",
    "waiting_for",
    "node_id",
    "error",
)
# the same for `qserver history` (its rows' `job_id` names the job; no results)
LEAN_HISTORY_FIELDS = (
    "job_id",
    "status",
    "target_simulator",
    "owner",
    "submission_date",
    "start_time",
    "finish_time",
    "attempts",
    "node_id",
    "error",
)
ALL_PAGE = 1000  # the page size of --all (the api's largest)
_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Order(str, enum.Enum):
    """``--order``: newest first (desc) or oldest first (asc), by submission."""

    desc = "desc"
    asc = "asc"


def statuses(given: list[str] | None) -> list[str] | None:
    """``--status`` values (each may be a comma list), checked; None for none."""
    names = [name.strip() for value in given or [] for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in STATUSES]
    if unknown:
        raise typer.BadParameter(f"{', '.join(unknown)}: give {', '.join(STATUSES)}", param_hint="--status")
    return names or None


def since_time(value: str | None) -> str | None:
    """``--since``: an ISO 8601 time (a time without a zone is local), or an age such as
    ``30m``, ``2h``, ``7d``; as ISO 8601 with its zone (UTC for an age)."""
    if value is None:
        return None
    if ago := _AGO.fullmatch(value.strip()):
        delta = timedelta(**{_UNITS[ago.group(2)]: float(ago.group(1))})
        return (datetime.now(timezone.utc) - delta).isoformat()
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r}: give an ISO 8601 time (2024-05-01T12:00) or an age (30m, 2h, 7d)", param_hint="--since"
        ) from None
    return (moment if moment.tzinfo else moment.astimezone()).isoformat()


def field_names(value: str | None, lean: tuple[str, ...] = LEAN_FIELDS) -> list[str] | None:
    """``--fields``: the ``lean`` default, a comma list, or ``all`` (None: every field)."""
    if value is None:
        return list(lean)
    if value.strip() == "all":
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


StatusOpt = Annotated[
    list[str] | None,
    typer.Option("--status", help=f"Only these statuses ({', '.join(STATUSES)}); repeat or comma-separate."),
]
BackendOpt = Annotated[str | None, typer.Option(help="Only this backend's.")]
LimitOpt = Annotated[int, typer.Option(min=1, max=1000, help="How many at most.")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every one that matches (whatever --limit).")]
OrderOpt = Annotated[Order, typer.Option(help="desc: newest first; asc: oldest first.")]
SinceOpt = Annotated[
    str | None,
    typer.Option(help="Only those submitted since: an ISO 8601 time or an age (30m, 2h, 7d)."),
]


def _filters(
    status: list[str] | None, backend: str | None, order: Order, since: str | None, fields: list[str] | None
) -> dict[str, Any]:
    return {
        "status": statuses(status),
        "backend": backend,
        "order": order.value,
        "since": since_time(since),
        "fields": fields,
    }


def _print(rows: list[dict[str, Any]], id_key: str, output: Format, quiet: bool, *, history: bool) -> None:
    if quiet:
        print_ids([row[id_key] for row in rows])
    elif output is Format.json:
        print_json(rows)
    else:
        out.print(jobs_table(rows, history=history))


@app.command()
def jobs(
    status: StatusOpt = None,
    backend: BackendOpt = None,
    limit: LimitOpt = 20,
    every: AllOpt = False,
    order: OrderOpt = Order.desc,
    since: SinceOpt = None,
    fields: Annotated[
        str | None,
        typer.Option(
            help="The fields of each row, a comma list, or `all` (program and results too) "
            "\\[default: the table's: status, backend, owner, times, attempts, waiting_for, node, error]."
        ),
    ] = None,
    output: OutputOpt = Format.table,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
    grpc: GrpcOpt = None,
    api_key: ApiKeyOpt = None,
    ca_file: CaFileOpt = None,
    tls: TlsOpt = False,
) -> None:
    """List jobs, newest first, filtered on the server.

    Yours with a user's key; everyone's with an admin's, or with authentication off. -o json: a
    JSON list of rows (lean unless --fields says otherwise); -q: their ids.
    """
    filters = _filters(status, backend, order, since, field_names(fields))
    with connect(Connection(url, grpc, api_key, ca_file, tls)) as client:
        if every:
            rows = list(client.iter_jobs(**filters, limit=ALL_PAGE))
        else:
            rows = client.jobs(**filters, limit=limit)
    _print(rows, "id", output, quiet, history=False)


@app.command()
def history(
    status: StatusOpt = None,
    backend: BackendOpt = None,
    limit: LimitOpt = 20,
    every: AllOpt = False,
    order: OrderOpt = Order.desc,
    since: SinceOpt = None,
    fields: Annotated[
        str | None,
        typer.Option(
            help="The fields of each row, a comma list, or `all` (metadata and results too) "
            "\\[default: the table's: job_id, status, backend, owner, times, attempts, node, error]."
        ),
    ] = None,
    output: OutputOpt = Format.table,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
    grpc: GrpcOpt = None,
    api_key: ApiKeyOpt = None,
    ca_file: CaFileOpt = None,
    tls: TlsOpt = False,
) -> None:
    """List history rows, newest first: one per job that ended, kept after the job is deleted.

    The same filters as `jobs`. -o json: a JSON list of rows (lean unless --fields says otherwise);
    -q: their job ids.
    """
    filters = _filters(status, backend, order, since, field_names(fields, LEAN_HISTORY_FIELDS))
    with connect(Connection(url, grpc, api_key, ca_file, tls)) as client:
        if every:
            rows = list(client.iter_history(**filters, limit=ALL_PAGE))
        else:
            rows = client.history(**filters, limit=limit)
    _print(rows, "job_id", output, quiet, history=True)
