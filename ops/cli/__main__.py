"""`python -m ops.cli`: the `qserver` command."""

import sys

from ops.cli import app

sys.exit(app())
