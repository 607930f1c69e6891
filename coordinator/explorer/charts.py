"""Inline SVG charts computed on the server: coordinates only, the template draws them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

PALETTE: Final = (
    "#2563eb",
    "#dc2626",
    "#16a34a",
    "#9333ea",
    "#ea580c",
    "#0891b2",
    "#4d7c0f",
    "#be185d",
)


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    points: str
    """SVG polyline points ``"x,y x,y ..."``."""
    last_value: int


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    series: tuple[Series, ...]
    y_ticks: tuple[tuple[float, int], ...]
    """(y position, value) of the horizontal grid lines."""
    x_labels: tuple[tuple[float, int], ...]
    """(x position, unix time)."""
    pad: int


def line_chart(
    data: Mapping[str, Sequence[tuple[int, int]]],
    *,
    width: int = 720,
    height: int = 260,
    pad: int = 48,
) -> LineChart | None:
    """One polyline per series of (time, value); None if nothing to draw."""
    points = [p for series in data.values() for p in series]
    if not points:
        return None
    t0, t1 = min(t for t, _ in points), max(t for t, _ in points)
    v1 = max(v for _, v in points)
    top = _nice_ceiling(v1) if v1 > 0 else 1
    span_t = max(1, t1 - t0)
    inner_w, inner_h = width - 2 * pad, height - 2 * pad

    def x(t: int) -> float:
        return pad + inner_w * (t - t0) / span_t if t1 > t0 else pad + inner_w / 2

    def y(v: int) -> float:
        return pad + inner_h * (1 - v / top)

    series = tuple(
        Series(
            name=name,
            color=PALETTE[i % len(PALETTE)],
            points=" ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in values),
            last_value=values[-1][1],
        )
        for i, (name, values) in enumerate(sorted(data.items()))
        if values
    )
    ticks = tuple((y(top * k // 4), top * k // 4) for k in range(5))
    labels = tuple((x(t), t) for t in sorted({t0, (t0 + t1) // 2, t1}))
    return LineChart(width, height, series, ticks, labels, pad)


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    simulated: int
    y: float
    width: float
    sim_width: float


def bar_chart(
    rows: Sequence[tuple[str, int, int]], *, width: int = 420, bar_h: int = 22
) -> list[Bar]:
    """Horizontal bars of (label, value, simulated part)."""
    top = max((value for _, value, _ in rows), default=0)
    bars: list[Bar] = []
    for i, (label, value, simulated) in enumerate(rows):
        w = width * value / top if top else 0.0
        sim_w = width * simulated / top if top else 0.0
        bars.append(Bar(label, value, simulated, i * (bar_h + 6), w, sim_w))
    return bars


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^k at or above ``value`` (integers only)."""
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude
