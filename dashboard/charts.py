"""Small bar charts drawn on the server as SVG geometry: no chart library, no script, readable without CSS."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT, GAP = 300, 64, 2


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    total: int
    peak: int
    width: int = WIDTH
    height: int = HEIGHT


def bar_chart(values: list[int], labels: list[str]) -> BarChart:
    """One bar per value, scaled to the largest; a zero still shows as a 1-pixel baseline tick."""
    peak = max(values, default=0)
    slot = WIDTH / max(len(values), 1)
    bars = []
    for i, (value, label) in enumerate(zip(values, labels, strict=True)):
        height = max(1.0, HEIGHT * value / peak) if peak else 1.0
        bars.append(
            Bar(round(i * slot, 2), round(HEIGHT - height, 2), round(slot - GAP, 2), round(height, 2), label, value)
        )
    return BarChart(bars=bars, total=sum(values), peak=peak)
