"""core.sweeps: a sweep's metadata and bindings (NPY files) checked without Qiskit."""

from __future__ import annotations

import io

import numpy as np
import pytest

from core.domain import parse_metadata
from core.errors import InvalidJob
from core.sweeps import Sweep, check_parameters, read_bindings, summary


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_bindings_of_any_shape_come_back_flat_in_c_order():
    values = np.arange(24, dtype=float).reshape(3, 4, 2)
    sweep, flat = read_bindings(npy(values), ("a", "b"), max_bindings=100)
    assert sweep == Sweep(parameters=("a", "b"), shape=(3, 4))
    assert sweep.bindings == 12
    assert flat.shape == (12, 2)
    assert flat[5].tolist() == values[1, 1].tolist() == [10.0, 11.0]


def test_a_single_binding_has_shape_empty():
    sweep, flat = read_bindings(npy(np.array([0.5, 1.5])), ("a", "b"), max_bindings=1)
    assert sweep.shape == () and sweep.bindings == 1
    assert flat.tolist() == [[0.5, 1.5]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not an npy file at all", "not an NPY file"),
        (npy(np.zeros((4, 2), dtype=np.float32)), "must be float64"),
        (npy(np.asfortranarray(np.zeros((4, 3, 2)))), "Fortran order"),
        (npy(np.zeros((4, 3))), "one value per parameter (2"),
        (npy(np.zeros((0, 2))), "at least one binding"),
        (npy(np.zeros((11, 2))), "11 bindings; at most 10"),
        (npy(np.array([[0.0, np.nan]])), "binding 0 holds a value that is not a finite number"),
        (npy(np.zeros((4, 2)))[:-8], "was it cut short"),
        (npy(np.array(["x", "y"])), "must be float64"),
    ],
)
def test_bad_bindings_are_refused_naming_the_problem(data, message):
    with pytest.raises(InvalidJob) as refused:
        read_bindings(data, ("a", "b"), max_bindings=10)
    assert message in str(refused.value)


def test_object_arrays_are_refused_without_unpickling():
    data = npy(np.zeros((2, 2))).replace(b"'<f8'", b"'|O' ")
    with pytest.raises(InvalidJob, match="must be float64"):
        read_bindings(data, ("a", "b"), max_bindings=10)


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ([], "must be an object"),
        ({}, "non-empty list"),
        ({"parameters": []}, "non-empty list"),
        ({"parameters": ["1a"]}, "OpenQASM identifier"),
        ({"parameters": ["θ"]}, "OpenQASM identifier"),
        ({"parameters": ["a", "a"]}, "'a' more than once"),
        ({"parameters": ["a"], "values": [1]}, "unknown key(s) 'values'"),
    ],
)
def test_bad_sweep_metadata_is_refused(sweep, message):
    with pytest.raises(InvalidJob) as refused:
        check_parameters(sweep)
    assert message in str(refused.value)


def test_parameters_and_sweep_together_are_refused():
    with pytest.raises(InvalidJob, match="both 'parameters'"):
        parse_metadata('{"parameters": {"a": 1}, "sweep": {"parameters": ["a"]}}')


def test_summary_points_at_the_items():
    metadata = {"sweep": {"parameters": ["a"], "shape": [2, 3]}}
    assert summary("J", metadata, 4) == {
        "parameters": ["a"],
        "shape": [2, 3],
        "bindings": 6,
        "done": 4,
        "items": "/api/v1/job/J/items",
    }
    assert summary("J", {"shots": 5}, 0) is None
