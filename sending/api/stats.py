"""The stats API: counts and rates per hour or day, overall or grouped by tag, sender domain, stream or recipient
provider (sending.stats.reading), as JSON or, with `Accept: text/csv`, as CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, time, timedelta

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import Scope
from sending.api.errors import ApiError
from sending.api.renderers import CsvRenderer
from sending.stats.counting import METRICS
from sending.stats.reading import GROUPS, INTERVALS, MAX_BUCKETS, PERCENTILES, Series, Stats, counts_row, stats_read

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
RATES = ("delivery_rate", "bounce_rate", "complaint_rate", "open_rate", "click_rate")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time_param(params, name: str, default: datetime) -> datetime:  # type: ignore[no-untyped-def]
    """An ISO 8601 date-time (UTC when it names no offset) or a date (its UTC midnight)."""
    raw = params.get(name)
    if not raw:
        return default
    try:
        value = parse_datetime(raw)
        if value is None and (day := parse_date(raw)) is not None:
            value = datetime.combine(day, time(0), tzinfo=UTC)
    except ValueError:
        value = None
    if value is None:
        raise ApiError(400, f"Bad {name}.", {name: ["An ISO 8601 date-time or date (YYYY-MM-DD)."]}, "invalid")
    value = value if timezone.is_aware(value) else timezone.make_aware(value, UTC)
    if not EARLIEST <= value <= LATEST:  # also keeps the arithmetic on buckets inside datetime's range
        raise ApiError(400, f"Bad {name}.", {name: ["Between 1970 and 9999."]}, "invalid")
    return value


def _choice(params, name: str, choices: tuple[str, ...], default: str | None) -> str | None:  # type: ignore[no-untyped-def]
    raw = params.get(name)
    if not raw:
        return default
    if raw not in choices:
        raise ApiError(400, f"Bad {name}.", {name: [f"One of {', '.join(choices)}."]}, "invalid")
    return raw


def stats_params(params) -> tuple[datetime, datetime, str, str | None]:  # type: ignore[no-untyped-def]
    """`from`, `to`, `interval` and `group_by` checked: a 400 naming the field when one is wrong."""
    interval = _choice(params, "interval", tuple(INTERVALS), "day") or "day"
    group_by = _choice(params, "group_by", GROUPS, None)
    end = _time_param(params, "to", timezone.now())
    start = _time_param(params, "from", end - timedelta(days=7 if interval == "day" else 1))
    if start >= end:
        raise ApiError(400, "Bad from.", {"from": ["Before `to`."]}, "invalid")
    if (end - start) / INTERVALS[interval] > MAX_BUCKETS[interval]:
        most = "31 days by hour" if interval == "hour" else "366 days by day"
        raise ApiError(400, "Bad from.", {"from": [f"At most {most} between from and to."]}, "invalid")
    return start, end, interval, group_by


def _series_json(series: Series) -> list[dict[str, object]]:
    return [{"time": _iso(p.time), **counts_row(p.counts)} for p in series.points]


def stats_json(stats: Stats) -> dict[str, object]:
    body: dict[str, object] = {
        "from": _iso(stats.start),
        "to": _iso(stats.end),
        "interval": stats.interval,
        "group_by": stats.group_by,
        "totals": counts_row(stats.overall.totals),
        "series": _series_json(stats.overall),
    }
    if stats.group_by:
        body["groups"] = [
            {"key": g.key, "label": g.label, "totals": counts_row(g.totals), "series": _series_json(g)}
            for g in stats.groups
        ]
    return body


def stats_csv(stats: Stats) -> str:
    """One row per bucket (and group, when grouped): every metric, rate and delivery-time percentile."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    lead = ["group", "label"] if stats.group_by else []
    timings = [f"delivery_time_p{p}" for p in PERCENTILES]
    writer.writerow([*lead, "time", *METRICS, *RATES, *timings])
    for series in stats.groups if stats.group_by else [stats.overall]:
        for point in series.points:
            row = counts_row(point.counts)
            times = row["delivery_time"]
            writer.writerow(
                [
                    *([series.key, series.label] if stats.group_by else []),
                    _iso(point.time),
                    *(row[m] for m in METRICS),
                    *("" if row[r] is None else row[r] for r in RATES),
                    *("" if times[f"p{p}"] is None else times[f"p{p}"] for p in PERCENTILES),  # type: ignore[index]
                ]
            )
    return out.getvalue()


class StatsCountsSerializer(serializers.Serializer):
    """One bucket's (or the period's) numbers."""

    time = serializers.DateTimeField(required=False, help_text="The bucket's start (absent in totals)")
    for _metric in METRICS:
        locals()[_metric] = serializers.IntegerField()
    for _rate in RATES:
        locals()[_rate] = serializers.FloatField(allow_null=True)
    delivery_time = serializers.DictField(
        child=serializers.IntegerField(allow_null=True), help_text="p50, p90, p99 in seconds (bucket upper bound)"
    )


class StatsGroupSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    totals = StatsCountsSerializer()
    series = StatsCountsSerializer(many=True)


class StatsOutSerializer(serializers.Serializer):
    # "from" is a keyword: declared through the field's source name.
    interval = serializers.ChoiceField(choices=list(INTERVALS))
    group_by = serializers.ChoiceField(choices=list(GROUPS), allow_null=True)
    totals = StatsCountsSerializer()
    series = StatsCountsSerializer(many=True)
    groups = StatsGroupSerializer(many=True, required=False)

    def get_fields(self):  # type: ignore[no-untyped-def]
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField()
        fields["to"] = serializers.DateTimeField()
        return fields


PARAMETERS = [
    OpenApiParameter("from", str, description="ISO 8601 date-time or date; default: 7 days (by hour: 1 day) before to"),
    OpenApiParameter("to", str, description="ISO 8601 date-time or date (excluded); default: now"),
    OpenApiParameter("interval", str, enum=list(INTERVALS), description="Bucket size; default day"),
    OpenApiParameter("group_by", str, enum=list(GROUPS), description="Also per tag, sender domain, stream or provider"),
]


class _AcceptHeaderOnly:
    URL_FORMAT_OVERRIDE = None


class AcceptNegotiation(DefaultContentNegotiation):
    """The Accept header alone chooses JSON or CSV: DRF's `?format=` would answer an unknown value 404."""

    settings = _AcceptHeaderOnly()


class StatsView(APIView):
    required_scope = Scope.STATS_READ
    renderer_classes = [JSONRenderer, CsvRenderer]
    content_negotiation_class = AcceptNegotiation

    @extend_schema(
        parameters=PARAMETERS,
        responses={(200, "application/json"): StatsOutSerializer, (200, "text/csv"): str},
        summary="Sending statistics: counts and rates per hour or day",
    )
    def get(self, request: Request) -> Response:
        start, end, interval, group_by = stats_params(request.query_params)
        stats = stats_read(
            organization_id=request.user.organization.pk,
            start=start,
            end=end,
            interval=interval,
            group_by=group_by,
        )
        if request.accepted_renderer.format == "csv":
            return Response(stats_csv(stats), content_type="text/csv; charset=utf-8")
        return Response(stats_json(stats))

    def finalize_response(self, request, response, *args, **kwargs):  # type: ignore[no-untyped-def]
        # An error is JSON (error_body) whatever the client accepts.
        if response.status_code >= 400 and isinstance(response, Response):
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)
