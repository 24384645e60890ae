"""A domain's tracking settings: opens, clicks, unsubscribe headers, and the tracking CNAME to publish."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import Scope
from sending.api.scoping import owned_or_404
from sending.domains.platform_names import tracking_host_problem
from sending.feedback.tracking import domain_tracking_update, tracking_base
from sending.models import Domain


class TrackingInputSerializer(serializers.Serializer):
    opens = serializers.BooleanField(required=False)
    clicks = serializers.BooleanField(required=False)
    unsubscribe_tags = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        help_text='Messages with one of these tags get List-Unsubscribe headers (RFC 8058); "*" for all',
    )


def _body(domain: Domain) -> dict:
    # No CNAME to a name that does not exist publicly (this machine's name): null, and why.
    unavailable = tracking_host_problem()
    record = {"type": "CNAME", "name": domain.tracking_host, "value": settings.POSTWERK_TRACKING_HOST}
    return {
        "opens": domain.track_opens,
        "clicks": domain.track_clicks,
        "unsubscribe_tags": domain.unsubscribe_tags,
        "tracking_host": domain.tracking_host,
        "tracking_host_ok": domain.tracking_host_ok,
        "record": None if unavailable else record,
        "record_unavailable": unavailable,
        "base_url": tracking_base(domain),
    }


def _domain(request: Request, domain_id: int) -> Domain:
    return owned_or_404(Domain, request.user.organization, "domain", pk=domain_id)


class DomainTrackingView(APIView):
    required_scope = Scope.DOMAINS

    @extend_schema(responses={200: dict}, summary="A domain's tracking settings")
    def get(self, request: Request, domain_id: int) -> Response:
        return Response(_body(_domain(request, domain_id)))

    @extend_schema(
        request=TrackingInputSerializer,
        responses={200: dict},
        summary="Turn open/click tracking and unsubscribe headers on or off; checks the tracking CNAME",
    )
    def patch(self, request: Request, domain_id: int) -> Response:
        domain = _domain(request, domain_id)
        serializer = TrackingInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        domain_tracking_update(domain=domain, **serializer.validated_data)
        return Response(_body(domain))
