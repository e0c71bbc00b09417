"""The histograms' geometry (api/ui/charts.py): pure functions, no database."""

from __future__ import annotations

import pytest

from api.ui import charts


def test_bars_are_as_tall_as_their_values_in_bitstring_order():
    h = charts.histogram({"11": 30, "00": 60, "10": 15})
    assert h is not None
    assert [b.label for b in h.bars] == ["00", "10", "11"]
    assert [b.height for b in h.bars] == pytest.approx([240.0, 60.0, 120.0])
    assert all(b.y + b.height == pytest.approx(h.baseline) for b in h.bars)
    assert [b.share for b in h.bars] == pytest.approx([60 / 105, 15 / 105, 30 / 105])
    assert not h.truncated and h.outcomes == 3 and h.total == 105
    assert [t.value for t in h.ticks] == [0, 20, 40, 60]
    assert h.width == pytest.approx(charts.LEFT + 3 * charts.MAX_SLOT + charts.RIGHT)


def test_registers_split_by_spaces_sort_as_one_number():
    h = charts.histogram({"1 01": 1, "0 11": 1, "0 00": 1})
    assert [b.label for b in h.bars] == ["0 00", "0 11", "1 01"]


def test_more_outcomes_than_top_keep_the_largest_first():
    values = {format(i, "04b"): i + 1 for i in range(16)}
    h = charts.histogram(values, top=4)
    assert [b.label for b in h.bars] == ["1111", "1110", "1101", "1100"]
    assert h.truncated and h.outcomes == 16
    assert h.shown_share == pytest.approx((16 + 15 + 14 + 13) / sum(range(1, 17)))


def test_negative_quasi_probabilities_are_drawn_by_their_size_and_marked():
    h = charts.histogram({"0": 1.1, "1": -0.1})
    assert [b.negative for b in h.bars] == [False, True]
    assert h.bars[1].height == pytest.approx(240 * 0.1 / 1.1)


@pytest.mark.parametrize("values", [{}, {"0": 0}, {"0": 0.0, "1": 0.0}])
def test_nothing_to_draw_is_none(values):
    assert charts.histogram(values) is None


def test_long_labels_turn_vertical_and_are_cut():
    label = "1" * 60
    h = charts.histogram({label: 1, "0" * 60: 2})
    assert h.vertical_labels
    assert charts.short(label) == "1" * 39 + "…"
    assert h.height == pytest.approx(h.baseline + 40 * charts.CHAR_WIDTH + 12)


def test_quasi_keys_become_bitstrings():
    assert charts.quasi_labels({"0": 0.5, "3": 0.5}, bits=2) == {"00": 0.5, "11": 0.5}
    assert charts.quasi_labels({"5": 1.0}) == {"101": 1.0}
    assert charts.quasi_labels({"0": 1.0}) == {"0": 1.0}


@pytest.mark.parametrize(("rough", "step"), [(127.75, 200), (100, 100), (0.1278, 0.2), (3, 5), (0.25, 0.5), (7, 10)])
def test_tick_steps_are_round(rough, step):
    assert charts._nice_step(rough) == pytest.approx(step)


def test_numbers_read_well():
    assert charts.number(1000) == "1,000" and charts.number(0.51234) == "0.5123" and charts.number(-0.25) == "-0.25"
