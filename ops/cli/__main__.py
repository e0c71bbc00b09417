"""`python -m ops.cli`: the `qserver` command with the operator's commands, whatever entry points
the environment has installed (a checkout run without `pip install -e .` too)."""

from ops.cli import app

app()
