"""`python -m qserver_client.cli`: the `qserver` command."""

from qserver_client.cli import main

main()
