"""What the stats API and the dashboard's charts read: counts per hour or day between two times, overall and
grouped by sender domain, stream, tag or recipient provider, with their rates and delivery-time percentiles.

Reads StatsCounter rows only (one grouped query on the organization's (span, dimension, start) index range), so
the answer costs the same at ten million recipients as at ten. Rates use reputation's formulas
(sending.reputation.rates), so the charts' lines compare with the warning and pause thresholds drawn beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db.models import Sum

from sending.models import Domain, StatsCounter, Stream
from sending.stats.counting import DELIVERY_TIME_BUCKETS, DELIVERY_TIME_PREFIX, METRICS, provider_label

INTERVALS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
GROUPS = ("tag", "domain", "stream", "provider")
# How many buckets one answer may have: a year by day, a month by hour.
MAX_BUCKETS = {"hour": 24 * 31, "day": 366}
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Rates:
    delivery_rate: float | None
    bounce_rate: float | None
    complaint_rate: float | None
    open_rate: float | None
    click_rate: float | None


def rates_of(c: dict[str, int]) -> Rates:
    """delivery: delivered / (delivered + bounced + failed); bounce: hard bounces / (delivered + bounced), and
    complaint: complaints / delivered, as reputation judges them; open and click: unique opens by people and
    unique clicks / delivered. None where there is nothing to divide by."""

    def ratio(part: int, whole: int) -> float | None:
        return round(part / whole, 6) if whole else None

    delivered, bounced = c.get("delivered", 0), c.get("bounced", 0)
    return Rates(
        delivery_rate=ratio(delivered, delivered + bounced + c.get("failed", 0)),
        bounce_rate=ratio(c.get("bounced_hard", 0), delivered + bounced),
        complaint_rate=ratio(c.get("complained", 0), delivered),
        open_rate=ratio(c.get("opened_unique", 0), delivered),
        click_rate=ratio(c.get("clicked_unique", 0), delivered),
    )


def percentiles_of(c: dict[str, int]) -> dict[str, float | None]:
    """Delivery-time percentiles from the histogram's counts: each is the upper bound (seconds) of the bucket it
    falls in (None: over a day, or nothing delivered)."""
    bounds = [*DELIVERY_TIME_BUCKETS, None]
    counts = [c.get(f"{DELIVERY_TIME_PREFIX}{b if b is not None else 'inf'}", 0) for b in bounds]
    total = sum(counts)
    answer: dict[str, float | None] = {}
    for p in PERCENTILES:
        answer[f"p{p}"] = None
        if not total:
            continue
        need, running = total * p / 100, 0
        for bound, n in zip(bounds, counts, strict=True):
            running += n
            if running >= need:
                answer[f"p{p}"] = bound
                break
    return answer


@dataclass
class Point:
    time: datetime
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Series:
    key: str
    label: str
    points: list[Point]
    totals: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Stats:
    start: datetime
    end: datetime
    interval: str
    group_by: str | None
    overall: Series
    groups: list[Series]


def buckets(start: datetime, end: datetime, interval: str) -> list[datetime]:
    """The bucket starts from `start` (rounded down to the hour or UTC day) up to `end` (excluded)."""
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if interval == "day":
        first = first.replace(hour=0)
    step, out = INTERVALS[interval], []
    while first < end:
        out.append(first)
        first += step
    return out


def _empty(times: list[datetime]) -> list[Point]:
    return [Point(t) for t in times]


def stats_read(
    *, organization_id: int, start: datetime, end: datetime, interval: str, group_by: str | None, series: bool = True
) -> Stats:
    """Counts per bucket between `start` and `end`, overall and (with `group_by`) per group, biggest group first:
    one query on the (span, dimension, start) index range of all mail and of the grouping's dimension.
    `series` False: the period's totals only (each series' points stay empty but the first)."""
    times = buckets(start, end, interval)
    index = {t: i for i, t in enumerate(times)}
    span = StatsCounter.Span.HOUR if interval == "hour" else StatsCounter.Span.DAY
    dimensions = ["", group_by] if group_by else [""]
    rows = StatsCounter.objects.filter(organization_id=organization_id, span=span, dimension__in=dimensions)
    rows = rows.filter(start__gte=times[0], start__lt=times[-1] + INTERVALS[interval]) if times else rows.none()
    overall = Series("all", "All mail", _empty(times))
    grouped: dict[str, Series] = {}
    if series:
        # One row per (bucket, dimension, key, metric) already: nothing to add up in the database.
        found = rows.values_list("start", "dimension", "key", "metric", "count")
    else:
        # Totals only (a breakdown): added up in the database, one row per group and metric.
        found = rows.values_list("dimension", "key", "metric").annotate(n=Sum("count")).order_by()
        found = ((times[0], *row) for row in found)  # every total on the first point
    for start_, dimension, key, metric, n in found:
        i = index.get(start_.astimezone(UTC))
        if i is None:
            continue
        if dimension == "":
            _add(overall, i, metric, n)
            continue
        series = grouped.get(key)
        if series is None:
            series = grouped[key] = Series(key, "", _empty(times))
        _add(series, i, metric, n)
    groups = sorted(grouped.values(), key=lambda s: (-_volume(s), s.key))
    _label(organization_id, group_by, groups)
    first = times[0] if times else start
    return Stats(start=first, end=end, interval=interval, group_by=group_by, overall=overall, groups=groups)


def _add(series: Series, i: int, metric: str, n: int) -> None:
    point = series.points[i]
    point.counts[metric] = point.counts.get(metric, 0) + n
    series.totals[metric] = series.totals.get(metric, 0) + n


def _volume(series: Series) -> int:
    return series.totals.get("accepted", 0) + series.totals.get("sent", 0) + series.totals.get("delivered", 0)


def _label(organization_id: int, group_by: str | None, groups: list[Series]) -> None:
    names: dict[str, str] = {}
    if group_by == "domain":
        names = {
            str(pk): n for pk, n in Domain.objects.filter(organization_id=organization_id).values_list("id", "name")
        }
        names["0"] = "(no sender domain)"
    elif group_by == "stream":
        names = {
            str(pk): n for pk, n in Stream.objects.filter(organization_id=organization_id).values_list("id", "name")
        }
        names["0"] = "(default stream)"
    for series in groups:
        if group_by == "provider":
            series.label = provider_label(series.key)
        elif group_by == "tag":
            series.label = series.key
        else:
            series.label = names.get(series.key, f"(deleted {group_by} {series.key})")


def counts_row(counts: dict[str, int]) -> dict[str, object]:
    """A bucket's or a total's public numbers: every metric (0 when none), its rates and percentiles."""
    row: dict[str, object] = {m: counts.get(m, 0) for m in METRICS}
    row.update(vars(rates_of(counts)))
    row["delivery_time"] = percentiles_of(counts)
    return row
