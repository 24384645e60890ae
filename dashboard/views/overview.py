from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from sending.models import Domain, ReputationScope
from sending.reputation import reputations_for, thresholds_for

from ..access import org_view
from ..selectors import PERIODS, activity, attention
from .common import page


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
