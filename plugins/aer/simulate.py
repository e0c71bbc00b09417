"""Runs one OpenQASM job on Aer and returns counts, quasi-distribution and expectation values."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer import AerError, AerSimulator

from plugins.aer import sizing
from plugins.aer.circuits import active_qubits, bind_parameters, load_circuit
from plugins.aer.errors import CircuitError, SimulationError
from plugins.aer.observables import (
    expval_saves,
    observables,
    observed_qubits,
    saved_values,
    split_final_measurements,
    with_saves,
    without_idle_qubits,
)
from plugins.aer.unroll import DEFAULT_MAX_EXPANDED_GATES, expanded_gates, unroll

RESULT_TYPES = ("counts", "quasi_dist", "expval")
DEFAULT_SHOTS = 1000
# Below this many active qubits Aer's thread start-up costs more than the simulation
# (1000-shot Bell circuit on a busy 2-core box: ~8 ms with all cores, ~1-2 ms with one).
SINGLE_THREAD_BELOW_QUBITS = 14

_METHOD_ALIASES = {"auto": "automatic"}
_METHODS = frozenset(AerSimulator().available_methods())
# Methods that can compute Pauli expectation values exactly; others use Aer's automatic choice.
_EXPVAL_METHODS = frozenset({"automatic", "statevector", "density_matrix", "stabilizer", "matrix_product_state"})
# Everything Aer runs natively; anything else (user-defined gates) is unrolled into these.
_NATIVE = frozenset(AerSimulator().operation_names) | {"barrier"}
_CONTROL_FLOW = frozenset({"if_else", "while_loop", "for_loop", "switch_case"})
_NON_UNITARY = frozenset({"measure", "reset", "initialize", "kraus", "superop", "quantum_channel"})
_INT64 = 2**63


@functools.cache
def _simulator(
    method: str, threads: int | None, max_memory_mb: int | None, device: str = "CPU", experiments: int = 1
) -> AerSimulator:
    """One AerSimulator per setting, built once per process (run options go per call).
    ``threads``: Aer's max_parallel_threads (None: Aer's default, what OpenMP allows);
    ``experiments``: Aer's max_parallel_experiments (a sweep's bindings, 0: as many as threads)."""
    options: dict[str, Any] = {"method": method, "max_parallel_experiments": experiments}
    if device != "CPU":
        options["device"] = device
    if threads:
        options["max_parallel_threads"] = threads
    if max_memory_mb is not None:
        options["max_memory_mb"] = max_memory_mb
    return AerSimulator(**options)


def _threads(active: int, threads: int | None) -> int | None:
    """Aer's thread count for a circuit of ``active`` qubits: one below
    SINGLE_THREAD_BELOW_QUBITS, else ``threads`` (None: Aer's default)."""
    return 1 if active < SINGLE_THREAD_BELOW_QUBITS else threads


def _operation_names(circuit: QuantumCircuit) -> set[str]:
    """Names of all operations, including those inside control-flow blocks."""
    names = set()
    for instruction in circuit.data:
        operation = instruction.operation
        names.add(operation.name)
        for block in getattr(operation, "blocks", ()):
            names |= _operation_names(block)
    return names


def _result_types(result_types: Sequence[str]) -> set[str]:
    if isinstance(result_types, str):
        result_types = [result_types]
    wanted = set(result_types)
    unknown = sorted(str(name) for name in wanted - set(RESULT_TYPES))
    if unknown:
        raise ValueError(f"unknown result type {', '.join(unknown)}; expected one of {', '.join(RESULT_TYPES)}")
    if not wanted:
        raise ValueError(f"no result type requested; expected some of {', '.join(RESULT_TYPES)}")
    return wanted


def _shots(metadata: Mapping[str, Any]) -> int:
    shots = metadata.get("shots")
    if shots is None:
        shots = DEFAULT_SHOTS
    if isinstance(shots, float) and shots.is_integer():
        shots = int(shots)
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise CircuitError(f"metadata 'shots' must be an integer >= 1, got {shots!r}")
    return shots


def _seed(metadata: Mapping[str, Any]) -> int | None:
    seed = metadata.get("seed")
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not -_INT64 <= seed < _INT64:
        raise CircuitError(f"metadata 'seed' must be a 64-bit integer, got {seed!r}")
    return seed


def _drawn(seed: int | None, receipt: dict[str, Any] | None) -> int | None:
    """The seed to run with: the job's; or, when the run keeps a receipt, one drawn now (Aer
    would draw one anyway) and written into it, so that the run can be repeated."""
    if receipt is None:
        return seed
    if seed is None:
        seed = secrets.randbits(63)
    receipt["seed"] = seed
    return seed


def _method(metadata: Mapping[str, Any]) -> str:
    method = metadata.get("method") or "auto"
    method = _METHOD_ALIASES.get(method, method) if isinstance(method, str) else method
    if not isinstance(method, str) or method not in _METHODS:
        raise CircuitError(f"unknown Aer method {method!r}; expected auto or one of {', '.join(sorted(_METHODS))}")
    return method


def _execute(simulator: AerSimulator, circuit: QuantumCircuit, receipt: dict | None = None, **options: Any):
    """Run on Aer; raise SimulationError with Aer's own status when it does not succeed. The
    method Aer chose goes into ``receipt`` (if given and not there yet)."""
    try:
        result = simulator.run(circuit, **options).result()
    except AerError as exc:
        raise SimulationError(f"Aer refused the circuit: {exc.message}") from exc
    if not result.success:
        statuses = [str(item.status) for item in result.results if not item.success]
        message = "; ".join(statuses) or str(result.status)
        if "memory" in message.lower() and simulator.options.method != "matrix_product_state":
            message += ' (metadata "method": "matrix_product_state" may fit)'
        raise SimulationError(f"Aer could not run the circuit: {message}")
    if receipt is not None and result.results:
        receipt.setdefault("method", result.results[0].metadata.get("method"))
    return result


def _counts(
    simulator: AerSimulator,
    circuit: QuantumCircuit,
    shots: int,
    seed: int | None,
    binds: list | None = None,
    receipt: dict | None = None,
) -> list[dict[str, int]]:
    """Counts of each experiment: one, or one per binding of ``binds`` (Aer's
    ``parameter_binds``: [{parameter: [value per binding]}])."""
    options: dict[str, Any] = {"shots": shots}
    if seed is not None:
        options["seed_simulator"] = seed
    if binds is not None:
        options["parameter_binds"] = binds
    if _operation_names(circuit) & _CONTROL_FLOW:
        # Aer's own truncation of idle qubits breaks its jumps when every measurement sits in a
        # branch ("Invalid jump destination: if_0_end"): idle qubits are dropped here instead.
        circuit = without_idle_qubits(circuit, keep=set())
        options["enable_truncation"] = False
    result = _execute(simulator, circuit, receipt, **options)
    if "counts" not in result.data(0):
        raise CircuitError("the circuit measures no qubit, so it has no counts")
    return [
        {str(key): int(value) for key, value in result.get_counts(index).items()}
        for index in range(len(result.results))
    ]


def _quasi_dist(counts: Mapping[str, int], shots: int) -> dict[int, float]:
    """{bitstring: count} -> {outcome as int (spaces between registers removed): probability}."""
    dist: dict[int, float] = {}
    for key, count in counts.items():
        outcome = int(key.replace(" ", ""), 2)
        dist[outcome] = dist.get(outcome, 0.0) + count / shots
    return dist


def _expvals(
    circuit: QuantumCircuit,
    operators: Sequence[SparsePauliOp],
    method: str,
    shots: int,
    seed: int | None,
    max_memory_mb: int | None,
    device: str = "CPU",
    threads: int | None = None,
    binds: list | None = None,
    experiments: int = 1,
    receipt: dict | None = None,
) -> list[list[float]]:
    """Exact <psi|O|psi> per operator, on the circuit without its final measurements: one list
    (a value per operator) per experiment: one, or one per binding of ``binds``."""
    values, saves = expval_saves(operators)
    runs = len(next(iter(binds[0].values()))) if binds else 1
    if not saves:
        return [list(values)] * runs  # type: ignore[list-item]
    body = without_idle_qubits(with_saves(split_final_measurements(circuit)[0], saves), keep=observed_qubits(saves))
    # Without measurements left the state is deterministic: one shot gives the exact value;
    # with mid-circuit measurements Aer averages over the shots.
    measured = bool(_operation_names(body) & _NON_UNITARY)
    if receipt is not None:  # exact: the same without a seed (core/cache.py)
        receipt["exact"] = not measured
    options: dict[str, Any] = {"shots": shots if measured else 1, "enable_truncation": False}
    if seed is not None:
        options["seed_simulator"] = seed
    if binds is not None:
        options["parameter_binds"] = binds
    # a sweep's bindings share the threads (Aer runs several at once); one circuit: as _threads
    thread_count = threads if experiments != 1 else _threads(body.num_qubits, threads)
    simulator = _simulator(method, thread_count, max_memory_mb, device, experiments)
    result = _execute(simulator, body, receipt, **options)
    return [saved_values(values, result.data(run)) for run in range(runs)]


def _counts_with_expvals(
    simulator: AerSimulator,
    circuit: QuantumCircuit,
    operators: Sequence[SparsePauliOp],
    shots: int,
    seed: int | None,
    receipt: dict | None = None,
) -> tuple[dict[str, int], list[float]] | None:
    """Counts and exact expectation values from ONE Aer run: each observable is saved just before
    the final measurements (the state then is the one ``_expvals`` would compute on its own), the
    shots sampled after. None when that could not be exact or cannot run so (an operation that is
    not unitary before the end, control flow, only identities): ``_counts`` and ``_expvals`` run
    apart then. Idle qubits are dropped here and Aer's truncation is off, as in ``_expvals``."""
    values, saves = expval_saves(operators)
    body, finals = split_final_measurements(circuit)
    if not saves or not finals or _operation_names(body) & (_NON_UNITARY | _CONTROL_FLOW):
        return None
    combined = with_saves(body, saves)
    for instruction in finals:
        combined.append(instruction, copy=False)
    measured = {circuit.find_bit(qubit).index for instruction in finals for qubit in instruction.qubits}
    combined = without_idle_qubits(combined, keep=observed_qubits(saves) | measured)
    options: dict[str, Any] = {"shots": shots, "enable_truncation": False}
    if seed is not None:
        options["seed_simulator"] = seed
    result = _execute(simulator, combined, receipt, **options)
    if receipt is not None:
        receipt["exact"] = True
    counts = {str(key): int(value) for key, value in result.get_counts(0).items()}
    return counts, saved_values(values, result.data(0))


def _prepare(
    circuit: QuantumCircuit,
    metadata: Mapping[str, Any],
    wanted: set[str],
    method: str,
    memory_budget_bytes: int | None,
    max_qubits: Mapping[str, int] | None,
    max_expanded_gates: int,
) -> tuple[QuantumCircuit, list[SparsePauliOp]]:
    """The loaded circuit made ready for Aer (its own gates unrolled) after the memory and
    width checks, and its observables (for expval). Raises NeedsMemory, CircuitError."""
    if memory_budget_bytes is not None:  # what the expansion will take, before it is built
        expanded = expanded_gates(circuit, _NATIVE, max_expanded_gates)
        early = sizing.size_before_expansion(circuit, expanded, method)
        if early.memory_bytes > memory_budget_bytes:
            raise sizing.NeedsMemory(early, memory_budget_bytes)
    # Gates of the program's own, whatever their names, become what Aer runs as it is.
    circuit = unroll(circuit, _NATIVE, max_expanded_gates)
    needed = sizing.size(circuit, method)
    if memory_budget_bytes is not None and needed.memory_bytes > memory_budget_bytes:
        raise sizing.NeedsMemory(needed, memory_budget_bytes)  # placed again, or refused for memory
    limit = (max_qubits or {}).get(needed.method)
    if limit is not None and needed.active_qubits > limit:
        raise CircuitError(
            f"the circuit has {needed.active_qubits} active qubits; this server runs at most "
            f"{limit} with the {needed.method} method (QSERVER_MAX_ACTIVE_QUBITS)"
        )
    return circuit, observables(metadata, circuit.num_qubits) if "expval" in wanted else []


def run(
    qasm: str,
    metadata: Mapping[str, Any] | None,
    result_types: Sequence[str],
    *,
    max_memory_mb: int | None = None,
    memory_budget_bytes: int | None = None,
    device: str = "CPU",
    max_qubits: Mapping[str, int] | None = None,
    threads: int | None = None,
    max_expanded_gates: int = DEFAULT_MAX_EXPANDED_GATES,
    max_seconds: float | None = None,
    receipt: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run an OpenQASM 2/3 program on Aer and return the requested results as plain JSON types.

    metadata: shots (int >= 1, default 1000), seed (int), method ("auto" or an Aer method),
    parameters ({name: number} for OpenQASM 3 inputs), obs (list of PUBs of [pauli, coeff],
    needed for expval). result_types: any of "counts", "quasi_dist", "expval".
    Returns only the requested keys: counts {bitstring: int} (Qiskit order: qubit 0 rightmost,
    registers space-separated, last-declared leftmost); quasi_dist {outcome int: probability};
    expval [float per PUB], exact. counts and quasi_dist come from the same run.
    max_memory_mb caps Aer's memory (MiB). memory_budget_bytes: the memory this worker was
    granted; a circuit whose size (plugins.aer.sizing) exceeds it raises NeedsMemory before
    simulating. device: "CPU" or "GPU" (qiskit-aer-gpu). max_qubits: {Aer method: most active
    qubits} (the method Aer will use, "automatic" resolved as in plugins.aer.sizing). threads:
    Aer's thread count for circuits of SINGLE_THREAD_BELOW_QUBITS active qubits or more (None:
    all that OpenMP allows; a Ray worker's OpenMP allows its num_cpus); smaller circuits run on
    one thread. max_expanded_gates: the most gates the program's own gate definitions may
    expand to (plugins.aer.unroll). max_seconds: the time this run may take: a circuit whose
    estimate (plugins.aer.sizing.cost: active qubits, gates after expansion, shots, whether every
    shot is simulated on its own) exceeds it raises TooSlow before simulating (seconds).
    receipt: a dict to fill with what makes the run reproducible: ``seed`` (the job's, or the
    one drawn for it when it has none: the same seed gives the same counts) and ``method``
    (the one Aer chose). Raises ValueError for an unknown result type, CircuitError (a ValueError) for a circuit or
    metadata that cannot run, SimulationError when Aer does not finish (e.g. not enough memory;
    the message is Aer's).
    """
    wanted = _result_types(result_types)
    metadata = metadata or {}
    shots, seed, method = _shots(metadata), _drawn(_seed(metadata), receipt), _method(metadata)
    circuit = bind_parameters(load_circuit(qasm), metadata.get("parameters"))
    circuit, operators = _prepare(
        circuit, metadata, wanted, method, memory_budget_bytes, max_qubits, max_expanded_gates
    )
    if max_seconds is not None:
        runs = bool(wanted & {"counts", "quasi_dist"}) + ("expval" in wanted)
        estimate = sizing.cost(circuit, method, shots, runs)
        if estimate.seconds > max_seconds:
            raise sizing.TooSlow(estimate, max_seconds)  # runs where it may take its time
    results: dict[str, Any] = {}
    if wanted & {"counts", "quasi_dist"}:
        simulator = _simulator(method, _threads(active_qubits(circuit), threads), max_memory_mb, device)
        both = None
        if "expval" in wanted and method in _EXPVAL_METHODS:
            both = _counts_with_expvals(simulator, circuit, operators, shots, seed, receipt=receipt)
        if both is not None:  # one run gave both
            counts, results["expval"] = both
        else:
            counts = _counts(simulator, circuit, shots, seed, receipt=receipt)[0]
        if "counts" in wanted:
            results["counts"] = counts
        if "quasi_dist" in wanted:
            results["quasi_dist"] = _quasi_dist(counts, shots)
    if "expval" in wanted and "expval" not in results:
        expval_method = method if method in _EXPVAL_METHODS else "automatic"
        expvals = _expvals(
            circuit, operators, expval_method, shots, seed, max_memory_mb, device, threads, receipt=receipt
        )
        results["expval"] = expvals[0]
    return results


# Aer seeds experiment i of one run with seed_simulator + SEED_STEP * i (qiskit-aer 0.18.2,
# tests/plugins/test_sweep.py checks it): a chunk that starts at binding ``first`` is seeded
# seed + SEED_STEP * first, so a sweep's counts do not depend on how it is chunked and equal
# those of qiskit_aer.primitives.SamplerV2 running the PUB in one call.
SEED_STEP = 2113
MAX_CHUNK = 1000  # bindings per simulator call (and per stored row of items)
CHUNK_GATES = 65_536  # gates per simulator call: Aer builds one circuit per binding


def chunk_size(gates: int) -> int:
    """Bindings per simulator call for a circuit of ``gates`` instructions: at most MAX_CHUNK
    and about CHUNK_GATES gates in all."""
    return max(1, min(MAX_CHUNK, CHUNK_GATES // max(gates, 1)))


def run_sweep(
    qasm: str,
    metadata: Mapping[str, Any] | None,
    result_types: Sequence[str],
    parameters: Sequence[str],
    values: Any,
    on_chunk: Callable[[int, list[dict[str, Any]]], None],
    *,
    start: int = 0,
    receipt: dict[str, Any] | None = None,
    max_memory_mb: int | None = None,
    memory_budget_bytes: int | None = None,
    device: str = "CPU",
    max_qubits: Mapping[str, int] | None = None,
    threads: int | None = None,
    max_expanded_gates: int = DEFAULT_MAX_EXPANDED_GATES,
) -> int:
    """Run an OpenQASM 3 program once per binding of its parameters (a sweep, core/sweeps.py).

    The program is parsed and checked once; the bindings run in chunks (:func:`chunk_size`),
    one Aer call each with ``parameter_binds``. ``parameters``: the program's parameter names,
    in the order of the columns of ``values`` (a float array of shape (bindings, len(parameters))).
    After each chunk ``on_chunk(first, items)`` gets the index of the chunk's first binding and
    one item per binding: {result type: value} as :func:`run` returns for one binding (shots,
    seed and obs of ``metadata`` apply to each binding; binding i is seeded
    seed + SEED_STEP * i, i counted from ``start``: the index of ``values[0]`` in a sweep run in
    parts). ``receipt``: as for :func:`run`, with the rule of the bindings' seeds. ``threads``:
    Aer's threads, shared between the bindings it runs at once. Other arguments as :func:`run`.
    Returns the number of bindings run.

    Raises what :func:`run` raises; CircuitError when ``parameters`` and the program's
    parameters differ.
    """
    wanted = _result_types(result_types)
    metadata = metadata or {}
    shots, seed, method = _shots(metadata), _drawn(_seed(metadata), receipt), _method(metadata)
    if receipt is not None:
        receipt["binding_seeds"] = f"seed + {SEED_STEP} * i for binding i (Aer's rule for the experiments of one run)"
    circuit = load_circuit(qasm)
    declared = {parameter.name for parameter in circuit.parameters}
    unknown = [name for name in parameters if name not in declared]
    if unknown:
        has = ", ".join(sorted(declared)) or "none"
        raise CircuitError(
            f"metadata 'sweep.parameters' names {', '.join(unknown)}, which the program does not use "
            f"as parameters (it has: {has})"
        )
    unbound = sorted(declared - set(parameters))
    if unbound:
        raise CircuitError(f"the program's parameters {', '.join(unbound)} have no values: add them to the sweep")
    circuit, operators = _prepare(
        circuit, metadata, wanted, method, memory_budget_bytes, max_qubits, max_expanded_gates
    )
    by_name = {parameter.name: parameter for parameter in circuit.parameters}
    order = [by_name[name] for name in parameters]
    size = chunk_size(len(circuit.data))
    counts_simulator = _simulator(method, threads, max_memory_mb, device, threads or 0)
    expval_method = method if method in _EXPVAL_METHODS else "automatic"
    for first in range(0, len(values), size):
        part = values[first : first + size]
        binds = [{parameter: part[:, column].tolist() for column, parameter in enumerate(order)}]
        chunk_seed = None if seed is None else (seed + SEED_STEP * (start + first)) % _INT64
        items: list[dict[str, Any]] = [{} for _ in range(len(part))]
        if wanted & {"counts", "quasi_dist"}:
            counts_list = _counts(counts_simulator, circuit, shots, chunk_seed, binds, receipt)
            for item, counts in zip(items, counts_list, strict=True):
                if "counts" in wanted:
                    item["counts"] = counts
                if "quasi_dist" in wanted:
                    item["quasi_dist"] = _quasi_dist(counts, shots)
        if "expval" in wanted:
            expvals = _expvals(
                circuit,
                operators,
                expval_method,
                shots,
                chunk_seed,
                max_memory_mb,
                device,
                threads,
                binds,
                threads or 0,
            )
            for item, value in zip(items, expvals, strict=True):
                item["expval"] = value
        on_chunk(first, items)
    return len(values)
