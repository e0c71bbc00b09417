"""Histograms for the job page: counts and quasi-distributions as bars in an SVG drawing.

Pure functions: the outcomes in, the bars' geometry out (in SVG user units of a viewBox
``WIDTH`` x ``height``); ``templates/_histogram.html`` draws them. Each bar's height is
proportional to its value: ``PLOT_HEIGHT * |value| / max |value|``. With more than ``TOP``
outcomes, only the ``TOP`` largest are drawn (largest first) and the chart says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

TOP = 32
WIDTH = 800.0
PLOT_HEIGHT = 240.0
LEFT = 64.0  # room for the value axis' labels
RIGHT = 8.0
TOP_MARGIN = 24.0  # room for the value over the tallest bar
CHAR_WIDTH = 7.5  # of a monospace label at the chart's font size
MAX_LABEL_CHARS = 40  # a longer bitstring is cut (the full one is in the bar's title)
GAP = 0.2  # fraction of a slot left between bars
MAX_SLOT = 120.0  # a few outcomes get bars this wide at most (the drawing narrows instead)


@dataclass(frozen=True)
class Bar:
    """One outcome's bar: its label and value, share of the total, and where it is drawn."""

    label: str
    value: float
    share: float  # value / sum of all values (of every outcome, drawn or not)
    x: float
    y: float
    width: float
    height: float
    negative: bool

    @property
    def center(self) -> float:
        """The bar's middle, where its label goes."""
        return self.x + self.width / 2


@dataclass(frozen=True)
class Tick:
    """A line across the plot at ``value``, drawn at height ``y``."""

    value: float
    y: float


@dataclass(frozen=True)
class Histogram:
    """What the SVG shows: bars, value ticks, the drawing's size, and how much was left out."""

    bars: list[Bar]
    ticks: list[Tick]
    outcomes: int  # how many outcomes there are
    total: float  # sum of every outcome's value
    shown_share: float  # share of the total the drawn bars hold
    width: float
    height: float
    baseline: float  # y of the value 0
    vertical_labels: bool

    @property
    def truncated(self) -> bool:
        """True when only the ``TOP`` largest outcomes are drawn."""
        return len(self.bars) < self.outcomes


def histogram(values: Mapping[str, float], *, top: int = TOP) -> Histogram | None:
    """The histogram of ``values`` ({label: value}; counts or a quasi-distribution); None
    when there is nothing to draw (no outcomes, or every value 0).

    Up to ``top`` outcomes are drawn in label order (bitstrings read as numbers: 00, 01, 10, 11);
    with more, the ``top`` largest, largest first (ties in label order).
    """
    items = [(str(label), float(value)) for label, value in values.items()]
    largest = max((abs(v) for _, v in items), default=0.0)
    if not items or largest == 0 or not math.isfinite(largest):
        return None
    total = sum(v for _, v in items)
    if len(items) > top:
        shown = sorted(items, key=lambda item: (-abs(item[1]), _order(item[0])))[:top]
    else:
        shown = sorted(items, key=lambda item: _order(item[0]))
    longest = max(len(label) for label, _ in shown)
    vertical = longest * CHAR_WIDTH > (WIDTH - LEFT - RIGHT) / len(shown) * 0.9
    label_room = min(longest, MAX_LABEL_CHARS) * CHAR_WIDTH + 12 if vertical else 20.0
    baseline = TOP_MARGIN + PLOT_HEIGHT
    slot = min((WIDTH - LEFT - RIGHT) / len(shown), MAX_SLOT)
    bars = []
    for i, (label, value) in enumerate(shown):
        height = PLOT_HEIGHT * abs(value) / largest
        bars.append(
            Bar(
                label=label,
                value=value,
                share=value / total if total else 0.0,
                x=LEFT + i * slot + slot * GAP / 2,
                y=baseline - height,
                width=slot * (1 - GAP),
                height=height,
                negative=value < 0,
            )
        )
    step = _nice_step(largest / 4)
    ticks = [
        Tick(value=k * step, y=baseline - PLOT_HEIGHT * k * step / largest) for k in range(int(largest / step) + 1)
    ]
    return Histogram(
        bars=bars,
        ticks=ticks,
        outcomes=len(items),
        total=total,
        shown_share=sum(b.value for b in bars) / total if total else 0.0,
        width=LEFT + slot * len(shown) + RIGHT,
        height=baseline + label_room,
        baseline=baseline,
        vertical_labels=vertical,
    )


def _nice_step(rough: float) -> float:
    """The round number (1, 2 or 5 times a power of ten) nearest above ``rough``: the ticks' step."""
    power = 10 ** math.floor(math.log10(rough))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= rough * (1 - 1e-9))


def _order(label: str) -> tuple[int, str]:
    """Sort key of an outcome: a bitstring (registers split by spaces) by its number, else text."""
    bits = label.replace(" ", "")
    if bits and set(bits) <= {"0", "1"}:
        return (int(bits, 2), label)
    return (-1, label)


def quasi_labels(quasi: Mapping[str, float], *, bits: int | None = None) -> dict[str, float]:
    """A quasi-distribution keyed by integers (as JSON keys: "6") keyed by bitstrings
    ("110"), ``bits`` wide (default: as wide as the largest outcome needs); a key that is not an
    integer is kept as it is."""
    numbers = [int(k) for k in quasi if k.isdigit()]
    width = bits or max((n.bit_length() for n in numbers), default=1) or 1
    return {(format(int(k), f"0{width}b") if k.isdigit() else k): v for k, v in quasi.items()}


def short(label: str) -> str:
    """A label cut to MAX_LABEL_CHARS characters for drawing (with an ellipsis)."""
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def number(value: float) -> str:
    """A value for a label: integers as they are, others to 4 significant digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"
