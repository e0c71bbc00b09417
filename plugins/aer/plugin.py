"""The upstream plugin contract (aer-plugin's `Plugin` class) over the aer backend."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plugins.aer.simulate import RESULT_TYPES, run

BACKENDS = ("aer",)


class Plugin:
    """Runs circuits for the backends in `.backends`, one result type per `execute` call."""

    def __init__(self) -> None:
        self.backends: list[str] = list(BACKENDS)

    def execute(
        self,
        target_backend: str,
        qasm_file_path: str | Path,
        metadata: Mapping[str, Any] | str | None,
        result_type: str,
    ) -> dict | list[float]:
        """Run the OpenQASM file at `qasm_file_path` on `target_backend` for one result type.

        metadata: the job's metadata (a mapping, or its JSON text). Returns a dict for counts
        ({bitstring: int}) and quasi_dist ({int: float}), a list of floats for expval. Raises
        ValueError naming an unknown backend or result type; otherwise what `run` raises.
        """
        if target_backend not in self.backends:
            raise ValueError(f"unknown backend {target_backend!r}; this plugin has {', '.join(self.backends)}")
        if result_type not in RESULT_TYPES:
            raise ValueError(f"unknown result type {result_type!r}; expected one of {', '.join(RESULT_TYPES)}")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        qasm = Path(qasm_file_path).read_text(encoding="utf-8")
        return run(qasm, metadata, [result_type])[result_type]
