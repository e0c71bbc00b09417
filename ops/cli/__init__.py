"""``qserver``: start/stop the local stack, homelab nodes, API keys, upgrade the schema, submit a
circuit and wait for it.

One typer sub-app per file; `stack`, `certs`, `janitor` and `submit` add top-level commands.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from ops.cli import certs, db, janitor, keys, node, stack, submit

app = typer.Typer(
    help="QServer: run quantum circuits on a homelab Ray cluster.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(stack.app)
app.add_typer(certs.app)
app.add_typer(db.app, name="db")
app.add_typer(janitor.app)
app.add_typer(keys.app, name="keys")
app.add_typer(node.app, name="node")
app.add_typer(submit.app)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
