"""The inbound mail API: mail accepted for the organization's inbound routes, its raw bytes, and posting it
again. Scoped to the caller's organization. (Bounce and feedback reports are `/api/v1/feedback/reports`.)"""

from __future__ import annotations

import uuid

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import Scope
from sending.api.errors import ApiError
from sending.api.pagination import CursorPagination
from sending.api.params import datetime_param
from sending.api.scoping import owned_or_404
from sending.api.webhooks import WebhookDeliveryDetailSerializer
from sending.inbound.by_hand import RetryRefused, inbound_post_retry, inbound_release
from sending.models import InboundMail


class InboundMailSerializer(serializers.ModelSerializer):
    route_id = serializers.UUIDField(read_only=True, allow_null=True)
    post_state = serializers.SerializerMethodField(help_text="The latest post's delivery state (post routes)")

    class Meta:
        model = InboundMail
        fields = [
            "id",
            "received_at",
            "state",
            "action",
            "route_id",
            "rcpt_to",
            "mail_from",
            "from_address",
            "subject",
            "message_id",
            "size",
            "peer_ip",
            "note",
            "post_state",
        ]

    def get_post_state(self, mail: InboundMail) -> str | None:
        latest = max(mail.deliveries.all(), key=lambda d: d.created_at, default=None)
        return latest.state if latest is not None else None


class InboundMailDetailSerializer(InboundMailSerializer):
    authentication = serializers.JSONField(source="auth", read_only=True)
    spam = serializers.JSONField(
        read_only=True,
        help_text='spamd\'s verdict: {"checked": true, "score", "threshold", "is_spam", "rules"}, or '
        '{"checked": false, "reason"}',
    )
    parsed = serializers.JSONField(read_only=True, help_text="The post's fields (attachment contents left out)")
    deliveries = serializers.SerializerMethodField(help_text="Every post of this mail with its attempts")

    class Meta(InboundMailSerializer.Meta):
        fields = [*InboundMailSerializer.Meta.fields, "helo", "authentication", "spam", "parsed", "deliveries"]

    def get_deliveries(self, mail: InboundMail) -> list[dict]:
        rows = mail.deliveries.order_by("created_at").prefetch_related("attempt_log")
        return WebhookDeliveryDetailSerializer(rows, many=True).data


class InboundPagination(CursorPagination):
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "page_size"
    ordering = ("-received_at", "-id")


FILTERS = [
    OpenApiParameter("state", str, enum=InboundMail.State.values),
    OpenApiParameter("route", str, description="A route id"),
    OpenApiParameter("recipient", str, description="The address it was sent to"),
    OpenApiParameter("from", str, description="The From address"),
    OpenApiParameter("since", str, description="ISO 8601 date-time"),
    OpenApiParameter("until", str, description="ISO 8601 date-time"),
]


def _filtered(request: Request):  # type: ignore[no-untyped-def]
    params = request.query_params
    qs = InboundMail.objects.filter(organization=request.user.organization).defer("raw", "parsed")
    state = params.get("state")
    if state:
        if state not in InboundMail.State.values:
            raise ApiError(
                400, "Unknown state.", {"state": [f"One of {', '.join(InboundMail.State.values)}."]}, "invalid"
            )
        qs = qs.filter(state=state)
    route = params.get("route")
    if route:
        try:
            qs = qs.filter(route_id=uuid.UUID(route))
        except ValueError as exc:
            raise ApiError(400, "Bad route id.", {"route": ["A route id (UUID)."]}, "invalid") from exc
    if params.get("recipient"):
        qs = qs.filter(rcpt_to__iexact=params["recipient"].strip())
    if params.get("from"):
        qs = qs.filter(from_address__iexact=params["from"].strip())
    since, until = datetime_param(params, "since"), datetime_param(params, "until")
    if since is not None:
        qs = qs.filter(received_at__gte=since)
    if until is not None:
        qs = qs.filter(received_at__lt=until)
    return qs.prefetch_related("deliveries")


def _mail(request: Request, inbound_id: object) -> InboundMail:
    return owned_or_404(InboundMail, request.user.organization, "inbound message", pk=inbound_id)


class InboundView(APIView):
    required_scope = Scope.MESSAGES_READ
    pagination_class = InboundPagination

    @extend_schema(parameters=FILTERS, responses={200: InboundMailSerializer(many=True)}, summary="List inbound mail")
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(_filtered(request), request, view=self)
        return paginator.get_paginated_response(InboundMailSerializer(page, many=True).data)


class InboundDetailView(APIView):
    required_scope = Scope.MESSAGES_READ

    @extend_schema(responses={200: InboundMailDetailSerializer}, summary="One inbound message, with its posts")
    def get(self, request: Request, inbound_id: uuid.UUID) -> Response:
        return Response(InboundMailDetailSerializer(_mail(request, inbound_id)).data)


class InboundRawView(APIView):
    required_scope = Scope.MESSAGES_READ

    @extend_schema(
        responses={(200, "message/rfc822"): OpenApiResponse(OpenApiTypes.BINARY)},
        summary="The raw inbound message as stored (with Postwerk's Authentication-Results header)",
    )
    def get(self, request: Request, inbound_id: uuid.UUID) -> HttpResponse:
        return HttpResponse(bytes(_mail(request, inbound_id).raw), content_type="message/rfc822")


class InboundRetryView(APIView):
    required_scope = Scope.WEBHOOKS

    @extend_schema(
        request=None, responses={202: WebhookDeliveryDetailSerializer}, summary="Post an inbound message again"
    )
    def post(self, request: Request, inbound_id: uuid.UUID) -> Response:
        mail = _mail(request, inbound_id)
        try:
            delivery = inbound_post_retry(mail=mail)
        except RetryRefused as exc:
            raise ApiError(409, str(exc), code="conflict") from exc
        return Response(WebhookDeliveryDetailSerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class InboundReleaseView(APIView):
    required_scope = Scope.DOMAINS  # whoever may set a route to hold may release what it held

    @extend_schema(
        request=None,
        responses={200: InboundMailDetailSerializer},
        summary="Release held inbound mail: posted when its route posts, stored otherwise (409 when not held)",
    )
    def post(self, request: Request, inbound_id: uuid.UUID) -> Response:
        try:
            mail, _ = inbound_release(mail=_mail(request, inbound_id))
        except RetryRefused as exc:
            raise ApiError(409, str(exc), code="conflict") from exc
        return Response(InboundMailDetailSerializer(mail).data)
