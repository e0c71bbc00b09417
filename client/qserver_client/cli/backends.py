"""`qserver backends`: the backends jobs can run on, with what each can do."""

from __future__ import annotations

from typing import Any

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
from qserver_client.cli.render import print_ids, print_json, table

app = typer.Typer()


def _methods(capabilities: dict[str, Any]) -> str:
    """Each method with the most qubits it takes, ``statevector:29, stabilizer:10000``."""
    most = capabilities.get("max_qubits") or {}
    methods = capabilities.get("methods") or list(most)
    return ", ".join(f"{method}:{most[method]}" if method in most else method for method in methods)


@app.command()
def backends(
    output: OutputOpt = Format.table,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
    grpc: GrpcOpt = None,
    api_key: ApiKeyOpt = None,
    ca_file: CaFileOpt = None,
    tls: TlsOpt = False,
) -> None:
    """List the enabled backends with what each can do.

    Plugin and its version, whether a GPU is needed, result types, each method with the most
    qubits it takes (`-` where a third-party plugin does not declare them). -q: their names.
    """
    with connect(Connection(url, grpc, api_key, ca_file, tls)) as client:
        rows = client.backends()
    if quiet:
        print_ids([row["backend_name"] for row in rows])
    elif output is Format.json:
        print_json(rows)
    else:
        shown = table("NAME", "PLUGIN", "VERSION", "GPU", "RESULT TYPES", "METHODS:MOST QUBITS")
        for row in rows:
            capabilities = row.get("capabilities") or {}
            shown.add_row(
                row["backend_name"],
                row.get("plugin") or "-",
                capabilities.get("plugin_version") or "-",
                "yes" if row.get("needs_gpu") else "no",
                ", ".join(capabilities.get("result_types") or []) or "-",
                _methods(capabilities) or "-",
            )
        out.print(shown)
