from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from dashboard.access import org_view
from dashboard.selectors import PERIODS, activity, attention
from dashboard.views.common import page
from sending.models import Domain, ReputationScope
from sending.reputation.rates import reputations_for, thresholds_for


@org_view()
def overview(request: HttpRequest) -> HttpResponse:
    period = request.GET.get("period", "7d")
    stats = activity(organization=request.organization, period=period)
    reputations = reputations_for(request.organization.pk)
    for rep in reputations:
        rep.thresholds = thresholds_for(rep)  # type: ignore[attr-defined]
    own = next((r for r in reputations if r.scope == ReputationScope.ORGANIZATION), None)
    return page(
        request,
        "dashboard/overview.html",
        {
            "section": "overview",
            "stats": stats,
            "periods": PERIODS,
            "attention": attention(organization=request.organization, reputations=reputations),
            "has_domains": Domain.objects.filter(organization=request.organization).exists(),
            "reputation": own,
            "reputations": reputations,
        },
    )
