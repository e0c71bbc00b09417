"""Errors the aer backend raises; each one's message is what a failed job records."""


class CircuitError(ValueError):
    """The circuit or its metadata cannot be run: it does not parse, or a setting is invalid."""


class SimulationError(RuntimeError):
    """Aer accepted the circuit but did not finish it (for example: not enough memory)."""
