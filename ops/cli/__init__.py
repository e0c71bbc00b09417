"""The operator's ``qserver`` commands: start/stop the local stack, homelab nodes, API keys,
certificates, the schema, old jobs.

The ``qserver`` command itself is the client package's (``qserver_client.cli``, with the user's
commands: ``submit``); this package adds its commands to it through the entry point
``[project.entry-points."qserver.commands"] server = "ops.cli:register"`` (pyproject.toml).
One typer sub-app per file; `stack`, `certs` and `janitor` add top-level commands.

``app`` is the whole command, built here without looking at entry points (``python -m ops.cli``
and the tests use it): the client's commands and ``register``'s.
"""

from __future__ import annotations

import typer

from ops.cli import certs, db, janitor, keys, node, stack
from qserver_client.cli import make_app


def register(app: typer.Typer) -> None:
    """Add the operator's commands to the ``qserver`` app (the client's)."""
    app.add_typer(stack.app)
    app.add_typer(certs.app)
    app.add_typer(db.app, name="db")
    app.add_typer(janitor.app)
    app.add_typer(keys.app, name="keys")
    app.add_typer(node.app, name="node")


app = make_app(plugins=False)
register(app)
