"""The dashboard's charts, described on the server and drawn in the browser by Chart.js (vendored in
dashboard/static/dashboard/vendor/, see dashboard/vendor.py). Each chart is a `Chart`: its data goes to the page
as JSON (read by dashboard/static/dashboard/charts.js, no inline script, so the page CSP holds), and the same
numbers are the table under it, one click away.

The numbers come from sending.stats.reading, the service GET /api/v1/stats answers from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sending.reputation.rates import Thresholds
from sending.stats.reading import PERCENTILES, Series, Stats, percentiles_of, rates_of

# --- server-drawn thumbnails (the domain page's DMARC pass rate) ----------------------------------------------

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


# --- charts drawn by Chart.js -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    label: str
    values: list[float | int | None]
    color: str  # a key of charts.js's palette (colour-blind safe: Okabe-Ito)
    kind: str = "bar"  # bar | line
    stack: str | None = None
    reference: bool = False  # a threshold line: dashed, and said in the caption rather than the table


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    description: str  # what is counted, for the caption and the canvas's accessible name
    labels: list[str]
    times: list[str]  # ISO 8601 of each label (a time axis), or [] (a breakdown)
    datasets: list[Dataset]
    unit: str = "count"  # count | percent | seconds
    horizontal: bool = False
    stacked: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def data_id(self) -> str:
        return f"{self.id}-data"

    def config(self) -> dict[str, object]:
        """What charts.js reads (json_script)."""
        return {
            "id": self.id,
            "title": self.title,
            "labels": self.labels,
            "unit": self.unit,
            "horizontal": self.horizontal,
            "stacked": self.stacked,
            "datasets": [vars(d) for d in self.datasets],
        }

    def columns(self) -> list[str]:
        return [d.label for d in self.datasets if not d.reference]

    def rows(self) -> list[tuple[str, str, list[str]]]:
        """The table: (label, ISO time or "", formatted values)."""
        shown = [d for d in self.datasets if not d.reference]
        times = self.times or [""] * len(self.labels)
        return [
            (label, time, [format_value(d.values[i], self.unit) for d in shown])
            for i, (label, time) in enumerate(zip(self.labels, times, strict=True))
        ]

    def has_data(self) -> bool:
        """Something to draw: a count above zero, or a rate at all (0 % against its thresholds says something)."""
        values = [v for d in self.datasets if not d.reference for v in d.values]
        return any(v is not None for v in values) if self.unit == "percent" else any(values)


def format_value(value: float | int | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "percent":
        return f"{value * 100:.2f} %"
    if unit == "seconds":
        return f"≤ {seconds_label(value)}"
    return str(int(value))


def seconds_label(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def time_labels(stats: Stats) -> tuple[list[str], list[str]]:
    fmt = "%b %d %H:00" if stats.interval == "hour" else "%b %d"
    points = stats.overall.points
    return [f"{p.time:{fmt}}" for p in points], [iso(p.time) for p in points]


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _counts(series: Series, metric: str) -> list[float | int | None]:
    return [p.counts.get(metric, 0) for p in series.points]


def outcome_datasets(values: Callable[[str], list[float | int | None]], *, stack: str | None) -> list[Dataset]:
    """Delivered, deferred, bounced (stacked when `stack` names one) and complained: complaints are about
    delivered mail, so a line on a stacked chart."""
    return [
        Dataset("Delivered", values("delivered"), "delivered", stack=stack),
        Dataset("Deferred", values("deferred"), "deferred", stack=stack),
        Dataset("Bounced", values("bounced"), "bounced", stack=stack),
        Dataset("Complained", values("complained"), "complained", kind="line" if stack else "bar"),
    ]


def outcomes_chart(stats: Stats) -> Chart:
    labels, times = time_labels(stats)
    o = stats.overall
    return Chart(
        id="chart-outcomes",
        title="Sent and what became of it",
        description="Outcomes per bucket, stacked: delivered, deferred (each retry counts) and bounced; the lines "
        "are mail sent (first attempts) and complaints (about delivered mail, so not stacked on it).",
        labels=labels,
        times=times,
        stacked=True,
        datasets=[
            *outcome_datasets(lambda metric: _counts(o, metric), stack="outcomes"),
            Dataset("Sent", _counts(o, "sent"), "sent", kind="line"),
        ],
    )


def _rate_chart(stats: Stats, *, key: str, title: str, warning: float, pause: float, description: str) -> Chart:
    labels, times = time_labels(stats)
    values = [getattr(rates_of(p.counts), key) for p in stats.overall.points]
    n = len(labels)
    return Chart(
        id=f"chart-{key.replace('_', '-')}",
        title=title,
        description=description,
        labels=labels,
        times=times,
        unit="percent",
        datasets=[
            Dataset(title, values, "bounced" if key == "bounce_rate" else "complained", kind="line"),
            Dataset(f"Warning at {warning * 100:g} %", [warning] * n, "warning", kind="line", reference=True),
            Dataset(f"Paused at {pause * 100:g} %", [pause] * n, "pause", kind="line", reference=True),
        ],
        notes=[f"Warning at {warning * 100:g} %, sending paused at {pause * 100:g} % (your thresholds)."],
    )


def rate_charts(stats: Stats, thresholds: Thresholds) -> list[Chart]:
    return [
        _rate_chart(
            stats,
            key="bounce_rate",
            title="Bounce rate",
            warning=thresholds.bounce_warning,
            pause=thresholds.bounce_pause,
            description="Hard bounces ÷ (delivered + bounced) per bucket, as reputation judges it.",
        ),
        _rate_chart(
            stats,
            key="complaint_rate",
            title="Complaint rate",
            warning=thresholds.complaint_warning,
            pause=thresholds.complaint_pause,
            description="First complaints ÷ delivered per bucket, as reputation judges it.",
        ),
    ]


def engagement_chart(stats: Stats) -> Chart:
    labels, times = time_labels(stats)
    o = stats.overall
    return Chart(
        id="chart-engagement",
        title="Opens and clicks",
        description="Unique and total opens by people, opens by privacy proxies and scanners (machine) apart, "
        "unique and total clicks.",
        labels=labels,
        times=times,
        datasets=[
            Dataset("Opens (unique)", _counts(o, "opened_unique"), "opened", kind="line"),
            Dataset("Opens (total)", _counts(o, "opened"), "opened_total", kind="line"),
            Dataset("Machine opens", _counts(o, "machine_opened"), "machine", kind="line"),
            Dataset("Clicks (unique)", _counts(o, "clicked_unique"), "clicked", kind="line"),
            Dataset("Clicks (total)", _counts(o, "clicked"), "clicked_total", kind="line"),
        ],
    )


def delivery_time_chart(stats: Stats) -> Chart:
    labels, times = time_labels(stats)
    by_point = [percentiles_of(p.counts) for p in stats.overall.points]
    return Chart(
        id="chart-delivery-time",
        title="Delivery time",
        description="From acceptance (or the scheduled time) to delivery: the 50th, 90th and 99th percentile "
        "per bucket, each the upper bound of its histogram bucket.",
        labels=labels,
        times=times,
        unit="seconds",
        datasets=[Dataset(f"p{p}", [v[f"p{p}"] for v in by_point], f"p{p}", kind="line") for p in PERCENTILES],
    )


BREAKDOWN_TITLES = {
    "domain": "By sender domain",
    "tag": "By tag",
    "stream": "By stream",
    "provider": "By recipient provider",
}


def breakdown_chart(stats: Stats, *, limit: int = 12) -> Chart:
    """Totals per group over the period, biggest first (at most `limit` groups)."""
    groups = stats.groups[:limit]
    group_by = stats.group_by or ""

    def totals(metric: str) -> list[float | int | None]:
        return [g.totals.get(metric, 0) for g in groups]

    notes = [f"The {limit} largest of {len(stats.groups)}."] if len(stats.groups) > limit else []
    if group_by == "tag":
        notes.append("A message with several tags counts under each.")
    return Chart(
        id=f"chart-by-{group_by}",
        title=BREAKDOWN_TITLES.get(group_by, group_by),
        description="Delivered, deferred, bounced and complained over the period.",
        labels=[g.label for g in groups],
        times=[],
        horizontal=True,
        # Side by side, not stacked: complaints are about delivered mail.
        datasets=outcome_datasets(totals, stack=None),
        notes=notes,
    )
