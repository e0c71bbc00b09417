"""The built-in ``aer`` backend: OpenQASM 2/3 circuits run on qiskit-aer."""

from plugins.aer.errors import CircuitError, SimulationError
from plugins.aer.plugin import Plugin
from plugins.aer.simulate import run, run_sweep
from plugins.aer.sizing import NeedsMemory

__all__ = ["CircuitError", "NeedsMemory", "Plugin", "SimulationError", "run", "run_sweep"]
