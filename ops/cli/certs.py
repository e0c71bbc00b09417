"""`qserver certs`: a development CA and server certificate for TLS."""

from __future__ import annotations

from typing import Annotated

import typer

from ops.cli import common
from ops.cli.common import err, out

app = typer.Typer()


@app.command()
def certs(
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="A DNS name or IP address the server certificate covers (repeat the option); "
            "default: localhost, 127.0.0.1, ::1 and this machine's host name.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Make a new CA and server certificate, replacing any."),
    ] = False,
) -> None:
    """Make a development CA and a server certificate for TLS on QSERVER_NGINX_TLS_PORT."""
    from ops import certs as tls_certs

    settings = common.settings_or_exit()
    try:
        made = tls_certs.make_dev_certs(settings.tls_path, host or None, force=force)
    except (tls_certs.CertError, OSError) as error:
        err.print(f"[red]certs:[/] {error}", highlight=False)
        raise typer.Exit(2) from None
    dns, ips = tls_certs.san_hosts(tls_certs.load_cert(made.server_cert))
    expires = tls_certs.load_cert(made.server_cert).not_valid_after_utc.date().isoformat()
    for label, path in (
        ("CA certificate", made.ca_cert),
        ("CA key", made.ca_key),
        ("server certificate", made.server_cert),
        ("server key", made.server_key),
    ):
        out.print(f"{label + ':':<20} {path}", highlight=False)
    out.print(f"{'covers:':<20} {', '.join([*dns, *map(str, ips)])} (until {expires})", highlight=False)
    out.print(
        f"`qserver up` serves REST and gRPC over TLS on port {settings.nginx_tls_port} "
        "(it reloads a running nginx). A client trusts the CA with:",
        highlight=False,
    )
    out.print(
        f"  GRPC_DEFAULT_SSL_ROOTS_FILE_PATH={made.ca_cert} REQUESTS_CA_BUNDLE={made.ca_cert}",
        highlight=False,
    )
