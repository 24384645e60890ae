"""The overview (what needs attention, reputation, and the period's charts) and the statistics page (the same
charts, longer periods, breakdowns by sender domain, tag, stream and provider, and delivery times). Both read the
stats service that GET /api/v1/stats answers from (sending.stats)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from dashboard.access import org_view
from dashboard.charts import (
    breakdown_chart,
    delivery_time_chart,
    engagement_chart,
    outcomes_chart,
    rate_charts,
)
from dashboard.selectors import LONG_PERIODS, PERIODS, attention, period_stats
from dashboard.views.common import page
from sending.models import Domain, ReputationScope
from sending.reputation.rates import platform_thresholds, reputations_for, thresholds_for
from sending.stats.reading import GROUPS, rates_of


def _period(request: HttpRequest, periods: dict[str, str]) -> str:
    period = request.GET.get("period", "7d")
    return period if period in periods else "7d"


@org_view()
def overview(request: HttpRequest) -> HttpResponse:
    period = _period(request, PERIODS)
    stats = period_stats(organization=request.organization, period=period)
    reputations = reputations_for(request.organization.pk)
    for rep in reputations:
        rep.thresholds = thresholds_for(rep)  # type: ignore[attr-defined]
    own = next((r for r in reputations if r.scope == ReputationScope.ORGANIZATION), None)
    thresholds = own.thresholds if own is not None else platform_thresholds()  # type: ignore[attr-defined]
    return page(
        request,
        "dashboard/overview.html",
        {
            "section": "overview",
            "stats": stats,
            "totals": stats.overall.totals,
            "rates": rates_of(stats.overall.totals),
            "charts": [outcomes_chart(stats), *rate_charts(stats, thresholds), engagement_chart(stats)],
            "period": period,
            "period_label": PERIODS[period],
            "periods": PERIODS,
            "attention": attention(organization=request.organization, reputations=reputations),
            "has_domains": Domain.objects.filter(organization=request.organization).exists(),
            "reputation": own,
            "reputations": reputations,
        },
    )


@org_view()
def statistics(request: HttpRequest) -> HttpResponse:
    period = _period(request, LONG_PERIODS)
    org = request.organization
    stats = period_stats(organization=org, period=period)
    own = next((r for r in reputations_for(org.pk) if r.scope == ReputationScope.ORGANIZATION), None)
    thresholds = thresholds_for(own) if own is not None else platform_thresholds()
    breakdowns = [
        breakdown_chart(period_stats(organization=org, period=period, group_by=g, series=False)) for g in GROUPS
    ]
    return page(
        request,
        "dashboard/statistics.html",
        {
            "section": "statistics",
            "stats": stats,
            "totals": stats.overall.totals,
            "rates": rates_of(stats.overall.totals),
            "charts": [
                outcomes_chart(stats),
                *rate_charts(stats, thresholds),
                engagement_chart(stats),
                delivery_time_chart(stats),
                *breakdowns,
            ],
            "period": period,
            "period_label": LONG_PERIODS[period],
            "periods": LONG_PERIODS,
        },
    )
