"""GET /api/v1/domains/{id}/dmarc-reports: what receivers report about a sender domain (DMARC aggregate and SMTP
TLS reports), as sources, a daily pass rate, TLS results and advice on the next policy."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import Scope
from sending.api.errors import ApiError
from sending.api.scoping import owned_or_404
from sending.feedback.dmarc_overview import dmarc_overview
from sending.models import Domain

MAX_DAYS = 366


class DomainDmarcReportsView(APIView):
    required_scope = Scope.DOMAINS

    @extend_schema(
        parameters=[OpenApiParameter("days", int, description=f"how far back, 1 to {MAX_DAYS} (default 30)")],
        responses={200: dict},
        summary="A domain's DMARC and TLS reports: sources, daily pass rate, advice on tightening the policy",
    )
    def get(self, request: Request, domain_id: int) -> Response:
        domain = owned_or_404(Domain, request.user.organization, "domain", pk=domain_id)
        raw = request.query_params.get("days", "30")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
            message = f"days must be a whole number from 1 to {MAX_DAYS}."
            raise ApiError(400, message, fields={"days": [message]}, code="invalid")
        return Response(dmarc_overview(domain, days=int(raw)).as_dict())
