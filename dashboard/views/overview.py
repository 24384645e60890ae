from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from sending.models import Domain

from ..access import org_view
from ..selectors import PERIODS, activity, attention
from .common import page


@org_view()
def overview(request: HttpRequest) -> HttpResponse:
    period = request.GET.get("period", "7d")
    stats = activity(organization=request.organization, period=period)
    return page(
        request,
        "dashboard/overview.html",
        {
            "section": "overview",
            "stats": stats,
            "periods": PERIODS,
            "attention": attention(organization=request.organization),
            "has_domains": Domain.objects.filter(organization=request.organization).exists(),
        },
    )
