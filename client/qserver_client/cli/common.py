"""What every `qserver` command of the client shares: the two consoles."""

from __future__ import annotations

from rich.console import Console

out = Console(soft_wrap=True)  # results: stdout, so they can be piped
err = Console(stderr=True, soft_wrap=True)  # progress, errors: never wrapped mid-message
